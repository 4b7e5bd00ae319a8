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

