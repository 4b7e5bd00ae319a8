"""The HTTP filter (``AuthBackend.decide``) and the router (``Access.refusal``) agree on every
route, for every kind of caller: property tests over paths drawn from the route table's own
patterns. The one documented difference: an API token on a credential route is let through by
the filter, for the router to refuse with a JSON reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orthanc_nas import config
from orthanc_nas.api import ROUTES
from orthanc_nas.auth.access import LOG_IN_FOR_CREDENTIALS, Kind, Principal
from orthanc_nas.auth.backend import AuthBackend
from orthanc_nas.auth.policy import Policy
from orthanc_nas.auth.users import User
from orthanc_nas.routing import Route, Router
from orthanc_nas.web import Request

ROUTER = Router(ROUTES, 65536)
POLICY = Policy(config.default_policy())
METHODS = ("GET", "POST", "PUT", "DELETE")
# A request from our own pages, with a small body: neither CSRF nor size decides here.
HEADERS = {"host": "nas.example", "origin": "http://nas.example", "content-length": "2"}


def user(role: str, *, must_change_pin: bool = False) -> User:
    return User(id=1, username=role, role=role, display_name="", email="", enabled=True,
                pin_hash="", must_change_pin=must_change_pin, totp_secret=None,
                totp_pending_secret=None, totp_enabled=True, totp_last_step=0,
                failed_count=0, locked_until=0.0, created_at=0.0, last_login_at=None,
                preferences={})


@dataclass(frozen=True)
class Caller:
    """What a request carries: a signed-in caller, a pending login, or nothing."""

    name: str
    principal: Principal | None = None
    pending: Principal | None = None


CALLERS = [Caller("anonymous"), Caller("pending", pending=Principal(user("admin"), "pending"))]
for _role in ("viewer", "user", "admin"):
    CALLERS += [
        Caller(f"{_role} session", Principal(user(_role), "session", "h")),
        Caller(f"{_role} token", Principal(user(_role), "token", token_id=1)),
        Caller(f"{_role} must change PIN", Principal(user(_role, must_change_pin=True),
                                                      "session", "h")),
        Caller(f"{_role} must enroll", Principal(user(_role), "session", "h",
                                                 must_enroll_totp=True)),
        Caller(f"{_role} token, must enroll", Principal(user(_role), "token", token_id=1,
                                                        must_enroll_totp=True)),
    ]


class FixedCaller(AuthBackend):
    """The filter's decision with the caller already known (no database)."""

    def __init__(self, caller: Caller) -> None:
        unused = cast(Any, None)
        super().__init__(unused, unused, unused, POLICY, unused, None, unused, unused,
                         ROUTER.access_of)
        self.caller = caller

    def authenticate(self, request: Request) -> Principal | None:
        return self.caller.principal

    def pending(self, request: Request) -> Principal | None:
        return self.caller.pending


BACKENDS = [FixedCaller(c) for c in CALLERS]


@st.composite
def routed(draw: st.DrawFn) -> tuple[str, str]:
    """A method and a path one of the routes' patterns matches (the method of that route or
    another: a path can fit several routes, of several methods)."""
    route = draw(st.sampled_from(ROUTES))
    path = draw(st.from_regex(route.pattern, fullmatch=True))
    method = draw(st.sampled_from((route.method, *METHODS)))
    return method, path


def router_allows(backend: FixedCaller, method: str, path: str) -> str | None:
    """The router's refusal of the request (None: its endpoint runs)."""
    access = ROUTER.access_of(method, path)
    assert access is not None
    caller = backend.caller
    return access.refusal(caller.principal or caller.pending, caller.pending is not None)


def check(method: str, path: str) -> None:
    access = ROUTER.access_of(method, path)
    if access is None:  # no endpoint runs: the router answers 404 or 405
        return
    for backend in BACKENDS:
        caller = backend.caller
        allowed, _ = backend.decide(Request(method, path, HEADERS))
        refusal = router_allows(backend, method, path)
        expected = refusal is None
        if access.kind is Kind.POLICY and caller.principal is not None:
            # Orthanc's own routes: the role policy is the filter's to apply.
            expected = expected and POLICY.allows(caller.principal.user.role, method, path)
        if (refusal == LOG_IN_FOR_CREDENTIALS and caller.principal is not None
                and caller.principal.via == "token"):
            assert allowed, (caller.name, method, path)  # the router answers why, in JSON
            continue
        assert allowed is expected, (caller.name, method, path, refusal)


@given(routed())
def test_the_filter_and_the_router_agree_on_every_route(request_: tuple[str, str]) -> None:
    check(*request_)


@given(st.sampled_from(METHODS), st.text(min_size=1).map(lambda s: "/" + s))
def test_they_agree_on_arbitrary_paths(method: str, path: str) -> None:
    check(method, path)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.pattern.pattern}" for r in ROUTES])
@settings(max_examples=10)
@given(data=st.data())
def test_each_route_with_paths_of_its_own(route: Route, data: st.DataObject) -> None:
    """Every route is drawn from, whatever the draw above favoured."""
    check(route.method, data.draw(st.from_regex(route.pattern, fullmatch=True)))


def first_declared(method: str, path: str) -> int | None:
    """The route a plain scan of the table picks: the first declared that fits."""
    return next((i for i, r in enumerate(ROUTES)
                 if r.method == method and r.pattern.fullmatch(path)), None)


@given(routed())
def test_the_combined_regex_picks_the_first_declared_route(request_: tuple[str, str]) -> None:
    """``Router.match`` reads the route from one regex's ``lastgroup``: it must be the route a
    scan of the table would pick, with that route's own groups."""
    method, path = request_
    found = ROUTER.match(method, path)
    index = first_declared(method, path)
    if index is None:
        assert found is None
        return
    assert found is not None and found[0] is ROUTES[index], (method, path)
    groups = ROUTES[index].pattern.fullmatch(path)
    assert groups is not None and found[1] == groups.groups()
