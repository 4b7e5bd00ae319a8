"""Server-side sessions: 256-bit ids stored as keyed hashes, idle and absolute timeouts."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

from ..clock import Clock
from ..db import Database, Row, Transaction
from ..keys import KeyRing

SESSION_COOKIE = "onas_session"
PENDING_COOKIE = "onas_pending"
# last_seen is written at most this often (seconds): the idle timeout is exact to this much.
TOUCH_INTERVAL = 30.0


@dataclass(frozen=True)
class Session:
    id_hash: str
    user_id: int
    pending: bool
    created_at: float
    last_seen: float
    expires_at: float
    ip: str
    user_agent: str


def _from_row(row: Row) -> Session:
    return Session(row["id_hash"], row["user_id"], bool(row["pending"]), row["created_at"],
                   row["last_seen"], row["expires_at"], row["ip"], row["user_agent"])


class Sessions:
    def __init__(self, db: Database, keys: KeyRing, clock: Clock, *, idle_seconds: float,
                 absolute_seconds: float, pending_seconds: float) -> None:
        self._db = db
        self._keys = keys
        self._clock = clock
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self.pending_ttl = pending_seconds

    def hash(self, raw: str) -> str:
        return self._keys.mac("session", raw)

    def create(self, tx: Transaction, user_id: int, *, pending: bool, ip: str,
               user_agent: str) -> tuple[str, int]:
        """Starts a session; a full one ends every other session of the user (single
        session). Returns the raw id (for the cookie only) and how many sessions it ended."""
        now = self._clock.now()
        raw = secrets.token_urlsafe(32)
        ended = tx.execute("DELETE FROM sessions WHERE user_id = ? AND pending = ?",
                           (user_id, int(pending)))
        ttl = self.pending_ttl if pending else self.absolute
        tx.execute("INSERT INTO sessions (id_hash, user_id, pending, created_at, last_seen,"
                   " expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (self.hash(raw), user_id, int(pending), now, now, now + ttl, ip,
                    user_agent[:200]))
        return raw, ended

    def lookup(self, raw: str | None, *, pending: bool) -> Session | None:
        """The live session with this raw id, or None (expired ones are removed)."""
        if not raw or len(raw) > 100:
            return None
        row = self._db.one("SELECT * FROM sessions WHERE id_hash = ? AND pending = ?",
                           (self.hash(raw), int(pending)))
        if row is None:
            return None
        session = _from_row(row)
        now = self._clock.now()
        if now >= session.expires_at or (not pending and now - session.last_seen >= self.idle):
            self.end(session.id_hash)
            return None
        if not pending and now - session.last_seen >= TOUCH_INTERVAL:
            # Activity only: who may do what is unchanged, so what the gate and the principal
            # cache remember stays (their windows end by last_seen + TOUCH_INTERVAL anyway).
            with self._db.transaction(invalidates=False) as tx:
                if not tx.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?",
                                  (now, session.id_hash)):
                    return None  # ended meanwhile
            session = dataclasses.replace(session, last_seen=now)
        return session

    def end(self, id_hash: str, tx: Transaction | None = None) -> bool:
        if tx is not None:
            return tx.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)) > 0
        with self._db.transaction() as own:
            return own.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)) > 0

    def end_all(self, tx: Transaction, user_id: int, *, keep: str | None = None) -> int:
        return tx.execute("DELETE FROM sessions WHERE user_id = ? AND id_hash IS NOT ?",
                          (user_id, keep))

    def active_for(self, user_id: int) -> list[Session]:
        rows = self._db.all("SELECT * FROM sessions WHERE user_id = ? AND pending = 0",
                            (user_id,))
        return [_from_row(r) for r in rows]
