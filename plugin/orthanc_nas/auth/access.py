"""Who is calling (``Principal``), and what a route requires of them (``Access``).

Each of the plugin's routes declares its ``Access`` next to its path (``routing.route``); the
HTTP filter and the router both ask ``Access.refusal``, so the two cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .users import User

LOG_IN_FOR_CREDENTIALS = (
    "API tokens cannot manage credentials (PIN, second factor, tokens): log in")
ROLES = frozenset({"viewer", "user", "admin"})
WRITERS = frozenset({"user", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user through a session cookie, a pending login, or a token."""

    user: User
    via: str  # "session", "pending" or "token"
    session_hash: str | None = None
    token_id: int | None = None
    must_enroll_totp: bool = False

    @property
    def restricted(self) -> bool:
        """Must change the PIN or enroll TOTP before anything else."""
        return self.user.must_change_pin or self.must_enroll_totp

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"

    @property
    def can_write(self) -> bool:
        """May upload, tag, assign and share (the user and admin roles)."""
        return self.user.role in WRITERS


class Kind(enum.Enum):
    PUBLIC = "public"  # anyone: the endpoint checks its own secret (a PIN, a share link)
    PENDING = "pending"  # a login whose second factor is due
    SESSION = "session"  # any session, a pending login included (logging out)
    ENROLLING = "enrolling"  # signed in, even before the first-login PIN change and enrollment
    SIGNED_IN = "signed-in"  # signed in, first-login steps done, with one of the roles
    POLICY = "policy"  # one of Orthanc's own routes: orthanc.json's access_policy decides


@dataclass(frozen=True)
class Access:
    kind: Kind
    roles: frozenset[str] = ROLES
    tokens: bool = True  # API tokens may call it (never for credentials: PIN, TOTP, tokens)

    def filter_admits(self, principal: Principal) -> bool:
        """The filter's view for a signed-in caller: everything ``refusal`` checks, except
        that an API token on a credential route is let through for the router to refuse
        with its reason (a JSON answer, which the filter cannot give)."""
        reason = self.refusal(principal, pending=False)
        return reason is None or reason == LOG_IN_FOR_CREDENTIALS

    def refusal(self, principal: Principal | None, pending: bool) -> str | None:
        """Why this caller may not call the route (None: it may). ``pending``: the request
        carries a login whose second factor is due. The role policy, for POLICY routes, is
        the filter's to apply."""
        kind = self.kind
        if kind is Kind.PUBLIC:
            return None
        if kind is Kind.PENDING:
            return None if pending else "no login in progress (it may have expired): log in again"
        if kind is Kind.SESSION:
            return None if principal is not None or pending else "login required"
        if principal is None:
            return "login required"
        if principal.via == "pending":
            return "finish logging in (second factor) first"
        if principal.via == "token" and not self.tokens:
            return LOG_IN_FOR_CREDENTIALS
        if principal.restricted and kind is not Kind.ENROLLING:
            return "change your PIN and enroll two-factor authentication first"
        if kind is not Kind.POLICY and principal.user.role not in self.roles:
            return f"not allowed for your role ({principal.user.role})"
        return None


def signed_in(roles: Iterable[str] = ROLES, *, tokens: bool = True) -> Access:
    return Access(Kind.SIGNED_IN, frozenset(roles), tokens)


PUBLIC = Access(Kind.PUBLIC)
PENDING = Access(Kind.PENDING)
SESSION = Access(Kind.SESSION)
ENROLLING = Access(Kind.ENROLLING)
CREDENTIALS = Access(Kind.ENROLLING, tokens=False)  # enrolling a factor: a login session only
POLICY = Access(Kind.POLICY)
ANY_ROLE = signed_in()
WRITER = signed_in(WRITERS)
ADMIN_ONLY = signed_in(ADMIN)
