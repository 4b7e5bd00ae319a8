"""Who may do what: public routes, the role policy (data), and the restricted-session routes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Reachable without a session. Static shells hold no patient data: Orthanc Explorer's page
# and libraries load, then its first API call is refused and our extension sends the
# browser to the login page.
PUBLIC: tuple[tuple[str, str], ...] = (
    ("GET", r"/"),  # redirects to the login page, the account page or Orthanc Explorer
    ("GET", r"/api/health"),
    ("GET", r"/api/openapi\.json"),  # the API's description: no data
    ("POST", r"/api/login"),
    # Page shells (no data): their handler sends visitors without a session to the login page
    # and refuses the admin pages to others; the data comes from the API, which is guarded.
    ("GET", r"/ui/(login|account|admin|nas|images|dashboard)"),
    # Share links: their handlers check the link, its PIN and the viewing session.
    ("GET", r"/s/[A-Za-z0-9_-]{43}(/(viewer|content|download|preview/[0-9a-f-]{44}))?"),
    ("GET", r"/api/shared/[A-Za-z0-9_-]{43}"),
    ("POST", r"/api/shared/[A-Za-z0-9_-]{43}/open"),
    ("GET", r"/ui/assets/[A-Za-z0-9_.-]+"),
    ("GET", r"/app/(explorer\.html|explorer\.js|explorer\.css|favicon\.ico"
            r"|images/[A-Za-z0-9_./-]+|libs/[A-Za-z0-9_./-]+|[a-z-]+\.(js|css|png|gif|svg|ico))"),
    ("GET", r"/plugins/explorer\.js"),
    ("GET", r"/favicon\.ico"),
)
# A pending login (PIN accepted, second factor due) may only do this.
PENDING: tuple[tuple[str, str], ...] = (
    ("POST", r"/api/2fa/verify"),
    ("POST", r"/api/logout"),
)
# A session that must first change its PIN or enroll TOTP may only do this.
RESTRICTED: tuple[tuple[str, str], ...] = (
    ("GET", r"/api/profile"),
    ("PUT", r"/api/profile"),
    ("POST", r"/api/2fa/setup/totp"),
    ("POST", r"/api/2fa/setup/totp/verify"),
    ("POST", r"/api/2fa/backup-codes/generate"),
    ("POST", r"/api/logout"),
    ("GET", r"/ui/account"),
)

# Built-in routes that read a JSON body the plugin cannot take over (see api/native.py), and
# the largest body the filter lets through: their body is read by Orthanc's recursive parser.
OPTIONS_BODY_MAX = 256  # bytes: 128 levels at most, where jsoncpp needs about 200 to crash
UNSEEN_BODIES: tuple[tuple[str, str, int], ...] = (  # (method, pattern, bytes; -1: refused)
    # The same URI streams a download on GET, which a plugin callback would have to buffer.
    ("POST", r"/(patients|studies|series)/[^/]+/(archive|media)", OPTIONS_BODY_MAX),
    # The DICOMweb plugin's own: no plugin can hand a request on to another plugin's route.
    ("POST", r"/dicom-web/servers(/.*)?", -1),
    ("PUT", r"/dicom-web/servers(/.*)?", -1),
)


def _compile(routes: Iterable[tuple[str, str]]) -> dict[str, re.Pattern[str]]:
    by_method: dict[str, list[str]] = {}
    for method, pattern in routes:
        by_method.setdefault(method, []).append(f"(?:{pattern})")
    return {m: re.compile("|".join(p)) for m, p in by_method.items()}


class RouteSet:
    """A fixed set of (method, full-match pattern) routes, one regex per method."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        self._by_method = _compile(routes)

    def __contains__(self, request: tuple[str, str]) -> bool:
        method, path = request
        pattern = self._by_method.get(method)
        return pattern is not None and pattern.fullmatch(path) is not None


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    roles: frozenset[str]


class Policy:
    """Ordered rules; the first whose method and pattern fit decides; none fits: admin only."""

    def __init__(self, rules: Iterable[Mapping[str, Any]]) -> None:
        self.rules = [Rule(frozenset(r["methods"]), re.compile(r["pattern"]), frozenset(r["roles"]))
                      for r in rules]

    def allows(self, role: str, method: str, path: str) -> bool:
        for rule in self.rules:
            if (method in rule.methods or "*" in rule.methods) and rule.pattern.fullmatch(path):
                return role in rule.roles
        return role == "admin"


def body_allowance(method: str, path: str) -> int | None:
    """The largest body the filter may let through to a built-in route it cannot see the body
    of (-1: none at all), or None when the body is bounded elsewhere."""
    for bounded_method, pattern, limit in _UNSEEN:
        if method == bounded_method and pattern.fullmatch(path):
            return limit
    return None


_UNSEEN = [(m, re.compile(p), limit) for m, p, limit in UNSEEN_BODIES]
PUBLIC_ROUTES = RouteSet(PUBLIC)
PENDING_ROUTES = RouteSet(PENDING)
RESTRICTED_ROUTES = RouteSet(RESTRICTED)
