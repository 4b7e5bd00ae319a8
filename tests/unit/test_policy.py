"""Who may call what: the role policy of Orthanc's routes (first match wins, the shipped
default), the plugin's routes' own declarations, and the filter's view of both."""

from __future__ import annotations

import pytest

from orthanc_nas import config
from orthanc_nas.api import ROUTES
from orthanc_nas.auth.access import Kind, Principal
from orthanc_nas.auth.policy import ORTHANC_PUBLIC, Policy, RouteSet
from orthanc_nas.auth.users import User
from orthanc_nas.routing import Router

ROUTER = Router(ROUTES, 65536)

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
    ("GET", "/ui/admin", ALL),  # a shell without data: its handler refuses non-admins
    ("GET", "/made-up", ADMIN),
    ("POST", "/made-up", ADMIN),
]


def signed_in(role: str, *, restricted: bool = False, via: str = "session") -> Principal:
    user = User(id=1, username=role, role=role, display_name="", email="", enabled=True,
                pin_hash="", must_change_pin=restricted, totp_secret=None,
                totp_pending_secret=None, totp_enabled=True, totp_last_step=0, failed_count=0,
                locked_until=0.0, created_at=0.0, last_login_at=None, preferences={})
    return Principal(user, via)


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy(config.default_policy())


def roles_allowed(policy: Policy, method: str, path: str) -> set[str]:
    """The roles a signed-in session may call (method, path) with, as the filter decides:
    a plugin route by its declaration, Orthanc's by the policy."""
    access = ROUTER.access_of(method, path)
    if access is None or access.kind is Kind.POLICY:
        return {role for role in ROLES if policy.allows(role, method, path)}
    return {role for role in ROLES if access.refusal(signed_in(role), pending=False) is None}


@pytest.mark.parametrize(("method", "path", "allowed"), CASES,
                         ids=[f"{m} {p}" for m, p, _ in CASES])
def test_default_access(default: Policy, method: str, path: str,
                        allowed: frozenset[str]) -> None:
    assert roles_allowed(default, method, path) == allowed


def test_the_default_policy_speaks_for_orthancs_routes_only() -> None:
    """The plugin's routes declare their own access: a rule about them would be dead."""
    for rule in config.default_policy():
        assert not rule["pattern"].startswith(("/api/", "/ui/")), rule


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


def public(method: str, path: str) -> bool:
    access = ROUTER.access_of(method, path)
    if access is None:
        return (method, path) in ORTHANC_PUBLIC
    return access.kind is Kind.PUBLIC


@pytest.mark.parametrize(("method", "path", "public_"), PUBLIC_CASES,
                         ids=[f"{m} {p}" for m, p, _ in PUBLIC_CASES])
def test_public_routes(method: str, path: str, public_: bool) -> None:
    assert public(method, path) is public_


def test_pending_routes() -> None:
    """A pending login (second factor due) reaches the code check and logging out only."""
    def reaches(method: str, path: str) -> bool:
        access = ROUTER.access_of(method, path)
        return access is not None and access.refusal(None, pending=True) is None
    assert reaches("POST", "/api/2fa/verify")
    assert reaches("POST", "/api/logout")
    assert not reaches("GET", "/api/2fa/verify")
    assert not reaches("GET", "/api/profile")
    assert not reaches("GET", "/patients")


def test_restricted_routes() -> None:
    """A session that must first change its PIN or enroll reaches only that."""
    restricted = signed_in("admin", restricted=True)

    def reaches(method: str, path: str) -> bool:
        access = ROUTER.access_of(method, path)
        return access is not None and access.refusal(restricted, pending=False) is None
    for route in (("GET", "/api/profile"), ("PUT", "/api/profile"),
                  ("POST", "/api/2fa/setup/totp"), ("POST", "/api/2fa/setup/totp/verify"),
                  ("POST", "/api/2fa/backup-codes/generate"), ("POST", "/api/logout"),
                  ("GET", "/ui/account")):
        assert reaches(*route), route
    for route in (("GET", "/patients"), ("POST", "/api/tokens"), ("GET", "/api/tokens"),
                  ("DELETE", "/api/profile"), ("GET", "/api/admin/users")):
        assert not reaches(*route), route


def test_tokens_cannot_manage_credentials() -> None:
    token = signed_in("admin", via="token")
    for method, path in (("POST", "/api/2fa/setup/totp"), ("POST", "/api/tokens"),
                         ("POST", "/api/2fa/backup-codes/generate")):
        access = ROUTER.access_of(method, path)
        assert access is not None and access.refusal(token, pending=False), path
    assert ROUTER.access_of("GET", "/api/tokens").refusal(token, pending=False) is None  # type: ignore[union-attr]


def test_route_set_alternatives_are_each_full_matches() -> None:
    routes = RouteSet([("GET", "/a"), ("GET", "/b/[0-9]+")])
    assert ("GET", "/a") in routes
    assert ("GET", "/b/12") in routes
    assert ("GET", "/a/b/12") not in routes
    assert ("GET", "/b/12x") not in routes
    assert ("POST", "/a") not in routes
