"""Against a real Orthanc: nobody elsewhere can lock a user out, the command line unlocks the
last admin, API tokens end with what ends their owner's rights, and weak PINs are refused."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from harness import PLATFORM, REPO, Account, Client, OrthancServer, admin_account, make_user

WRONG = "Wrong-Guess-PIN-9999"
IP_A, IP_B = "203.0.113.66", "198.51.100.7"


def from_ip(client: Client, ip: str) -> Client:
    """Every request of ``client`` as forwarded by the trusted proxy for ``ip``."""
    client.http.headers["X-Forwarded-For"] = ip
    return client


def login_status(server: OrthancServer, ip: str, username: str, pin: str) -> int:
    r = from_ip(server.client(), ip).post("/api/login", {"username": username, "pin": pin})
    return r.status_code


def unlock_cli(server: OrthancServer, username: str) -> subprocess.CompletedProcess[str]:
    python = str(Path(server.env["ORTHANC_NAS_VENV"], "bin", "python"))
    return subprocess.run(PLATFORM.wrap([python, "-m", "orthanc_nas.auth.cli", "unlock",
                                         username, "--data-dir", str(server.data_dir)]),
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO / "plugin")})


def test_an_attacker_cannot_lock_the_admin_out_and_the_cli_unlocks(tmp_path: Path) -> None:
    server = OrthancServer(tmp_path, {"OrthancNAS": {"auth": {
        "bcrypt_cost": 4, "trusted_proxies": ["127.0.0.1"], "ip_max_failures": 100000,
        "account_max_failures": 12}}}).start()
    try:
        admin = admin_account()
        # The attacker at A guesses the well-known account's PIN until refused outright.
        assert [login_status(server, IP_A, "admin", WRONG) for _ in range(6)] == [401] * 6
        assert login_status(server, IP_A, "admin", admin.pin) == 401  # locked, from A
        # The real admin at B still signs in.
        client = from_ip(server.client(), IP_B)
        client.onboard(admin, "Blue-Harbor-PIN-2024!")
        assert client.get("/api/profile").status_code == 200
        # Many sources together reach the account-wide ceiling: locked from everywhere,
        # until an admin (none other here) or the command line unlocks it.
        for ip in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            for _ in range(4):
                login_status(server, ip, "admin", WRONG)
        assert login_status(server, IP_B, "admin", admin.pin) == 401
        done = unlock_cli(server, "admin")
        assert done.returncode == 0, done.stderr
        assert "unlocked admin" in done.stdout
        client = from_ip(server.client(), IP_B)
        client.login(admin)
        rows = client.get("/api/audit", params={"event": "user_unlocked"}).json()["items"]
        assert rows and rows[0]["actor"].startswith("cli:")
        assert rows[0]["details"]["via"] == "command line"
        lockouts = client.get("/api/audit", params={"event": "lockout"}).json()["items"]
        assert {(r["ip"], r["details"]["scope"]) for r in lockouts} == {
            (IP_A, "source"), ("203.0.113.3", "account")}
        assert client.get("/api/audit/verify").json()["ok"] is True
        assert unlock_cli(server, "nobody").returncode == 2
    finally:
        server.stop()


@pytest.fixture
def bob(admin: Client, request: pytest.FixtureRequest) -> tuple[Client, Account]:
    return make_user(admin, "tok-" + re.sub(r"[^A-Za-z0-9._@-]", "-", request.node.name[-40:]),
                     "user")


def user_id(admin: Client, username: str) -> int:
    return int(next(u["id"] for u in admin.get("/api/admin/users").json()["users"]
                    if u["username"] == username))


def works(server: OrthancServer, token: str) -> bool:
    script = server.client()
    del script.http.headers["Origin"]
    return script.get("/patients", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 200


@pytest.mark.parametrize(("change", "undo"), [
    ({"enabled": False}, {"enabled": True}),
    ({"pin": "Reset-By-Admin-PIN-31"}, None),
    ({"reset_2fa": True}, None),
])
def test_a_token_dies_with_an_admin_disable_pin_reset_or_2fa_reset(
        orthanc: OrthancServer, admin: Client, bob: tuple[Client, Account],
        change: dict[str, object], undo: dict[str, object] | None) -> None:
    client, account = bob
    token = client.post("/api/tokens", {"name": "ci", "pin": account.pin}).json()["token"]
    assert works(orthanc, token)
    uid = user_id(admin, account.username)
    assert admin.put(f"/api/admin/users/{uid}", change).status_code == 200
    if undo:
        assert admin.put(f"/api/admin/users/{uid}", undo).status_code == 200
    assert not works(orthanc, token)
    rows = admin.get("/api/audit", params={"event": "tokens_revoked",
                                           "target": account.username}).json()["items"]
    assert len(rows) == 1 and rows[0]["details"]["count"] == 1


def test_creating_a_token_needs_the_pin_and_it_expires_by_default(
        orthanc: OrthancServer, bob: tuple[Client, Account]) -> None:
    client, account = bob
    r = client.post("/api/tokens", {"name": "ci"})
    assert r.status_code == 400 and r.json()["field"] == "pin"
    r = client.post("/api/tokens", {"name": "ci", "pin": WRONG})
    assert r.status_code == 403 and r.json() == {"error": "current PIN is wrong", "field": "pin"}
    r = client.post("/api/tokens", {"name": "ci", "pin": account.pin})
    assert r.status_code == 200
    assert r.json()["expires_at"] == pytest.approx(orthanc.now() + 90 * 86400, abs=60)


def test_admins_list_and_revoke_a_users_tokens(orthanc: OrthancServer, admin: Client,
                                               bob: tuple[Client, Account]) -> None:
    client, account = bob
    created = client.post("/api/tokens", {"name": "nightly", "pin": account.pin}).json()
    path = f"/api/admin/users/{user_id(admin, account.username)}/tokens"
    assert client.get(path).status_code == 403
    assert client.delete(f"{path}/{created['id']}").status_code == 403
    r = admin.get(path)
    assert r.status_code == 200 and created["token"] not in r.text
    assert [t["name"] for t in r.json()["tokens"]] == ["nightly"]
    assert admin.delete(f"{path}/{created['id']}").status_code == 200
    assert not works(orthanc, created["token"])
    assert admin.delete(f"{path}/{created['id']}").status_code == 404
    rows = admin.get("/api/audit", params={"event": "token_revoked",
                                           "target": account.username}).json()["items"]
    assert rows and rows[0]["actor"] == "admin"


@pytest.mark.parametrize("weak", ["abcabcabca", "Welcome2024!", "ab ab ab ab"])
def test_the_pin_change_route_refuses_guessable_pins(bob: tuple[Client, Account],
                                                     weak: str) -> None:
    client, account = bob
    r = client.put("/api/profile", {"current_pin": account.pin, "new_pin": weak})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["field"] == "new_pin" and body["error"].startswith("this PIN is too easy")


def test_orthanc_is_still_alive(orthanc: OrthancServer) -> None:
    assert requests.get(orthanc.url + "/api/health", timeout=10).status_code in (200, 503)
