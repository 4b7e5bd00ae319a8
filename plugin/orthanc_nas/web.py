"""Plain HTTP types used between the Orthanc adapter and the plugin's handlers."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import jsonbound

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

# Sent with every answer of the plugin: pages load only their own assets.
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy",
     "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
)


_SHARE_TOKEN = re.compile(r"^(/s/|/api/shared/)[^/]*")


def routed_path(uri: str) -> str:
    """The path as Orthanc routes it: its filter gets the URI as sent, but Orthanc splits it
    into components and drops a trailing slash before choosing a route (``/tools/find/``
    runs ``/tools/find``). Every decision is made on this form, so the filter judges the
    route that will run."""
    if not uri.endswith("/") and "//" not in uri:
        return uri
    return "/" + "/".join(part for part in uri.split("/") if part)


def redacted_path(path: str) -> str:
    """A request path fit for a log line: share tokens are secrets."""
    return _SHARE_TOKEN.sub(r"\1<token>", path)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def client_ip(peer: str, forwarded_for: str, trusted: Networks) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not a trusted proxy itself (entries further left are the
    client's word and prove nothing). Anything unreadable keeps the last address known."""
    if not trusted or not forwarded_for:
        return peer
    address = peer
    for hop in [peer, *reversed(forwarded_for.split(","))]:
        try:
            ip = ipaddress.ip_address(hop.strip())
        except ValueError:
            return address
        address = str(ip)
        if not any(ip in network for network in trusted):
            return address
    return address


def client_scheme(peer: str, forwarded_proto: str, trusted: Networks, https_listener: bool
                  ) -> str:
    """How the client reached us: https when Orthanc itself serves TLS, else what a trusted
    proxy says in X-Forwarded-Proto (its right-most entry); the header of anyone else is the
    client's own word and counts for nothing."""
    if https_listener:
        return "https"
    if not trusted or not forwarded_proto:
        return "http"
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return "http"
    if not any(ip in network for network in trusted):
        return "http"
    return "https" if forwarded_proto.split(",")[-1].strip().lower() == "https" else "http"


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased, default port dropped (as
    browsers send Origin); None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    shown = f":{port}" if port is not None and port != DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{shown}"


@dataclass(frozen=True)
class Request:
    """An HTTP request as the plugin sees it (header names lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    ip: str = ""

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def bearer(self) -> str | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    @property
    def is_https(self) -> bool:
        """Set by App from what it trusts (see client_scheme), never the client's own word."""
        return self.headers.get("x-forwarded-proto", "").lower() == "https"

    @property
    def scheme(self) -> str:
        return "https" if self.is_https else "http"


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    redirect: str | None = None

    def set_cookie(self, name: str, value: str, *, secure: bool, max_age: int | None = None,
                   path: str = "/") -> None:
        attrs = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
        if secure:
            attrs.append("Secure")
        if max_age is not None:
            attrs.append(f"Max-Age={max_age}")
        self.headers.append(("Set-Cookie", "; ".join(attrs)))


class ApiError(Exception):
    """An error answered as ``{"error": message, ...}`` with a 4xx status."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error_response(err: ApiError) -> Response:
    response = json_response({"error": err.message, **err.extra}, err.status)
    if err.status == 405 and isinstance(err.extra.get("allowed"), list):
        response.headers.append(("Allow", ", ".join(dict.fromkeys(err.extra["allowed"]))))
    return response


def redirect(location: str) -> Response:
    return Response(302, redirect=location)


def json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object body, or ApiError(400) saying what is wrong."""
    if len(request.body) > max_bytes:
        raise ApiError(413, f"body larger than {max_bytes} bytes")
    try:
        data = jsonbound.loads(request.body or b"{}")
    except jsonbound.TooDeep as exc:
        raise ApiError(400, str(exc)) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed JSON body") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:  # JSON may escape half a UTF-16 pair ("\\ud800"): no text of ours can hold it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, "the body holds text that is not valid Unicode (a lone "
                       "surrogate escape)") from exc
    return data


def search_params(request: Request, max_bytes: int) -> Mapping[str, str]:
    """A search's parameters: the query string (GET), or a JSON object of strings and numbers
    (POST, which keeps patient names and IDs out of URLs, and so out of proxy logs)."""
    if request.method == "GET":
        return request.query
    params: dict[str, str] = {}
    for name, value in json_body(request, max_bytes).items():
        if value is None:
            continue
        if not isinstance(value, str | int | float):
            raise ApiError(400, f"field {name} must be a string, a number or a boolean",
                           field=name)
        params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return params


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter from ``lo`` to ``hi``, else ApiError(400) naming it."""
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"parameter {name} must be an integer from {lo} to {hi}", field=name)
    return int(raw)


def field_of(data: Mapping[str, Any], name: str, kind: type, *, required: bool = True,
             default: Any = None, max_len: int | None = None) -> Any:
    """One typed field of a JSON body; ApiError(400) naming the field when it is wrong."""
    if name not in data or data[name] is None:
        if required:
            raise ApiError(400, f"missing field: {name}", field=name)
        return default
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ApiError(400, f"field {name} must be {kind.__name__}", field=name)
    if max_len is not None and isinstance(value, str | list) and len(value) > max_len:
        raise ApiError(400, f"field {name} is longer than {max_len}", field=name)
    return value
