"""Share links: hashed tokens, view counting, viewing sessions, expiry, revocation, PINs."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from orthanc_nas.audit import Audit
from orthanc_nas.auth.pins import PinHasher
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database
from orthanc_nas.images.shares import (
    TOKEN_LENGTH,
    Share,
    ShareGone,
    ShareLimits,
    SharePinRequired,
    Shares,
    ShareUnknown,
)
from orthanc_nas.keys import KeyRing

from .conftest import MakeDb

HOUR = 3600.0
VIEW_SECONDS = 600.0
PIN_MAX = 3
STUDY = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
PIN = "Harbor-7341"


@dataclass
class Env:
    db: Database
    clock: ManualClock
    keys: KeyRing
    shares: Shares
    alice: int
    bob: int

    def create(self, *, user_id: int | None = None, hours: float = 1, max_views: int = 5,
               pin: str | None = None) -> tuple[Share, str]:
        return self.shares.create(level="study", resource_id=STUDY, study_id=STUDY,
                                  user_id=self.alice if user_id is None else user_id,
                                  actor="alice", ip="10.0.0.1", expires_in_hours=hours,
                                  max_views=max_views, pin=pin, allow_download=False)

    def audit(self, event: str) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM audit WHERE event = ? ORDER BY id", (event,))
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def share(self, share_id: int) -> Share:
        share = self.shares.get(share_id)
        assert share is not None
        return share


def add_user(db: Database, name: str) -> int:
    with db.transaction() as tx:
        return tx.insert("INSERT INTO users (username, role, pin_hash, created_at)"
                         " VALUES (?, 'user', 'x', 0)", (name,))


@pytest.fixture
def env(make_db: MakeDb) -> Env:
    db = make_db()
    clock = ManualClock()
    keys = KeyRing(b"k" * 32)
    shares = Shares(db, keys, clock, Audit(db, clock, b"k" * 32), PinHasher(4),
                    pin_max_attempts=PIN_MAX, view_seconds=VIEW_SECONDS,
                    limits=ShareLimits(72, 720, 3, 50))
    return Env(db, clock, keys, shares, add_user(db, "alice"), add_user(db, "bob"))


def every_value(db: Database) -> list[str]:
    tables = [r["name"] for r in db.all(
        "SELECT name FROM sqlite_master WHERE type = 'table'" if db.dialect == "sqlite" else
        "SELECT table_name AS name FROM information_schema.tables"
        " WHERE table_schema = 'public'")]
    out = []
    for table in tables:
        for row in db.all(f"SELECT * FROM {table}"):
            out += [str(v) for v in tuple(row)]
    return out


def test_create_stores_only_a_hash_of_the_token(env: Env) -> None:
    share, token = env.create(max_views=2)
    assert len(token) == TOKEN_LENGTH == 43
    assert (share.level, share.study_id, share.created_by, share.views) == (
        "study", STUDY, env.alice, 0)
    assert share.expires_at == env.clock.now() + HOUR and not share.has_pin
    stored = env.db.one("SELECT token_hash FROM shares WHERE id = ?", (share.id,))
    assert stored is not None and stored["token_hash"] == env.keys.mac("share-link", token)
    assert not [v for v in every_value(env.db) if token in v]
    (created,) = env.audit("share_created")
    assert created["target"] == STUDY and created["details"]["share"] == share.id
    assert env.shares.by_token(token).id == share.id


def test_unknown_tokens(env: Env) -> None:
    env.create()
    with pytest.raises(ShareUnknown):
        env.shares.by_token(secrets.token_urlsafe(32))
    with pytest.raises(ShareUnknown):
        env.shares.by_token("short")
    with pytest.raises(ShareUnknown):
        env.shares.open(secrets.token_urlsafe(32), None, "10.0.0.9")


def test_open_counts_views_and_starts_a_viewing_session(env: Env) -> None:
    share, token = env.create(max_views=5)
    opened, raw = env.shares.open(token, None, "10.0.0.9")
    assert opened.views == 1
    env.clock.advance(10)
    again, raw2 = env.shares.open(token, None, "10.0.0.9")
    assert again.views == 2 and raw2 != raw
    assert [a["details"]["view"] for a in env.audit("share_opened")] == [1, 2]
    assert not [v for v in every_value(env.db) if raw in v]  # the session too, hashed only

    assert env.shares.viewing(token, raw).id == share.id
    _, other_token = env.create()  # a session belongs to one link
    for bad_token, bad_raw in ((token, None), (token, ""), (token, "nope"), (other_token, raw),
                               (secrets.token_urlsafe(32), raw), ("short", raw)):
        with pytest.raises(ShareUnknown):
            env.shares.viewing(bad_token, bad_raw)
    env.clock.advance(VIEW_SECONDS - 11)
    assert env.shares.viewing(token, raw).id == share.id
    env.clock.advance(1)  # the first session is over, the second one is not
    with pytest.raises(ShareUnknown):
        env.shares.viewing(token, raw)
    assert env.shares.viewing(token, raw2).id == share.id


def test_viewing_ends_with_the_share(env: Env) -> None:
    _, token = env.create(hours=0.05)  # 180 s: the share ends before the session would
    _, raw = env.shares.open(token, None, "10.0.0.9")
    env.clock.advance(179)
    env.shares.viewing(token, raw)
    env.clock.advance(1)
    with pytest.raises(ShareUnknown):
        env.shares.viewing(token, raw)


def test_revocation_ends_viewing_sessions(env: Env) -> None:
    share, token = env.create()
    _, raw = env.shares.open(token, None, "10.0.0.9")
    assert env.shares.revoke(share.id, env.alice, "alice", "10.0.0.1")
    with pytest.raises(ShareUnknown):
        env.shares.viewing(token, raw)
    with pytest.raises(ShareGone, match="revoked"):
        env.shares.open(token, None, "10.0.0.9")


def test_max_views_are_used_up(env: Env) -> None:
    share, token = env.create(max_views=2)
    _, raw = env.shares.open(token, None, "10.0.0.9")
    env.shares.open(token, None, "10.0.0.9")
    with pytest.raises(ShareGone) as gone:
        env.shares.open(token, None, "10.0.0.9")
    assert gone.value.reason == "used up"
    with pytest.raises(ShareGone, match="used up"):
        env.shares.by_token(token)
    assert env.share(share.id).views == 2
    assert env.shares.viewing(token, raw).id == share.id  # an open session keeps working


def test_expiry_is_audited_once(env: Env) -> None:
    share, token = env.create(hours=2)
    env.clock.advance(2 * HOUR - 1)
    env.shares.by_token(token)
    env.clock.advance(1)
    for _ in range(2):
        with pytest.raises(ShareGone) as gone:
            env.shares.by_token(token)
        assert gone.value.reason == "expired"
    with pytest.raises(ShareGone, match="expired"):
        env.shares.open(token, None, "10.0.0.9")
    (expired,) = env.audit("share_expired")
    assert (expired["actor"], expired["target"]) == (f"share:{share.id}", STUDY)


def test_revoke_by_creator_or_admin_only(env: Env) -> None:
    share, token = env.create()
    assert env.shares.revoke(share.id, env.bob, "bob", "10.0.0.2") is False
    env.shares.by_token(token)  # still alive
    assert env.shares.revoke(share.id, env.alice, "alice", "10.0.0.1") is True
    assert env.shares.revoke(share.id, env.alice, "alice", "10.0.0.1") is False  # once
    with pytest.raises(ShareGone, match="revoked"):
        env.shares.by_token(token)

    other, _ = env.create()
    assert env.shares.revoke(other.id, None, "admin", "10.0.0.3") is True
    assert env.shares.revoke(999, None, "admin", "10.0.0.3") is False
    revoked = env.audit("share_revoked")
    assert [(a["actor"], a["details"]["share"]) for a in revoked] == [
        ("alice", share.id), ("admin", other.id)]


def test_revoke_all_of_a_creator(env: Env) -> None:
    live, token = env.create()
    used, _ = env.create(max_views=1)
    with env.db.transaction() as tx:
        tx.execute("UPDATE shares SET views = 1 WHERE id = ?", (used.id,))
    bobs, bob_token = env.create(user_id=env.bob)
    with env.db.transaction() as tx:
        assert env.shares.revoke_all_of(tx, env.alice, "admin", "10.0.0.3",
                                        "account disabled") == 1
    with pytest.raises(ShareGone, match="revoked"):
        env.shares.by_token(token)
    assert env.shares.by_token(bob_token).id == bobs.id  # another creator's link lives on
    (row,) = env.audit("share_revoked")
    assert (row["actor"], row["details"]) == ("admin", {"share": live.id,
                                                        "reason": "account disabled"})


def test_pin_missing_wrong_and_right(env: Env) -> None:
    share, token = env.create(pin=PIN)
    assert share.has_pin
    assert not [v for v in every_value(env.db) if PIN in v]

    for missing in (None, ""):
        with pytest.raises(SharePinRequired, match="required"):
            env.shares.open(token, missing, "10.0.0.9")
    assert env.share(share.id).pin_failures == 0
    assert env.audit("share_pin_failed") == []

    with pytest.raises(SharePinRequired, match="wrong"):
        env.shares.open(token, "Wrong-0000", "10.0.0.9")
    assert env.share(share.id).pin_failures == 1
    assert env.share(share.id).views == 0
    (failed,) = env.audit("share_pin_failed")
    assert failed["ip"] == "10.0.0.9" and failed["outcome"] == "failure"

    opened, _ = env.shares.open(token, PIN, "10.0.0.9")
    assert opened.views == 1 and opened.pin_failures == 1  # the right PIN does not count


def test_pin_locks_after_max_attempts(env: Env) -> None:
    share, token = env.create(pin=PIN)
    for _ in range(PIN_MAX):
        with pytest.raises(SharePinRequired):
            env.shares.open(token, "Wrong-0000", "10.0.0.9")
    assert env.share(share.id).pin_failures == PIN_MAX
    with pytest.raises(ShareGone) as gone:
        env.shares.open(token, PIN, "10.0.0.9")
    assert gone.value.reason == "locked after wrong PINs"
    with pytest.raises(ShareGone, match="locked"):
        env.shares.open(token, None, "10.0.0.9")
    assert env.share(share.id).views == 0
    assert len(env.audit("share_pin_failed")) == PIN_MAX


def test_right_pin_just_before_the_lock_works(env: Env) -> None:
    share, token = env.create(pin=PIN)
    for _ in range(PIN_MAX - 1):
        with pytest.raises(SharePinRequired):
            env.shares.open(token, "Wrong-0000", "10.0.0.9")
    opened, _ = env.shares.open(token, PIN, "10.0.0.9")
    assert opened.views == 1 and opened.pin_failures == PIN_MAX - 1
    opened, _ = env.shares.open(token, PIN, "10.0.0.9")
    assert opened.views == 2
    assert env.share(share.id).pin_failures == PIN_MAX - 1


def test_list_states_and_creators(env: Env) -> None:
    active, _ = env.create(hours=10)
    expired, _ = env.create(hours=1)
    used, used_token = env.create(hours=10, max_views=1)
    revoked, _ = env.create(hours=10)
    bobs, _ = env.create(hours=10, user_id=env.bob)
    env.shares.open(used_token, None, "10.0.0.9")
    env.shares.revoke(revoked.id, None, "admin", "10.0.0.3")
    env.clock.advance(HOUR)

    everything = env.shares.list(None)
    assert [s["id"] for s in everything] == [bobs.id, revoked.id, used.id, expired.id,
                                             active.id]
    states = {s["id"]: s["state"] for s in everything}
    assert states == {active.id: "active", expired.id: "expired", used.id: "used up",
                      revoked.id: "revoked", bobs.id: "active"}
    assert {s["id"]: s["creator"] for s in everything}[bobs.id] == "bob"
    assert [s["id"] for s in env.shares.list(env.bob)] == [bobs.id]
    assert len(env.shares.list(env.alice)) == 4
    assert all("token_hash" not in s and "pin_hash" not in s for s in everything)


def test_only_revocation_clears_remembered_decisions(env: Env) -> None:
    """Share links are checked afresh by their own routes: creating, opening, PIN guesses and
    expiry must not make the filter forget what it remembered of logged-in users."""
    generation = env.db.generation
    share, token = env.create(pin=PIN, hours=1)
    with pytest.raises(SharePinRequired):
        env.shares.open(token, "Wrong-0000", "10.0.0.9")
    env.shares.open(token, PIN, "10.0.0.9")
    env.clock.advance(HOUR)
    with pytest.raises(ShareGone, match="expired"):
        env.shares.open(token, PIN, "10.0.0.9")
    assert env.audit("share_expired") and env.db.generation == generation
    assert env.shares.revoke(share.id, env.alice, "alice", "10.0.0.1")
    assert env.db.generation == generation + 1
