"""GET /api/dashboard/stats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..routing import Call, route
from ..web import Response, json_response
from .images import viewer_of

if TYPE_CHECKING:
    from ..services import Services


def stats(svc: Services, call: Call) -> Response:
    caller = call.caller
    visible = None if caller.is_admin else svc.catalog.visible_studies(viewer_of(caller))
    return json_response(svc.dashboard.stats(caller.user.id, caller.name, caller.is_admin,
                                             None if visible is None else len(visible)))


ROUTES = (route("GET", r"/api/dashboard/stats", stats),)
