"""Two replicas on one database (two handles, as two Orthanc processes open it), racing from
threads: share views, the audit chain and the mirror queue stay exact on both backends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orthanc_nas.audit import Audit
from orthanc_nas.auth.pins import PinHasher
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database, SqliteDatabase
from orthanc_nas.images.shares import ShareGone, ShareLimits, Shares
from orthanc_nas.keys import KeyRing
from orthanc_nas.mirror.outbox import Outbox

from .conftest import MakeDb

KEY = b"k" * 32
STUDY = "1" * 8 + ("-" + "1" * 8) * 4


def shares_on(db: Database, clock: ManualClock) -> Shares:
    return Shares(db, KeyRing(KEY), clock, Audit(db, clock, KEY), PinHasher(4),
                  pin_max_attempts=5, view_seconds=600, limits=ShareLimits(72, 720, 3, 50))


def test_with_one_view_left_one_of_twenty_openings_over_two_replicas_succeeds(
        make_db: MakeDb) -> None:
    clock = ManualClock()
    db_a, db_b = make_db(), make_db()
    with db_a.transaction() as tx:
        alice = tx.insert("INSERT INTO users (username, role, pin_hash, created_at)"
                          " VALUES ('alice', 'user', 'x', 0)")
    a, b = shares_on(db_a, clock), shares_on(db_b, clock)
    share, token = a.create(level="study", resource_id=STUDY, study_id=STUDY, user_id=alice,
                            actor="admin", ip="10.0.0.1", expires_in_hours=1, max_views=2,
                            pin=None, allow_download=False)
    a.open(token, None, "10.0.0.2")  # one view left

    def attempt(i: int) -> bool:
        try:
            (a if i % 2 else b).open(token, None, f"10.0.1.{i}")
            return True
        except ShareGone:
            return False

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count(True) == 1
    fresh = b.get(share.id)
    assert fresh is not None and fresh.views == 2


def test_both_replicas_append_to_one_chain_that_verifies(make_db: MakeDb) -> None:
    clock = ManualClock()
    audits = [Audit(make_db(), clock, KEY), Audit(make_db(), clock, KEY)]

    def record(i: int) -> None:
        audits[i % 2].record("login", actor=f"replica{i % 2}", ip="10.0.0.1", n=i)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(80)))
    result = audits[0].verify()
    assert result.ok and result.rows == 80, result
    db = make_db()
    actors = {r["actor"] for r in db.all("SELECT actor FROM audit")}
    assert actors == {"replica0", "replica1"}


def test_each_queued_instance_is_claimed_by_one_worker_and_an_expired_claim_moves(
        make_db: MakeDb, tmp_path: Path) -> None:
    clock = ManualClock()
    dead, b, c = (Outbox(make_db(), tmp_path / f"spool-{n}", clock, claim_seconds=60)
                  for n in "abc")
    ids = [f"inst-{i:03}" for i in range(200)]
    dead.enqueue_missing(ids, "reconcile")
    held = [item.instance_id for item in dead.due(7)]  # then killed -9 mid-batch

    def work(outbox: Outbox) -> list[str]:
        got: list[str] = []
        while batch := outbox.due(7):
            got += [item.instance_id for item in batch]
            for item in batch:
                outbox.done(item, f"nas/{item.instance_id}.dcm")
        return got

    with ThreadPoolExecutor(2) as pool:
        got_b, got_c = pool.map(work, [b, c])
    assert sorted(held + got_b + got_c) == ids  # every one claimed once, none twice
    assert b.due(100) == []  # what the dead worker holds waits for its claims to expire
    clock.advance(61)
    taken = c.due(100)
    assert sorted(i.instance_id for i in taken) == sorted(held)
    for item in taken:
        c.done(item, f"nas/{item.instance_id}.dcm")
    assert c.counts()["pending"] == 0 and c.counts()["mirrored"] == 200


def test_a_restarted_worker_takes_its_own_claims_back_at_once(tmp_path: Path) -> None:
    """A worker re-executed after a settings change (or restarted) is the same replica: what
    its earlier process claimed is due again for it at once, not after the claim expires
    (the mirror stalled for the claim's length after each NAS settings change)."""
    clock = ManualClock()
    db = SqliteDatabase(tmp_path / "db.sqlite")
    first = Outbox(db, tmp_path / "spool", clock, claim_seconds=120)
    first.record_stored_many([("i1", b"x")])
    assert [i.instance_id for i in first.due(10)] == ["i1"]
    again = Outbox(db, tmp_path / "spool", clock, claim_seconds=120)  # the same replica
    assert [i.instance_id for i in again.due(10)] == ["i1"]
    other = Outbox(db, tmp_path / "spool-elsewhere", clock, claim_seconds=120)
    assert other.due(10) == []  # another replica waits for the claim to expire
