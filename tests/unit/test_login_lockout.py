"""Lockout after failed PINs or codes, its expiry, and the admin's unlock.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthanc_nas.auth.service import INVALID_CODE, INVALID_LOGIN

from .app_env import (
    MINUTE,
    WRONG_PIN,
    Client,
    Env,
    admin_ready,
    body_of,
    build,
    events,
    log_in,
    make_user,
    wrong_code,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


# ---- lockout ------------------------------------------------------------------------------


def test_lockout_after_max_failed_pins_and_its_expiry(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    client = Client(env.app, ip="10.0.0.7")
    wrong = client.login("alice", WRONG_PIN)
    assert (wrong.status, body_of(wrong)) == (401, {"error": INVALID_LOGIN})
    for _ in range(4):
        r = client.login("alice", WRONG_PIN)
        assert (r.status, r.body) == (wrong.status, wrong.body)
    assert ("lockout", "failure", "alice") in events(env.app)
    listed = {u["username"]: u for u in body_of(admin_client.get("/api/admin/users"))["users"]}
    assert listed["alice"]["locked"] is True and listed["alice"]["locked_sources"] == 1
    assert listed["alice"]["locked_out"] is False  # from this address only
    # Locked: the right PIN gets exactly the wrong-PIN answer.
    right = client.login("alice", alice.pin)
    assert (right.status, right.body) == (wrong.status, wrong.body)
    assert "onas_session" not in client.cookies
    env.clock.advance(15 * MINUTE - 1)
    assert client.login("alice", alice.pin).status == 401
    env.clock.advance(1)
    r = client.login("alice", alice.pin)
    assert r.status == 200, r.body
    assert client.allowed("GET", "/patients")


def test_failures_below_the_limit_do_not_lock_and_success_resets(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    client = Client(env.app, ip="10.0.0.7")
    for _ in range(4):
        assert client.login("alice", WRONG_PIN).status == 401
    assert client.login("alice", alice.pin).status == 200
    for _ in range(4):
        assert client.login("alice", WRONG_PIN).status == 401
    assert client.login("alice", alice.pin).status == 200
    assert ("lockout", "failure", "alice") not in events(env.app)


def test_second_factor_failures_count_toward_lockout(env: Env) -> None:
    _, admin = admin_ready(env)
    assert admin.secret
    client = Client(env.app, ip="10.0.0.8")
    for _ in range(3):
        assert client.login("admin", WRONG_PIN).status == 401
    assert body_of(client.login("admin", admin.pin))["status"] == "2fa_required"
    env.clock.advance(30)
    wrong = wrong_code(admin.secret, env.clock.now())
    r = client.post("/api/2fa/verify", {"code": wrong})
    assert (r.status, body_of(r)) == (401, {"error": INVALID_CODE})
    r = client.post("/api/2fa/verify", {"code": wrong})  # the fifth failure: locked
    assert r.status == 401
    assert ("lockout", "failure", "admin") in events(env.app)
    # The pending login is gone, and even the right PIN is refused like a wrong one.
    assert not client.allowed("POST", "/api/2fa/verify")
    r = client.login("admin", admin.pin)
    assert (r.status, body_of(r)) == (401, {"error": INVALID_LOGIN})
    env.clock.advance(15 * MINUTE)
    log_in(env, admin)


def test_non_ascii_digits_code_is_a_wrong_code_not_an_error(env: Env) -> None:
    _, admin = admin_ready(env)
    client = Client(env.app)
    client.login("admin", admin.pin)
    r = client.post("/api/2fa/verify", {"code": "\u0661\u0662\u0663\u0664\u0665\u0666"})
    assert (r.status, body_of(r)) == (401, {"error": INVALID_CODE})


def test_unfinished_attempts_do_not_lock_forever(env: Env) -> None:
    # Every PIN or code check reserves one failure; when a check ends in an error (here: a
    # TOTP secret that no longer decrypts, answered 409) the reservation stays counted.
    # Reaching the limit that way must still give a lockout that ends.
    _, admin = admin_ready(env)
    with env.app.db.transaction() as tx:
        env.app.users.update(tx, admin.user_id, totp_secret=b"\x00" * 60)
    client = Client(env.app)
    for _ in range(5):
        assert body_of(client.login("admin", admin.pin))["status"] == "2fa_required"
        r = client.post("/api/2fa/verify", {"code": "123456"})
        assert r.status == 409, r.body
    client.login("admin", admin.pin)  # refused or not: a lockout may start here
    env.clock.advance(16 * MINUTE)  # past lockout_duration_minutes in any case
    r = client.login("admin", admin.pin)
    assert r.status == 200, r.body
    assert body_of(r)["status"] == "2fa_required"


def test_lowering_max_failed_attempts_does_not_lock_forever(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    client = Client(env.app, ip="10.0.0.7")
    for _ in range(3):
        assert client.login("alice", WRONG_PIN).status == 401
    r = admin_client.post("/api/2fa/config", {"max_failed_attempts": 2})
    assert r.status == 200, r.body
    assert env.app.two_factor()["max_failed_attempts"] == 2
    r = client.login("alice", alice.pin)  # locked now or not: either may be right
    assert r.status in (200, 401)
    env.clock.advance(16 * MINUTE)  # past lockout_duration_minutes in any case
    r = client.login("alice", alice.pin)
    assert r.status == 200, r.body


def test_admin_unlocks_a_locked_user(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    alice_client, alice = make_user(env, admin_client, "alice", "viewer")
    bob_client, _ = make_user(env, admin_client, "bob", "user", ip="10.0.0.3")
    client = Client(env.app, ip="10.0.0.7")
    for _ in range(5):
        client.login("alice", WRONG_PIN)
    assert client.login("alice", alice.pin).status == 401
    path = f"/api/admin/users/{alice.user_id}"
    # Only admins may unlock.
    assert not alice_client.allowed("PUT", path)
    assert not bob_client.allowed("PUT", path)
    r = admin_client.put(path, {"unlock": True})
    assert r.status == 200, r.body
    assert body_of(r)["user"]["locked"] is False
    assert ("user_unlocked", "success", "admin") in events(env.app)
    r = client.login("alice", alice.pin)
    assert r.status == 200, r.body
