"""Login, second factor, PIN and TOTP management: the flows, with lockout and audit."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..audit import FAILURE, Audit
from ..clock import Clock
from ..db import Database, Transaction
from ..keys import DecryptionError, KeyRing
from . import totp
from .lockout import Locked, Lockout, Throttle
from .pins import PinHasher, check_new_pin
from .sessions import Sessions
from .users import User, Users

BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)
BACKUP_LENGTH = 10  # about 49 bits each


class AuthFailed(Exception):
    """Credentials or code refused; ``status`` and ``message`` are safe to show."""

    def __init__(self, message: str, status: int = 401, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


INVALID_LOGIN = "invalid username or PIN"
INVALID_CODE = "invalid or already used code"


@dataclass(frozen=True)
class LoginResult:
    status: str  # "ok" or "2fa_required"
    raw_session: str
    user: User


class AuthService:
    def __init__(self, db: Database, users: Users, sessions: Sessions, keys: KeyRing,
                 hasher: PinHasher, lockout: Callable[[], Lockout], throttle: Throttle,
                 audit: Audit, clock: Clock, two_factor: Callable[[], dict[str, Any]],
                 pin_rules: dict[str, int]) -> None:
        self._db = db
        self.users = users
        self.sessions = sessions
        self._keys = keys
        self.hasher = hasher
        self._lockout = lockout
        self._throttle = throttle
        self._audit = audit
        self._clock = clock
        self._two_factor = two_factor
        self.pin_rules = pin_rules

    # ---- login ---------------------------------------------------------------------------

    def login(self, username: str, pin: str, ip: str, user_agent: str) -> LoginResult:
        if self._throttle.blocked(ip):
            self._audit.record("login", actor=username, ip=ip, outcome=FAILURE,
                               reason="client throttled")
            raise AuthFailed("too many failed attempts from this address; try again later", 429)
        user = self.users.by_name(username)
        lockout = self._lockout()
        if user is None or not user.enabled or not lockout.reserve(user.id, ip):
            self.hasher.verify_dummy(pin)  # same cost as a real check
            self._throttle.failed(ip)
            reason = ("unknown user" if user is None else
                      "disabled" if not user.enabled else "locked")
            self._audit.record("login", actor=username, ip=ip, outcome=FAILURE, reason=reason)
            raise AuthFailed(INVALID_LOGIN)
        if not self.hasher.verify(pin, user.pin_hash):
            self._failed(user, ip, "wrong PIN")
            raise AuthFailed(INVALID_LOGIN)
        if self.second_factor_due(user):
            lockout.release(user.id, ip)
            with self._db.transaction() as tx:
                raw, _ = self.sessions.create(tx, user.id, pending=True, ip=ip,
                                              user_agent=user_agent)
                self._audit.record("login_pin_accepted", actor=user.username, ip=ip, tx=tx)
            return LoginResult("2fa_required", raw, user)
        return self._complete(user, ip, user_agent, method="pin")

    def second_factor_due(self, user: User) -> bool:
        tf = self._two_factor()
        return bool(tf["enabled"] and user.totp_enabled)

    def verify_second_factor(self, pending_hash: str, user: User, code: str, ip: str,
                             user_agent: str) -> LoginResult:
        lockout = self._lockout()
        if not lockout.reserve(user.id, ip):
            self.sessions.end(pending_hash)
            self._audit.record("login_2fa", actor=user.username, ip=ip, outcome=FAILURE,
                               reason="locked")
            raise AuthFailed(INVALID_CODE)
        method = self._check_code(user, code, ip)
        if method is None:
            if self._failed(user, ip, "wrong second factor", event="login_2fa"):
                self.sessions.end(pending_hash)
            raise AuthFailed(INVALID_CODE)
        self.sessions.end(pending_hash)
        return self._complete(user, ip, user_agent, method=method)

    def _check_code(self, user: User, code: str, ip: str) -> str | None:
        """'totp' or 'backup_code' when ``code`` is accepted (and now used up), else None."""
        allowed = self._two_factor()["allowed_methods"]
        if "totp" in allowed and user.totp_enabled and user.totp_secret:
            step = totp.matching_step(self._secret(user, user.totp_secret), code,
                                      self._clock.now())
            if step is not None:
                with self._db.transaction() as tx:  # a code is accepted once (replay)
                    if tx.execute("UPDATE users SET totp_last_step = ? WHERE id = ?"
                                  " AND totp_last_step < ?", (step, user.id, step)) == 1:
                        return "totp"
                self._audit.record("totp_replay", actor=user.username, ip=ip, outcome=FAILURE)
                return None
        if "backup_codes" in allowed:
            normalized = code.strip().lower().replace("-", "").replace(" ", "")
            with self._db.transaction() as tx:
                used = tx.execute("UPDATE backup_codes SET used_at = ? WHERE user_id = ?"
                                  " AND code_hash = ? AND used_at IS NULL",
                                  (self._clock.now(), user.id,
                                   self._keys.mac("backup-code", normalized)))
                if used == 1:
                    left = self._backup_left(tx, user.id)
                    self._audit.record("backup_code_used", actor=user.username, ip=ip, tx=tx,
                                       remaining=left)
                    return "backup_code"
        return None

    def _failed(self, user: User, ip: str, reason: str, event: str = "login") -> bool:
        self._throttle.failed(ip)
        locked = self._lockout().failed(user.id, ip)
        self._audit.record(event, actor=user.username, ip=ip, outcome=FAILURE, reason=reason)
        if locked is Locked.SOURCE:
            self._audit.record("lockout", actor=user.username, ip=ip, outcome=FAILURE,
                               scope="source", minutes=self._two_factor()[
                                   "lockout_duration_minutes"])
        elif locked is Locked.ACCOUNT:
            self._audit.record("lockout", actor=user.username, ip=ip, outcome=FAILURE,
                               scope="account", until="unlocked by an admin or the CLI")
        return locked is not None

    def _complete(self, user: User, ip: str, user_agent: str, *, method: str) -> LoginResult:
        self._lockout().succeeded(user.id, ip)
        with self._db.transaction() as tx:
            raw, ended = self.sessions.create(tx, user.id, pending=False, ip=ip,
                                              user_agent=user_agent)
            self.users.update(tx, user.id, last_login_at=self._clock.now())
            self._audit.record("login", actor=user.username, ip=ip, tx=tx, method=method)
            if ended:
                self._audit.record("session_ended_by_new_login", actor=user.username, ip=ip,
                                   tx=tx, sessions=ended)
        return LoginResult("ok", raw, user)

    def logout(self, session_hash: str, user: User, ip: str) -> None:
        with self._db.transaction() as tx:
            self.sessions.end(session_hash, tx)
            self._audit.record("logout", actor=user.username, ip=ip, tx=tx)

    # ---- PIN -----------------------------------------------------------------------------

    def check_pin(self, user: User, pin: str, ip: str, field: str = "pin") -> None:
        """Re-authentication for sensitive changes: counts toward the lockout. ``field`` names
        the body field that carried the PIN (for the page to show the error next to it)."""
        lockout = self._lockout()
        if not lockout.reserve(user.id, ip):
            raise AuthFailed("account locked", 403, field)
        if not self.hasher.verify(pin, user.pin_hash):
            self._failed(user, ip, "wrong PIN", event="reauthentication")
            raise AuthFailed("current PIN is wrong", 403, field)
        lockout.release(user.id, ip)

    def validate_new_pin(self, pin: str, username: str, *user_inputs: str) -> None:
        """Length, blocklist, username and a strength estimate; ``user_inputs`` (display
        name, email) are words an attacker would try first."""
        check_new_pin(pin, username=username, min_length=self.pin_rules["min"],
                      max_length=self.pin_rules["max"], min_score=self.pin_rules["score"],
                      user_inputs=user_inputs)

    def change_pin(self, user: User, current: str, new: str, session_hash: str | None,
                   ip: str) -> int:
        """Changes the caller's own PIN; ends their other sessions. Returns how many."""
        self.check_pin(user, current, ip, field="current_pin")
        self.validate_new_pin(new, user.username, user.display_name, user.email)
        if self.hasher.verify(new, user.pin_hash):
            raise AuthFailed("the new PIN must differ from the current one", 400)
        pin_hash = self.hasher.hash(new)
        with self._db.transaction() as tx:
            self.users.update(tx, user.id, pin_hash=pin_hash, must_change_pin=0)
            ended = self.sessions.end_all(tx, user.id, keep=session_hash)
            self._audit.record("pin_changed", actor=user.username, ip=ip, tx=tx,
                               sessions_ended=ended)
        return ended

    # ---- TOTP and backup codes -------------------------------------------------------------

    def _secret(self, user: User, blob: bytes) -> str:
        try:
            return self._keys.decrypt("totp", blob, f"user:{user.id}".encode()).decode()
        except DecryptionError as exc:
            raise AuthFailed("stored TOTP secret cannot be decrypted; ask an admin to reset "
                             "your two-factor enrollment", 409) from exc

    def begin_totp(self, user: User, ip: str) -> dict[str, str]:
        secret = totp.new_secret()
        blob = self._keys.encrypt("totp", secret.encode(), f"user:{user.id}".encode())
        with self._db.transaction() as tx:
            self.users.update(tx, user.id, totp_pending_secret=blob)
            self._audit.record("totp_enrollment_started", actor=user.username, ip=ip, tx=tx)
        uri = totp.provisioning_uri(secret, user.username, self._two_factor()["totp_issuer"])
        png = base64.b64encode(totp.qr_png(uri)).decode()
        return {"secret": secret, "otpauth_uri": uri, "qr_png": f"data:image/png;base64,{png}"}

    def confirm_totp(self, user: User, code: str, ip: str) -> list[str] | None:
        """Completes enrollment with a correct code; returns a first set of backup codes when
        the user had none."""
        if user.totp_pending_secret is None:
            raise AuthFailed("no TOTP enrollment in progress", 409)
        step = totp.matching_step(self._secret(user, user.totp_pending_secret), code,
                                  self._clock.now())
        if step is None:
            self._audit.record("totp_enrolled", actor=user.username, ip=ip, outcome=FAILURE)
            raise AuthFailed("wrong code: check the time on your device", 400)
        with self._db.transaction() as tx:
            self.users.update(tx, user.id, totp_secret=user.totp_pending_secret,
                              totp_pending_secret=None, totp_enabled=1, totp_last_step=step)
            self._audit.record("totp_enrolled", actor=user.username, ip=ip, tx=tx)
            if self._backup_left(tx, user.id) == 0:
                return self._new_backup_codes(tx, user, ip)
        return None

    def regenerate_backup_codes(self, user: User, ip: str) -> list[str]:
        with self._db.transaction() as tx:
            return self._new_backup_codes(tx, user, ip)

    def _new_backup_codes(self, tx: Transaction, user: User, ip: str) -> list[str]:
        count = self._two_factor()["backup_codes_count"]
        codes = ["".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH))
                 for _ in range(count)]
        tx.execute("DELETE FROM backup_codes WHERE user_id = ?", (user.id,))
        for code in codes:
            tx.insert("INSERT INTO backup_codes (user_id, code_hash) VALUES (?, ?)",
                      (user.id, self._keys.mac("backup-code", code)))
        self._audit.record("backup_codes_generated", actor=user.username, ip=ip, tx=tx,
                           count=count)
        return [f"{c[:5]}-{c[5:]}" for c in codes]

    def _backup_left(self, tx: Transaction | Database, user_id: int) -> int:
        row = tx.one("SELECT COUNT(*) AS n FROM backup_codes WHERE user_id = ?"
                     " AND used_at IS NULL", (user_id,))
        return int(row["n"]) if row else 0

    def backup_codes_left(self, user_id: int) -> int:
        return self._backup_left(self._db, user_id)

    def reset_two_factor(self, tx: Transaction, user_id: int) -> None:
        self.users.update(tx, user_id, totp_secret=None, totp_pending_secret=None,
                          totp_enabled=0, totp_last_step=0)
        tx.execute("DELETE FROM backup_codes WHERE user_id = ?", (user_id,))
