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
    if caller.is_admin:
        return json_response(svc.dashboard.stats(caller.user.id, caller.name, True, None))
    visible = svc.catalog.visible_studies(viewer_of(svc, caller))
    count = (len(visible) if visible is not None
             else int(svc.orthanc.get("/statistics")["CountStudies"]))
    body = svc.dashboard.stats(caller.user.id, caller.name, False, count)
    body["own_studies"] = len(svc.catalog.own_studies(caller.user.id))
    return json_response(body)


ROUTES = (route("GET", r"/api/dashboard/stats", stats),)
