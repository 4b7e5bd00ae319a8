"""Login, second factor, sessions, lockout, tokens and CSRF against a real Orthanc."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pyotp
import pytest

from harness import ADMIN_PIN, Account, Client, OrthancServer, make_user

INVALID = {"error": "invalid username or PIN"}


@pytest.fixture
def radiologist(admin: Client, request: pytest.FixtureRequest) -> tuple[Client, Account]:
    """A fresh `user` with TOTP enrolled (a distinct name per test: sessions are per user)."""
    return make_user(admin, "rad-" + request.node.name[-40:].replace("[", "-").strip("]"), "user")


def test_nothing_of_orthanc_is_reachable_without_login(orthanc: OrthancServer) -> None:
    anonymous = orthanc.client()
    for path in ("/patients", "/studies", "/system", "/statistics", "/instances",
                 "/tools/execute-script", "/dicom-web/studies", "/api/profile", "/api/audit",
                 "/api/nas/status", "/modalities", "/jobs", "/made-up"):
        assert anonymous.get(path).status_code == 403, path
    for page in ("account", "admin", "nas"):  # page shells send visitors to the login page
        r = anonymous.get(f"/ui/{page}")
        assert r.status_code == 302 and r.headers["Location"] == f"/ui/login?next=/ui/{page}"
    assert anonymous.post("/tools/find", {"Level": "Study", "Query": {}}).status_code == 403
    assert anonymous.delete("/patients/x").status_code == 403


def test_root_sends_browsers_to_the_login_page(orthanc: OrthancServer, admin: Client) -> None:
    r = orthanc.client().get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/login"
    r = admin.get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/app/explorer.html"
    page = orthanc.client().get("/ui/login")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_full_login_with_pin_and_totp(orthanc: OrthancServer,
                                      radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    client = orthanc.client()
    r = client.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.json() == {"status": "2fa_required"}
    pending_cookie = r.headers["Set-Cookie"]
    assert "onas_pending=" in pending_cookie and "HttpOnly" in pending_cookie
    assert "SameSite=Strict" in pending_cookie and "Path=/" in pending_cookie
    assert "Expires" not in pending_cookie and "Max-Age" not in pending_cookie
    assert client.get("/patients").status_code == 403  # a pending login is not a session
    r = client.post("/api/2fa/verify", {"code": client.totp_code(account)})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    session_cookie = next(c for c in r.headers["Set-Cookie"].split(", ") if "onas_session=" in c)
    assert len(session_cookie.split(";")[0].split("=", 1)[1]) >= 43  # 256 bits, base64url
    assert client.get("/patients").status_code == 200
    assert client.post("/api/logout", {}).status_code == 200
    assert client.get("/patients").status_code == 403


def test_a_totp_code_is_accepted_once(orthanc: OrthancServer,
                                      radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    client = orthanc.client()
    code = client.totp_code(account)
    assert client.post("/api/login", {"username": account.username,
                                      "pin": account.pin}).json()["status"] == "2fa_required"
    assert client.post("/api/2fa/verify", {"code": code}).status_code == 200
    other = orthanc.client()
    other.post("/api/login", {"username": account.username, "pin": account.pin})
    r = other.post("/api/2fa/verify", {"code": code})
    assert r.status_code == 401 and r.json() == {"error": "invalid or already used code"}


def test_backup_code_works_once(orthanc: OrthancServer,
                                radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    assert account.backup_codes and len(account.backup_codes) == 10
    code = account.backup_codes[0]
    for expected in (200, 401):
        client = orthanc.client()
        client.post("/api/login", {"username": account.username, "pin": account.pin})
        assert client.post("/api/2fa/verify", {"code": code}).status_code == expected


def test_lockout_counts_pin_and_code_failures_and_admin_unlocks(
        orthanc: OrthancServer, admin: Client, radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    client = orthanc.client()
    for _ in range(3):
        r = client.post("/api/login", {"username": account.username, "pin": "wrong-PIN-123"})
        assert r.status_code == 401 and r.json() == INVALID
    client.post("/api/login", {"username": account.username, "pin": account.pin})
    for _ in range(2):  # second-factor failures count too: 5 in all
        assert client.post("/api/2fa/verify", {"code": "000000"}).status_code in (401, 403)
    r = client.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.status_code == 401 and r.json() == INVALID  # locked: even the right PIN fails
    users = {u["username"]: u for u in admin.get("/api/admin/users").json()["users"]}
    assert users[account.username]["locked"] is True
    audit = admin.get("/api/audit", params={"user": account.username, "event": "lockout"})
    assert audit.json()["total"] == 1
    r = admin.put(f"/api/admin/users/{users[account.username]['id']}", {"unlock": True})
    assert r.status_code == 200 and r.json()["user"]["locked"] is False
    client.login(account)
    assert client.get("/patients").status_code == 200


def test_lockout_expires_with_the_clock(orthanc: OrthancServer,
                                        radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    client = orthanc.client()
    for _ in range(5):
        client.post("/api/login", {"username": account.username, "pin": "wrong-PIN-123"})
    r = client.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.status_code == 401
    orthanc.advance_clock(15 * 60 + 1)
    client.login(account)


def test_parallel_guesses_cannot_exceed_the_limit(orthanc: OrthancServer, admin: Client,
                                                  radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    results: list[int] = []

    def guess(i: int) -> None:
        c = orthanc.client()
        results.append(c.post("/api/login", {"username": account.username,
                                             "pin": f"wrong-PIN-{i:04d}"}).status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [401] * 20
    audit = admin.get("/api/audit", params={"user": account.username, "event": "login",
                                            "outcome": "failure", "limit": 100}).json()
    wrong_pin = [i for i in audit["items"] if i["details"].get("reason") == "wrong PIN"]
    assert len(wrong_pin) == 5  # the other 15 never reached the PIN check


def test_idle_and_absolute_timeouts(orthanc: OrthancServer,
                                    radiologist: tuple[Client, Account]) -> None:
    client, account = radiologist
    assert client.get("/patients").status_code == 200
    orthanc.advance_clock(20 * 60)
    assert client.get("/patients").status_code == 200  # activity keeps it alive
    orthanc.advance_clock(20 * 60)
    assert client.get("/patients").status_code == 200
    orthanc.advance_clock(31 * 60)
    assert client.get("/patients").status_code == 403  # idle for 31 minutes
    client.login(account)
    for _ in range(25):  # active every 29 minutes: the absolute 12 h limit still ends it
        orthanc.advance_clock(29 * 60)
        if client.get("/patients").status_code != 200:
            break
    assert client.get("/patients").status_code == 403
    assert client.server.now() - time.time() >= 11 * 3600


def test_single_session_and_simultaneous_logins(orthanc: OrthancServer,
                                                radiologist: tuple[Client, Account]) -> None:
    first, account = radiologist
    assert first.get("/patients").status_code == 200
    second = orthanc.client()
    second.login(account)
    assert first.get("/patients").status_code == 403
    assert second.get("/patients").status_code == 200
    clients = [orthanc.client() for _ in range(2)]
    for c in clients:
        r = c.post("/api/login", {"username": account.username, "pin": account.pin})
        assert r.json()["status"] == "2fa_required"
    codes = [clients[0].totp_code(account), clients[1].totp_code(account)]
    threads = [threading.Thread(target=c.post, args=("/api/2fa/verify", {"code": code}))
               for c, code in zip(clients, codes, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    valid = [c.get("/patients").status_code == 200 for c in [second, *clients]]
    assert valid.count(True) == 1


def test_disable_role_change_and_pin_reset_apply_on_the_next_request(
        admin: Client, radiologist: tuple[Client, Account]) -> None:
    client, account = radiologist
    uid = next(u["id"] for u in admin.get("/api/admin/users").json()["users"]
               if u["username"] == account.username)
    assert client.post("/tools/find", {"Level": "Study", "Query": {}}).status_code == 200
    admin.put(f"/api/admin/users/{uid}", {"role": "viewer"})
    assert client.get("/patients").status_code == 403  # sessions end with a role change
    client.login(account)
    assert client.post("/instances", data=b"x").status_code == 403  # viewers cannot upload
    admin.put(f"/api/admin/users/{uid}", {"enabled": False})
    assert client.get("/patients").status_code == 403
    r = client.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.status_code == 401 and r.json() == INVALID


def test_changing_the_pin_ends_other_sessions(orthanc: OrthancServer,
                                              radiologist: tuple[Client, Account]) -> None:
    client, account = radiologist
    token = client.post("/api/tokens", {"name": "script", "pin": account.pin}).json()["token"]
    r = client.put("/api/profile", {"current_pin": account.pin, "new_pin": "Another-Secret-77"})
    assert r.status_code == 200
    assert client.get("/patients").status_code == 200  # the session that changed it stays
    old = orthanc.client()
    r = old.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.status_code == 401
    assert orthanc.client().get("/patients", headers={
        "Authorization": f"Bearer {token}"}).status_code == 200


def test_state_changes_must_come_from_our_origin(orthanc: OrthancServer,
                                                 radiologist: tuple[Client, Account]) -> None:
    client, _ = radiologist
    body = {"Level": "Study", "Query": {}}
    assert client.post("/tools/find", body).status_code == 200
    assert client.post("/tools/find", body, headers={"Origin": "https://evil.example"}
                       ).status_code == 403
    assert client.post("/tools/find", body, headers={
        "Sec-Fetch-Site": "cross-site"}).status_code == 403
    del client.http.headers["Origin"]
    try:
        assert client.post("/tools/find", body).status_code == 403  # neither Origin nor Referer
        assert client.post("/tools/find", body, headers={
            "Referer": orthanc.url + "/app/explorer.html"}).status_code == 200
        assert client.post("/tools/find", body, headers={
            "Referer": "https://evil.example/x"}).status_code == 403
    finally:
        client.http.headers["Origin"] = orthanc.url
    assert client.get("/patients", headers={"Origin": "https://evil.example"}).status_code == 200


def test_api_tokens(orthanc: OrthancServer, admin: Client,
                    radiologist: tuple[Client, Account]) -> None:
    client, account = radiologist
    r = client.post("/api/tokens", {"name": "dicomweb", "expires_in_days": 1,
                                    "pin": account.pin})
    assert r.status_code == 200
    token, token_id = r.json()["token"], r.json()["id"]
    assert len(token) >= 40
    script = orthanc.client()
    del script.http.headers["Origin"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert script.get("/dicom-web/studies", headers=bearer).status_code in (200, 204)
    assert script.post("/tools/find", {"Level": "Study", "Query": {}},
                       headers=bearer).status_code == 200  # no cookie: no CSRF question
    assert script.get("/api/admin/users", headers=bearer).status_code == 403  # owner's rights
    enroll = script.post("/api/2fa/setup/totp", {}, headers=bearer)  # credentials: login only
    assert enroll.status_code == 403 and "API tokens cannot" in enroll.json()["error"]
    assert script.get(f"/patients?token={token}").status_code == 403  # never in a URL
    assert token not in str(admin.get("/api/audit", params={"limit": 1000}).json())
    listed = client.get("/api/tokens").json()["tokens"]
    assert [t["name"] for t in listed] == ["dicomweb"] and "token" not in listed[0]
    orthanc.advance_clock(86400 + 1)
    assert script.get("/patients", headers=bearer).status_code == 403  # expired
    client.login(account)
    r = client.post("/api/tokens", {"name": "second", "pin": account.pin})
    second = r.json()["token"]
    assert client.delete(f"/api/tokens/{r.json()['id']}").status_code == 200
    assert script.get("/patients", headers={"Authorization": f"Bearer {second}"}
                      ).status_code == 403
    assert client.delete(f"/api/tokens/{token_id}").status_code == 200


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 400, None),
    (b'{"username": "a"}', 400, "pin"),
    (b'{"username": 5, "pin": "x"}', 400, "username"),
    (b"[1, 2]", 400, None),
    (b'{"username": "a", "pin": "' + b"x" * 70000 + b'"}', 413, None),
])
def test_bad_login_bodies_get_a_clear_400(orthanc: OrthancServer, body: bytes, status: int,
                                          field: str | None) -> None:
    r = orthanc.client().post("/api/login", data=body,
                              headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert "error" in r.json()
    if field:
        assert r.json()["field"] == field


def test_anonymous_bodies_are_bounded_before_orthanc_reads_them(orthanc: OrthancServer) -> None:
    client = orthanc.client()
    chunked = client.post("/api/login", data=iter([b'{"username": "a", ', b'"pin": "x"}']),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 403  # no declared size: refused by the filter
    huge = client.post("/api/login", data=b"x" * (2**20 + 1))
    assert huge.status_code == 403


def test_behind_a_trusted_proxy_the_client_address_counts(tmp_path: Path) -> None:
    server = OrthancServer(tmp_path, {"OrthancNAS": {"auth": {
        "trusted_proxies": ["127.0.0.1"], "ip_max_failures": 3}}}).start()
    try:
        def fail(client_ip: str) -> int:
            return server.client().post(
                "/api/login", {"username": "nobody", "pin": "Wrong-PIN-12345"},
                headers={"X-Forwarded-For": f"198.51.100.1, {client_ip}"}).status_code

        assert [fail("203.0.113.9") for _ in range(4)] == [401, 401, 401, 503]
        assert fail("203.0.113.10") == 401  # another client behind the same proxy: not locked
        admin, account = server.client(), Account("admin", ADMIN_PIN, "admin")
        admin.onboard(account, "Blue-Harbor-PIN-2024!")
        rows = admin.get("/api/audit", params={"event": "login", "outcome": "failure"}).json()
        assert {r["ip"] for r in rows["items"]} == {"203.0.113.9", "203.0.113.10"}
    finally:
        server.stop()


def test_unknown_user_and_wrong_pin_look_the_same(tmp_path: Path) -> None:
    server = OrthancServer(tmp_path, {"OrthancNAS": {"auth": {
        "bcrypt_cost": 10, "ip_max_failures": 100000}, "two_factor": {"max_failed_attempts": 100}}})
    server.start()
    try:
        client = server.client()

        def attempt(username: str) -> tuple[int, str, float]:
            t0 = time.perf_counter()
            r = client.post("/api/login", {"username": username, "pin": "Wrong-PIN-12345"})
            return r.status_code, r.text, time.perf_counter() - t0

        samples: dict[str, list[float]] = {"admin": [], "nobody-here": []}
        answers = set()
        for _ in range(30):
            for name, times in samples.items():
                status, text, seconds = attempt(name)
                answers.add((status, text))
                times.append(seconds)
        assert answers == {(401, '{"error":"invalid username or PIN"}')}
        # The lower quartile: other load on the machine only ever adds time.
        known, unknown = (statistics.quantiles(samples[n], n=4)[0]
                          for n in ("admin", "nobody-here"))
        assert abs(known - unknown) / known < 0.25, (known, unknown)
    finally:
        server.stop()


def test_admin_manages_users_and_two_factor_config(orthanc: OrthancServer, admin: Client) -> None:
    r = admin.post("/api/admin/users", {"username": "weak", "role": "user", "pin": "password1"})
    assert r.status_code == 400 and r.json()["field"] == "pin"
    r = admin.post("/api/admin/users", {"username": "bad name!", "role": "user",
                                        "pin": "Good-Enough-PIN-1"})
    assert r.status_code == 400 and r.json()["field"] == "username"
    r = admin.post("/api/admin/users", {"username": "tmp-user", "role": "boss",
                                        "pin": "Good-Enough-PIN-1"})
    assert r.status_code == 400 and r.json()["field"] == "role"
    r = admin.post("/api/admin/users", {"username": "tmp-user", "role": "viewer",
                                        "pin": "Good-Enough-PIN-1"})
    uid = r.json()["user"]["id"]
    assert admin.post("/api/admin/users", {"username": "TMP-user", "role": "viewer",
                                           "pin": "Good-Enough-PIN-1"}).status_code == 409
    assert admin.delete(f"/api/admin/users/{uid}").status_code == 200
    me = admin.get("/api/profile").json()["user"]["id"]
    assert admin.delete(f"/api/admin/users/{me}").status_code == 409
    assert admin.put(f"/api/admin/users/{me}", {"role": "user"}).status_code == 409

    cfg = admin.get("/api/2fa/config").json()
    assert cfg["source"] == "orthanc.json" and cfg["config"]["backup_codes_count"] == 10
    r = admin.post("/api/2fa/config", {"backup_codes_count": 500})
    assert r.status_code == 400 and r.json()["field"] == "backup_codes_count"
    r = admin.post("/api/2fa/config", {"required_for_viewers": True, "backup_codes_count": 8})
    assert r.status_code == 200 and r.json()["config"]["backup_codes_count"] == 8
    assert admin.get("/api/2fa/config").json()["source"] == "runtime"
    r = admin.post("/api/2fa/config", {"required_for_viewers": False, "backup_codes_count": 10})
    assert r.status_code == 200
    audit = admin.get("/api/audit", params={"event": "two_factor_config_changed"}).json()
    assert audit["total"] >= 2


def test_turning_two_factor_off_is_audited_as_a_security_alert(
        orthanc: OrthancServer, admin: Client, radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    try:
        assert admin.post("/api/2fa/config", {"enabled": False}).status_code == 200
        r = orthanc.client().post("/api/login", {"username": account.username,
                                                 "pin": account.pin})
        assert r.json()["status"] == "ok"  # no second factor while 2FA is off
        alerts = admin.get("/api/audit", params={"event": "security_alert"}).json()["items"]
        assert alerts and "disabled" in alerts[0]["details"]["alert"]
    finally:
        assert admin.post("/api/2fa/config", {"enabled": True}).status_code == 200
    r = orthanc.client().post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.json()["status"] == "2fa_required"


def test_audit_records_who_what_and_never_secrets(admin: Client,
                                                  radiologist: tuple[Client, Account]) -> None:
    _, account = radiologist
    items = admin.get("/api/audit", params={"user": account.username, "limit": 1000}
                      ).json()["items"]
    events = {i["event"] for i in items}
    assert {"login", "pin_changed", "totp_enrolled", "backup_codes_generated"} <= events
    assert all(i["ip"] == "127.0.0.1" for i in items if i["event"] == "login")
    text = str(items)
    assert account.pin not in text and "Temporary-PIN-4711" not in text
    assert account.totp_secret and account.totp_secret not in text
    assert not any(code in text for code in account.backup_codes or [])


def test_totp_secret_is_encrypted_at_rest(orthanc: OrthancServer,
                                          radiologist: tuple[Client, Account]) -> None:
    import sqlite3

    _, account = radiologist
    conn = sqlite3.connect(orthanc.data_dir / "orthanc-nas.sqlite")
    (blob,) = conn.execute("SELECT totp_secret FROM users WHERE username = ?",
                           (account.username,)).fetchone()
    conn.close()
    assert account.totp_secret
    assert account.totp_secret.encode() not in blob and len(blob) >= 12 + 32 + 16
    assert pyotp.TOTP(account.totp_secret).now().isdigit()
