"""Issue 11 section 5: the CSRF origin check (public_url, else Host and scheme), the scheme a
trusted proxy reports, and the address share links are built from."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from fakes import FakeLog, FakeOrthanc
from orthanc_nas import config
from orthanc_nas.app import App
from orthanc_nas.auth.backend import same_origin
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.keys import KeyRing
from orthanc_nas.web import ApiError, Request, client_scheme, origin_of

PROXY = (ipaddress.ip_network("10.0.0.1/32"),)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://PACS.example", "https://pacs.example"),
    ("https://pacs.example:443/x?y", "https://pacs.example"),
    ("http://pacs.example:80", "http://pacs.example"),
    ("http://pacs.example:8042", "http://pacs.example:8042"),
    ("http://[::1]:8042", "http://[::1]:8042"),
    ("ftp://pacs.example", None), ("null", None), ("http://", None),
    ("http://user@pacs.example", None), ("http://pacs.example:99999", None),
])
def test_origin_of(url: str, expected: str | None) -> None:
    assert origin_of(url) == expected


@pytest.mark.parametrize(("peer", "proto", "trusted", "https", "expected"), [
    ("10.0.0.1", "https", PROXY, False, "https"),
    ("10.0.0.1", "http, https", PROXY, False, "https"),  # the proxy's own, right-most entry
    ("10.0.0.1", "https, http", PROXY, False, "http"),
    ("10.0.0.9", "https", PROXY, False, "http"),  # not our proxy: the client's own word
    ("10.0.0.1", "https", (), False, "http"),
    ("127.0.0.1", "", (), True, "https"),  # Orthanc serves TLS itself
])
def test_client_scheme(peer: str, proto: str, trusted: tuple[ipaddress.IPv4Network, ...],
                       https: bool, expected: str) -> None:
    assert client_scheme(peer, proto, trusted, https) == expected


def req(origin: str, host: str = "pacs.lan:8042", proto: str = "http") -> Request:
    return Request("POST", "/api/x", {"origin": origin, "host": host,
                                      "x-forwarded-proto": proto})


def test_same_origin_without_public_url_needs_host_and_scheme() -> None:
    assert same_origin(req("http://pacs.lan:8042"), None)
    assert same_origin(req("http://PACS.lan:8042"), None)
    assert not same_origin(req("https://pacs.lan:8042"), None)  # scheme differs
    assert same_origin(req("https://pacs.lan:8042", proto="https"), None)
    assert not same_origin(req("http://pacs.lan:8042", proto="https"), None)
    assert not same_origin(req("http://pacs.lan:9999"), None)
    assert not same_origin(req("http://evil.example"), None)
    assert not same_origin(req("null"), None)


def test_same_origin_with_public_url_accepts_only_it() -> None:
    public = "https://pacs.example"
    assert same_origin(req("https://pacs.example", host="internal:8042"), public)
    assert same_origin(req("https://pacs.example:443", host="internal:8042"), public)
    assert not same_origin(req("http://pacs.lan:8042"), public)  # the Host no longer counts
    assert not same_origin(req("http://pacs.example"), public)  # scheme
    assert not same_origin(req("https://pacs.example:8443"), public)  # port
    assert not same_origin(req("https://evil.example", host="evil.example"), public)


def app_with(tmp_path: Path, **section: object) -> App:
    cfg = config.load({"OrthancNAS": {"data_dir": str(tmp_path), **section}})
    return App(cfg, SqliteDatabase(tmp_path / "x.sqlite"), KeyRing(bytes(32)), ManualClock(),
               FakeLog(), FakeOrthanc())


def test_share_links_point_only_to_public_url_or_an_allowed_host(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    assert app.site.base_url(req("", host="127.0.0.1:8042")) == "http://127.0.0.1:8042"
    assert app.site.base_url(req("", host="localhost")) == "http://localhost"
    assert app.site.base_url(req("", host=f"{socket.gethostname()}:8042")).endswith(":8042")
    for forged in ("evil.example", "evil.example:8042", "", "127.0.0.1@evil.example",
                   "evil.example/127.0.0.1"):
        with pytest.raises(ApiError) as err:
            app.site.base_url(req("", host=forged))
        assert err.value.status == 409 and "public_url" in err.value.message
        assert "allowed_hosts" in err.value.message
    listed = app_with(tmp_path / "b", allowed_hosts=["pacs.lan", "[fd00::1]"])
    assert listed.site.base_url(req("", host="PACS.lan:8042", proto="https")) == (
        "https://pacs.lan:8042")
    assert listed.site.base_url(req("", host="[fd00::1]")) == "http://[fd00::1]"
    public = app_with(tmp_path / "c", public_url="https://pacs.example/")
    assert public.site.base_url(req("", host="evil.example")) == "https://pacs.example"


def test_forwarded_proto_is_believed_from_a_trusted_proxy_only(tmp_path: Path) -> None:
    app = app_with(tmp_path, auth={"trusted_proxies": ["10.0.0.1"]})
    forged = Request("GET", "/", {"x-forwarded-proto": "https"}, ip="192.0.2.7")
    assert app._from_client(forged).scheme == "http"
    proxied = Request("GET", "/", {"x-forwarded-proto": "https"}, ip="10.0.0.1")
    assert app._from_client(proxied).scheme == "https"
    plain = Request("GET", "/", {}, ip="192.0.2.7")
    assert app._from_client(plain) is plain  # the hot path allocates nothing
