"""The plugin's routes, each declaring next to its path who may call it.

A request enters once: Orthanc's HTTP filter (``App.decide``) and the router (``App.handle``)
read the same declaration, the caller is resolved once in each and handed to the endpoint, and
the endpoint is a plain module-level function ``endpoint(services, call)``. Starlette's
``Route(path, endpoint)`` with ``@requires`` is the model; the role policy of ``orthanc.json``
only speaks for Orthanc's own routes (``auth.access.POLICY``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import jsonbound
from .auth.access import ANY_ROLE, Access, Principal
from .web import JSON_TYPE, ApiError, Request, Response

S = TypeVar("S")


@dataclass(frozen=True)
class Call:
    """One request as an endpoint receives it: the caller resolved once, the path's groups.

    ``principal`` is a signed-in caller only; a login whose second factor is due is
    ``pending``, so that no endpoint can mistake it for a signed-in caller (a public route
    showing more to an admin showed it to whoever knew the admin's PIN)."""

    request: Request
    principal: Principal | None
    args: tuple[str, ...] = ()
    pending: Principal | None = None

    @property
    def caller(self) -> Principal:
        """The signed-in caller of a route that requires one (the router checked it)."""
        if self.principal is None:
            raise ApiError(403, "login required")
        return self.principal

    @property
    def ip(self) -> str:
        return self.request.ip


Endpoint = Callable[[Any, Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint
    access: Access
    body_max: int | None  # largest body (bytes), None: the router's default
    body: Mapping[str, Any] | None = None  # JSON Schema of the body, for the API description
    produces: tuple[str, ...] = (JSON_TYPE,)  # what a success answers (media types)
    params: tuple[str, ...] = ()  # names of the path's groups, for the API description


def route(method: str, path: str, endpoint: Endpoint, access: Access = ANY_ROLE, *,
          body_max: int | None = None,
          body: Mapping[str, Any] | None = None, produces: tuple[str, ...] = (JSON_TYPE,),
          params: tuple[str, ...] = ()) -> Route:
    """A route: ``path`` is a full-match regex whose groups become ``call.args``; ``body``,
    ``produces`` and ``params`` only describe it (``openapi``)."""
    return Route(method, re.compile(path), endpoint, access, body_max, body, produces, params)


class Router(Generic[S]):
    """The route table. Every body is bounded here, before any endpoint (or Orthanc, for the
    built-in routes the plugin forwards) parses it: its size and its JSON nesting."""

    def __init__(self, routes: Iterable[Route], body_max: int) -> None:
        self.routes = tuple(routes)
        self._body_max = body_max
        # One regex per method, each route a named branch: the filter asks on every request.
        by_method: dict[str, list[str]] = {}
        for index, r in enumerate(self.routes):
            by_method.setdefault(r.method, []).append(f"(?P<r{index}>{r.pattern.pattern})")
        self._by_method = {m: re.compile("|".join(p)) for m, p in by_method.items()}

    def match(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        """The route of (method, path), and its path's groups; None if the plugin has none."""
        combined = self._by_method.get(method)
        found = combined.fullmatch(path) if combined is not None else None
        if found is None or found.lastgroup is None:
            return None
        target = self.routes[int(found.lastgroup[1:])]
        groups = target.pattern.fullmatch(path)
        assert groups is not None
        return target, groups.groups()

    def access_of(self, method: str, path: str) -> Access | None:
        """What the plugin's route of (method, path) requires; None when it has none."""
        found = self.match(method, path)
        return found[0].access if found is not None else None

    def dispatch(self, services: S, request: Request, principal: Principal | None,
                 pending: Principal | None = None) -> Response:
        """Finds the route, checks its access and body, and calls its endpoint.
        ``principal``: the signed-in caller; ``pending``: a login whose second factor is due."""
        found = self.match(request.method, request.path)
        if found is None:
            allowed = list(dict.fromkeys(r.method for r in self.routes
                                         if r.pattern.fullmatch(request.path)))
            if allowed:
                raise ApiError(405, f"method {request.method} not allowed", allowed=allowed)
            raise ApiError(404, "no such route")
        target, args = found
        refusal = target.access.refusal(principal or pending, pending is not None)
        if refusal is not None:
            raise ApiError(403, refusal)
        self._check_body(request.body, target.body_max or self._body_max)
        return target.endpoint(services, Call(request, principal, args, pending))

    @staticmethod
    def _check_body(body: bytes, body_max: int) -> None:
        if len(body) > body_max:
            raise ApiError(413, f"body larger than {body_max} bytes")
        try:
            jsonbound.check(body)
        except jsonbound.TooDeep as exc:
            raise ApiError(400, str(exc)) from exc
