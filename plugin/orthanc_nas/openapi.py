"""The plugin's HTTP API as an OpenAPI 3.1 document, made from the router's own table.

Nothing here is written by hand per route: every (method, pattern) the ``Router`` holds becomes
an operation, so the description cannot drift from what is served. A pattern's capturing and
bare regex parts become path parameters (their regex as ``pattern``); groups that are a plain
choice of words (``(store|move)``, ``(?:a|b)``) become separate paths, since who may call them
can differ per word. Who may call each path is the route's own declaration (``auth.access``),
or for Orthanc's routes the role policy asked about an example path, as the filter would be.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .auth.access import Kind
from .auth.policy import Policy
from .auth.sessions import PENDING_COOKIE, SESSION_COOKIE
from .routing import Route

ERROR = {"anyOf": [
    {"type": "object", "required": ["error"],
     "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
    # Orthanc's own answer to a URI it cannot read, before any plugin sees the request.
    {"type": "object", "required": ["HttpStatus", "Message"],
     "properties": {"HttpStatus": {"type": "integer"}, "Message": {"type": "string"}}}]}
# Values tried, in order, as an example of a path parameter (the first its regex takes).
_EXAMPLES = ("1", "x", "-".join(["0" * 8] * 5), "A" * 43, "login", "x.css")
_QUANTIFIER = re.compile(r"[?*+]\??|\{\d*(?:,\d*)?\}\??")
_LITERAL_ESCAPE = re.compile(r"\\([^A-Za-z0-9])")
_META = set("\\[](){}.*+?^$|")


def text(max_len: int) -> dict[str, Any]:
    """The schema of a string field of at most ``max_len`` characters."""
    return {"type": "string", "maxLength": max_len}


def obj(required: Sequence[str] = (), /, **properties: dict[str, Any]) -> dict[str, Any]:
    """The schema of a JSON object body (fields not named here are ignored by the handler)."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
SEARCH_VALUE: dict[str, Any] = {"type": ["string", "number", "null"]}


class PatternError(ValueError):
    """A route pattern this module cannot turn into a path template."""


@dataclass(frozen=True)
class _Piece:
    text: str  # literal text, or the regex of a parameter
    literal: bool
    capturing: bool = False
    choices: tuple[str, ...] = ()  # a plain choice of words: expanded into paths


def _closing(pattern: str, start: int, open_char: str, close_char: str) -> int:
    """The index just past the bracket that closes the one at ``start``."""
    depth, i = 0, start
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]" or i == start + 1
        elif char == "[" and open_char == "(":
            in_class = True
        elif char == open_char:
            depth += 1
        elif char == close_char and (open_char == "(" or i > start + 1):
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PatternError(f"unbalanced {open_char!r} in {pattern!r}")


def _words(inner: str) -> tuple[str, ...] | None:
    """The alternatives of ``inner`` when each is plain text, else None."""
    parts = []
    for part in inner.split("|"):
        text = _LITERAL_ESCAPE.sub(r"\1", part)
        if _META & set(_LITERAL_ESCAPE.sub("", part)):
            return None
        parts.append(text)
    return tuple(parts)


def _pieces(pattern: str) -> list[_Piece]:
    """The top-level parts of a route's regex: text, and groups or atoms with quantifiers."""
    out: list[_Piece] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            end, atom, literal = i + 2, pattern[i + 1], True
        elif char == "(":
            end = _closing(pattern, i, "(", ")")
            atom, literal = pattern[i:end], False
        elif char == "[":
            end = _closing(pattern, i, "[", "]")
            atom, literal = pattern[i:end], False
        elif char in _META:
            end, atom, literal = i + 1, char, False
            if char in "^$":
                raise PatternError(f"anchors are not supported in {pattern!r}")
        else:
            end, atom, literal = i + 1, char, True
        quantifier = _QUANTIFIER.match(pattern, end)
        if quantifier:
            end, literal = quantifier.end(), False
        text = pattern[i:end] if not literal else atom
        out.append(_group(text) if text.startswith("(") else _Piece(text, literal))
        i = end
    return out


def _group(text: str) -> _Piece:
    capturing = not text.startswith("(?")
    if text.startswith(("(?P<", "(?<")) or (text.startswith("(?") and not text.startswith("(?:")):
        raise PatternError(f"only plain and (?:...) groups are supported: {text!r}")
    inner_start = 1 if capturing else 3
    if text.endswith(")"):  # no quantifier
        inner = text[inner_start:-1]
        words = _words(inner)
        if words is not None:
            return _Piece(text, False, capturing, words)
        return _Piece(inner, False, capturing)
    return _Piece(text if not capturing else "(?:" + text[1:], False, capturing)


def example(regex: str) -> str:
    """A value the parameter's regex takes (for asking the policy as the filter would)."""
    compiled = re.compile(regex)
    for value in _EXAMPLES:
        if compiled.fullmatch(value):
            return value
    raise PatternError(f"no example value for the parameter pattern {regex!r}")


@dataclass(frozen=True)
class Path:
    """One concrete path template of a route: its text and its parameters."""

    template: str
    parameters: tuple[tuple[str, str], ...]  # (name, regex)

    def sample(self) -> str:
        path = self.template
        for name, regex in self.parameters:
            path = path.replace("{" + name + "}", example(regex), 1)
        return path


