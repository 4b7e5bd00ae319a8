"""Lockout per (account, source) with an account-wide ceiling and the command-line unlock;
API tokens that end with what ends their owner's rights, need the PIN, always expire, and
that admins list and revoke. Through App.decide and App.handle, with a manual clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orthanc_nas import app as app_module
from orthanc_nas import config
from orthanc_nas.app import ADMIN_PIN_ENV, App
from orthanc_nas.auth import cli
from orthanc_nas.auth.lockout import source_of
from orthanc_nas.auth.service import INVALID_LOGIN
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database, SqliteDatabase
from orthanc_nas.keys import KEY_FILE, KeyRing, load_or_create_key

from .app_env import (
    MINUTE,
    OWN_PIN,
    WRONG_PIN,
    Client,
    Env,
    FakeLog,
    admin_ready,
    base_config,
    body_of,
    events,
    fake_orthanc,
    log_in,
    make_user,
)
from .conftest import MakeDb

DAY = 86400.0
ATTACKER = "203.0.113.66"
HOME = "198.51.100.7"


def build(tmp_path: Path, db: Database | None = None, **sections: dict[str, Any]) -> Env:
    """An app whose database and key file have their real names in ``tmp_path`` (the data
    directory the command line works on)."""
    cfg = config.load(base_config(tmp_path, **sections))
    db = db or SqliteDatabase(tmp_path / cli.DATABASE_FILE)
    keys = KeyRing(load_or_create_key(tmp_path / KEY_FILE))
    clock, log = ManualClock(), FakeLog()
    app = App(cfg, db, keys, clock, log, fake_orthanc())
    app_module.bootstrap_admin(app, {ADMIN_PIN_ENV: "Initial-Bootstrap-PIN-2024"})
    return Env(app, clock, log)


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


def users_by_name(admin: Client) -> dict[str, dict[str, Any]]:
    return {u["username"]: u for u in body_of(admin.get("/api/admin/users"))["users"]}


# ---- lockout per (account, source) ----------------------------------------------------------


def test_an_attacker_elsewhere_cannot_lock_the_user_out(env: Env) -> None:
    admin_client, admin = admin_ready(env)
    attacker = Client(env.app, ip=ATTACKER)
    for _ in range(7):
        r = attacker.login("admin", WRONG_PIN)
        assert (r.status, body_of(r)) == (401, {"error": INVALID_LOGIN})
    assert attacker.login("admin", admin.pin).status == 401  # locked for the attacker
    # The real admin, from home, still signs in (and the attacker stays locked).
    log_in(env, admin, Client(env.app, ip=HOME))
    assert attacker.login("admin", admin.pin).status == 401
    lockouts = [r for r in env.app.db.all("SELECT ip, details FROM audit WHERE event = 'lockout'")]
    assert [(r["ip"], '"scope": "source"' in r["details"]) for r in lockouts] == [(ATTACKER, True)]
    listed = users_by_name(log_in(env, admin, admin_client))["admin"]  # one session per user
    assert (listed["locked"], listed["locked_sources"], listed["locked_out"]) == (True, 1, False)
    env.clock.advance(15 * MINUTE)
    assert body_of(attacker.login("admin", admin.pin))["status"] == "2fa_required"


def test_each_source_has_its_own_budget_and_success_resets_only_its_own(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    here, there = Client(env.app, ip="10.0.0.7"), Client(env.app, ip="10.0.0.8")
    for _ in range(4):
        assert here.login("alice", WRONG_PIN).status == 401
        assert there.login("alice", WRONG_PIN).status == 401
    assert here.login("alice", alice.pin).status == 200
    assert there.login("alice", WRONG_PIN).status == 401  # its fifth: locked there
    assert there.login("alice", alice.pin).status == 401
    assert here.login("alice", WRONG_PIN).status == 401  # here started again from zero
    assert here.login("alice", alice.pin).status == 200


def test_one_ipv6_host_gets_one_budget_for_its_whole_64() -> None:
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:ffff::9")
    assert source_of("2001:db8:1:2::1") != source_of("2001:db8:1:3::1")
    assert source_of("::ffff:10.0.0.7") == source_of("10.0.0.7") == "10.0.0.7"
    assert source_of("not an address") == "not an address"


def test_many_sources_reach_the_account_ceiling_which_only_an_admin_lifts(
        tmp_path: Path) -> None:
    env = build(tmp_path, auth={"bcrypt_cost": 4, "account_max_failures": 12,
                                "account_failure_window_hours": 1})
    admin_client, admin = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    for i in range(3):
        for _ in range(4):  # under each source's limit
            assert Client(env.app, ip=f"203.0.113.{i}").login("alice", WRONG_PIN).status == 401
    assert ("lockout", "failure", "alice") in events(env.app)
    details = env.app.db.one("SELECT details FROM audit WHERE event = 'lockout'")
    assert details is not None and '"scope": "account"' in details["details"]
    home = Client(env.app, ip=HOME)
    assert home.login("alice", alice.pin).status == 401  # from everywhere now
    env.clock.advance(2 * DAY)  # no expiry: an admin (or the command line) must unlock
    assert home.login("alice", alice.pin).status == 401
    admin_client = log_in(env, admin, admin_client)  # the session ended in those two days
    assert users_by_name(admin_client)["alice"]["locked_out"] is True
    r = admin_client.put(f"/api/admin/users/{alice.user_id}", {"unlock": True})
    assert r.status == 200 and body_of(r)["user"]["locked"] is False
    log_in(env, alice, home)


def test_failures_spread_over_more_than_the_window_do_not_add_up(tmp_path: Path) -> None:
    env = build(tmp_path, auth={"bcrypt_cost": 4, "account_max_failures": 10,
                                "account_failure_window_hours": 1})
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    for i in range(4):
        for _ in range(3):
            assert Client(env.app, ip=f"203.0.113.{i}").login("alice", WRONG_PIN).status == 401
        env.clock.advance(40 * MINUTE)  # 3 per 40 minutes: under 10 per hour
    log_in(env, alice, Client(env.app, ip=HOME))


def test_the_command_line_unlocks_the_last_admin(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    env = build(tmp_path)  # the command line works on SQLite's file in the data directory
    _, admin = admin_ready(env)
    for i in range(20):
        for _ in range(5):
            Client(env.app, ip=f"203.0.113.{i}").login("admin", WRONG_PIN)
    home = Client(env.app, ip=HOME)
    assert home.login("admin", admin.pin).status == 401
    user = env.app.users.by_name("admin")
    assert user is not None and user.locked_out
    assert cli.main(["unlock", "nobody", "--data-dir", str(tmp_path)]) == 2
    assert cli.main(["unlock", "admin", "--data-dir", str(tmp_path / "elsewhere")]) == 2
    assert cli.main(["unlock", "admin", "--data-dir", str(tmp_path)]) == 0
    assert "unlocked admin" in capsys.readouterr().out
    log_in(env, admin, home)
    row = env.app.db.one("SELECT actor, target, details FROM audit WHERE event ="
                         " 'user_unlocked'")
    assert row is not None and row["actor"].startswith("cli:") and row["target"] == "admin"
    assert '"via": "command line"' in row["details"]
    assert env.app.audit.verify().ok  # written into the same chain


# ---- API tokens ---------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_creating_a_token_needs_the_pin_and_a_wrong_one_counts(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, vera = make_user(env, admin_client, "vera", "viewer")
    r = client.post("/api/tokens", {"name": "ci"})
    assert r.status == 400 and body_of(r)["field"] == "pin"
    r = client.post("/api/tokens", {"name": "ci", "pin": WRONG_PIN})
    assert r.status == 403 and body_of(r) == {"error": "current PIN is wrong", "field": "pin"}
    assert ("reauthentication", "failure", "vera") in events(env.app)
    for _ in range(4):
        client.post("/api/tokens", {"name": "ci", "pin": WRONG_PIN})
    r = client.post("/api/tokens", {"name": "ci", "pin": vera.pin})  # locked from here now
    assert r.status == 403 and body_of(r)["field"] == "pin"
    assert env.app.db.one("SELECT COUNT(*) AS n FROM api_tokens")["n"] == 0  # type: ignore[index]


def test_a_token_without_a_lifetime_gets_the_default_and_ends(env: Env) -> None:
    client, admin = admin_ready(env)
    r = client.post("/api/tokens", {"name": "ops", "pin": admin.pin})
    assert r.status == 200, r.body
    created = body_of(r)
    assert created["expires_at"] == env.clock.now() + 90 * DAY
    anon = Client(env.app, ip="10.0.0.40")
    env.clock.advance(90 * DAY - 1)
    assert anon.allowed("GET", "/patients", headers=bearer(created["token"]))
    env.clock.advance(1)
    assert not anon.allowed("GET", "/patients", headers=bearer(created["token"]))


def test_tokens_stored_without_expiry_end_token_max_days_after_creation(env: Env) -> None:
    client, admin = admin_ready(env)
    created = body_of(client.post("/api/tokens", {"name": "old", "pin": admin.pin}))
    with env.app.db.transaction() as tx:  # as stored before lifetimes were capped
        tx.execute("UPDATE api_tokens SET expires_at = NULL")
    made = env.clock.now()
    listed = body_of(client.get("/api/tokens"))["tokens"]
    assert listed[0]["expires_at"] == made + 365 * DAY
    anon = Client(env.app, ip="10.0.0.40")
    env.clock.advance(365 * DAY - 1)
    assert anon.allowed("GET", "/patients", headers=bearer(created["token"]))
    env.clock.advance(1)
    assert not anon.allowed("GET", "/patients", headers=bearer(created["token"]))


def test_token_default_days_is_validated_against_the_cap(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(base_config(tmp_path, auth={"token_default_days": 400}))
    assert info.value.key == "OrthancNAS.auth.token_default_days"
    with pytest.raises(config.ConfigError):
        config.load(base_config(tmp_path, auth={"token_default_days": 0}))


@pytest.mark.parametrize(("change", "reason"), [
    ({"enabled": False}, "account disabled"),
    ({"pin": "Reset-By-Admin-PIN-31"}, "PIN reset"),
    ({"reset_2fa": True}, "two-factor reset"),
])
def test_admin_actions_that_end_a_users_rights_revoke_their_tokens(
        env: Env, change: dict[str, Any], reason: str) -> None:
    admin_client, _ = admin_ready(env)
    client, bob = make_user(env, admin_client, "bob", "user")
    token = body_of(client.post("/api/tokens", {"name": "ci", "pin": bob.pin}))["token"]
    anon = Client(env.app, ip="10.0.0.40")
    assert anon.allowed("GET", "/patients", headers=bearer(token))
    r = admin_client.put(f"/api/admin/users/{bob.user_id}", change)
    assert r.status == 200, r.body
    if change.get("enabled") is False:  # re-enabled: the token stays dead
        assert admin_client.put(f"/api/admin/users/{bob.user_id}",
                                {"enabled": True}).status == 200
    assert not anon.allowed("GET", "/patients", headers=bearer(token))
    assert env.app.db.one("SELECT COUNT(*) AS n FROM api_tokens")["n"] == 0  # type: ignore[index]
    row = env.app.db.one("SELECT actor, target, details FROM audit WHERE event ="
                         " 'tokens_revoked'")
    assert row is not None and (row["actor"], row["target"]) == ("admin", "bob")
    assert f'"reason": "{reason}"' in row["details"] and '"count": 1' in row["details"]


def test_deleting_a_user_revokes_and_audits_their_tokens(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, bob = make_user(env, admin_client, "bob", "user")
    token = body_of(client.post("/api/tokens", {"name": "ci", "pin": bob.pin}))["token"]
    assert admin_client.delete(f"/api/admin/users/{bob.user_id}").status == 200
    assert not Client(env.app).allowed("GET", "/patients", headers=bearer(token))
    assert ("tokens_revoked", "success", "admin") in events(env.app)


def test_own_pin_change_and_role_change_keep_tokens_within_the_role(env: Env) -> None:
    # Tokens carry no rights of their own: the owner's current role decides every request.
    admin_client, _ = admin_ready(env)
    client, bob = make_user(env, admin_client, "bob", "user")
    token = body_of(client.post("/api/tokens", {"name": "ci", "pin": bob.pin}))["token"]
    anon = Client(env.app, ip="10.0.0.40")
    r = client.put("/api/profile", {"current_pin": bob.pin, "new_pin": "Fresh-Lantern-PIN-62"})
    assert r.status == 200, r.body
    assert anon.allowed("POST", "/instances", headers=bearer(token), origin=False)
    assert admin_client.put(f"/api/admin/users/{bob.user_id}", {"role": "viewer"}).status == 200
    assert not anon.allowed("POST", "/instances", headers=bearer(token), origin=False)
    assert anon.allowed("GET", "/patients", headers=bearer(token))


def test_admins_list_and_revoke_any_users_tokens(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, bob = make_user(env, admin_client, "bob", "user")
    created = body_of(client.post("/api/tokens", {"name": "ci", "pin": bob.pin}))
    _, carol = make_user(env, admin_client, "carol", "user", ip="10.0.0.9")
    path = f"/api/admin/users/{bob.user_id}/tokens"
    # Not for others: the filter (policy) and the handler both refuse.
    assert not client.allowed("GET", path)
    assert env.app.handle(client.request("GET", path)).status == 403
    assert not client.allowed("DELETE", f"{path}/{created['id']}")
    r = admin_client.get(path)
    assert r.status == 200, r.body
    [listed] = body_of(r)["tokens"]
    assert set(listed) == {"id", "name", "created_at", "expires_at", "last_used_at", "expired"}
    assert created["token"] not in r.body.decode()
    assert admin_client.get("/api/admin/users/999/tokens").status == 404
    # A token id of another user does not revoke it.
    assert admin_client.delete(f"/api/admin/users/{carol.user_id}/tokens/{created['id']}"
                               ).status == 404
    r = admin_client.delete(f"{path}/{created['id']}")
    assert r.status == 200, r.body
    assert not Client(env.app).allowed("GET", "/patients", headers=bearer(created["token"]))
    assert body_of(admin_client.get(path))["tokens"] == []
    row = env.app.db.one("SELECT actor, target FROM audit WHERE event = 'token_revoked'")
    assert row is not None and (row["actor"], row["target"]) == ("admin", "bob")


def test_the_bootstrap_pin_from_the_environment_is_not_rated(tmp_path: Path) -> None:
    # It must be changed at first login anyway; automation may set anything.
    app = app_module.create_app(base_config(tmp_path), {ADMIN_PIN_ENV: "abcabcabca"},
                                FakeLog(), fake_orthanc())
    client = Client(app)
    r = client.login("admin", "abcabcabca")
    assert r.status == 200 and body_of(r)["must_change_pin"] is True
    r = client.put("/api/profile", {"current_pin": "abcabcabca", "new_pin": "Welcome2024!"})
    assert r.status == 400 and body_of(r)["field"] == "new_pin"
    assert "too easy to guess" in body_of(r)["error"]
    assert client.put("/api/profile", {"current_pin": "abcabcabca",
                                       "new_pin": OWN_PIN}).status == 200
