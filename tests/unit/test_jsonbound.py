"""The nesting bound read before any recursive JSON parser sees a body."""

from __future__ import annotations

import pytest

from orthanc_nas import jsonbound
from orthanc_nas.web import ApiError, Request, Response, Router


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


def _router() -> Router:
    router = Router(body_max=200)
    router.add("POST", "/json", lambda request: Response(200, request.body))
    router.add("POST", "/file", lambda request: Response(200, request.body), raw_body=True)
    router.add("POST", "/big", lambda request: Response(200), body_max=1000)
    return router


def test_router_bounds_every_body_before_its_handler() -> None:
    router = _router()
    deep = b"[" * 65 + b"]" * 65
    with pytest.raises(ApiError) as err:
        router.dispatch(Request("POST", "/json", body=deep))
    assert err.value.status == 400 and "nested deeper" in err.value.message
    with pytest.raises(ApiError) as err:
        router.dispatch(Request("POST", "/json", body=b"x" * 201))
    assert err.value.status == 413
    assert router.dispatch(Request("POST", "/big", body=b" " * 1000)).status == 200
    with pytest.raises(ApiError):
        router.dispatch(Request("POST", "/big", body=deep))
    # A file's bytes are never read as JSON, whatever they hold.
    assert router.dispatch(Request("POST", "/file", body=deep * 10)).body == deep * 10
