"""GET /api/openapi.json: the API's description, made once from the route table."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import __version__, config, openapi
from ..auth.access import PUBLIC
from ..auth.policy import Policy
from ..routing import Call, Route, route
from ..web import Response

if TYPE_CHECKING:
    from ..services import Services


_made: dict[int, bytes] = {}  # id(route table) -> its document: both live as long as the app


def _document(routes: tuple[Route, ...], policy: Policy) -> bytes:
    if id(routes) not in _made:
        doc = openapi.document(routes, policy, config.ROLES, __version__)
        _made[id(routes)] = json.dumps(doc, separators=(",", ":")).encode()
    return _made[id(routes)]


def openapi_json(svc: Services, call: Call) -> Response:
    """Public: it holds no data, and who may call what is part of it."""
    return Response(200, _document(svc.router.routes, svc.backend.policy))


ROUTES = (route("GET", r"/api/openapi\.json", openapi_json, PUBLIC),)
