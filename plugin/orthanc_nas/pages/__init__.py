"""The plugin's own pages: static HTML, CSS and JavaScript files, no build step."""

from __future__ import annotations

import re
from importlib import resources

from ..web import HTML_TYPE

TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml", ".html": HTML_TYPE}
ASSET_RE = re.compile(r"[A-Za-z0-9_-]+\.(css|js|png|svg)")
# page name -> who may see it (the filter's policy decides first; this is defence in depth)
PAGES = {"login": None, "account": "any", "admin": "admin", "nas": "admin", "images": "any",
         "dashboard": "any", "viewer": "any"}
# shared fragments: a page says ``<!--name-->`` on a line of its own where one goes
FRAGMENTS = {b"  <!--topbar-->\n": "_topbar.html", b"    <!--viewer-->\n": "_viewer.html"}


def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


class Pages:
    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def file(self, name: str) -> bytes:
        """A page or asset; pages get the shared fragments where they name them."""
        if name not in self._cache:
            body = _read(name)
            if name.endswith(".html"):
                for mark, fragment in FRAGMENTS.items():
                    if mark in body:
                        body = body.replace(mark, _read(fragment))
            self._cache[name] = body
        return self._cache[name]

    def explorer_extension(self) -> str:
        return self.file("assets/explorer-extension.js").decode()

