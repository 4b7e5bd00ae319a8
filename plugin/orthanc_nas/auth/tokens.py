"""Personal API tokens: 256 random bits, stored as keyed hashes, always expiring.

No token lives longer than ``max_days`` after its creation, whatever its stored expiry says:
tokens stored before lifetimes were capped (no expiry) end ``max_days`` after they were made,
and lowering the setting shortens every token at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..db import Database, Transaction
from ..keys import KeyRing

PREFIX = "onat_"
# last_used_at is written at most this often (seconds).
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class TokenOwner:
    token_id: int
    user_id: int
    expires_at: float


DAY = 86400.0


class Tokens:
    def __init__(self, db: Database, keys: KeyRing, clock: Clock, *, max_days: int) -> None:
        self._db = db
        self._keys = keys
        self._clock = clock
        self.max_days = max_days

    def _expiry(self, created_at: float, expires_at: float | None) -> float:
        """When a token really ends: its own expiry, capped at max_days after creation."""
        cap = created_at + self.max_days * DAY
        return cap if expires_at is None else min(expires_at, cap)

    def _hash(self, raw: str) -> str:
        return self._keys.mac("api-token", raw)

    def create(self, tx: Transaction, user_id: int, name: str,
               expires_at: float) -> tuple[int, str]:
        raw = PREFIX + secrets.token_urlsafe(32)
        token_id = tx.insert("INSERT INTO api_tokens (user_id, name, token_hash, created_at,"
                             " expires_at) VALUES (?, ?, ?, ?, ?)",
                             (user_id, name, self._hash(raw), self._clock.now(), expires_at))
        return token_id, raw

    def lookup(self, raw: str) -> TokenOwner | None:
        if not raw.startswith(PREFIX) or len(raw) > 100:
            return None
        row = self._db.one("SELECT id, user_id, created_at, expires_at, last_used_at"
                           " FROM api_tokens WHERE token_hash = ?", (self._hash(raw),))
        now = self._clock.now()
        if row is None:
            return None
        expires_at = self._expiry(row["created_at"], row["expires_at"])
        if now >= expires_at:
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] >= TOUCH_INTERVAL:
            with self._db.transaction(invalidates=False) as tx:  # bookkeeping, not access
                tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
        return TokenOwner(row["id"], row["user_id"], expires_at)

    def list_for(self, user_id: int) -> list[dict[str, Any]]:
        """A user's tokens as they may be shown (to them or an admin): never the hash."""
        now = self._clock.now()
        rows = self._db.all("SELECT id, name, created_at, expires_at, last_used_at"
                            " FROM api_tokens WHERE user_id = ? ORDER BY id", (user_id,))
        out = []
        for r in rows:
            expires_at = self._expiry(r["created_at"], r["expires_at"])
            out.append({**dict(r), "expires_at": expires_at, "expired": now >= expires_at})
        return out

    def revoke(self, tx: Transaction, user_id: int, token_id: int) -> bool:
        return tx.execute("DELETE FROM api_tokens WHERE id = ? AND user_id = ?",
                          (token_id, user_id)) > 0

    def revoke_all(self, tx: Transaction, user_id: int) -> int:
        """Ends every token of a user (disabled, PIN or 2FA reset, deleted); how many."""
        return tx.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))
