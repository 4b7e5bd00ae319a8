"""Users and their credentials, stored in the plugin database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..db import Database, Row, Transaction

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class UserError(ValueError):
    """A user operation that is not allowed (the message says why)."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    display_name: str
    email: str
    enabled: bool
    pin_hash: str
    must_change_pin: bool
    totp_secret: bytes | None
    totp_pending_secret: bytes | None
    totp_enabled: bool
    totp_last_step: int
    failed_count: int
    locked_until: float
    created_at: float
    last_login_at: float | None
    preferences: dict[str, Any]
    locked_out: bool = False  # failure ceiling reached: only an admin or the CLI unlocks

    @classmethod
    def from_row(cls, row: Row) -> User:
        return cls(row["id"], row["username"], row["role"], row["display_name"], row["email"],
                   bool(row["enabled"]), row["pin_hash"], bool(row["must_change_pin"]),
                   row["totp_secret"], row["totp_pending_secret"], bool(row["totp_enabled"]),
                   row["totp_last_step"], row["failed_count"], row["locked_until"],
                   row["created_at"], row["last_login_at"], json.loads(row["preferences"]),
                   bool(row["locked_out"]))

    def public(self, now: float) -> dict[str, Any]:
        """What may be shown (to the user or an admin): never a secret or a hash."""
        return {"id": self.id, "username": self.username, "role": self.role,
                "display_name": self.display_name, "email": self.email,
                "enabled": self.enabled, "must_change_pin": self.must_change_pin,
                "totp_enabled": self.totp_enabled,
                "locked": self.locked_out or self.locked_until > now,
                "locked_out": self.locked_out,
                "locked_until": self.locked_until if self.locked_until > now else None,
                "created_at": self.created_at, "last_login_at": self.last_login_at,
                "preferences": self.preferences}


def valid_username(name: str) -> bool:
    return USERNAME_RE.fullmatch(name) is not None


class Users:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, user_id: int, tx: Transaction | None = None) -> User | None:
        row = (tx or self._db).one("SELECT * FROM users WHERE id = ?", (user_id,))
        return User.from_row(row) if row else None

    def by_name(self, username: str) -> User | None:
        row = self._db.one("SELECT * FROM users WHERE username = ?", (username,))
        return User.from_row(row) if row else None

    def all(self) -> list[User]:
        return [User.from_row(r) for r in self._db.all("SELECT * FROM users ORDER BY username")]

    def count(self) -> int:
        row = self._db.one("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row else 0

    def create(self, tx: Transaction, *, username: str, role: str, pin_hash: str, now: float,
               display_name: str = "", email: str = "", must_change_pin: bool = True) -> int:
        if tx.one("SELECT 1 FROM users WHERE username = ?", (username,)):
            raise UserError(f"user {username!r} already exists")
        return tx.insert(
            "INSERT INTO users (username, role, display_name, email, pin_hash, must_change_pin,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (username, role, display_name, email, pin_hash, int(must_change_pin), now))

    _COLUMNS = frozenset({"role", "display_name", "email", "enabled", "pin_hash",
                          "must_change_pin", "totp_secret", "totp_pending_secret",
                          "totp_enabled", "totp_last_step", "failed_count", "locked_until",
                          "last_login_at", "preferences"})

    def update(self, tx: Transaction, user_id: int, **values: Any) -> None:
        unknown = set(values) - self._COLUMNS
        if unknown:
            raise KeyError(f"not a user column: {sorted(unknown)}")
        if "preferences" in values:
            values["preferences"] = json.dumps(values["preferences"])
        sets = ", ".join(f"{k} = ?" for k in values)
        tx.execute(f"UPDATE users SET {sets} WHERE id = ?",  # noqa: S608 (column names checked)
                   (*values.values(), user_id))

    def delete(self, tx: Transaction, user_id: int) -> None:
        tx.execute("DELETE FROM users WHERE id = ?", (user_id,))

    def enabled_admins(self, tx: Transaction) -> int:
        row = tx.one("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND enabled = 1")
        return int(row["n"]) if row else 0
