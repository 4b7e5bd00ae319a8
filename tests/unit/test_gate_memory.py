"""What clears the remembered decisions (the C gate's memory and the principal cache): writes
that may change who may do what, and only those. Activity marks (a session's ``last_seen``, a
token's ``last_used_at``) are written every 30 s per caller; with many people logged in they
must not make the gate forget everything, yet the idle and absolute limits must hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orthanc_nas.auth.sessions import TOUCH_INTERVAL

from .app_env import (
    MINUTE,
    OWN_PIN,
    Client,
    Env,
    admin_ready,
    body_of,
    build,
    make_user,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


def watch(env: Env) -> list[int]:
    """Records each clearing, as the adapter's gate.clear would see it."""
    cleared: list[int] = []
    env.app.db.on_invalidate.append(lambda: cleared.append(env.app.db.generation))
    return cleared


def remember(env: Env, client: Client, path: str = "/patients", **kwargs: Any) -> float:
    """Seconds the gate may remember this caller's read (0: not at all); it must be allowed."""
    allowed, seconds, _ = env.app.decide(client.request("GET", path, **kwargs))
    assert allowed
    return seconds


def remembered(env: Env, client: Client, path: str = "/patients") -> bool:
    """Whether a decision about this caller is still remembered (no look at the database)."""
    return env.app.backend.remaining(client.request("GET", path)) > 0


def session_row(env: Env, user_id: int) -> Any:
    row = env.app.db.one("SELECT last_seen, expires_at FROM sessions WHERE user_id = ?"
                         " AND pending = 0", (user_id,))
    assert row is not None
    return row


def test_writing_last_seen_does_not_clear_what_is_remembered_of_others(env: Env) -> None:
    admin, _ = admin_ready(env)
    alice, _ = make_user(env, admin, "alice", "viewer")
    bob, bob_account = make_user(env, admin, "bob", "viewer", ip="10.0.0.3")
    cleared = watch(env)
    generation = env.app.db.generation
    for _ in range(3):
        env.clock.advance(TOUCH_INTERVAL + 1)
        before = session_row(env, bob_account.user_id)["last_seen"]
        remember(env, alice)  # writes alice's last_seen
        assert remember(env, alice) > 0
        remember(env, bob)  # writes bob's last_seen...
        assert remembered(env, alice)  # ...and alice's decision stays remembered
        assert session_row(env, bob_account.user_id)["last_seen"] > before
    assert cleared == [] and env.app.db.generation == generation


def test_a_token_in_use_does_not_clear_what_is_remembered(env: Env) -> None:
    admin, _ = admin_ready(env)
    alice, alice_account = make_user(env, admin, "alice", "viewer")
    token = body_of(alice.post("/api/tokens", {"name": "ci", "pin": alice_account.pin}))["token"]
    bearer = {"authorization": f"Bearer {token}"}
    cleared = watch(env)
    for _ in range(3):
        env.clock.advance(61)  # a token's last_used_at is written at most every 60 s
        assert remember(env, Client(env.app), headers=bearer, cookies=False) > 0
    rows = env.app.db.all("SELECT last_used_at FROM api_tokens")
    assert [r["last_used_at"] for r in rows] == [env.clock.now()]
    assert cleared == []


def test_a_strangers_wrong_pins_do_not_clear_what_is_remembered(env: Env) -> None:
    cleared = watch(env)
    for _ in range(3):
        assert Client(env.app, ip="192.0.2.9").login("nobody", "Wrong-PIN-0000").status == 401
    assert env.app.db.one("SELECT count FROM throttle WHERE key = '192.0.2.9'")["count"] == 3
    assert cleared == []


def test_changes_of_who_may_do_what_still_clear_at_once(env: Env) -> None:
    admin, admin_account = admin_ready(env)
    alice, alice_account = make_user(env, admin, "alice", "user")
    _, bob_account = make_user(env, admin, "bob", "user", ip="10.0.0.3")
    carol, _ = make_user(env, admin, "carol", "viewer", ip="10.0.0.4")
    cleared = watch(env)

    def clears(action: Callable[[], Any]) -> None:
        assert remember(env, carol) > 0 and remembered(env, carol)
        count = len(cleared)
        action()
        assert len(cleared) > count
        assert not remembered(env, carol)

    clears(lambda: alice.post("/api/logout", {}))
    clears(lambda: log_back_in(env, alice_account.username, alice))
    clears(lambda: admin.put(f"/api/admin/users/{bob_account.user_id}", {"role": "viewer"}))
    clears(lambda: admin.put(f"/api/admin/users/{alice_account.user_id}", {"enabled": False}))
    token = body_of(admin.post("/api/tokens", {"name": "x", "pin": admin_account.pin}))
    clears(lambda: admin.delete(f"/api/tokens/{token['id']}"))
    clears(lambda: admin.post("/api/2fa/config", {"required_for_viewers": True}))
    assert not alice.allowed("GET", "/patients")
    assert not carol.allowed("GET", "/patients")  # must now enroll TOTP first


def log_back_in(env: Env, username: str, client: Client) -> None:
    """A PIN login (its second factor still due): a new pending session."""
    assert client.login(username, OWN_PIN).status == 200


def test_idle_limit_holds_and_nothing_is_remembered_past_it(env: Env) -> None:
    """Active every 10 s for 5 minutes, then idle: refused at last_seen + idle, and no
    remembered decision ever reaches past the idle or the absolute limit."""
    admin, _ = admin_ready(env)
    alice, account = make_user(env, admin, "alice", "viewer")
    idle = env.app.sessions.idle
    for _ in range(30):
        env.clock.advance(10)
        seconds = remember(env, alice)
        row = session_row(env, account.user_id)
        now = env.clock.now()
        assert 0 < seconds <= min(row["last_seen"] + idle, row["expires_at"]) - now
        assert now - row["last_seen"] < TOUCH_INTERVAL  # the idle clock follows activity
    written = session_row(env, account.user_id)["last_seen"]
    env.clock.advance(written + idle - env.clock.now())
    assert not alice.allowed("GET", "/patients")


def test_a_remembered_read_ends_with_the_session(env: Env) -> None:
    admin, _ = admin_ready(env)
    alice, account = make_user(env, admin, "alice", "viewer")
    expires_at = session_row(env, account.user_id)["expires_at"]
    while env.clock.now() < expires_at - 20 * MINUTE:
        env.clock.advance(20 * MINUTE)
        assert alice.allowed("GET", "/patients")
    env.clock.advance(expires_at - 5 - env.clock.now())
    assert 0 < remember(env, alice) <= 5
    env.clock.advance(5)
    assert not alice.allowed("GET", "/patients")
