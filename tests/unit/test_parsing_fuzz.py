"""Fuzzing (hypothesis) of what parses bodies and headers from outside: nesting, size, encoding
(invalid UTF-8, surrogates, BOMs, UTF-16/32) and type confusion.

Short and deterministic in the normal run; ``ORTHANC_NAS_HYPOTHESIS_PROFILE=long`` runs many
more examples (docs/testing.md).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from orthanc_nas import jsonbound
from orthanc_nas.auth.access import PUBLIC
from orthanc_nas.routing import Call, Router, route
from orthanc_nas.web import (
    ApiError,
    Request,
    Response,
    client_ip,
    field_of,
    int_param,
    json_body,
    search_params,
)

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
             "utf-32-be")
# Characters whose UTF-16/32 bytes hold a quote, a backslash or a bracket, and the JSON
# punctuation itself: what could make a byte scanner misread where strings begin and end.
TRICKY = st.sampled_from('"\\[]{}/*\n:,\u2222\u225b\u5b22\u225c\u5c22\u2200\u007b\u0022'
                         "\u5d22\ud800\udfff\ufeff\x00")
TEXT = st.text(st.one_of(TRICKY, st.characters()), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=40)


def nesting(value: Any) -> int:
    """How deep arrays and objects nest in a parsed value."""
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    return 0


def wrap(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """A JSON document as a client might send it: any encoding, spacing and escaping, maybe
    nested deep, maybe with stray bytes around it."""
    value = wrap(draw(JSON_VALUES), draw(st.integers(0, 80)))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                      indent=draw(st.none() | st.integers(0, 2)))
    raw = text.encode(draw(st.sampled_from(ENCODINGS)), "surrogatepass")
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=3)) + raw + draw(st.binary(max_size=3))
    return raw


TEXTS = st.one_of(json_texts(), st.binary(max_size=200),
                  st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"/*", b"*/",
                                            b"//", b"\n", b":", b",", b"1", b'"a"', b"\xff",
                                            b"\x00"]), max_size=60).map(b"".join))


def parsed(raw: bytes) -> tuple[bool, Any]:
    """What Python's own parser makes of ``raw`` (bytes: it detects UTF-8/16/32 itself)."""
    try:
        return True, json.loads(raw)
    except (ValueError, RecursionError):
        return False, None


# Found by this test: in UTF-16, U+225B is the bytes '[' '"': a byte scan took the string to
# end there, and the real closing quote to open one hiding every bracket after it.
QUOTE_IN_A_CHARACTER = json.dumps(["\u225b", wrap([], 200)], ensure_ascii=False).encode(
    "utf-16-le")


@given(TEXTS)
@example(QUOTE_IN_A_CHARACTER)
def test_depth_never_below_what_json_reaches(raw: bytes) -> None:
    ok, value = parsed(raw)
    if ok:
        assert jsonbound.depth(raw) >= nesting(value)


@given(TEXTS, st.integers(1, 80))
@example(QUOTE_IN_A_CHARACTER, 64)
def test_loads_raises_only_value_errors_and_never_passes_a_deep_body(raw: bytes,
                                                                      bound: int) -> None:
    for text in (raw, raw.decode("utf-8", "surrogateescape")):
        try:
            value = jsonbound.loads(text, bound)
        except ValueError:  # TooDeep, JSONDecodeError and UnicodeDecodeError are all ones
            continue
        assert nesting(value) <= bound


BODIES = st.one_of(TEXTS, JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(TEXT, JSON_VALUES, max_size=4).map(
                       lambda d: json.dumps(d).encode()))


@given(BODIES, st.integers(0, 300), st.sampled_from(["GET", "POST"]),
       st.dictionaries(TEXT, TEXT, max_size=3))
def test_body_helpers_answer_a_value_or_an_api_error(body: bytes, max_bytes: int, method: str,
                                                     query: dict[str, str]) -> None:
    request = Request(method, "/x", query=query, body=body)
    try:
        data = json_body(request, max_bytes)
    except ApiError as err:
        assert 400 <= err.status < 500
    else:
        assert isinstance(data, dict) and len(body) <= max_bytes
        for name in list(data)[:4]:
            for kind in (str, int, bool, list, dict, float):
                try:
                    field_of(data, name, kind, required=bool(len(name) % 2), max_len=5)
                except ApiError as err:
                    assert err.status == 400 and err.extra["field"] == name
    try:
        params = search_params(request, max_bytes)
    except ApiError as err:
        assert 400 <= err.status < 500
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    for name in list(params)[:4]:
        try:
            assert 0 <= int_param(params, name, 0, 0, 10**6) <= 10**6
        except ApiError as err:
            assert err.status == 400


HEADER = st.text(st.one_of(st.sampled_from(";=, \t\"\\\r\n"), st.characters()), max_size=60)


@given(st.dictionaries(st.sampled_from(["cookie", "authorization", "x-forwarded-for",
                                         "x-forwarded-proto"]), HEADER), TEXT)
def test_header_readers_answer_text_or_none(headers: dict[str, str], name: str) -> None:
    request = Request("GET", "/x", headers)
    cookie = request.cookie(name)
    assert cookie is None or isinstance(cookie, str)
    bearer = request.bearer()
    assert bearer is None or (bearer and bearer == bearer.strip())
    assert isinstance(request.is_https, bool)


PROXIES = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"),
           ipaddress.ip_network("::1/128"))
ADDRESS = st.one_of(st.ip_addresses().map(str), HEADER)


@given(ADDRESS, st.lists(ADDRESS, max_size=5).map(",".join), st.booleans())
def test_client_ip_is_the_peer_or_a_forwarded_address(peer: str, forwarded: str,
                                                      trusted: bool) -> None:
    ip = client_ip(peer, forwarded, PROXIES if trusted else ())
    assert ip == peer or ip in {str(ipaddress.ip_address(h.strip()))
                                for h in forwarded.split(",") if _is_ip(h)}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _handler(svc: object, call: Call) -> Response:
    return Response(200, json.dumps(list(call.args)).encode())


ROUTER: Router[None] = Router((route("POST", r"/api/things/([0-9]{1,4})", _handler, PUBLIC),
                               route("PUT", r"/api/files", _handler, PUBLIC, body_max=10),
                               route("GET", r"/api/(a|b)/([^/]+)", _handler, PUBLIC)), 64)


@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "", "get"]),
       st.one_of(st.sampled_from(["/api/things/1", "/api/files", "/api/a/x", "/api/b/%2F"]),
                 st.text(max_size=30)), BODIES)
def test_dispatch_answers_a_handlers_response_or_an_api_error(method: str, path: str,
                                                              body: bytes) -> None:
    try:
        response = ROUTER.dispatch(None, Request(method, path, body=body), None, False)
    except ApiError as err:
        assert err.status in (400, 404, 405, 413)
        return
    assert response.status == 200
    if method != "PUT":  # every body that reached a JSON route is bounded
        assert len(body) <= 64 and jsonbound.depth(body) <= jsonbound.MAX_DEPTH
