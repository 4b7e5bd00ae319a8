"""Account lockout (atomic attempt reservation) and the per-client-IP throttle."""

from __future__ import annotations

from ..clock import Clock
from ..db import Database


class Lockout:
    """Every PIN or second-factor check first reserves an attempt; a reservation that is not
    released counts as a failure. Parallel guesses therefore never exceed the limit."""

    def __init__(self, db: Database, clock: Clock, *, max_failures: int,
                 duration_seconds: float) -> None:
        self._db = db
        self._clock = clock
        self.max_failures = max_failures
        self.duration = duration_seconds

    def reserve(self, user_id: int) -> bool:
        """Takes one attempt; False when the account is locked or out of attempts."""
        now = self._clock.now()
        with self._db.transaction() as tx:
            # Out of attempts without a lock (limit lowered at run time, or an attempt that
            # ended in an error): lock now, so the lock expires like any other.
            tx.execute("UPDATE users SET locked_until = ?, failed_count = 0"
                       " WHERE id = ? AND locked_until <= ? AND failed_count >= ?",
                       (now + self.duration, user_id, now, self.max_failures))
            return tx.execute(
                "UPDATE users SET failed_count = failed_count + 1"
                " WHERE id = ? AND locked_until <= ? AND failed_count < ?",
                (user_id, now, self.max_failures)) == 1

    def release(self, user_id: int) -> None:
        """The reserved attempt succeeded part-way (PIN right, second factor still due)."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE users SET failed_count = MAX(failed_count - 1, 0) WHERE id = ?",
                       (user_id,))

    def failed(self, user_id: int) -> bool:
        """The reserved attempt failed; locks the account when it was the last. True if locked."""
        now = self._clock.now()
        with self._db.transaction() as tx:
            return tx.execute(
                "UPDATE users SET locked_until = ?, failed_count = 0"
                " WHERE id = ? AND failed_count >= ?",
                (now + self.duration, user_id, self.max_failures)) == 1

    def succeeded(self, user_id: int) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE users SET failed_count = 0 WHERE id = ?", (user_id,))

    def unlock(self, user_id: int) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE users SET failed_count = 0, locked_until = 0 WHERE id = ?",
                       (user_id,))


class Throttle:
    """Counts failures per key (a client IP) in a fixed window."""

    def __init__(self, db: Database, clock: Clock, *, max_failures: int,
                 window_seconds: float) -> None:
        self._db = db
        self._clock = clock
        self.max_failures = max_failures
        self.window = window_seconds

    def blocked(self, key: str) -> bool:
        row = self._db.one("SELECT window_start, count FROM throttle WHERE key = ?", (key,))
        return (row is not None and row["count"] >= self.max_failures
                and self._clock.now() - row["window_start"] < self.window)

    def failed(self, key: str) -> None:
        now = self._clock.now()
        # Read afresh at each login only: nothing remembered depends on it, and a stranger's
        # wrong PINs must not clear everyone's remembered decisions.
        with self._db.transaction(invalidates=False) as tx:
            tx.execute(
                "INSERT INTO throttle (key, window_start, count) VALUES (?, ?, 1)"
                " ON CONFLICT(key) DO UPDATE SET"
                " count = CASE WHEN ? - window_start >= ? THEN 1 ELSE count + 1 END,"
                " window_start = CASE WHEN ? - window_start >= ? THEN ? ELSE window_start END",
                (key, now, now, self.window, now, self.window, now))
