"""API tokens: the owner's role, revocation, expiry, bounded lifetime, never in the query string.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .app_env import (
    OWN_PIN,
    Account,
    Client,
    Env,
    admin_ready,
    body_of,
    build,
    log_in,
    make_user,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


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
