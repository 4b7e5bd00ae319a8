"""The login flows end to end through App.authorize (Orthanc's filter) and App.handle (the
plugin's routes), with a manual clock: bootstrap, 2FA, replay, lockout, timeouts, CSRF,
tokens, input validation and the audit trail."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

from orthanc_nas import app as app_module
from orthanc_nas import config
from orthanc_nas.app import ADMIN_PIN_ENV, App
from orthanc_nas.auth.access import PUBLIC
from orthanc_nas.auth.keys import KeyRing, load_or_create_key
from orthanc_nas.auth.service import INVALID_CODE, INVALID_LOGIN
from orthanc_nas.clock import ManualClock, SystemClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.images.catalog import Viewer
from orthanc_nas.orthanc_api import orthanc_study_id
from orthanc_nas.routing import Call, Router, route
from orthanc_nas.web import Request, Response

ADMIN_PIN = "Initial-Bootstrap-PIN-2024"
ADMIN_NEW_PIN = "Blue-Harbor-PIN-2024!"
TEMP_PIN = "Temporary-PIN-4711"
OWN_PIN = "Own-Secret-PIN-0815"
WRONG_PIN = "Wrong-Guess-PIN-9999"
HOST = "h"
ORIGIN = "http://h"
MINUTE = 60.0
HOUR = 3600.0


class FakeOrthanc:
    def get(self, uri: str) -> Any:
        return {"Version": "1.12.4"} if uri == "/system" else {}

    def post(self, uri: str, body: bytes) -> Any:
        return {}

    def delete(self, uri: str) -> None:
        return None


@dataclass
class FakeLog:
    lines: list[str] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(message)

    def error(self, message: str) -> None:
        self.lines.append(message)


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = {"data_dir": str(tmp_path), "auth": {"bcrypt_cost": 4}}
    for name, values in sections.items():
        section[name] = {**section.get(name, {}), **values}
    return {"OrthancNAS": section}


@dataclass
class Env:
    app: App
    clock: ManualClock
    log: FakeLog


def build(tmp_path: Path, **sections: dict[str, Any]) -> Env:
    cfg = config.load(base_config(tmp_path, **sections))
    db = SqliteDatabase(tmp_path / "x.sqlite")
    keys = KeyRing(load_or_create_key(tmp_path / "x.key"))
    clock = ManualClock()
    log = FakeLog()
    app = App(cfg, db, keys, clock, log, FakeOrthanc())
    app_module.bootstrap_admin(app, {ADMIN_PIN_ENV: ADMIN_PIN})
    return Env(app, clock, log)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return build(tmp_path)


def body_of(response: Response) -> Any:
    return json.loads(response.body)


FILTERED = 403  # what Orthanc answers when the filter refuses


class Client:
    """A browser: a cookie jar, and the Host and Origin headers our pages send."""

    def __init__(self, app: App, ip: str = "10.0.0.1") -> None:
        self.app = app
        self.ip = ip
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None, origin: bool | None = None,
                cookies: bool = True, query: dict[str, str] | None = None) -> Request:
        h = {"host": HOST, "user-agent": "pytest"}
        if origin is None:
            origin = method != "GET"  # our pages send Origin on state changes
        if origin:
            h["origin"] = ORIGIN
        if cookies and self.cookies:
            h["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = raw if raw is not None else (b"" if data is None else json.dumps(data).encode())
        if method != "GET":
            h["content-length"] = str(len(body))
        h.update(headers or {})
        return Request(method, path, h, query or {}, body, self.ip)

    def allowed(self, method: str, path: str, **kwargs: Any) -> bool:
        return self.app.authorize(self.request(method, path, **kwargs))

    def call(self, method: str, path: str, data: Any = None, **kwargs: Any) -> Response:
        """The filter, then the plugin's route, as Orthanc runs them."""
        request = self.request(method, path, data, **kwargs)
        if not self.app.authorize(request):
            return Response(FILTERED, b'{"error":"filtered"}')
        response = self.app.handle(request)
        for name, value in response.headers:
            if name == "Set-Cookie":
                cookie, _, attrs = value.partition(";")
                key, _, val = cookie.partition("=")
                if not val or "Max-Age=0" in attrs:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        return response

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Response:
        return self.call("POST", path, data, **kwargs)

    def put(self, path: str, data: Any = None, **kwargs: Any) -> Response:
        return self.call("PUT", path, data, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.call("DELETE", path, **kwargs)

    def login(self, username: str, pin: str) -> Response:
        return self.post("/api/login", {"username": username, "pin": pin})


@dataclass
class Account:
    username: str
    pin: str
    user_id: int
    secret: str | None = None
    backup_codes: list[str] = field(default_factory=list)


def fresh_code(env: Env, account: Account) -> str:
    """A TOTP code of a step not used yet: move the clock to the next step, then compute
    the code with pyotp at the manual clock's time."""
    assert account.secret
    env.clock.advance(30)
    return str(pyotp.TOTP(account.secret).at(env.clock.now()))


def log_in(env: Env, account: Account, client: Client | None = None) -> Client:
    client = client or Client(env.app)
    r = client.login(account.username, account.pin)
    assert r.status == 200, r.body
    if body_of(r)["status"] == "2fa_required":
        r = client.post("/api/2fa/verify", {"code": fresh_code(env, account)})
        assert r.status == 200, r.body
    assert body_of(r)["status"] == "ok"
    return client


def onboard(env: Env, client: Client, account: Account, new_pin: str) -> None:
    """First login: change the temporary PIN and, when required, enroll TOTP."""
    r = client.login(account.username, account.pin)
    assert r.status == 200, r.body
    body = body_of(r)
    if body["must_change_pin"]:
        r = client.put("/api/profile", {"current_pin": account.pin, "new_pin": new_pin})
        assert r.status == 200, r.body
        account.pin = new_pin
    if body["must_enroll_totp"]:
        r = client.post("/api/2fa/setup/totp", {})
        assert r.status == 200, r.body
        account.secret = body_of(r)["secret"]
        r = client.post("/api/2fa/setup/totp/verify",
                        {"code": pyotp.TOTP(account.secret).at(env.clock.now())})
        assert r.status == 200, r.body
        account.backup_codes = body_of(r)["backup_codes"]


def wrong_code(secret: str, now: float) -> str:
    """A well-formed code that is none of the codes accepted at ``now``."""
    step = int(now // 30)
    window = {str(pyotp.TOTP(secret).generate_otp(step + d)) for d in (-1, 0, 1)}
    return next(c for c in ("111111", "222222", "314159") if c not in window)


def admin_ready(env: Env) -> tuple[Client, Account]:
    admin = env.app.users.by_name("admin")
    assert admin is not None
    account = Account("admin", ADMIN_PIN, admin.id)
    client = Client(env.app, ip="10.0.0.100")
    onboard(env, client, account, ADMIN_NEW_PIN)
    return client, account


def make_user(env: Env, admin: Client, username: str, role: str,
              ip: str = "10.0.0.2") -> tuple[Client, Account]:
    r = admin.post("/api/admin/users", {"username": username, "role": role, "pin": TEMP_PIN})
    assert r.status == 200, r.body
    account = Account(username, TEMP_PIN, body_of(r)["user"]["id"])
    client = Client(env.app, ip=ip)
    onboard(env, client, account, OWN_PIN)
    return client, account


def audit_rows(app: App) -> list[dict[str, Any]]:
    return [dict(r) for r in app.db.all("SELECT * FROM audit ORDER BY id")]


def events(app: App) -> list[tuple[str, str, str]]:
    return [(r["event"], r["outcome"], r["actor"]) for r in audit_rows(app)]


# ---- create_app and bootstrap --------------------------------------------------------------


def test_create_app_bootstraps_admin_from_the_environment(tmp_path: Path) -> None:
    log = FakeLog()
    app = app_module.create_app(base_config(tmp_path), {ADMIN_PIN_ENV: ADMIN_PIN}, log,
                                FakeOrthanc())
    assert isinstance(app.clock, SystemClock)
    admin = app.users.by_name("admin")
    assert admin is not None
    assert (admin.role, admin.must_change_pin, admin.totp_enabled) == ("admin", True, False)
    assert app.auth.hasher.verify(ADMIN_PIN, admin.pin_hash)
    assert (tmp_path / "orthanc-nas.sqlite").is_file()
    assert (tmp_path / "orthanc-nas.key").stat().st_mode & 0o777 == 0o600
    assert not any(ADMIN_PIN in line for line in log.lines)
    assert any(ADMIN_PIN_ENV in line for line in log.lines)
    # A second start keeps the existing admin (and PIN).
    again = app_module.create_app(base_config(tmp_path), {ADMIN_PIN_ENV: "Other-PIN-123456"},
                                  FakeLog(), FakeOrthanc())
    assert again.users.count() == 1
    second = again.users.by_name("admin")
    assert second is not None and second.pin_hash == admin.pin_hash


def test_bootstrap_without_env_pin_logs_a_one_time_pin(tmp_path: Path) -> None:
    log = FakeLog()
    cfg = config.load(base_config(tmp_path))
    db = SqliteDatabase(tmp_path / "x.sqlite")
    app = App(cfg, db, KeyRing(bytes(32)), ManualClock(), log, FakeOrthanc())
    app_module.bootstrap_admin(app, {})
    [line] = [line for line in log.lines if "one-time PIN" in line]
    pin = line.split("one-time PIN: ")[1].split(" ")[0]
    assert len(pin) >= 16
    r = Client(app).login("admin", pin)
    assert r.status == 200 and body_of(r)["must_change_pin"] is True


def test_bootstrap_admin_is_restricted_until_pin_changed_and_totp_enrolled(env: Env) -> None:
    client = Client(env.app)
    r = client.login("admin", ADMIN_PIN)
    assert r.status == 200
    body = body_of(r)
    assert body["status"] == "ok"
    assert body["must_change_pin"] is True
    assert body["must_enroll_totp"] is True
    assert body["next"] == "/ui/account"
    assert "onas_session" in client.cookies
    # Restricted: the account page and profile only.
    assert not client.allowed("GET", "/patients")
    assert not client.allowed("GET", "/api/admin/users")
    assert not client.allowed("POST", "/api/tokens")
    assert client.allowed("GET", "/api/profile")
    assert client.allowed("GET", "/ui/account")
    profile = client.get("/api/profile")
    assert profile.status == 200
    assert body_of(profile)["must_enroll_totp"] is True
    # The handler re-checks too (defence in depth).
    assert env.app.handle(client.request("GET", "/api/admin/users")).status == 403
    # A weak new PIN is refused, naming the field.
    r = client.put("/api/profile", {"current_pin": ADMIN_PIN, "new_pin": "password123"})
    assert r.status == 400 and body_of(r)["field"] == "new_pin"
    r = client.put("/api/profile", {"current_pin": ADMIN_PIN, "new_pin": ADMIN_NEW_PIN})
    assert r.status == 200, r.body
    assert not client.allowed("GET", "/patients")  # TOTP still due
    r = client.post("/api/2fa/setup/totp", {})
    assert r.status == 200
    setup = body_of(r)
    secret = setup["secret"]
    assert "issuer=Orthanc%20NAS" in setup["otpauth_uri"]
    assert setup["qr_png"].startswith("data:image/png;base64,")
    r = client.post("/api/2fa/setup/totp/verify", {"code": wrong_code(secret, env.clock.now())})
    assert r.status == 400
    assert not client.allowed("GET", "/patients")
    r = client.post("/api/2fa/setup/totp/verify",
                    {"code": pyotp.TOTP(secret).at(env.clock.now())})
    assert r.status == 200, r.body
    codes = body_of(r)["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.allowed("GET", "/patients")
    assert client.allowed("GET", "/api/admin/users")
    assert client.get("/api/admin/users").status == 200


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
    assert not env.app.authorize(request)  # the old cookie is dead server-side


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


# ---- API tokens -------------------------------------------------------------------------


def test_token_authorizes_with_its_owners_role(env: Env) -> None:
    admin_client, admin = admin_ready(env)
    viewer_client, vera = make_user(env, admin_client, "vera", "viewer")
    r = viewer_client.post("/api/tokens", {"name": "script", "expires_in_days": 7,
                                           "pin": vera.pin})
    assert r.status == 200, r.body
    created = body_of(r)
    assert created["token"].startswith("onat_")
    assert created["expires_at"] == env.clock.now() + 7 * 86400
    vtok = {"authorization": f"Bearer {created['token']}"}
    admin_token = body_of(admin_client.post("/api/tokens", {"name": "ops",
                                                            "pin": admin.pin}))["token"]
    atok = {"authorization": f"Bearer {admin_token}"}
    anon = Client(env.app, ip="10.0.0.40")
    assert not anon.allowed("GET", "/patients")
    assert anon.allowed("GET", "/patients", headers=vtok)
    assert not anon.allowed("POST", "/instances", headers=vtok, origin=False)
    assert not anon.allowed("GET", "/api/admin/users", headers=vtok)
    assert anon.allowed("GET", "/api/admin/users", headers=atok)
    assert anon.get("/api/admin/users", headers=atok).status == 200
    assert anon.allowed("DELETE", "/studies/abc", headers=atok, origin=False)
    assert anon.allowed("GET", "/patients", headers={"authorization": f"bearer {admin_token}"})
    # A token cannot mint tokens, nor change the credentials a login needs.
    for path, body in (("/api/tokens", {"name": "x"}),
                       ("/api/2fa/setup/totp", {}),
                       ("/api/2fa/setup/totp/verify", {"code": "123456"}),
                       ("/api/2fa/backup-codes/generate", {"pin": "x"})):
        r = anon.post(path, body, headers=vtok, origin=False)
        assert r.status == 403 and "API tokens cannot" in body_of(r)["error"], path
    r = anon.put("/api/profile", {"current_pin": "x", "new_pin": "Some-New-PIN-2024"},
                 headers=vtok, origin=False)
    assert r.status == 403 and "change the PIN" in body_of(r)["error"]
    assert anon.put("/api/profile", {"display_name": "Vera"}, headers=vtok,
                    origin=False).status == 200
    # The token's stored form is a hash.
    stored = [r["token_hash"] for r in env.app.db.all("SELECT token_hash FROM api_tokens")]
    assert created["token"] not in stored and admin_token not in stored


def test_revoked_token_is_refused(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    viewer_client, vera = make_user(env, admin_client, "vera", "viewer")
    created = body_of(viewer_client.post("/api/tokens", {"name": "script", "pin": vera.pin}))
    bearer = {"authorization": f"Bearer {created['token']}"}
    anon = Client(env.app, ip="10.0.0.40")
    assert anon.allowed("GET", "/patients", headers=bearer)
    # Someone else cannot revoke it.
    assert admin_client.delete(f"/api/tokens/{created['id']}").status == 404
    assert anon.allowed("GET", "/patients", headers=bearer)
    r = viewer_client.delete(f"/api/tokens/{created['id']}")
    assert r.status == 200, r.body
    assert not anon.allowed("GET", "/patients", headers=bearer)
    assert viewer_client.delete(f"/api/tokens/{created['id']}").status == 404


def test_expired_token_is_refused(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    viewer_client, vera = make_user(env, admin_client, "vera", "viewer")
    created = body_of(viewer_client.post("/api/tokens", {"name": "short", "pin": vera.pin,
                                                         "expires_in_days": 1}))
    bearer = {"authorization": f"Bearer {created['token']}"}
    anon = Client(env.app, ip="10.0.0.40")
    env.clock.advance(86400 - 1)
    assert anon.allowed("GET", "/patients", headers=bearer)
    env.clock.advance(1)
    assert not anon.allowed("GET", "/patients", headers=bearer)
    listed = body_of(log_in(env, Account("vera", OWN_PIN, 0)).get("/api/tokens"))["tokens"]
    assert [t["expired"] for t in listed] == [True]


def test_token_lifetime_is_bounded(env: Env) -> None:
    client, admin = admin_ready(env)
    for days in (0, 366, -1):
        r = client.post("/api/tokens", {"name": "x", "expires_in_days": days, "pin": admin.pin})
        assert r.status == 400 and body_of(r)["field"] == "expires_in_days"
    r = client.post("/api/tokens", {"name": "  ", "pin": admin.pin})
    assert r.status == 400 and body_of(r)["field"] == "name"


def test_token_is_not_accepted_in_the_query_string(env: Env) -> None:
    client, admin = admin_ready(env)
    token = body_of(client.post("/api/tokens", {"name": "ops", "pin": admin.pin}))["token"]
    anon = Client(env.app, ip="10.0.0.40")
    for name in ("token", "access_token", "authorization", "api_key"):
        assert not anon.allowed("GET", "/patients", query={name: token})
        assert not anon.allowed("GET", "/patients", query={name: f"Bearer {token}"})
    assert not anon.allowed("GET", "/patients", headers={"authorization": token})
    assert not anon.allowed("GET", "/patients", headers={"authorization": f"Basic {token}"})
    assert not anon.allowed("GET", "/patients", headers={"cookie": f"onas_session={token}"})
    assert anon.allowed("GET", "/patients", headers={"authorization": f"Bearer {token}"})


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


# ---- audit --------------------------------------------------------------------------------


def test_audit_records_logins_and_never_a_secret(env: Env) -> None:
    admin_client, admin = admin_ready(env)
    assert admin.secret
    _, alice = make_user(env, admin_client, "alice", "viewer")
    client = Client(env.app, ip="10.0.0.60")
    used: list[str] = [ADMIN_PIN, ADMIN_NEW_PIN, TEMP_PIN, OWN_PIN, WRONG_PIN, admin.secret]
    for _ in range(5):
        client.login("alice", WRONG_PIN)
    client.login("alice", alice.pin)  # while locked
    client.login("nobody", "Unknown-User-PIN-31337")
    used.append("Unknown-User-PIN-31337")
    client.login("admin", admin.pin)
    env.clock.advance(30)
    wrong = wrong_code(admin.secret, env.clock.now())
    assert client.post("/api/2fa/verify", {"code": wrong}).status == 401
    code = pyotp.TOTP(admin.secret).at(env.clock.now())
    assert client.post("/api/2fa/verify", {"code": code}).status == 200
    client.post("/api/logout", {})
    client.login("admin", admin.pin)
    assert client.post("/api/2fa/verify", {"code": admin.backup_codes[0]}).status == 200
    used += [wrong, code, *admin.backup_codes, *(c.replace("-", "")
                                                     for c in admin.backup_codes)]

    rows = audit_rows(env.app)
    seen = {(r["event"], r["outcome"], r["actor"]) for r in rows}
    for expected in (("login", "success", "admin"), ("login", "success", "alice"),
                     ("login", "failure", "alice"), ("login", "failure", "nobody"),
                     ("lockout", "failure", "alice"), ("login_2fa", "failure", "admin"),
                     ("backup_code_used", "success", "admin"), ("pin_changed", "success",
                                                                "alice"),
                     ("totp_enrolled", "success", "admin"), ("user_created", "success",
                                                             "admin")):
        assert expected in seen, expected
    reasons = {json.loads(r["details"]).get("reason") for r in rows
               if (r["event"], r["outcome"]) == ("login", "failure")}
    assert {"wrong PIN", "locked", "unknown user"} <= reasons
    assert {r["ip"] for r in rows if r["actor"] == "nobody"} == {"10.0.0.60"}
    text = "\n".join(" ".join(str(r[c]) for c in ("actor", "ip", "event", "outcome", "target",
                                                  "details")) for r in rows)
    for secret in used:
        assert secret not in text, f"secret found in the audit trail: {secret[:3]}..."
    # The API shows the same rows to admins only.
    r = client.get("/api/audit", query={"event": "lockout"})  # admin's latest session
    assert r.status == 200
    assert [i["actor"] for i in body_of(r)["items"]] == ["alice"]
    assert not Client(env.app).allowed("GET", "/api/audit")


def test_audit_is_append_only(env: Env) -> None:
    Client(env.app).login("admin", WRONG_PIN)
    before = audit_rows(env.app)
    assert before
    with (pytest.raises(sqlite3.DatabaseError, match="append-only"),
          env.app.db.transaction() as tx):
        tx.execute("UPDATE audit SET outcome = 'success'")
    with (pytest.raises(sqlite3.DatabaseError, match="append-only"),
          env.app.db.transaction() as tx):
        tx.execute("DELETE FROM audit")
    assert audit_rows(env.app) == before


def test_the_principal_cache_never_outlives_a_change_or_an_expiry(env: Env) -> None:
    """authorize() answers from memory, but a write here, or the clock, decides at once."""
    admin, _ = admin_ready(env)
    assert admin.allowed("GET", "/patients")
    assert admin.allowed("GET", "/patients")  # served from the cache
    other = SqliteDatabase(env.app.db.path)  # a write this process cannot see (a replica)...
    with other.transaction() as tx:
        tx.execute("UPDATE users SET enabled = 0")
    assert admin.allowed("GET", "/patients")
    env.clock.advance(31)  # ...is seen at the latest after the re-read interval
    assert not admin.allowed("GET", "/patients")


# ---- what the C gate may remember --------------------------------------------------------

def test_only_plain_reads_of_orthanc_routes_may_be_remembered(env: Env) -> None:
    admin_client, _ = admin_ready(env)
    client, _ = make_user(env, admin_client, "alice", "viewer")
    cleared: list[int] = []
    env.app.db.on_invalidate.append(lambda: cleared.append(1))

    def decide(method: str, path: str, **kwargs: Any) -> tuple[bool, float]:
        return env.app.decide(client.request(method, path, **kwargs))[:2]

    allowed, remember, any_arguments = env.app.decide(client.request("GET", "/studies"))
    assert allowed and 0 < remember <= app_module.REMEMBER_MAX and any_arguments
    # Arguments change neither the policy's answer nor what the access audit records...
    with_args = env.app.decide(client.request("GET", "/studies", query={"expand": ""}))
    assert with_args.remember > 0 and with_args.any_arguments
    # ...except on WADO-URI, where they name the study read: each one enters Python.
    assert decide("GET", "/wado", query={"studyUID": "1.2.3"}) == (True, 0.0)
    assert not env.app.decide(client.request("GET", "/wado")).any_arguments
    assert decide("GET", "/api/profile") == (True, 0.0)  # the plugin's own route
    assert decide("GET", "/ui/images")[1] == 0.0
    assert decide("POST", "/tools/find", data={}) == (True, 0.0)  # not a read
    assert decide("DELETE", "/studies/x") == (False, 0.0)  # denials are never remembered
    anonymous = Client(env.app)
    assert env.app.decide(anonymous.request("GET", "/studies"))[:2] == (False, 0.0)
    assert cleared == []  # reading changes nothing
    assert admin_client.post("/api/logout").status == 200
    assert cleared  # any write that may change who may do what clears the gate


def test_a_restricted_caller_is_never_remembered(env: Env) -> None:
    client = Client(env.app)
    assert client.login("admin", ADMIN_PIN).status == 200  # must still change the PIN
    allowed, remember, _ = env.app.decide(client.request("GET", "/api/profile"))
    assert allowed and remember == 0.0
    assert env.app.decide(client.request("GET", "/studies"))[:2] == (False, 0.0)


def test_a_bug_answers_500_and_logs_no_share_token(env: Env) -> None:
    def broken(svc: object, call: Call) -> Response:
        raise KeyError(call.args[0])

    env.app.router = Router((route("GET", r"/s/([^/]+)/broken", broken, PUBLIC),), 1024)
    response = env.app.handle(Request("GET", "/s/Secret-Share-Token/broken", {}, {}, b"", "::1"))
    assert response.status == 500 and body_of(response) == {"error": "internal error"}
    assert env.log.lines[-1] == "OrthancNAS: GET /s/<token>/broken failed: KeyError"


@pytest.mark.parametrize("length", [None, "chunked", "1048577", "1e9", "\u00b2"])
def test_anonymous_bodies_must_declare_a_small_size(env: Env, length: str | None) -> None:
    client = Client(env.app)
    headers = {} if length is None else {"content-length": length}
    request = client.request("POST", "/api/login", {"username": "admin", "pin": ADMIN_PIN})
    request.headers.pop("content-length")
    request.headers.update(headers)
    assert env.app.authorize(request) is False  # Orthanc would read it all into memory
    assert client.allowed("POST", "/api/login", data={"username": "admin", "pin": ADMIN_PIN})


# ---- uploads: who sent what Orthanc stored ----------------------------------------------------


def test_the_uploader_is_the_user_the_filter_allowed_on_this_thread(env: Env) -> None:
    """Orthanc stores ``POST /instances`` itself (multipart parts reach no handler with a
    cookie); the filter's decision on the same thread names the uploader."""
    admin_client, _ = admin_ready(env)
    bob_client, bob = make_user(env, admin_client, "bob", "user", ip="10.0.0.7")
    vic_client, _ = make_user(env, admin_client, "vic", "viewer")
    tags = {"PatientID": "P-1", "StudyInstanceUID": "1.2.3"}
    study = orthanc_study_id("P-1", "1.2.3")

    assert bob_client.allowed("POST", "/instances/")  # Orthanc Explorer's form
    env.app.on_stored("inst-1", b"", "", lambda: tags)
    env.app.on_stored("inst-2", b"", "", lambda: tags)  # a second file of the same request
    assert env.app.catalog.visible_studies(Viewer(bob.user_id, "user")) == {study}
    uploads = [r for r in audit_rows(env.app) if r["event"] == "instance_uploaded"]
    assert [(r["actor"], r["ip"], r["target"]) for r in uploads] == [
        ("bob", "10.0.0.7", study)] * 2
    assert json.loads(uploads[0]["details"]) == {"instance": "inst-1", "ownership": "owner"}

    for other in (lambda: bob_client.allowed("GET", "/patients"),  # the next request
                  lambda: vic_client.allowed("POST", "/instances"),  # refused
                  lambda: Client(env.app).allowed("POST", "/instances")):  # anonymous
        other()
        env.app.on_stored("inst-x", b"", "", lambda: tags)
        assert env.app.db.one("SELECT 1 FROM instance_owners WHERE instance_id = 'inst-x'") \
            is None
    assert len([r for r in audit_rows(env.app) if r["event"] == "instance_uploaded"]) == 2
