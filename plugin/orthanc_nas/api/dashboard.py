"""GET /api/dashboard/stats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..web import Request, Response, Router, json_response
from .images import viewer_of

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    def stats(request: Request) -> Response:
        principal = app.principal(request)
        admin = principal.user.role == "admin"
        visible = None if admin else app.catalog.visible_studies(viewer_of(principal))
        return json_response(app.dashboard.stats(
            principal.user.id, principal.name, admin,
            None if visible is None else len(visible)))

    router.add("GET", r"/api/dashboard/stats", stats)
