"""Append-only audit trail (the database refuses UPDATE and DELETE on it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .db import Database, Transaction

SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    event: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    offset: int = 0


class Audit:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def record(self, event: str, *, actor: str, ip: str, outcome: str = SUCCESS,
               target: str = "", tx: Transaction | None = None, **details: Any) -> None:
        """Appends one row; inside ``tx`` when given, so it commits with the change it records."""
        row = (self._clock.now(), actor, ip, event, outcome, target,
               json.dumps(details, sort_keys=True, default=str))
        sql = ("INSERT INTO audit (ts, actor, ip, event, outcome, target, details) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
        if tx is not None:
            tx.insert(sql, row)
        else:
            with self._db.transaction(invalidates=False) as own:
                own.insert(sql, row)

    def search(self, q: AuditQuery) -> tuple[int, list[dict[str, Any]]]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("actor", q.actor), ("event", q.event), ("outcome", q.outcome)):
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
                  "event": r["event"], "outcome": r["outcome"], "target": r["target"],
                  "details": json.loads(r["details"])} for r in rows]
        return (int(total_row["n"]) if total_row else 0), items
