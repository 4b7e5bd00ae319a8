"""auth/policy.py: first-match-wins rules, the shipped default policy, the fixed route sets."""

from __future__ import annotations

import pytest

from orthanc_nas import config
from orthanc_nas.auth.policy import (
    PENDING_ROUTES,
    PUBLIC_ROUTES,
    RESTRICTED_ROUTES,
    Policy,
    RouteSet,
)

ROLES = ("viewer", "user", "admin")
ALL = frozenset(ROLES)
USER_UP = frozenset({"user", "admin"})
ADMIN = frozenset({"admin"})

# ---- Policy semantics ---------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    policy = Policy([
        {"methods": ["GET"], "pattern": "/a/.*", "roles": ["viewer"]},
        {"methods": ["GET"], "pattern": "/a/b", "roles": ["user", "admin"]},
    ])
    assert policy.allows("viewer", "GET", "/a/b")
    assert not policy.allows("user", "GET", "/a/b")
    assert not policy.allows("admin", "GET", "/a/b")  # a rule may even refuse admins


def test_rule_of_another_method_is_skipped() -> None:
    policy = Policy([
        {"methods": ["POST"], "pattern": "/a", "roles": []},
        {"methods": ["GET", "POST"], "pattern": "/a", "roles": ["viewer"]},
    ])
    assert policy.allows("viewer", "GET", "/a")
    assert not policy.allows("viewer", "POST", "/a")
    assert not policy.allows("admin", "POST", "/a")


def test_star_matches_every_method() -> None:
    policy = Policy([{"methods": ["*"], "pattern": "/x", "roles": ["user"]}])
    for method in ("GET", "POST", "PUT", "DELETE"):
        assert policy.allows("user", method, "/x")
        assert not policy.allows("viewer", method, "/x")


def test_pattern_must_match_the_whole_path() -> None:
    policy = Policy([{"methods": ["GET"], "pattern": "/patients", "roles": ["viewer"]}])
    assert policy.allows("viewer", "GET", "/patients")
    for path in ("/patients/1", "/patientsX", "/x/patients", "patients"):
        assert not policy.allows("viewer", "GET", path), path


def test_no_matching_rule_means_admin_only() -> None:
    policy = Policy([{"methods": ["GET"], "pattern": "/patients", "roles": ["viewer"]}])
    assert policy.allows("admin", "GET", "/elsewhere")
    assert not policy.allows("user", "GET", "/elsewhere")
    assert not policy.allows("viewer", "GET", "/elsewhere")
    empty = Policy([])
    assert empty.allows("admin", "DELETE", "/anything")
    assert not empty.allows("user", "GET", "/")


# ---- the shipped default policy ------------------------------------------------------------

ID = "0a1b2c3d-4e5f6a7b-8c9d0e1f-2a3b4c5d-6e7f8a9b"

CASES: list[tuple[str, str, frozenset[str]]] = [
    ("GET", "/patients", ALL),
    ("GET", f"/patients/{ID}", ALL),
    ("GET", f"/studies/{ID}", ALL),
    ("GET", f"/series/{ID}/instances", ALL),
    ("GET", f"/instances/{ID}/preview", ALL),
    ("GET", f"/instances/{ID}/file", ALL),
    ("GET", "/dicom-web/studies", ALL),
    ("GET", "/dicom-web/studies/1.2.3/series", ALL),
    ("GET", "/wado", ALL),
    ("GET", "/system", ALL),
    ("GET", "/plugins/explorer.js", ALL),
    ("POST", "/tools/find", ALL),
    ("POST", "/tools/lookup", ALL),
    ("POST", f"/studies/{ID}/archive", ALL),
    ("POST", "/instances", USER_UP),
    ("POST", "/instances/", USER_UP),  # Orthanc Explorer's upload form
    ("POST", "/dicom-web/studies", USER_UP),
    ("PUT", "/instances", ADMIN),
    ("DELETE", f"/studies/{ID}", ADMIN),
    ("DELETE", f"/instances/{ID}", ADMIN),
    ("DELETE", "/patients", ADMIN),
    ("POST", f"/studies/{ID}/modify", ADMIN),
    ("POST", f"/studies/{ID}/anonymize", ADMIN),
    ("POST", "/tools/execute-script", ADMIN),
    ("POST", "/tools/reset", ADMIN),
    ("POST", "/tools/shutdown", ADMIN),
    ("GET", "/tools/execute-script", ADMIN),
    ("GET", "/modalities", ADMIN),
    ("POST", "/modalities/pacs/store", ADMIN),
    ("GET", "/peers", ADMIN),
    ("GET", "/jobs", ADMIN),
    ("GET", "/api/admin/users", ADMIN),
    ("POST", "/api/admin/users", ADMIN),
    ("PUT", "/api/admin/users/3", ADMIN),
    ("DELETE", "/api/admin/users/3", ADMIN),
    ("GET", "/api/2fa/config", ADMIN),
    ("POST", "/api/2fa/config", ADMIN),
    ("GET", "/api/audit", ADMIN),
    ("DELETE", "/api/tokens/3", ALL),
    ("DELETE", "/api/tokens/x", ADMIN),
    ("GET", "/api/tokens", ALL),
    ("POST", "/api/tokens", ALL),
    ("GET", "/api/profile", ALL),
    ("PUT", "/api/profile", ALL),
    ("POST", "/api/logout", ALL),
    ("POST", "/api/2fa/setup/totp", ALL),
    ("GET", "/ui/account", ALL),
    ("GET", "/ui/admin", ADMIN),
    ("GET", "/made-up", ADMIN),
    ("POST", "/made-up", ADMIN),
]


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy(config.default_policy())


