"""The plugin's own pages: static HTML, CSS and JavaScript files, no build step."""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from ..auth.access import PUBLIC
from ..routing import Call, route
from ..web import HTML_TYPE, ApiError, Response, redirect

if TYPE_CHECKING:
    from ..services import Services

TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml", ".html": HTML_TYPE}
ASSET_RE = re.compile(r"[A-Za-z0-9_-]+\.(css|js|png|svg)")
# page name -> who may see it (the filter's policy decides first; this is defence in depth)
PAGES = {"login": None, "account": "any", "admin": "admin", "nas": "admin", "images": "any",
         "dashboard": "any"}


def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


class Pages:
    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def file(self, name: str) -> bytes:
        """A page or asset; pages get the shared top bar where they say ``<!--topbar-->``."""
        if name not in self._cache:
            body = _read(name)
            if name.endswith(".html"):
                body = body.replace(b"  <!--topbar-->\n", _read("_topbar.html"))
            self._cache[name] = body
        return self._cache[name]

    def explorer_extension(self) -> str:
        return self.file("assets/explorer-extension.js").decode()


def root(svc: Services, call: Call) -> Response:
    if call.principal is None:
        return redirect("/ui/login")
    return redirect("/ui/account" if call.principal.restricted else "/app/explorer.html")


def page(svc: Services, call: Call) -> Response:
    """A page's shell (no data): visitors without a session go to the login page, the admin
    pages are refused to others; the data comes from the API, which is guarded."""
    name = call.args[0]
    if name not in PAGES:
        raise ApiError(404, "no such page")
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
    route("GET", r"/", root, PUBLIC, produces=("text/html",)),
    route("GET", r"/ui/([a-z]+)", page, PUBLIC, produces=("text/html",)),
    route("GET", r"/ui/assets/([^/]+)", asset, PUBLIC, produces=("text/css", "text/javascript")),
)
