"""Turns a plugin ``Response`` into calls on Orthanc's REST output, so that every request gets
an HTTP answer: never a closed connection.

Orthanc 1.10.1 throws inside ``SendHttpStatus`` for a status it refuses (301, 405 and 308 need
"dedicated methods", 429 and other codes are not in its enumeration); the refused call leaves
the answer half-made, nothing is sent, and the client sees its connection closed a second
later (the keep-alive timeout). A REST callback that returns without answering ends the same
way. It does not check header values either: CR/LF in one is sent as is (a second header, or a
broken answer). So everything is decided here, in plain Python, before the first SDK call:
a status Orthanc cannot send is mapped to one it can (``MAPPED``), headers are checked, and
anything wrong becomes a JSON 500 logged once (method, path, what went wrong: never a value,
which may be a cookie or a share token).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .web import JSON_TYPE, SECURITY_HEADERS, Response, redacted_path

# Statuses Orthanc 1.10.1 sends through SendHttpStatus with their body, measured against the
# real server (every code from 200 to 599 through a plugin route; see docs/security.md). 204
# and 304 are left out: Orthanc announces the body's length but a client reads none, and the
# bytes left over corrupt the next answer on that keep-alive connection.
SENDABLE = frozenset({
    200, 201, 202, 203, 205, 206, 207, 208, 226, 300, 302, 303, 305, 307,
    *range(400, 405), *range(406, 418), 422, 423, 424, 426, *range(500, 508), 509, 510})
# Statuses the plugin's code uses that Orthanc cannot send with a body, and what goes instead.
MAPPED = {
    429: 503,  # throttled: "503 Service Unavailable" with Retry-After
    405: 400,  # a method the route does not take: 400 naming the allowed ones (and Allow)
    301: 302,  # Redirect() is Orthanc's only 301, and browsers cache it for good
    308: 307,
}
RETRY_AFTER = "60"  # seconds, sent with every mapped 429
HEADER_MAX = 4096  # characters of one header value
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an HTTP header name (RFC 9110)
_VALUE = re.compile(r"[\x20-\x7e\t]*")  # visible ASCII, spaces and tabs: no CR, LF or NUL


class Unanswerable(ValueError):
    """The response cannot be sent as it is; ``reason`` says why (no values, no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Prepared:
    """What goes to Orthanc, already checked: sending it cannot be refused."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str


def internal_error() -> Response:
    return Response(500, b'{"error":"internal error"}', JSON_TYPE, list(SECURITY_HEADERS))


def _header(name: str, value: str) -> tuple[str, str]:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise Unanswerable("a header name that is not an HTTP token")
    if not isinstance(value, str) or len(value) > HEADER_MAX or not _VALUE.fullmatch(value):
        raise Unanswerable(f"header {name} has a value HTTP cannot carry (control or non-ASCII "
                           "characters, or too long)")
    return name, value


def _body(body: Any) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise Unanswerable(f"a body of type {type(body).__name__}")


def prepare(response: Response) -> Prepared:
    """The answer as Orthanc can send it; Unanswerable if it cannot be made so."""
    status = response.status
    if not isinstance(status, int) or isinstance(status, bool):
        raise Unanswerable("a status that is not an integer")
    headers = [_header(n, v) for n, v in response.headers]
    body = _body(response.body)
    content_type = _header("Content-Type", response.content_type)[1]
    if response.redirect is not None:
        headers.append(_header("Location", response.redirect))
        body = b""
        if status not in (302, 303, 307):
            status = MAPPED.get(status, 302)
    if status == 429:
        headers.append(("Retry-After", RETRY_AFTER))
    status = MAPPED.get(status, status)
    if status not in SENDABLE:
        raise Unanswerable(f"status {response.status}, which Orthanc cannot send")
    if status != 200:
        try:
            body.decode("utf-8")  # plugin 4.0 takes the body as text
        except UnicodeDecodeError as exc:
            raise Unanswerable(f"a {status} body that is not UTF-8") from exc
        if b"\x00" in body:
            raise Unanswerable(f"a {status} body holding NUL")
    return Prepared(status, tuple(headers), body, content_type)


def error_answer(method: str, path: str, reason: str, log: Callable[[str], None]) -> Prepared:
    """The JSON 500 that replaces an answer that could not be made; logged once."""
    log(f"OrthancNAS: {method} {redacted_path(path)}: answered 500 instead: {reason}")
    return prepare(internal_error())


def _send_status(output: Any, status: int, body: bytes) -> None:
    try:
        output.SendHttpStatus(status, body)  # plugin >= 4.2
    except TypeError:
        text = body.decode("utf-8")
        output.SendHttpStatus(status, text, len(body))  # plugin 4.0


def send(output: Any, answer: Prepared) -> None:
    """The SDK calls for a prepared answer (every one of which Orthanc accepts)."""
    for name, value in answer.headers:
        output.SetHttpHeader(name, value)
    if answer.status == 200:
        output.AnswerBuffer(answer.body, answer.content_type)
        return
    if answer.body:
        output.SetHttpHeader("Content-Type", answer.content_type)
    _send_status(output, answer.status, answer.body)


def answer(output: Any, method: str, path: str, handle: Callable[[], Response],
           log: Callable[[str], None]) -> None:
    """Runs ``handle`` and answers what it returns; whatever fails on the way (the handler, a
    status or header Orthanc would refuse), the client gets a JSON answer."""
    try:
        prepared = prepare(handle())
    except Unanswerable as exc:
        prepared = error_answer(method, path, exc.reason, log)
    except Exception as exc:  # a bug in the handler: say so without a stack trace or data
        prepared = error_answer(method, path, f"{type(exc).__name__} in the handler", log)
    try:
        send(output, prepared)
    except Exception as exc:
        # Not expected (everything sent was checked); the answer may be half-made, so Orthanc
        # is left to answer the raised error itself, which it does when nothing was sent yet.
        log(f"OrthancNAS: {method} {redacted_path(path)}: Orthanc refused the answer "
            f"({prepared.status}): {type(exc).__name__}")
        raise

