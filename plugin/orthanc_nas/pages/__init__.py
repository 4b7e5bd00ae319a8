"""The plugin's own pages: static HTML, CSS and JavaScript files, no build step."""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from ..web import HTML_TYPE, ApiError, Request, Response, Router, redirect

if TYPE_CHECKING:
    from ..app import App

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

    def register(self, router: Router, app: App) -> None:
        def root(request: Request) -> Response:
            principal = app.backend.authenticate(request)
            if principal is None:
                return redirect("/ui/login")
            return redirect("/ui/account" if principal.restricted else "/app/explorer.html")

        def page(request: Request, name: str) -> Response:
            if name not in PAGES:
                raise ApiError(404, "no such page")
            who = PAGES[name]
            if who is not None:
                principal = app.backend.authenticate(request)
                if principal is None:
                    return redirect(f"/ui/login?next=/ui/{name}")
                if who == "admin" and principal.user.role != "admin":
                    raise ApiError(403, "admin role required")
            return Response(200, self.file(f"{name}.html"), HTML_TYPE)

        def asset(request: Request, name: str) -> Response:
            if not ASSET_RE.fullmatch(name):
                raise ApiError(404, "no such asset")
            try:
                body = self.file(f"assets/{name}")
            except (FileNotFoundError, IsADirectoryError) as exc:
                raise ApiError(404, "no such asset") from exc
            return Response(200, body, TYPES["." + name.rsplit(".", 1)[1]])

        router.add("GET", r"/", root, produces=(HTML_TYPE,))
        router.add("GET", f"/ui/({'|'.join(PAGES)})", page, produces=(HTML_TYPE,))
        router.add("GET", r"/ui/assets/([^/]+)", asset, produces=tuple(TYPES.values()))
