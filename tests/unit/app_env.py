"""The app as the filter and the routes see it, for the end-to-end unit tests of logins,
sessions, tokens and administration: an ``App`` on a temporary database with a manual clock
(``build``), a browser-like ``Client`` (cookies, Host and Origin) that runs the filter
(``App.decide``) then the route (``App.handle``), and the accounts' onboarding steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from fakes import FakeLog, FakeOrthanc
from orthanc_nas import app as app_module
from orthanc_nas import config
from orthanc_nas.app import ADMIN_PIN_ENV, App
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database, SqliteDatabase
from orthanc_nas.keys import KeyRing, load_or_create_key
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


def fake_orthanc() -> FakeOrthanc:
    """Orthanc answering /system, and {} to everything else."""
    return FakeOrthanc({"/system": {"Version": "1.12.4"}}, missing={})


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


def build(tmp_path: Path, db: Database | None = None, **sections: dict[str, Any]) -> Env:
    cfg = config.load(base_config(tmp_path, **sections))
    db = db or SqliteDatabase(tmp_path / "x.sqlite")
    keys = KeyRing(load_or_create_key(tmp_path / "x.key"))
    clock = ManualClock()
    log = FakeLog()
    app = App(cfg, db, keys, clock, log, fake_orthanc())
    app_module.bootstrap_admin(app, {ADMIN_PIN_ENV: ADMIN_PIN})
    return Env(app, clock, log)


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
        return self.app.decide(self.request(method, path, **kwargs))[0]

    def call(self, method: str, path: str, data: Any = None, **kwargs: Any) -> Response:
        """The filter, then the plugin's route, as Orthanc runs them."""
        request = self.request(method, path, data, **kwargs)
        if not self.app.decide(request)[0]:
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
