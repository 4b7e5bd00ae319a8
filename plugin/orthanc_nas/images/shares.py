"""Share links for outside doctors: 256-bit tokens stored as hashes, expiry, view limits,
optional PIN, atomic view counting, and short-lived viewing sessions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..audit import FAILURE, Audit
from ..auth.pins import PinHasher
from ..clock import Clock
from ..db import Database, Row, Transaction
from ..keys import KeyRing
from .catalog import Resource

TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)
VIEW_COOKIE = "onas_share_view"
# A share that can still be opened (the parameter: now).
LIVE = "revoked_at IS NULL AND expires_at > ? AND views < max_views"


class ShareGone(Exception):
    """Expired, revoked or used up (410); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShareUnknown(LookupError):
    """No such link (404)."""


class SharePinRequired(PermissionError):
    """The link needs its PIN, or the PIN given is wrong."""


MIN_EXPIRY_HOURS = 1 / 60  # a link for the length of a phone call


class ShareRejected(ValueError):
    """A link asked for beyond the limits of orthanc.json; ``field`` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ShareLimits:
    """orthanc.json's ``shares`` section: what a new link may ask for, and its defaults."""

    default_expiry_hours: int
    max_expiry_hours: int
    default_max_views: int
    max_views: int


@dataclass(frozen=True)
class Share:
    id: int
    level: str
    resource_id: str
    study_id: str
    created_by: int | None
    created_at: float
    expires_at: float
    max_views: int
    views: int
    has_pin: bool
    pin_failures: int
    allow_download: bool
    revoked_at: float | None

    @property
    def resource(self) -> Resource:
        return Resource(self.level, self.resource_id, self.study_id)

    @classmethod
    def from_row(cls, row: Row) -> Share:
        return cls(row["id"], row["level"], row["resource_id"], row["study_id"],
                   row["created_by"], row["created_at"], row["expires_at"], row["max_views"],
                   row["views"], row["pin_hash"] is not None, row["pin_failures"],
                   bool(row["allow_download"]), row["revoked_at"])

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "level": self.level, "resource_id": self.resource_id,
                "study_id": self.study_id, "created_at": self.created_at,
                "expires_at": self.expires_at, "max_views": self.max_views, "views": self.views,
                "has_pin": self.has_pin, "allow_download": self.allow_download,
                "revoked_at": self.revoked_at}


