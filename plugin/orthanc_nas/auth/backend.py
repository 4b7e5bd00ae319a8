"""Who is calling, and may they: the pure decision behind Orthanc's HTTP filter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..db import Database
from ..web import Request, origin_of
from .access import PUBLIC, Access, Kind, Principal
from .policy import ORTHANC_PUBLIC, Policy, body_allowance
from .sessions import PENDING_COOKIE, SESSION_COOKIE, TOUCH_INTERVAL, Sessions
from .tokens import Tokens
from .users import User, Users

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: Request, public_origin: str | None) -> bool:
    """True when a state-changing request comes from our own pages (CSRF defence): its
    Origin (else Referer) is ``public_origin`` exactly (scheme, host and port) when one is
    configured, else the request's own scheme and Host."""
    headers = request.headers
    if headers.get("sec-fetch-site", "") == "cross-site":
        return False
    source = headers.get("origin") or headers.get("referer")
    origin = origin_of(source) if source and source != "null" else None
    if origin is None:
        return False
    if public_origin:
        return origin == public_origin
    return origin == origin_of(f"{request.scheme}://{headers.get('host', '')}")


# A credential's caller is re-read from the database at least this often (seconds), and at
# once after any write that may change authentication state (Database.generation).
CACHE_SECONDS = 30.0
CACHE_ENTRIES = 10_000


ANONYMOUS_BODY_MAX = 2**20  # bytes; a login or a share's PIN takes well under 1 KB


# What the plugin's route of (method, path) requires; None for Orthanc's own routes.
Declared = Callable[[str, str], Access | None]


class AuthBackend:
    def __init__(self, users: Users, sessions: Sessions, tokens: Tokens, policy: Policy,
                 two_factor: Callable[[], dict[str, Any]], public_origin: str | None,
                 db: Database, clock: Clock, declared: Declared) -> None:
        self._declared = declared
        self._users = users
        self._sessions = sessions
        self._tokens = tokens
        self.policy = policy
        self._two_factor = two_factor
        self._public_origin = public_origin
        self._db = db
        self._clock = clock
        self._cache: dict[str, tuple[int, float, Principal]] = {}

    def must_enroll_totp(self, user: User) -> bool:
        tf = self._two_factor()
        required = {"admin": tf["required_for_admin"], "user": tf["required_for_users"],
                    "viewer": tf["required_for_viewers"]}[user.role]
        return bool(tf["enabled"] and required and "totp" in tf["allowed_methods"]
                    and not user.totp_enabled)

    @staticmethod
    def _credential(request: Request) -> tuple[str | None, str]:
        bearer = request.bearer()
        return bearer, ("t:" + bearer) if bearer is not None else (
            "s:" + (request.cookie(SESSION_COOKIE) or ""))

    def remaining(self, request: Request) -> float:
        """Seconds the caller of ``request`` stays as authenticated without a look at the
        database (0 when unknown): how long a decision about it may be remembered."""
        cached = self._cache.get(self._credential(request)[1])
        if cached is None or cached[0] != self._db.generation:
            return 0.0
        return max(0.0, cached[1] - self._clock.now())

    def authenticate(self, request: Request) -> Principal | None:
        """The caller of ``request``: bearer token first, then the session cookie."""
        bearer, credential = self._credential(request)
        cached = self._cache.get(credential)
        now = self._clock.now()
        if cached is not None and cached[0] == self._db.generation and now < cached[1]:
            return cached[2]
        generation = self._db.generation
        principal, valid_until = self._authenticate(bearer, request.cookie(SESSION_COOKIE), now)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        if principal is None:
            self._cache.pop(credential, None)
        else:
            self._cache[credential] = (generation, valid_until, principal)
        return principal

    def _authenticate(self, bearer: str | None, cookie: str | None,
                      now: float) -> tuple[Principal | None, float]:
        if bearer is not None:
            owner = self._tokens.lookup(bearer)
            user = self._users.get(owner.user_id) if owner else None
            if owner is None or user is None or not user.enabled:
                return None, now
            until = min(now + CACHE_SECONDS, owner.expires_at)
            return Principal(user, "token", token_id=owner.token_id,
                             must_enroll_totp=self.must_enroll_totp(user)), until
        session = self._sessions.lookup(cookie, pending=False)
        if session is not None:
            user = self._users.get(session.user_id)
            if user is not None and user.enabled:
                # Back to the database before the next last_seen touch or any expiry.
                until = min(session.last_seen + min(TOUCH_INTERVAL, self._sessions.idle),
                            session.expires_at, now + CACHE_SECONDS)
                return Principal(user, "session", session.id_hash,
                                 must_enroll_totp=self.must_enroll_totp(user)), until
        return None, now

    def pending(self, request: Request) -> Principal | None:
        session = self._sessions.lookup(request.cookie(PENDING_COOKIE), pending=True)
        user = self._users.get(session.user_id) if session else None
        if session is None or user is None or not user.enabled:
            return None
        return Principal(user, "pending", session.id_hash)

    def decide(self, request: Request) -> tuple[bool, Principal | None]:
        """The filter's decision, and the caller it was made for (if any): a plugin route
        admits whom its declaration says; Orthanc's own routes, whom the role policy says."""
        method, path = request.method, request.path
        access = self._declared(method, path)
        if access is None and (method, path) in ORTHANC_PUBLIC:
            access = PUBLIC
        if access is not None and access.kind is Kind.PUBLIC:
            return (method in SAFE_METHODS or (
                self._declared_small(request) and self._origin_ok(request, cookie=False))), None
        principal = self.authenticate(request)
        if principal is None:
            if (access is not None and access.kind in (Kind.PENDING, Kind.SESSION)
                    and self.pending(request) is not None):
                return self._declared_small(request) and self._origin_ok(
                    request, cookie=True), None
            return False, None
        if method not in SAFE_METHODS and not self._origin_ok(
                request, cookie=principal.via == "session"):
            return False, principal
        limit = body_allowance(method, path)
        if limit is not None and not self._body_within(request, limit):
            return False, principal
        if access is not None and access.kind is not Kind.POLICY:
            return access.filter_admits(principal), principal
        if principal.restricted:
            return False, principal
        return self.policy.allows(principal.user.role, method, path), principal

    @classmethod
    def _body_within(cls, request: Request, limit: int) -> bool:
        """A signed-in caller's body is at most ``limit`` bytes: declared so, or absent (no
        Content-Length and no Transfer-Encoding: HTTP's word for no body)."""
        headers = request.headers
        if "content-length" not in headers and "transfer-encoding" not in headers:
            return limit >= 0
        return cls._declared_small(request, limit)

    @staticmethod
    def _declared_small(request: Request, limit: int = ANONYMOUS_BODY_MAX) -> bool:
        """Whether the body declares a size of at most ``limit`` bytes. Orthanc reads a whole
        body into memory before any route sees it, so an anonymous caller must not be able to
        send gigabytes (a chunked body declares no size and is refused too); up to the bound,
        the route itself answers an oversized body with a JSON 413."""
        length = request.headers.get("content-length", "")
        return length.isascii() and length.isdigit() and int(length) <= limit

    def _origin_ok(self, request: Request, *, cookie: bool) -> bool:
        """Cookie-borne state changes must prove their origin; others must not contradict it."""
        has_source = any(h in request.headers for h in ("origin", "referer", "sec-fetch-site"))
        if cookie or has_source:
            return same_origin(request, self._public_origin)
        return True
