"""Logging in: PIN then second factor (TOTP, backup codes), replay refused, pending logins that
expire, answers that reveal nothing, and input validation.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest

from orthanc_nas.auth.service import INVALID_CODE, INVALID_LOGIN

from .app_env import (
    ADMIN_NEW_PIN,
    ADMIN_PIN,
    MINUTE,
    WRONG_PIN,
    Account,
    Client,
    Env,
    admin_ready,
    audit_rows,
    body_of,
    build,
    events,
    fresh_code,
    make_user,
    onboard,
    wrong_code,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


# ---- two-factor login ---------------------------------------------------------------------


def test_full_two_factor_login(env: Env) -> None:
    _, admin = admin_ready(env)
    client = Client(env.app, ip="10.0.0.9")
    r = client.login("admin", admin.pin)
    assert r.status == 200
    assert body_of(r) == {"status": "2fa_required"}
    assert set(client.cookies) == {"onas_pending"}
    # A pending login is not a session.
    assert not client.allowed("GET", "/patients")
    assert not client.allowed("GET", "/api/profile")
    assert client.allowed("POST", "/api/2fa/verify")
    r = client.post("/api/2fa/verify", {"code": fresh_code(env, admin)})
    assert r.status == 200, r.body
    body = body_of(r)
    assert body["status"] == "ok"
    assert body["next"] == "/app/explorer.html"
    assert set(client.cookies) == {"onas_session"}
    assert client.allowed("GET", "/patients")
    assert client.allowed("DELETE", "/studies/abc")
    assert ("login", "success", "admin") in events(env.app)


def test_wrong_code_keeps_the_login_pending(env: Env) -> None:
    _, admin = admin_ready(env)
    client = Client(env.app)
    assert body_of(client.login("admin", admin.pin))["status"] == "2fa_required"
    assert admin.secret
    env.clock.advance(30)
    good = pyotp.TOTP(admin.secret).at(env.clock.now())
    r = client.post("/api/2fa/verify", {"code": wrong_code(admin.secret, env.clock.now())})
    assert (r.status, body_of(r)) == (401, {"error": INVALID_CODE})
    assert "onas_session" not in client.cookies
    r = client.post("/api/2fa/verify", {"code": good})
    assert r.status == 200, r.body


def test_pending_login_expires(env: Env) -> None:
    _, admin = admin_ready(env)
    client = Client(env.app)
    client.login("admin", admin.pin)
    env.clock.advance(5 * MINUTE)
    assert not client.allowed("POST", "/api/2fa/verify")
    r = env.app.handle(client.request("POST", "/api/2fa/verify",
                                      {"code": fresh_code(env, admin)}))
    assert r.status == 403


def test_totp_code_is_refused_a_second_time(env: Env) -> None:
    _, admin = admin_ready(env)
    assert admin.secret
    first = Client(env.app, ip="10.0.0.5")
    first.login("admin", admin.pin)
    code = fresh_code(env, admin)
    previous = str(pyotp.TOTP(admin.secret).generate_otp(int(env.clock.now() // 30) - 1))
    assert first.post("/api/2fa/verify", {"code": code}).status == 200
    # Same code, same 30 s window, another login: refused.
    second = Client(env.app, ip="10.0.0.6")
    assert body_of(second.login("admin", admin.pin))["status"] == "2fa_required"
    r = second.post("/api/2fa/verify", {"code": code})
    assert (r.status, body_of(r)) == (401, {"error": INVALID_CODE})
    env.clock.advance(10)
    r = second.post("/api/2fa/verify", {"code": code})  # still inside the drift window
    assert r.status == 401
    # An older code (still inside the drift window) is refused as well.
    r = second.post("/api/2fa/verify", {"code": previous})
    assert r.status == 401
    assert ("totp_replay", "failure", "admin") in events(env.app)
    assert "onas_session" not in second.cookies


def test_enrollment_code_cannot_be_replayed_at_login(env: Env) -> None:
    admin_client = Client(env.app)
    admin = Account("admin", ADMIN_PIN, 1)
    onboard(env, admin_client, admin, ADMIN_NEW_PIN)
    assert admin.secret
    code = pyotp.TOTP(admin.secret).at(env.clock.now())  # the one used for enrollment
    client = Client(env.app)
    client.login("admin", admin.pin)
    assert client.post("/api/2fa/verify", {"code": code}).status == 401


def test_backup_code_works_once(env: Env) -> None:
    _, admin = admin_ready(env)
    first_code, second_code = admin.backup_codes[:2]
    assert "-" in first_code
    client = Client(env.app)
    client.login("admin", admin.pin)
    r = client.post("/api/2fa/verify", {"code": first_code})
    assert r.status == 200, r.body
    assert client.allowed("GET", "/patients")
    other = Client(env.app)
    other.login("admin", admin.pin)
    r = other.post("/api/2fa/verify", {"code": first_code})
    assert (r.status, body_of(r)) == (401, {"error": INVALID_CODE})
    # Another code works, typed without the dash and in capitals.
    r = other.post("/api/2fa/verify", {"code": second_code.replace("-", "").upper()})
    assert r.status == 200, r.body
    left = [json.loads(row["details"])["remaining"] for row in audit_rows(env.app)
            if row["event"] == "backup_code_used"]
    assert left == [9, 8]


def test_a_refused_login_logs_the_client_address_for_fail2ban(env: Env) -> None:
    """deploy/fail2ban reads this line: the address and the route, never the name or PIN."""
    client = Client(env.app, ip="10.0.0.9")
    assert client.login("someone-" + WRONG_PIN, WRONG_PIN).status == 401
    lines = [line for line in env.log.lines if "authentication failure" in line]
    assert lines == ["OrthancNAS: authentication failure from 10.0.0.9 on POST /api/login"]


# ---- answers that reveal nothing, and input validation ---------------------------------------


def test_unknown_user_and_wrong_pin_answers_are_identical(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    _, alice = make_user(env, admin_client, "alice", "viewer")
    admin_client.put(f"/api/admin/users/{alice.user_id}", {"enabled": False})
    client = Client(env.app, ip="10.0.0.50")
    unknown = client.login("nobody", WRONG_PIN)
    wrong = client.login("admin", WRONG_PIN)
    disabled = client.login("alice", alice.pin)
    assert unknown.status == wrong.status == disabled.status == 401
    assert unknown.body == wrong.body == disabled.body
    assert body_of(unknown) == {"error": INVALID_LOGIN}
    assert unknown.headers == wrong.headers == disabled.headers
    assert client.cookies == {}


BAD_LOGINS: list[tuple[str, bytes, int, str | None, str]] = [
    ("malformed JSON", b'{"username": "admin", "pin": ', 400, None, "malformed JSON body"),
    ("not UTF-8", b"\xff\xfe\x00", 400, None, "malformed JSON body"),
    ("not an object", b'["admin", "pin"]', 400, None, "the body must be a JSON object"),
    ("empty body", b"", 400, "username", "missing field: username"),
    ("missing pin", b'{"username": "admin"}', 400, "pin", "missing field: pin"),
    ("null pin", b'{"username": "admin", "pin": null}', 400, "pin", "missing field: pin"),
    ("missing username", b'{"pin": "x"}', 400, "username", "missing field: username"),
    ("number username", b'{"username": 5, "pin": "x"}', 400, "username",
     "field username must be str"),
    ("list pin", b'{"username": "admin", "pin": ["x"]}', 400, "pin", "field pin must be str"),
    ("bool pin", b'{"username": "admin", "pin": true}', 400, "pin", "field pin must be str"),
    ("long username", json.dumps({"username": "a" * 65, "pin": "x"}).encode(), 400,
     "username", "field username is longer than 64"),
    ("long pin", json.dumps({"username": "admin", "pin": "x" * 1025}).encode(), 400, "pin",
     "field pin is longer than 1024"),
    ("oversized body", json.dumps({"username": "admin", "pin": "x" * 70000}).encode(), 413,
     None, "body larger than 65536 bytes"),
]


@pytest.mark.parametrize(("raw", "status", "field_name", "message"),
                         [b[1:] for b in BAD_LOGINS], ids=[b[0] for b in BAD_LOGINS])
def test_login_rejects_bad_input(env: Env, raw: bytes, status: int, field_name: str | None,
                                 message: str) -> None:
    r = Client(env.app).call("POST", "/api/login", raw=raw,
                             headers={"content-type": "application/json"})
    assert r.status == status
    body = body_of(r)
    assert body["error"] == message
    assert body.get("field") == field_name
    # Never reached the credential check: no failure recorded, no attempt used.
    assert ("login", "failure", "admin") not in events(env.app)
    admin = env.app.users.by_name("admin")
    assert admin is not None and admin.failed_count == 0


def test_body_limit_follows_the_configuration(tmp_path: Path) -> None:
    small = build(tmp_path, auth={"max_body_bytes": 1024})
    pin = "x" * 1000
    r = Client(small.app).call("POST", "/api/login",
                               raw=json.dumps({"username": "admin", "pin": pin}).encode())
    assert (r.status, body_of(r)) == (413, {"error": "body larger than 1024 bytes"})
