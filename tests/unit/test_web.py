"""Pure HTTP helpers: the client address behind trusted proxies, search parameters."""

from __future__ import annotations

import ipaddress

import pytest

from orthanc_nas.web import (
    ApiError,
    Request,
    client_ip,
    int_param,
    routed_path,
    search_params,
)

PROXIES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/24"))


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("127.0.0.1", "203.0.113.9", (), "127.0.0.1"),  # nothing trusted: the header is ignored
    ("198.51.100.7", "203.0.113.9", PROXIES, "198.51.100.7"),  # not from a proxy
    ("127.0.0.1", "203.0.113.9", PROXIES, "203.0.113.9"),
    ("127.0.0.1", "", PROXIES, "127.0.0.1"),
    # The client may send its own header: only the entry our proxies appended counts.
    ("127.0.0.1", "1.2.3.4, 203.0.113.9", PROXIES, "203.0.113.9"),
    ("127.0.0.1", "203.0.113.9, 10.0.0.5", PROXIES, "203.0.113.9"),  # two proxies in a row
    ("127.0.0.1", "203.0.113.9, garbage", PROXIES, "127.0.0.1"),  # unreadable: last known
    ("127.0.0.1", "10.0.0.9", PROXIES, "10.0.0.9"),  # only proxies: the furthest one
    ("127.0.0.1", " 2001:db8::1 ", PROXIES, "2001:db8::1"),
])
def test_client_ip(peer: str, forwarded: str, trusted: tuple[ipaddress.IPv4Network, ...],
                   expected: str) -> None:
    assert client_ip(peer, forwarded, trusted) == expected


def test_search_params_from_a_query_or_a_body() -> None:
    assert search_params(Request("GET", "/x", query={"limit": "5"}), 1024) == {"limit": "5"}
    posted = Request("POST", "/x", body=b'{"limit": 5, "patient": "P-1", "tag": null}')
    assert search_params(posted, 1024) == {"limit": "5", "patient": "P-1"}
    flag = Request("POST", "/x", body=b'{"mine": true, "limit": false}')
    assert search_params(flag, 1024) == {"mine": "true", "limit": "false"}
    for body in (b'{"limit": [5]}', b'{"limit": {"a": 1}}'):
        with pytest.raises(ApiError) as err:
            search_params(Request("POST", "/x", body=body), 1024)
        assert err.value.status == 400 and err.value.extra["field"] == "limit"


@pytest.mark.parametrize("raw", ["-1", "11", "1.5", "\u00b2", "\u0663", ""])
def test_int_param_refuses_what_is_not_a_plain_integer_in_range(raw: str) -> None:
    with pytest.raises(ApiError) as err:
        int_param({"limit": raw}, "limit", 5, 0, 10)
    assert err.value.status == 400 and err.value.extra["field"] == "limit"


@pytest.mark.parametrize(("uri", "routed"), [
    ("/", "/"), ("/tools/find", "/tools/find"), ("/tools/find/", "/tools/find"),
    ("/studies/x/archive/", "/studies/x/archive"), ("//api//profile/", "/api/profile"),
    ("/api/a%2Fb", "/api/a%2Fb"),
])
def test_routed_path_is_the_path_orthanc_routes(uri: str, routed: str) -> None:
    """Orthanc drops a trailing slash (and refuses empty components) before routing: the
    filter must judge that path, not the one it was handed."""
    assert routed_path(uri) == routed
