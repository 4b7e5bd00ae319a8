"""Run-time settings set by admins; they override orthanc.json until cleared."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .clock import Clock
from .db import Database, Transaction


class Settings:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        if key not in self._cache:
            row = self._db.one("SELECT value FROM settings WHERE key = ?", (key,))
            self._cache[key] = json.loads(row["value"]) if row else None
        return self._cache[key]

    def effective(self, key: str, base: Mapping[str, Any], *, merge: bool = True
                  ) -> dict[str, Any]:
        """``base`` (from orthanc.json) as admins changed it at run time: key by key
        (``merge``), or replaced whole once saved (a mapping edited as one list)."""
        saved = self.get(key)
        if saved is None:
            return dict(base)
        return {**base, **saved} if merge else dict(saved)

    def put(self, tx: Transaction, key: str, value: Any, actor: str) -> None:
        tx.execute("INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
                   " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                   (key, json.dumps(value), self._clock.now(), actor))
        self._cache.pop(key, None)

    def meta(self, key: str) -> dict[str, Any] | None:
        row = self._db.one("SELECT updated_at, updated_by FROM settings WHERE key = ?", (key,))
        return dict(row) if row else None
