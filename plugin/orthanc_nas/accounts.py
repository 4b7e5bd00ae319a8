"""User administration and one's own profile: the rules, apart from HTTP.

What ends with an account's rights ends in the same transaction as the change: sessions,
API tokens and share links; and at least one enabled admin always remains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import config
from .audit import Audit
from .auth import lockout
from .auth.lockout import Lockout
from .auth.service import AuthService
from .auth.sessions import Sessions
from .auth.tokens import Tokens
from .auth.users import User, UserError, Users, valid_username
from .clock import Clock
from .db import Database, Transaction
from .images.shares import Shares

PROFILE_FIELDS = (("display_name", 100), ("email", 200))


class AccountError(Exception):
    """A change refused: ``status`` 400 (bad value), 404 (no such user) or 409 (conflict)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class UserChange:
    """What an admin asks to change of a user; None: unchanged."""

    role: str | None = None
    enabled: bool | None = None
    display_name: str | None = None
    email: str | None = None
    pin: str | None = None
    unlock: bool = False
    reset_2fa: bool = False


class Accounts:
    def __init__(self, db: Database, users: Users, sessions: Sessions, tokens: Tokens,
                 shares: Shares, auth: AuthService, audit: Audit, clock: Clock,
                 lockout_now: Callable[[], Lockout]) -> None:
        self._db = db
        self._users = users
        self._sessions = sessions
        self._tokens = tokens
        self._shares = shares
        self._auth = auth
        self._audit = audit
        self._clock = clock
        self._lockout = lockout_now

    def get(self, user_id: int) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise AccountError(404, "no such user")
        return user

    def listing(self) -> list[dict[str, Any]]:
        """Every user as admins see them, with their lockout state."""
        now = self._clock.now()
        locks = self._lockout()
        shown = []
        for user in self._users.all():
            state = locks.state(user.id)
            row = {**user.public(now), **state.public()}
            row["locked"] = row["locked"] or state.locked_sources > 0
            shown.append(row)
        return shown

    def create(self, admin: str, ip: str, *, username: str, role: str, pin: str,
               display_name: str = "", email: str = "") -> User:
        if not valid_username(username):
            raise AccountError(400, "field username: letters, digits and . _ @ - (1 to 64)",
                               "username")
        _check_role(role)
        self._auth.validate_new_pin(pin, username, display_name, email)
        pin_hash = self._auth.hasher.hash(pin)
        with self._db.transaction() as tx:
            try:
                user_id = self._users.create(
                    tx, username=username, role=role, pin_hash=pin_hash, now=self._clock.now(),
                    display_name=display_name, email=email, must_change_pin=True)
            except UserError as exc:
                raise AccountError(409, str(exc), "username") from exc
            self._audit.record("user_created", actor=admin, ip=ip, tx=tx, target=username,
                               role=role)
        return self.get(user_id)

    def update(self, admin: str, ip: str, user_id: int, change: UserChange) -> User:
        target = self.get(user_id)
        changes: dict[str, Any] = {}
        if change.role is not None:
            _check_role(change.role)
            changes["role"] = change.role
        if change.enabled is not None:
            changes["enabled"] = int(change.enabled)
        for name, _ in PROFILE_FIELDS:
            if getattr(change, name) is not None:
                changes[name] = getattr(change, name)
        if change.pin is not None:
            self._auth.validate_new_pin(change.pin, target.username,
                                        changes.get("display_name", target.display_name),
                                        changes.get("email", target.email))
            changes["pin_hash"] = self._auth.hasher.hash(change.pin)
            changes["must_change_pin"] = 1
        if not changes and not change.unlock and not change.reset_2fa:
            raise AccountError(400, "nothing to change")
        with self._db.transaction() as tx:
            if changes:
                self._users.update(tx, target.id, **changes)
            if change.unlock:
                lockout.unlock(tx, target.id)
            if change.reset_2fa:
                self._auth.reset_two_factor(tx, target.id)
            self._keep_an_admin(tx)
            ended = 0
            if {"role", "enabled", "pin_hash"} & set(changes) or change.reset_2fa:
                ended = self._sessions.end_all(tx, target.id)
            disabled = changes.get("enabled") == 0
            reasons = [reason for reason, done in (("account disabled", disabled),
                                                   ("PIN reset", "pin_hash" in changes),
                                                   ("two-factor reset", change.reset_2fa))
                       if done]
            if reasons:
                self.revoke_tokens(tx, target, admin, ip, reasons)
            if disabled or changes.get("role") == "viewer":
                self._shares.revoke_all_of(tx, target.id, admin, ip,
                                           "account disabled" if disabled else "role viewer")
            fields = sorted(set(changes) - {"pin_hash"} | ({"pin"} if change.pin else set()))
            if fields:
                self._audit.record("user_updated", actor=admin, ip=ip, tx=tx,
                                   target=target.username, fields=fields, sessions_ended=ended,
                                   **{k: v for k, v in changes.items()
                                      if k in ("role", "enabled")})
            if change.unlock:
                self._audit.record("user_unlocked", actor=admin, ip=ip, tx=tx,
                                   target=target.username)
            if change.reset_2fa:
                self._audit.record("two_factor_reset", actor=admin, ip=ip, tx=tx,
                                   target=target.username)
        return self.get(target.id)

    def delete(self, admin: User, ip: str, user_id: int) -> None:
        target = self.get(user_id)
        if target.id == admin.id:
            raise AccountError(409, "you cannot delete your own account")
        with self._db.transaction() as tx:
            self._shares.revoke_all_of(tx, target.id, admin.username, ip, "account deleted")
            self.revoke_tokens(tx, target, admin.username, ip, ["account deleted"])
            self._users.delete(tx, target.id)
            self._keep_an_admin(tx)
            self._audit.record("user_deleted", actor=admin.username, ip=ip, tx=tx,
                               target=target.username)

    def revoke_tokens(self, tx: Transaction, user: User, actor: str, ip: str,
                      reasons: list[str]) -> int:
        """Ends every API token of ``user``: a token must not outlive what ended the owner's
        right to it (account disabled or deleted, PIN or second factor reset by an admin)."""
        count = self._tokens.revoke_all(tx, user.id)
        if count:
            self._audit.record("tokens_revoked", actor=actor, ip=ip, tx=tx,
                               target=user.username, count=count, reason=", ".join(reasons))
        return count

    def revoke_token(self, actor: str, ip: str, user: User, token_id: int, *,
                     by_admin: bool) -> None:
        with self._db.transaction() as tx:
            if not self._tokens.revoke(tx, user.id, token_id):
                raise AccountError(404, "no such token")
            if by_admin:
                self._audit.record("token_revoked", actor=actor, ip=ip, tx=tx,
                                   target=user.username, token=token_id, by="admin")
            else:
                self._audit.record("token_revoked", actor=actor, ip=ip, tx=tx,
                                   target=str(token_id))

    def update_profile(self, user: User, ip: str, changes: dict[str, Any]) -> None:
        """One's own display name, email and preferences (already checked)."""
        if not changes:
            return
        with self._db.transaction() as tx:
            self._users.update(tx, user.id, **changes)
            self._audit.record("profile_updated", actor=user.username, ip=ip, tx=tx,
                               fields=sorted(changes))

    def _keep_an_admin(self, tx: Transaction) -> None:
        if self._users.enabled_admins(tx) == 0:
            raise AccountError(409, "at least one enabled admin must remain")


def _check_role(role: str) -> None:
    if role not in config.ROLES:
        raise AccountError(400, f"field role must be one of {config.ROLES}", "role")
