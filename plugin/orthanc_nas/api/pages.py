"""The pages: their shells (no data; the API behind them is guarded) and their assets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import PUBLIC
from ..pages import ASSET_RE, PAGES, TYPES
from ..routing import Call, route
from ..web import HTML_TYPE, ApiError, Response, redirect

if TYPE_CHECKING:
    from ..services import Services


def root(svc: Services, call: Call) -> Response:
    if call.principal is None:
        return redirect("/ui/login")
    return redirect("/ui/account" if call.principal.restricted else "/app/explorer.html")


def page(svc: Services, call: Call) -> Response:
    """A page's shell (no data): visitors without a session go to the login page, the admin
    pages are refused to others; the data comes from the API, which is guarded."""
    name = call.args[0]
    who = PAGES[name]
    if who is not None:
        if call.principal is None:
            return redirect(f"/ui/login?next=/ui/{name}")
        if who == "admin" and not call.principal.is_admin:
            raise ApiError(403, "admin role required")
    return Response(200, svc.pages.file(f"{name}.html"), HTML_TYPE)


def asset(svc: Services, call: Call) -> Response:
    name = call.args[0]
    if not ASSET_RE.fullmatch(name):
        raise ApiError(404, "no such asset")
    try:
        body = svc.pages.file(f"assets/{name}")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ApiError(404, "no such asset") from exc
    return Response(200, body, TYPES["." + name.rsplit(".", 1)[1]])


ROUTES = (
    route("GET", r"/", root, PUBLIC, produces=(HTML_TYPE,)),
    route("GET", "/ui/(" + "|".join(PAGES) + ")", page, PUBLIC, produces=(HTML_TYPE,),
          params=("page",)),
    route("GET", r"/ui/assets/([^/]+)", asset, PUBLIC, produces=tuple(TYPES.values()),
          params=("name",)),
)
