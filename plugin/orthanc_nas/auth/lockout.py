"""Account lockout per (account, source) with an account-wide ceiling, and the per-IP throttle.

NIST SP 800-63B 5.2.2: failures are limited per account *and* source, so that someone
elsewhere cannot lock a user out. Each (account, source address) pair has its own small
budget (``max_failures`` consecutive failures, then that pair is locked for ``duration``);
the account as a whole has a much higher ceiling (``account_max`` failures within
``account_window``, from all sources together) after which it stays locked until an admin
or the command line unlocks it. A success resets the pair and the account-wide count.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..clock import Clock
from ..db import Database, Transaction


def source_of(ip: str) -> str:
    """The lockout key of a client address: the address itself, or its /64 for IPv6 (one
    host usually holds a whole /64, so single addresses would give it endless budgets)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Locked(Enum):
    """What a failure locked."""

    SOURCE = "source"  # this account, from this source, for ``duration``
    ACCOUNT = "account"  # this account from everywhere, until unlocked


@dataclass(frozen=True)
class LockState:
    """An account's lockout as an admin sees it."""

    locked_out: bool  # the ceiling was reached: needs an admin or the CLI
    locked_sources: int  # sources currently locked for this account
    source_locked_until: float | None  # the latest of those locks

    def public(self) -> dict[str, Any]:
        return {"locked_out": self.locked_out, "locked_sources": self.locked_sources,
                "source_locked_until": self.source_locked_until}


class Lockout:
    """Every PIN or second-factor check first reserves an attempt, on the pair and on the
    account, in one transaction; a reservation that is not released counts as a failure.
    Parallel guesses therefore never exceed either limit."""

    def __init__(self, db: Database, clock: Clock, *, max_failures: int,
                 duration_seconds: float, account_max: int,
                 account_window_seconds: float) -> None:
        self._db = db
        self._clock = clock
        self.max_failures = max_failures
        self.duration = duration_seconds
        self.account_max = account_max
        self.account_window = account_window_seconds

    def reserve(self, user_id: int, ip: str) -> bool:
        """Takes one attempt; False when the pair or the account is locked or out of
        attempts."""
        now, source = self._clock.now(), source_of(ip)
        with self._db.transaction() as tx:
            user = tx.one("SELECT failed_count, failures_since, locked_until, locked_out"
                          " FROM users WHERE id = ?", (user_id,))
            if user is None or user["locked_out"] or user["locked_until"] > now:
                return False
            if (user["failed_count"] >= self.account_max
                    and now - user["failures_since"] < self.account_window):
                tx.execute("UPDATE users SET locked_out = 1 WHERE id = ?", (user_id,))
                return False
            pair = tx.one("SELECT failed_count, locked_until FROM login_failures"
                          " WHERE user_id = ? AND source = ?", (user_id, source))
            if pair is not None:
                if pair["locked_until"] > now:
                    return False
                if pair["failed_count"] >= self.max_failures:
                    # Out of attempts without a lock (limit lowered at run time, or an attempt
                    # that ended in an error): lock now, so it expires like any other.
                    tx.execute("UPDATE login_failures SET locked_until = ?, failed_count = 0"
                               " WHERE user_id = ? AND source = ?",
                               (now + self.duration, user_id, source))
                    return False
            tx.execute(
                "INSERT INTO login_failures (user_id, source, failed_count, locked_until,"
                " last_failure_at) VALUES (?, ?, 1, 0, ?) ON CONFLICT(user_id, source)"
                " DO UPDATE SET failed_count = login_failures.failed_count + 1,"
                " last_failure_at = ?",
                (user_id, source, now, now))
            if now - user["failures_since"] >= self.account_window:  # a new window
                tx.execute("UPDATE users SET failed_count = 1, failures_since = ? WHERE id = ?",
                           (now, user_id))
            else:
                tx.execute("UPDATE users SET failed_count = failed_count + 1 WHERE id = ?",
                           (user_id,))
            return True

    def release(self, user_id: int, ip: str) -> None:
        """The reserved attempt succeeded part-way (PIN right, second factor still due)."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE login_failures SET failed_count = failed_count - 1"
                       " WHERE user_id = ? AND source = ? AND failed_count > 0",
                       (user_id, source_of(ip)))
            tx.execute("UPDATE users SET failed_count = failed_count - 1 WHERE id = ?"
                       " AND failed_count > 0", (user_id,))

    def failed(self, user_id: int, ip: str) -> Locked | None:
        """The reserved attempt failed; locks the account (ceiling reached) or the pair (its
        last attempt), and says which."""
        now = self._clock.now()
        with self._db.transaction() as tx:
            if tx.execute("UPDATE users SET locked_out = 1 WHERE id = ? AND failed_count >= ?"
                          " AND locked_out = 0", (user_id, self.account_max)) == 1:
                return Locked.ACCOUNT
            if tx.execute("UPDATE login_failures SET locked_until = ?, failed_count = 0"
                          " WHERE user_id = ? AND source = ? AND failed_count >= ?",
                          (now + self.duration, user_id, source_of(ip),
                           self.max_failures)) == 1:
                return Locked.SOURCE
        return None

    def succeeded(self, user_id: int, ip: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM login_failures WHERE user_id = ? AND source = ?",
                       (user_id, source_of(ip)))
            tx.execute("UPDATE users SET failed_count = 0 WHERE id = ?", (user_id,))

    def state(self, user_id: int) -> LockState:
        now = self._clock.now()
        user = self._db.one("SELECT locked_out FROM users WHERE id = ?", (user_id,))
        row = self._db.one("SELECT COUNT(*) AS n, MAX(locked_until) AS until"
                           " FROM login_failures WHERE user_id = ? AND locked_until > ?",
                           (user_id, now))
        n = int(row["n"]) if row else 0
        return LockState(bool(user and user["locked_out"]), n,
                         float(row["until"]) if row and n else None)

    def prune(self, older_than_seconds: float = 86400.0) -> int:
        """Forgets pairs with no failure for a while and no lock (bounded storage)."""
        now = self._clock.now()
        with self._db.transaction(invalidates=False) as tx:
            return tx.execute("DELETE FROM login_failures WHERE last_failure_at < ?"
                              " AND locked_until <= ?", (now - older_than_seconds, now))


def unlock(tx: Transaction, user_id: int) -> None:
    """Lifts every lock of an account, from every source (admin page, command line)."""
    tx.execute("DELETE FROM login_failures WHERE user_id = ?", (user_id,))
    tx.execute("UPDATE users SET failed_count = 0, locked_until = 0, locked_out = 0"
               " WHERE id = ?", (user_id,))


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
                " count = CASE WHEN ? - throttle.window_start >= ? THEN 1"
                " ELSE throttle.count + 1 END, window_start = CASE WHEN"
                " ? - throttle.window_start >= ? THEN ? ELSE throttle.window_start END",
                (key, now, now, self.window, now, self.window, now))
