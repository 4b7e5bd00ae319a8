"""Plain HTTP types used between the Orthanc adapter and the plugin's handlers."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
        return self.headers.get("x-forwarded-proto", "").lower() == "https"


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
    return json_response({"error": err.message, **err.extra}, err.status)


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
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ApiError(400, f"field {name} must be a string or a number", field=name)
        params[name] = str(value)
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


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    body_max: int | None  # largest body (bytes), None: the router's default
    raw_body: bool  # the body is a file (DICOM, ZIP), never parsed as JSON
    body: Mapping[str, Any] | None = None  # JSON Schema of the body, for the API description
    produces: tuple[str, ...] = (JSON_TYPE,)  # what a success answers (media types)


class Router:
    """Maps (method, full-match path pattern) to handlers; groups become arguments.

    Every body is bounded here, before any handler (or Orthanc, for the built-in routes the
    plugin forwards) parses it: its size, and unless the route takes files, its JSON nesting."""

    def __init__(self, body_max: int) -> None:
        self._routes: list[Route] = []
        self._body_max = body_max

    def add(self, method: str, pattern: str, handler: Handler, *, body_max: int | None = None,
            raw_body: bool = False, body: Mapping[str, Any] | None = None,
            produces: tuple[str, ...] = (JSON_TYPE,)) -> None:
        """A route; ``body`` and ``produces`` only describe it (``openapi``)."""
        self._routes.append(Route(method, re.compile(pattern), handler, body_max, raw_body, body,
                                  produces))

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def dispatch(self, request: Request) -> Response:
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if not route.raw_body:
                self._check_body(request.body, route.body_max or self._body_max)
            return route.handler(request, *match.groups())
        if allowed:
            raise ApiError(405, f"method {request.method} not allowed", allowed=allowed)
        raise ApiError(404, "no such route")

    @staticmethod
    def _check_body(body: bytes, body_max: int) -> None:
        if len(body) > body_max:
            raise ApiError(413, f"body larger than {body_max} bytes")
        try:
            jsonbound.check(body)
        except jsonbound.TooDeep as exc:
            raise ApiError(400, str(exc)) from exc
