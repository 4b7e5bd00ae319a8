"""Sessions: idle and absolute timeouts, one session per user, logout, changes to the user that
take effect at once, and CSRF on cookie-borne state changes.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthanc_nas.auth.service import INVALID_LOGIN

from .app_env import (
    MINUTE,
    Client,
    Env,
    admin_ready,
    body_of,
    build,
    events,
    log_in,
    make_user,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


# ---- session lifetime ---------------------------------------------------------------------


def test_idle_timeout(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    assert client.allowed("GET", "/patients")
    env.clock.advance(31 * MINUTE)
    assert not client.allowed("GET", "/patients")
    assert not client.allowed("GET", "/api/profile")
    assert env.app.handle(client.request("GET", "/api/profile")).status == 403


def test_idle_timeout_is_exactly_the_configured_minutes(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    assert client.allowed("GET", "/patients")
    env.clock.advance(30 * MINUTE - 1)
    assert client.allowed("GET", "/patients")
    env.clock.advance(30 * MINUTE)
    assert not client.allowed("GET", "/patients")


def test_activity_keeps_the_session_alive(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    env.clock.advance(20 * MINUTE)
    assert client.allowed("GET", "/patients")
    env.clock.advance(20 * MINUTE)
    assert client.allowed("GET", "/patients")
    env.clock.advance(20 * MINUTE)
    assert client.get("/api/profile").status == 200
    env.clock.advance(20 * MINUTE)
    assert client.allowed("GET", "/patients")


def test_absolute_timeout_despite_activity(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    for _ in range(35):  # every 20 minutes for 11 h 40 min
        env.clock.advance(20 * MINUTE)
        assert client.allowed("GET", "/patients")
    env.clock.advance(20 * MINUTE)  # 12 h after login
    assert not client.allowed("GET", "/patients")
    assert not client.allowed("GET", "/api/profile")


def test_second_login_ends_the_first_session(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    first, alice = make_user(env, admin_client, "alice", "viewer")
    assert first.allowed("GET", "/patients")
    second = log_in(env, alice, Client(env.app, ip="10.0.0.20"))
    assert second.allowed("GET", "/patients")
    assert not first.allowed("GET", "/patients")
    assert ("session_ended_by_new_login", "success", "alice") in events(env.app)
    assert len(env.app.sessions.active_for(alice.user_id)) == 1


def test_logout_ends_the_session(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    request = client.request("GET", "/patients")
    r = client.post("/api/logout", {})
    assert r.status == 200
    assert client.cookies == {}
    assert not env.app.decide(request)[0]  # the old cookie is dead server-side


def test_disabling_a_user_takes_effect_on_the_next_request(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, alice = make_user(env, admin_client, "alice", "viewer")
    token = body_of(client.post("/api/tokens", {"name": "ci", "pin": alice.pin}))["token"]
    bearer = {"authorization": f"Bearer {token}"}
    assert client.allowed("GET", "/patients")
    assert client.allowed("GET", "/patients", headers=bearer, cookies=False)
    r = admin_client.put(f"/api/admin/users/{alice.user_id}", {"enabled": False})
    assert r.status == 200, r.body
    assert not client.allowed("GET", "/patients")
    assert not client.allowed("GET", "/patients", headers=bearer, cookies=False)
    r = Client(env.app).login("alice", alice.pin)
    assert (r.status, body_of(r)) == (401, {"error": INVALID_LOGIN})


def test_changing_a_role_takes_effect_on_the_next_request(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, bob = make_user(env, admin_client, "bob", "user")
    token = body_of(client.post("/api/tokens", {"name": "upload", "pin": bob.pin}))["token"]
    bearer = {"authorization": f"Bearer {token}"}
    tok = Client(env.app, ip="10.0.0.30")
    assert tok.allowed("POST", "/instances", headers=bearer, cookies=False)
    assert client.allowed("POST", "/instances")
    r = admin_client.put(f"/api/admin/users/{bob.user_id}", {"role": "viewer"})
    assert r.status == 200, r.body
    assert not tok.allowed("POST", "/instances", headers=bearer, cookies=False)
    assert tok.allowed("GET", "/patients", headers=bearer, cookies=False)
    assert not client.allowed("POST", "/instances")  # and the session was ended
    assert not client.allowed("GET", "/patients")
    client = log_in(env, bob)
    assert not client.allowed("POST", "/instances")
    assert client.allowed("GET", "/patients")


# ---- CSRF -----------------------------------------------------------------------------------


def test_cookie_borne_state_change_must_come_from_our_origin(env: Env) -> None:
    client, _ = admin_ready(env)
    path = "/api/tokens"
    assert not client.allowed("POST", path, origin=False)
    assert not client.allowed("POST", path, headers={"origin": "http://evil.example"})
    assert not client.allowed("POST", path, headers={"origin": "null"})
    assert not client.allowed("POST", path, headers={"origin": "http://h.evil.example"})
    assert not client.allowed("POST", path, headers={"origin": "http://h@evil.example"})
    assert not client.allowed("POST", path, headers={"sec-fetch-site": "cross-site"})
    assert not client.allowed("POST", path, origin=False,
                              headers={"referer": "http://evil.example/ui/account"})
    assert not client.allowed("DELETE", "/studies/abc", origin=False)
    assert not client.allowed("PUT", "/api/admin/users/1", origin=False)
    assert client.allowed("POST", path)
    assert client.allowed("POST", path, headers={"sec-fetch-site": "same-origin"})
    assert client.allowed("POST", path, origin=False,
                          headers={"referer": "http://h/ui/account"})
    assert client.allowed("GET", "/patients", origin=False)  # safe method


def test_login_from_a_foreign_origin_is_refused(env: Env) -> None:
    client = Client(env.app)
    assert client.allowed("POST", "/api/login", origin=False)  # scripts, curl
    assert client.allowed("POST", "/api/login")
    assert not client.allowed("POST", "/api/login", headers={"origin": "http://evil.example"})
    assert not client.allowed("POST", "/api/login", headers={"sec-fetch-site": "cross-site"})
