"""The audit trail: append-only, HMAC-chained rows in the DICOM PS3.15 A.5 vocabulary.

Each row stores ``mac = HMAC-SHA256(key, previous mac + canonical content)`` with a key file
kept outside the database; the database refuses UPDATE and DELETE (retention pruning, through
a gate it opens itself, is the one exception and leaves an anchor). ``verify`` walks the chain
and names the first row where it breaks; ``head`` is exported regularly so that cutting the
tail is detected too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..db import Database, Row, Transaction

HEAD_FILE = "audit-head.json"  # in the data directory: the last exported chain head
SUCCESS = "success"
FAILURE = "failure"
GENESIS = "0" * 64

# PS3.15 A.5 EventID codes (DCM).
USER_AUTHENTICATION = "110114"
SECURITY_ALERT = "110113"
INSTANCES_ACCESSED = "110103"
BEGIN_TRANSFERRING = "110102"
EXPORT = "110106"
IMPORT = "110107"
STUDY_DELETED = "110105"
APPLICATION_ACTIVITY = "110100"
EVENT_NAMES = {USER_AUTHENTICATION: "User Authentication", SECURITY_ALERT: "Security Alert",
               INSTANCES_ACCESSED: "DICOM Instances Accessed",
               BEGIN_TRANSFERRING: "Begin Transferring DICOM Instances", EXPORT: "Export",
               IMPORT: "Import", STUDY_DELETED: "DICOM Study Deleted",
               APPLICATION_ACTIVITY: "Application Activity"}
EVENT_CODES = {
    **dict.fromkeys(("login", "login_pin_accepted", "login_2fa", "logout", "lockout",
                     "session_ended_by_new_login", "reauthentication", "totp_replay"),
                    USER_AUTHENTICATION),
    **dict.fromkeys(("user_created", "user_updated", "user_deleted", "user_unlocked",
                     "two_factor_reset", "two_factor_config_changed", "security_alert",
                     "nas_config_changed", "ae_owners_changed", "modality_saved",
                     "modality_deleted", "pin_changed", "totp_enrolled",
                     "totp_enrollment_started", "backup_codes_generated", "backup_code_used",
                     "token_created", "token_revoked", "tokens_revoked",
                     "audit_verification_failed", "audit_pruned", "share_created",
                     "share_revoked", "share_expired", "share_pin_failed",
                     "audit_observations_dropped", "backup_key_set", "backup_restored"),
                    SECURITY_ALERT),
    **dict.fromkeys(("share_opened", "instances_accessed"), INSTANCES_ACCESSED),
    **dict.fromkeys(("nas_mirrored", "nas_mirror_failed", "nas_name_taken", "instances_sent",
                     "retrieve_requested"), BEGIN_TRANSFERRING),
    **dict.fromkeys(("share_downloaded", "study_downloaded"), EXPORT),
    **dict.fromkeys(("instance_uploaded", "instances_imported"), IMPORT),
    "study_deleted": STUDY_DELETED,
}
# Outcome indicators: 0 success, 4 minor failure, 8 serious failure, 12 major failure.
SERIOUS = frozenset({"lockout", "audit_verification_failed", "nas_mirror_failed",
                     "audit_observations_dropped", "backup_failed"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def read_head(path: Path) -> dict[str, Any] | None:
    try:
        head: dict[str, Any] = json.loads(path.read_text())
        return head
    except (OSError, ValueError):
        return None


def encode(value: str) -> str:
    """Control characters (CR, LF...) and backslashes escaped: no value can split a line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def outcome_code(event: str, outcome: str) -> int:
    if outcome == SUCCESS:
        return 0
    return 8 if event in SERIOUS else 4


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    event: str | None = None
    outcome: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_id: int | None = None
    head_mac: str | None = None

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "first_bad_id": self.first_bad_id,
                "problem": self.problem, "head": {"id": self.head_id, "mac": self.head_mac}}


COLUMNS = ("id", "ts", "actor", "ip", "event", "outcome", "target", "details", "event_code",
           "outcome_code", "patient_id", "study_uid")


def canonical(row: dict[str, Any] | Row) -> bytes:
    return json.dumps([row[c] for c in COLUMNS], separators=(",", ":"),
                      ensure_ascii=True).encode()


