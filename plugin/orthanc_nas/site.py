"""Where the plugin is reached from: the address links point to, and cookies' Secure flag."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from .web import ApiError, Request, origin_of


class Site:
    def __init__(self, public_url: str, allowed_hosts: Collection[str], cookie_secure: str
                 ) -> None:
        self.public_origin = origin_of(public_url) if public_url else None
        self._public_url = public_url.rstrip("/")
        self._allowed_hosts = allowed_hosts
        self._cookie_secure = cookie_secure

    def base_url(self, request: Request) -> str:
        """Where links point: ``public_url``, else the request's own scheme and Host when
        that host is allowed (a forged Host must never become a link sent to a patient);
        else 409 telling the admin what to set."""
        if self._public_url:
            return self._public_url
        origin = origin_of(f"{request.scheme}://{request.headers.get('host', '')}")
        host = urlsplit(origin).hostname if origin else None
        if origin is None or host not in self._allowed_hosts:
            raise ApiError(409, "links cannot be built from the address this page was opened "
                           "with: an admin sets OrthancNAS.public_url (e.g. "
                           "https://pacs.clinic.example) or lists this host name in "
                           "OrthancNAS.allowed_hosts in orthanc.json", field="public_url")
        return origin

    def cookie_secure(self, request: Request) -> bool:
        mode = self._cookie_secure
        return mode == "always" or (mode == "auto" and (
            request.is_https or (self.public_origin or "").startswith("https:")))