def paths_of(route: Route) -> list[Path]:
    """The path templates a route's pattern stands for, choices of words expanded."""
    pieces = _pieces(route.pattern.pattern)
    names = list(route.params)
    slots: list[list[tuple[str, tuple[str, str] | None]]] = []
    captured = unnamed = 0
    for piece in pieces:
        name = None
        if piece.capturing:
            name = names[captured] if captured < len(names) else f"p{captured + 1}"
            captured += 1
        if piece.literal:
            slots.append([(piece.text, None)])
        elif piece.choices:
            slots.append([(word, None) for word in piece.choices])
        else:
            if name is None:
                unnamed += 1
                name = "id" if unnamed == 1 else f"id{unnamed}"
            slots.append([("{" + name + "}", (name, piece.text))])
    out = []
    for combination in itertools.product(*slots):
        template = "".join(text for text, _ in combination)
        path = Path(template, tuple(param for _, param in combination if param is not None))
        if not route.pattern.fullmatch(path.sample()):
            raise PatternError(f"{route.pattern.pattern!r} read as {template!r}: wrong")
        out.append(path)
    return out


@dataclass(frozen=True)
class Access:
    public: bool
    pending: bool  # open to a pending login (PIN accepted, second factor due)
    restricted: bool  # open to a session that must first change its PIN or enroll 2FA
    roles: tuple[str, ...]

    def describe(self) -> str:
        if self.public:
            return "Public: no login needed."
        text = (f"Needs a login with the role {', '.join(self.roles)}." if self.roles
                else "Refused to every role by the access policy.")
        if self.restricted:
            text += " Also open to a session that must first change its PIN or enroll 2FA."
        if self.pending:
            text += " Also open to a pending login (second factor due)."
        return text


def access_of(route: Route, path: str, policy: Policy, roles: Sequence[str]) -> Access:
    """Who may call ``route`` at ``path`` (a concrete path): its declaration, or for one of
    Orthanc's own routes the role policy, as the filter decides."""
    kind = route.access.kind
    if kind is Kind.PUBLIC:
        return Access(True, False, False, tuple(roles))
    if kind is Kind.POLICY:
        allowed = tuple(r for r in roles if policy.allows(r, route.method, path))
    elif kind in (Kind.PENDING, Kind.SESSION, Kind.ENROLLING):
        allowed = tuple(roles) if kind is not Kind.PENDING else ()
    else:
        allowed = tuple(r for r in roles if r in route.access.roles)
    return Access(False, kind in (Kind.PENDING, Kind.SESSION),
                  kind in (Kind.SESSION, Kind.ENROLLING), allowed)


def _content(types: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for media in types:
        base = media.split(";")[0].strip()
        if base == "application/json":
            out[base] = {"schema": {}}
        elif base.startswith("text/"):
            out[base] = {"schema": {"type": "string"}}
        else:
            out[base] = {"schema": {"type": "string", "contentMediaType": base}}
    return out


_ERROR = {"description": "Refused by the plugin, saying why",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RESPONSES = {
    # Orthanc's filter can only refuse, with an empty body; the plugin's own refusals (a
    # handler's second look) carry a JSON error.
    "Refused": {"description": "Refused: by Orthanc's filter (empty body, no media type) or "
                              "by the plugin (a JSON error)"},
    "Error": _ERROR,
    "Unavailable": {**_ERROR, "description": "Throttled (Retry-After) or a service unavailable"},
}


def _responses(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "Done", "content": _content(route.produces)},
        "403": {"$ref": "#/components/responses/Refused"},
        "4XX": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Unavailable"},
    }
    if any(media.startswith("text/html") for media in route.produces):
        # A page's refusal is a page too (the share link's "Unknown link").
        responses["4XX"] = {**_ERROR, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
            "text/html": {"schema": {"type": "string"}}}}
        responses["302"] = {"description": "Sent elsewhere (login page, the link's landing)",
                            "headers": {"Location": {"schema": {"type": "string"}}}}
    return responses


def _request_body(route: Route) -> dict[str, Any] | None:
    if route.method not in ("POST", "PUT"):
        return None
    schema = dict(route.body) if route.body is not None else {"type": "object"}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _operation_id(method: str, template: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", template.replace("{", "by_")).strip("_")
    return f"{method.lower()}_{words or 'root'}"


def document(routes: Iterable[Route], policy: Policy, roles: Sequence[str],
             version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (a ``Router``'s table)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for path in paths_of(route):
            access = access_of(route, path.sample(), policy, roles)
            operation: dict[str, Any] = {
                "operationId": _operation_id(route.method, path.template),
                "description": access.describe(),
                "x-access": "public" if access.public else "login",
                "x-roles": list(access.roles),
                "x-pending-login": access.pending,
                "x-restricted-session": access.restricted,
                "security": [] if access.public else (
                    [{"session": []}, {"token": []}]
                    + ([{"pending": []}] if access.pending else [])),
                "responses": _responses(route),
            }
            if path.parameters:
                operation["parameters"] = [
                    {"name": name, "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": f"^(?:{regex})$"}}
                    for name, regex in path.parameters]
            body = _request_body(route)
            if body is not None:
                operation["requestBody"] = body
            methods = paths.setdefault(path.template, {})
            methods.setdefault(route.method.lower(), operation)  # the router's first wins
    return {
        "openapi": "3.1.0",
        "info": {"title": "Orthanc NAS Integration", "version": version,
                 "description": "The plugin's own HTTP API (Orthanc's is described by "
                                "Orthanc). Made from the route table at run time."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "responses": _RESPONSES,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                            "description": "A login session (POST /api/login); state changes "
                                           "also need a same-origin Origin header"},
                "token": {"type": "http", "scheme": "bearer",
                          "description": "An API token (POST /api/tokens)"},
                "pending": {"type": "apiKey", "in": "cookie", "name": PENDING_COOKIE,
                            "description": "A login whose second factor is due"},
            },
        },
    }
