"""create_app and the first admin: the bootstrap PIN from the environment or logged once, and the
admin restricted until onboarded.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from fakes import FakeLog
from orthanc_nas import app as app_module
from orthanc_nas import config
from orthanc_nas.app import ADMIN_PIN_ENV, App
from orthanc_nas.clock import ManualClock, SystemClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.keys import KeyRing

from .app_env import (
    ADMIN_NEW_PIN,
    ADMIN_PIN,
    Client,
    Env,
    base_config,
    body_of,
    build,
    fake_orthanc,
    wrong_code,
)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return build(tmp_path)


# ---- create_app and bootstrap --------------------------------------------------------------


def test_create_app_bootstraps_admin_from_the_environment(tmp_path: Path) -> None:
    log = FakeLog()
    app = app_module.create_app(base_config(tmp_path), {ADMIN_PIN_ENV: ADMIN_PIN}, log,
                                fake_orthanc())
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
                                  FakeLog(), fake_orthanc())
    assert again.users.count() == 1
    second = again.users.by_name("admin")
    assert second is not None and second.pin_hash == admin.pin_hash


def test_bootstrap_without_env_pin_logs_a_one_time_pin(tmp_path: Path) -> None:
    log = FakeLog()
    cfg = config.load(base_config(tmp_path))
    db = SqliteDatabase(tmp_path / "x.sqlite")
    app = App(cfg, db, KeyRing(bytes(32)), ManualClock(), log, fake_orthanc())
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
