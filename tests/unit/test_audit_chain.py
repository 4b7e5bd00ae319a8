"""The audit chain: tampering found at the right row, pruning, encoding, DICOM codes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from attacker import attacker
from orthanc_nas.audit import FAILURE, Audit, AuditQuery, encode, outcome_code
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import SqliteDatabase

KEY = b"k" * 32


def trail(tmp_path: Path, rows: int = 10) -> tuple[Audit, Path, ManualClock]:
    clock = ManualClock()
    db_path = tmp_path / "a.sqlite"
    audit = Audit(SqliteDatabase(db_path), clock, KEY)
    for i in range(rows):
        clock.advance(60)
        audit.record("login", actor=f"user{i}", ip="10.0.0.1", target=f"t{i}", n=i)
    return audit, db_path, clock



def test_an_untouched_chain_verifies(tmp_path: Path) -> None:
    audit, _, _ = trail(tmp_path)
    result = audit.verify(batch=3)  # across batch boundaries too
    assert result.ok and result.rows == 10 and result.head_id == 10


def test_the_database_refuses_update_and_delete(tmp_path: Path) -> None:
    _, db_path, _ = trail(tmp_path)
    conn = sqlite3.connect(db_path)
    for statement in ("UPDATE audit SET actor = 'x' WHERE id = 3", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(("statements", "bad_id"), [
    (["UPDATE audit SET actor = 'mallory' WHERE id = 4"], 4),
    (["UPDATE audit SET details = '{\"n\": 99}' WHERE id = 7"], 7),
    (["UPDATE audit SET outcome = 'failure' WHERE id = 1"], 1),
    (["DELETE FROM audit WHERE id = 5"], 6),
    (["DELETE FROM audit WHERE id IN (2, 3)"], 4),
    (["UPDATE audit SET id = 100 WHERE id = 10"], 100),
])
def test_tampering_is_found_at_the_right_row(tmp_path: Path, statements: list[str],
                                             bad_id: int) -> None:
    audit, db_path, _ = trail(tmp_path)
    attacker(db_path, *statements)
    result = audit.verify()
    assert not result.ok and result.first_bad_id == bad_id, result


def test_a_forged_row_with_a_recomputed_looking_mac_is_found(tmp_path: Path) -> None:
    audit, db_path, _ = trail(tmp_path)
    forged = Audit(SqliteDatabase(db_path), ManualClock(), b"x" * 32)  # without the key file
    attacker(db_path, "DELETE FROM audit WHERE id = 10")
    forged.record("login", actor="mallory", ip="6.6.6.6")
    result = audit.verify()
    assert not result.ok and result.first_bad_id == 10


def test_cutting_the_tail_is_found_through_the_exported_head(tmp_path: Path) -> None:
    audit, db_path, _ = trail(tmp_path)
    exported = audit.head()
    assert exported is not None and exported["id"] == 10
    attacker(db_path, "DELETE FROM audit WHERE id >= 8")
    plain = audit.verify()
    assert plain.ok  # a shorter chain is still a chain...
    checked = audit.check_head(plain, exported)
    assert not checked.ok and checked.first_bad_id == 10  # ...the exported head says otherwise


def test_retention_pruning_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    audit, db_path, clock = trail(tmp_path)
    cutoff = clock.now() - 3 * 60 + 1  # keeps the last three
    removed = audit.prune(cutoff, "system")
    assert removed == 7
    result = audit.verify()
    assert result.ok and result.rows == 4  # three kept plus the audit_pruned row itself
    _, items = audit.search(AuditQuery(event="audit_pruned"))
    assert items[0]["details"]["removed"] == 7
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE id = 9")  # the gate closed again
    conn.close()
    clock.advance(60)
    audit.record("logout", actor="user1", ip="")
    assert audit.verify().ok
    attacker(db_path, "DELETE FROM audit WHERE id = 8")  # the first row after the anchor
    assert audit.verify().first_bad_id == 9


def test_rows_from_before_the_chain_existed_are_tolerated_at_the_start(tmp_path: Path) -> None:
    db_path = tmp_path / "a.sqlite"
    db = SqliteDatabase(db_path)
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO audit (ts, actor, ip, event, outcome) VALUES (1, 'old', '', "
                 "'login', 'success')")
    conn.commit()
    conn.close()
    audit = Audit(db, ManualClock(), KEY)
    audit.record("login", actor="new", ip="")
    assert audit.verify().ok


def test_values_cannot_split_or_forge_lines() -> None:
    assert encode("eve\r\nlogin ok admin\x07") == "eve\\x0d\\x0alogin ok admin\\x07"
    assert encode("a\\b") == "a\\x5cb"  # and escapes stay unambiguous


def test_dicom_vocabulary(tmp_path: Path) -> None:
    audit, _, _ = trail(tmp_path, rows=0)
    audit.record("login", actor="x\nadmin", ip="", outcome=FAILURE)
    audit.record("lockout", actor="x", ip="", outcome=FAILURE)
    audit.record("share_downloaded", actor="share:1", ip="", patient_id="P1", study_uid="1.2")
    _, items = audit.search(AuditQuery())
    by_event = {i["event"]: i for i in items}
    assert by_event["login"]["event_code"] == "110114"
    assert by_event["login"]["outcome_code"] == 4 and by_event["login"]["actor"] == "x\\x0aadmin"
    assert by_event["lockout"]["outcome_code"] == 8
    assert by_event["share_downloaded"]["event_name"] == "Export"
    assert (by_event["share_downloaded"]["patient_id"], by_event["share_downloaded"]["study_uid"]
            ) == ("P1", "1.2")
    assert outcome_code("login", "success") == 0