@pytest.mark.parametrize(("method", "path", "allowed"), CASES,
                         ids=[f"{m} {p}" for m, p, _ in CASES])
def test_default_policy(default: Policy, method: str, path: str,
                        allowed: frozenset[str]) -> None:
    decided = {role for role in ROLES if default.allows(role, method, path)}
    assert decided == allowed


# ---- fixed route sets ---------------------------------------------------------------------

PUBLIC_CASES: list[tuple[str, str, bool]] = [
    ("GET", "/", True),
    ("GET", "/api/health", True),
    ("POST", "/api/health", False),
    ("GET", "/api/health/x", False),
    ("POST", "/api/login", True),
    ("GET", "/api/login", False),
    ("GET", "/ui/login", True),
    ("GET", "/ui/account", True),  # the shell; its handler checks the session
    ("GET", "/ui/assets/app.css", True),
    ("GET", "/ui/assets/../x", False),
    ("GET", "/ui/assets/sub/app.css", False),
    ("POST", "/ui/assets/app.css", False),
    ("GET", "/app/explorer.html", True),
    ("GET", "/app/explorer.js", True),
    ("GET", "/app/libs/jquery.min.js", True),
    ("GET", "/plugins/explorer.js", True),
    ("GET", "/favicon.ico", True),
    ("GET", "/patients", False),
    ("GET", "/api/profile", False),
    ("POST", "/api/2fa/verify", False),
    ("GET", "/explorer.html", False),
]


@pytest.mark.parametrize(("method", "path", "public"), PUBLIC_CASES,
                         ids=[f"{m} {p}" for m, p, _ in PUBLIC_CASES])
def test_public_routes(method: str, path: str, public: bool) -> None:
    assert ((method, path) in PUBLIC_ROUTES) is public


def test_pending_routes() -> None:
    assert ("POST", "/api/2fa/verify") in PENDING_ROUTES
    assert ("POST", "/api/logout") in PENDING_ROUTES
    assert ("GET", "/api/2fa/verify") not in PENDING_ROUTES
    assert ("GET", "/api/profile") not in PENDING_ROUTES
    assert ("GET", "/patients") not in PENDING_ROUTES


def test_restricted_routes() -> None:
    for route in (("GET", "/api/profile"), ("PUT", "/api/profile"),
                  ("POST", "/api/2fa/setup/totp"), ("POST", "/api/2fa/setup/totp/verify"),
                  ("POST", "/api/2fa/backup-codes/generate"), ("POST", "/api/logout"),
                  ("GET", "/ui/account")):
        assert route in RESTRICTED_ROUTES, route
    for route in (("GET", "/patients"), ("POST", "/api/tokens"), ("GET", "/api/tokens"),
                  ("DELETE", "/api/profile"), ("GET", "/api/admin/users")):
        assert route not in RESTRICTED_ROUTES, route


def test_route_set_alternatives_are_each_full_matches() -> None:
    routes = RouteSet([("GET", "/a"), ("GET", "/b/[0-9]+")])
    assert ("GET", "/a") in routes
    assert ("GET", "/b/12") in routes
    assert ("GET", "/a/b/12") not in routes
    assert ("GET", "/b/12x") not in routes
    assert ("POST", "/a") not in routes
