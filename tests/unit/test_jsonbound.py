"""The nesting bound read before any recursive JSON parser sees a body."""

from __future__ import annotations

import pytest

from orthanc_nas import jsonbound
from orthanc_nas.auth.access import PUBLIC
from orthanc_nas.routing import Call, Router, route
from orthanc_nas.web import ApiError, Request, Response


@pytest.mark.parametrize(("text", "expected"), [
    (b"", 0), (b"1", 0), (b"[]", 1), (b'{"a":[{"b":[]}]}', 4),
    (b'["[[[[", "\\"[[[["]', 1),  # brackets inside strings, escaped quotes
    (b"[[[", 3), (b"]]][[", 2),  # unbalanced: still a depth, the parser refuses it later
    (b'"unterminated [[[[', 0),
    # Orthanc's parser skips comments: brackets there must not lower the count.
    (b"[[/* ]] */[", 3), (b"[[// ]]\n[", 3), (b"[/* [[[[ */]", 1), (b"[[/* unterminated ]]", 2),
])
def test_depth(text: bytes, expected: int) -> None:
    assert jsonbound.depth(text) == expected


def test_loads_refuses_deep_text_before_parsing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # would overflow any recursive parser
    with pytest.raises(jsonbound.TooDeep):
        jsonbound.loads(deep)
    assert jsonbound.loads(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(jsonbound.TooDeep):
        jsonbound.loads("[" * 65 + "]" * 65)


def _echo(svc: object, call: Call) -> Response:
    return Response(200, call.request.body)


def _router() -> Router[None]:
    return Router((route("POST", "/json", _echo, PUBLIC),
                   route("POST", "/big", _echo, PUBLIC, body_max=1000)), body_max=200)


def _dispatch(router: Router[None], request: Request) -> Response:
    return router.dispatch(None, request, None)


def test_router_bounds_every_body_before_its_handler() -> None:
    router = _router()
    deep = b"[" * 65 + b"]" * 65
    with pytest.raises(ApiError) as err:
        _dispatch(router, Request("POST", "/json", body=deep))
    assert err.value.status == 400 and "nested deeper" in err.value.message
    with pytest.raises(ApiError) as err:
        _dispatch(router, Request("POST", "/json", body=b"x" * 201))
    assert err.value.status == 413
    assert _dispatch(router, Request("POST", "/big", body=b" " * 1000)).status == 200
    with pytest.raises(ApiError):
        _dispatch(router, Request("POST", "/big", body=deep))


def test_lone_surrogates_are_a_bad_request_not_a_crash_later() -> None:
    """``"\\ud800"`` parses, then fails wherever the text is stored or logged (a 500)."""
    from orthanc_nas.web import json_body

    for body in (b'{"username": "\\ud800", "pin": "x"}', b'{"\\udfff": 1}',
                 b'{"a": [{"b": "ok \\udc00"}]}'):
        with pytest.raises(ApiError) as err:
            json_body(Request("POST", "/api/login", body=body), 1024)
        assert err.value.status == 400 and "Unicode" in err.value.message
    assert json_body(Request("POST", "/x", body=b'{"a": "\\ud83d\\ude00"}'), 1024) == {
        "a": "\U0001f600"}  # a proper pair is fine