class Audit:
    def __init__(self, db: Database, clock: Clock, key: bytes) -> None:
        self._db = db
        self._clock = clock
        self._key = key

    def _mac(self, prev: str, row: dict[str, Any] | Row) -> str:
        return hmac.new(self._key, prev.encode() + b"\n" + canonical(row),
                        hashlib.sha256).hexdigest()

    def record(self, event: str, *, actor: str, ip: str, outcome: str = SUCCESS,
               target: str = "", tx: Transaction | None = None, patient_id: str = "",
               study_uid: str = "", **details: Any) -> None:
        """Appends one chained row; inside ``tx`` when given, so it commits with the change
        it records."""
        if tx is None:
            with self._db.transaction(invalidates=False) as own:
                self._append(own, event, actor, ip, outcome, target, patient_id, study_uid,
                             details)
        else:
            self._append(tx, event, actor, ip, outcome, target, patient_id, study_uid, details)

    def _append(self, tx: Transaction, event: str, actor: str, ip: str, outcome: str,
                target: str, patient_id: str, study_uid: str, details: dict[str, Any]) -> None:
        last = tx.one("SELECT id, mac FROM audit ORDER BY id DESC LIMIT 1")
        if last is not None:
            row_id, prev = last["id"] + 1, last["mac"] or GENESIS
        else:
            anchor = tx.one("SELECT first_id, prev_mac FROM audit_anchor WHERE id = 1")
            row_id, prev = (anchor["first_id"], anchor["prev_mac"]) if anchor else (1, GENESIS)
        row = {"id": row_id, "ts": self._clock.now(), "actor": encode(actor), "ip": encode(ip),
               "event": event, "outcome": outcome, "target": encode(target),
               "details": json.dumps(details, sort_keys=True, default=str),
               "event_code": EVENT_CODES.get(event, APPLICATION_ACTIVITY),
               "outcome_code": outcome_code(event, outcome), "patient_id": encode(patient_id),
               "study_uid": encode(study_uid)}
        tx.insert(f"INSERT INTO audit ({', '.join(COLUMNS)}, mac)"  # noqa: S608
                  f" VALUES ({', '.join('?' * len(COLUMNS))}, ?)",
                  (*(row[c] for c in COLUMNS), self._mac(prev, row)))

    # ---- verification -------------------------------------------------------------------------

    def verify(self, batch: int = 5000) -> Verification:
        """Walks the chain; names the first row that was altered, inserted or deleted."""
        anchor = self._db.one("SELECT first_id, prev_mac FROM audit_anchor WHERE id = 1")
        expected_id, prev = (anchor["first_id"], anchor["prev_mac"]) if anchor else (None,
                                                                                    GENESIS)
        count, last_id = 0, 0
        while True:
            rows = self._db.all(f"SELECT {', '.join(COLUMNS)}, mac FROM audit"  # noqa: S608
                                f" WHERE id > ? ORDER BY id LIMIT ?", (last_id, batch))
            if not rows:
                break
            for row in rows:
                if row["mac"] is None and count == 0 and anchor is None:
                    # written before the chain existed (schema 7): only at the very start
                    last_id, expected_id = row["id"], row["id"] + 1
                    continue
                if expected_id is not None and row["id"] != expected_id:
                    return Verification(False, count, row["id"],
                                        f"rows {expected_id} to {row['id'] - 1} are missing")
                if row["mac"] is None or not hmac.compare_digest(row["mac"],
                                                                 self._mac(prev, row)):
                    return Verification(False, count, row["id"],
                                        "row altered, or a row was inserted or removed here")
                prev, expected_id, last_id = row["mac"], row["id"] + 1, row["id"]
                count += 1
        return Verification(True, count, head_id=last_id or None,
                            head_mac=prev if count else None)

    def check_head(self, verification: Verification, exported: dict[str, Any] | None
                   ) -> Verification:
        """The exported head (log, file, NAS) must still be in the chain: else the tail
        was cut."""
        if not verification.ok or not exported:
            return verification
        row = self._db.one("SELECT mac FROM audit WHERE id = ?", (exported["id"],))
        if row is None or row["mac"] != exported["mac"]:
            return Verification(False, verification.rows, exported["id"],
                                f"row {exported['id']}, exported as the chain head, is gone "
                                f"or different: the trail was cut", verification.head_id,
                                verification.head_mac)
        return verification

    def head(self) -> dict[str, Any] | None:
        row = self._db.one("SELECT id, mac, ts FROM audit ORDER BY id DESC LIMIT 1")
        return {"id": row["id"], "mac": row["mac"], "ts": row["ts"]} if row else None

    # ---- retention ------------------------------------------------------------------------------

    def prune(self, older_than: float, actor: str) -> int:
        """Deletes rows older than ``older_than`` (the audited exception), keeping an anchor so
        the rest still verifies."""
        with self._db.transaction(invalidates=False) as tx:
            first_kept = tx.one("SELECT id FROM audit WHERE ts >= ? ORDER BY id LIMIT 1",
                                (older_than,))
            if first_kept is None:
                return 0
            last_gone = tx.one("SELECT id, mac FROM audit WHERE id < ? ORDER BY id DESC"
                               " LIMIT 1", (first_kept["id"],))
            if last_gone is None:
                return 0
            tx.execute("UPDATE audit_prune_gate SET below = ? WHERE id = 1",
                       (first_kept["id"],))
            removed = tx.execute("DELETE FROM audit WHERE id < ?", (first_kept["id"],))
            tx.execute("UPDATE audit_prune_gate SET below = 0 WHERE id = 1")
            tx.execute("INSERT INTO audit_anchor VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE"
                       " SET first_id = excluded.first_id, prev_mac = excluded.prev_mac,"
                       " pruned_at = excluded.pruned_at",
                       (first_kept["id"], last_gone["mac"], self._clock.now()))
            self._append(tx, "audit_pruned", actor, "", SUCCESS, "", "", "",
                         {"removed": removed, "first_kept": first_kept["id"],
                          "older_than": older_than})
        return removed

    # ---- reading ------------------------------------------------------------------------------

    def search(self, q: AuditQuery) -> tuple[int, list[dict[str, Any]]]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("actor", q.actor), ("event", q.event), ("outcome", q.outcome),
                              ("patient_id", q.patient_id), ("study_uid", q.study_uid),
                              ("target", q.target)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if q.since is not None:
            where.append("ts >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("ts < ?")
            params.append(q.until)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total_row = self._db.one(f"SELECT COUNT(*) AS n FROM audit{clause}", params)  # noqa: S608
        rows = self._db.all(f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
                            [*params, q.limit, q.offset])
        items = [{"id": r["id"], "ts": r["ts"], "actor": r["actor"], "ip": r["ip"],
                  "event": r["event"], "event_code": r["event_code"],
                  "event_name": EVENT_NAMES.get(r["event_code"], ""),
                  "outcome": r["outcome"], "outcome_code": r["outcome_code"],
                  "target": r["target"], "patient_id": r["patient_id"],
                  "study_uid": r["study_uid"], "details": json.loads(r["details"])}
                 for r in rows]
        return (int(total_row["n"]) if total_row else 0), items
