"""The audit trail of logins: every step recorded, never a secret, append-only; the principal cache
never outlives a change.

Through App.decide (Orthanc's filter) and App.handle (the plugin's routes), with a manual
clock; the app and its browser-like client are in app_env.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pyotp
import pytest

from harness import wait_until

from .app_env import (
    ADMIN_NEW_PIN,
    ADMIN_PIN,
    OWN_PIN,
    TEMP_PIN,
    WRONG_PIN,
    Client,
    Env,
    admin_ready,
    audit_rows,
    body_of,
    build,
    make_user,
    wrong_code,
)
from .conftest import MakeDb


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return build(tmp_path, make_db())


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
    refused = (sqlite3.DatabaseError, psycopg.Error)
    with pytest.raises(refused, match="append-only"), env.app.db.transaction() as tx:
        tx.execute("UPDATE audit SET outcome = 'success'")
    with pytest.raises(refused, match="append-only"), env.app.db.transaction() as tx:
        tx.execute("DELETE FROM audit")
    assert audit_rows(env.app) == before


def test_the_principal_cache_never_outlives_a_change_or_an_expiry(env: Env,
                                                                  make_db: MakeDb) -> None:
    """decide() answers from memory, but a write here, or the clock, decides at once."""
    admin, _ = admin_ready(env)
    assert admin.allowed("GET", "/patients")
    assert admin.allowed("GET", "/patients")  # served from the cache
    other = make_db()  # the same database as another process (a replica) opens it
    with other.transaction() as tx:
        tx.execute("UPDATE users SET enabled = 0")
    if env.app.db.dialect == "postgresql":  # told at once (NOTIFY): refused within a second
        wait_until(lambda: not admin.allowed("GET", "/patients"), 1.0, "the change heard")
        return
    assert admin.allowed("GET", "/patients")  # SQLite: a write this process cannot see...
    env.clock.advance(31)  # ...is seen at the latest after the re-read interval
    assert not admin.allowed("GET", "/patients")
