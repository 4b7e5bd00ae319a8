"""Who may use Orthanc's own routes: its public static files, the role policy (data), and
what the filter lets through of bodies it cannot see."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Orthanc's own files reachable without a session. Static shells hold no patient data: Orthanc
# Explorer's page and libraries load, then its first API call is refused and our extension
# sends the browser to the login page. (The plugin's routes declare their own access.)
ORTHANC_STATIC: tuple[tuple[str, str], ...] = (
    ("GET", r"/app/(explorer\.html|explorer\.js|explorer\.css|favicon\.ico"
            r"|images/[A-Za-z0-9_./-]+|libs/[A-Za-z0-9_./-]+|[a-z-]+\.(js|css|png|gif|svg|ico))"),
    ("GET", r"/plugins/explorer\.js"),
    ("GET", r"/favicon\.ico"),
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


# Everything else a signed-in caller sends is read whole into memory by Orthanc before any
# route sees it: bounded too, except the uploads of images, which are what Orthanc is for.
SIGNED_IN_BODY_MAX = 16 * 2**20  # bytes; 100,000 Orthanc IDs in a bulk request take 4.6 MB
UPLOADS: tuple[tuple[str, str], ...] = (
    ("POST", r"/instances"),  # (Orthanc routes /instances/ as /instances: the filter does too)
    ("POST", r"/dicom-web/studies(/[^/]+)?"),  # STOW-RS
)


def body_allowance(method: str, path: str) -> int | None:
    """The largest body the filter lets a signed-in caller send (-1: none at all), or None
    when any size may come (uploads of images, and methods without a body)."""
    for bounded_method, pattern, limit in _UNSEEN:
        if method == bounded_method and pattern.fullmatch(path):
            return limit
    if method not in ("POST", "PUT") or (method, path) in _UPLOADS:
        return None
    return SIGNED_IN_BODY_MAX


_UNSEEN = [(m, re.compile(p), limit) for m, p, limit in UNSEEN_BODIES]
ORTHANC_PUBLIC = RouteSet(ORTHANC_STATIC)
_UPLOADS = RouteSet(UPLOADS)