class Shares:
    def __init__(self, db: Database, keys: KeyRing, clock: Clock, audit: Audit,
                 hasher: PinHasher, *, pin_max_attempts: int, view_seconds: float,
                 limits: ShareLimits) -> None:
        self.limits = limits
        self._db = db
        self._keys = keys
        self._clock = clock
        self._audit = audit
        self._hasher = hasher
        self.pin_max_attempts = pin_max_attempts
        self.view_seconds = view_seconds

    def _hash(self, token: str) -> str:
        return self._keys.mac("share-link", token)

    def create(self, *, level: str, resource_id: str, study_id: str, user_id: int,
               actor: str, ip: str, expires_in_hours: float | None, max_views: int | None,
               pin: str | None, allow_download: bool) -> tuple[Share, str]:
        """A new link; ``ShareRejected`` when it asks for more than the limits allow (None:
        the default)."""
        limits = self.limits
        if expires_in_hours is None:
            expires_in_hours = limits.default_expiry_hours
        if not MIN_EXPIRY_HOURS <= expires_in_hours <= limits.max_expiry_hours:
            raise ShareRejected("expires_in_hours", "field expires_in_hours must be from 1 "
                                f"minute to {limits.max_expiry_hours} hours")
        if max_views is None:
            max_views = limits.default_max_views
        if not 1 <= max_views <= limits.max_views:
            raise ShareRejected("max_views", f"field max_views must be from 1 to "
                                f"{limits.max_views}")
        if pin is not None and len(pin) < 4:
            raise ShareRejected("pin", "field pin must have at least 4 characters")
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        pin_hash = self._hasher.hash(pin) if pin else None
        # Share links are checked afresh by their own routes, never remembered: only their
        # revocation clears remembered decisions (kept for safety).
        with self._db.transaction(invalidates=False) as tx:
            share_id = tx.insert(
                "INSERT INTO shares (token_hash, level, resource_id, study_id, created_by,"
                " created_at, expires_at, max_views, pin_hash, allow_download)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._hash(token), level, resource_id, study_id, user_id, now,
                 now + expires_in_hours * 3600, max_views, pin_hash, int(allow_download)))
            self._audit.record("share_created", actor=actor, ip=ip, tx=tx, target=study_id,
                               share=share_id, level=level, max_views=max_views,
                               expires_in_hours=expires_in_hours, pin=pin is not None,
                               allow_download=allow_download)
        share = self.get(share_id)
        assert share is not None
        return share, token

    def get(self, share_id: int) -> Share | None:
        row = self._db.one("SELECT * FROM shares WHERE id = ?", (share_id,))
        return Share.from_row(row) if row else None

    def by_token(self, token: str) -> Share:
        """The link's share if it can still be opened; ShareUnknown or ShareGone otherwise."""
        if len(token) != TOKEN_LENGTH:
            raise ShareUnknown(token[:8])
        row = self._db.one("SELECT * FROM shares WHERE token_hash = ?", (self._hash(token),))
        if row is None:
            raise ShareUnknown(token[:8])
        share = Share.from_row(row)
        self._check_alive(share)
        return share

    def _check_alive(self, share: Share) -> None:
        if share.revoked_at is not None:
            raise ShareGone("revoked")
        if self._clock.now() >= share.expires_at:
            with self._db.transaction(invalidates=False) as tx:
                if tx.execute("UPDATE shares SET expiry_audited = 1 WHERE id = ?"
                              " AND expiry_audited = 0", (share.id,)):
                    self._audit.record("share_expired", actor=f"share:{share.id}", ip="",
                                       tx=tx, target=share.study_id, share=share.id)
            raise ShareGone("expired")
        if share.views >= share.max_views:
            raise ShareGone("used up")
        if share.has_pin and share.pin_failures >= self.pin_max_attempts:
            raise ShareGone("locked after wrong PINs")

    def open(self, token: str, pin: str | None, ip: str) -> tuple[Share, str]:
        """Counts one view (atomically: with one left, one opening of many gets through) and
        starts a viewing session; returns the share and the viewing cookie's raw value."""
        share = self.by_token(token)
        if share.has_pin:
            self._check_pin(share, pin, ip)
        now = self._clock.now()
        raw = secrets.token_urlsafe(32)
        with self._db.transaction(invalidates=False) as tx:
            counted = tx.execute(
                f"UPDATE shares SET views = views + 1, last_opened_at = ? WHERE id = ?"  # noqa: S608
                f" AND {LIVE}",
                (now, share.id, now))
            if counted != 1:
                raise ShareGone("used up")
            tx.insert("INSERT INTO share_views (share_id, view_hash, opened_at, expires_at, ip)"
                      " VALUES (?, ?, ?, ?, ?)",
                      (share.id, self._keys.mac("share-view", raw), now,
                       min(now + self.view_seconds, share.expires_at), ip))
            self._audit.record("share_opened", actor=f"share:{share.id}", ip=ip, tx=tx,
                               target=share.study_id, share=share.id, view=share.views + 1)
        fresh = self.get(share.id)
        assert fresh is not None
        return fresh, raw

    def _check_pin(self, share: Share, pin: str | None, ip: str) -> None:
        if not pin:
            raise SharePinRequired("PIN required")
        # Reserve an attempt: parallel guesses stay bounded.
        with self._db.transaction(invalidates=False) as tx:
            if not tx.execute("UPDATE shares SET pin_failures = pin_failures + 1 WHERE id = ?"
                              " AND pin_failures < ?", (share.id, self.pin_max_attempts)):
                raise ShareGone("locked after wrong PINs")
        row = self._db.one("SELECT pin_hash FROM shares WHERE id = ?", (share.id,))
        if row is not None and self._hasher.verify(pin, row["pin_hash"]):
            with self._db.transaction(invalidates=False) as tx:
                tx.execute("UPDATE shares SET pin_failures = pin_failures - 1 WHERE id = ?",
                           (share.id,))
            return
        self._audit.record("share_pin_failed", actor=f"share:{share.id}", ip=ip,
                           outcome=FAILURE, target=share.study_id, share=share.id)
        raise SharePinRequired("wrong PIN")

    def viewing(self, token: str, raw_view: str | None) -> Share:
        """The share behind a viewing session (the link itself may be used up by now)."""
        if not raw_view or len(token) != TOKEN_LENGTH:
            raise ShareUnknown("no viewing session")
        row = self._db.one(
            "SELECT s.* FROM share_views v JOIN shares s ON s.id = v.share_id"
            " WHERE v.view_hash = ? AND s.token_hash = ? AND v.expires_at > ?"
            " AND s.revoked_at IS NULL AND s.expires_at > ?",
            (self._keys.mac("share-view", raw_view), self._hash(token), self._clock.now(),
             self._clock.now()))
        if row is None:
            raise ShareUnknown("no viewing session")
        return Share.from_row(row)

    def list(self, user_id: int | None) -> list[dict[str, Any]]:
        where, params = ("WHERE created_by = ?", (user_id,)) if user_id is not None else ("", ())
        rows = self._db.all(f"SELECT s.*, u.username AS creator FROM shares s LEFT JOIN users u"  # noqa: S608
                            f" ON u.id = s.created_by {where} ORDER BY s.id DESC", params)
        now = self._clock.now()
        out = []
        for r in rows:
            share = Share.from_row(r)
            state = ("revoked" if share.revoked_at else "expired" if now >= share.expires_at
                     else "used up" if share.views >= share.max_views else "active")
            out.append({**share.public(), "creator": r["creator"], "state": state})
        return out

    def revoke(self, share_id: int, user_id: int | None, actor: str, ip: str) -> bool:
        """Revokes a share (``user_id`` None: an admin may revoke any)."""
        with self._db.transaction() as tx:
            changed = tx.execute(
                "UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                " AND (CAST(? AS BIGINT) IS NULL OR created_by = ?)",
                (self._clock.now(), share_id, user_id, user_id))
            if changed:
                self._audit.record("share_revoked", actor=actor, ip=ip, tx=tx, share=share_id)
        return changed == 1

    def revoke_all_of(self, tx: Transaction, user_id: int, actor: str, ip: str,
                      reason: str) -> int:
        """Revokes every live share ``user_id`` created (their account was disabled, deleted
        or may no longer share): a link never outlives its creator's right to give it."""
        now = self._clock.now()
        ids = [r["id"] for r in tx.all(
            f"SELECT id FROM shares WHERE created_by = ? AND {LIVE}", (user_id, now))]  # noqa: S608
        for share_id in ids:
            tx.execute("UPDATE shares SET revoked_at = ? WHERE id = ?", (now, share_id))
            self._audit.record("share_revoked", actor=actor, ip=ip, tx=tx, share=share_id,
                               reason=reason)
        return len(ids)
