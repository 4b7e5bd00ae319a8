"""Issue 11 section 5, as an attacker would try it on the real Orthanc: a cross-scheme Origin,
a forged X-Forwarded-Proto, an Origin other than public_url, and a forged Host when a share
link is created (the link must never point there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FAST
from dicom_factory import write_series
from harness import Client, OrthancServer, admin_account, deep_merge

PUBLIC = "https://pacs.example"


def study_of(admin: Client, folder: Path, patient_id: str) -> str:
    upload = write_series(folder, 1, patient_id=patient_id)[0]
    r = admin.post("/instances", data=upload.read_bytes())
    assert r.status_code == 200, r.text
    return str(r.json()["ParentStudy"])


def as_host(client: Client, host: str, **headers: str) -> dict[str, str]:
    """Headers of a request under another Host (requests then leaves the cookie out)."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.http.cookies)
    return {"Host": host, "Cookie": cookie, **headers}


def writes(client: Client, **headers: str) -> int:
    """A cookie-borne state-changing request with these headers: its status."""
    if "Host" in headers:
        headers = as_host(client, headers.pop("Host"), **headers)
    return client.post("/api/images/search", {}, headers=headers).status_code


def onboarded(server: OrthancServer, origin: str) -> Client:
    admin = server.client()
    admin.http.headers["Origin"] = origin
    admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    return admin


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancServer, Client]]:
    server = OrthancServer(tmp_path_factory.mktemp("public"), deep_merge(
        FAST, {"OrthancNAS": {"public_url": PUBLIC, "auth": {"cookie_secure": "never"}}})).start()
    yield server, onboarded(server, PUBLIC)
    server.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancServer, Client]]:
    server = OrthancServer(tmp_path_factory.mktemp("proxied"), deep_merge(FAST, {"OrthancNAS": {
        "auth": {"trusted_proxies": ["127.0.0.1"]}, "allowed_hosts": ["pacs.lan"]}})).start()
    yield server, onboarded(server, server.url)
    server.stop()


def test_csrf_origin_must_match_scheme_as_well_as_host(orthanc: OrthancServer,
                                                       admin: Client) -> None:
    host = orthanc.url.split("://")[1]
    assert writes(admin) == 200  # the harness sends Origin http://<host>, as our pages do
    assert writes(admin, Origin=f"https://{host}") == 403  # another scheme: another origin
    # A client cannot make itself https: the header counts only from a trusted proxy.
    assert writes(admin, Origin=f"https://{host}", **{"X-Forwarded-Proto": "https"}) == 403
    assert writes(admin, Origin="http://evil.example") == 403


def test_csrf_origin_is_public_url_only_when_set(public: tuple[OrthancServer, Client]) -> None:
    server, admin = public
    host = server.url.split("://")[1]
    assert writes(admin, Origin=f"http://{host}") == 403  # matches Host, not public_url
    assert writes(admin, Origin=PUBLIC) == 200
    assert writes(admin, Origin=PUBLIC + ":443") == 200
    assert writes(admin, Origin="http://pacs.example") == 403
    assert writes(admin, Origin="https://pacs.example:8443") == 403
    assert writes(admin, Origin="https://evil.example", Host="evil.example") == 403


def test_csrf_scheme_from_a_trusted_proxy(proxied: tuple[OrthancServer, Client]) -> None:
    server, admin = proxied
    host = server.url.split("://")[1]
    https = {"X-Forwarded-Proto": "https"}
    assert writes(admin, Origin=f"https://{host}", **https) == 200  # TLS ended at the proxy
    assert writes(admin, Origin=f"http://{host}", **https) == 403


def test_a_forged_host_never_becomes_a_share_link(orthanc: OrthancServer, admin: Client,
                                                  tmp_path: Path) -> None:
    study = study_of(admin, tmp_path, "HOST-ATTACK")
    before = len(admin.get("/api/shares").json()["shares"])
    # A page served under evil.example (DNS rebinding, a proxy passing any Host): Origin and
    # Host agree, so the CSRF check passes; the link must still not point there.
    r = admin.post(f"/api/images/{study}/share", {},
                   headers=as_host(admin, "evil.example", Origin="http://evil.example"))
    assert r.status_code == 409, r.text
    assert "evil.example" not in r.text
    assert "public_url" in r.json()["error"] and "allowed_hosts" in r.json()["error"]
    assert len(admin.get("/api/shares").json()["shares"]) == before  # nothing was created
    # The default allow-list (localhost, 127.0.0.1, this machine's name) keeps it usable.
    ok = admin.post(f"/api/images/{study}/share", {})
    assert ok.status_code == 200 and ok.json()["url"].startswith(orthanc.url + "/s/")


def test_share_links_use_public_url_or_an_allowed_host(
        public: tuple[OrthancServer, Client], proxied: tuple[OrthancServer, Client],
        tmp_path: Path) -> None:
    admin = public[1]
    study = study_of(admin, tmp_path / "a", "HOST-PUBLIC")
    r = admin.post(f"/api/images/{study}/share", {},
                   headers=as_host(admin, "evil.example", Origin=PUBLIC))
    assert r.status_code == 200 and r.json()["url"].startswith(PUBLIC + "/s/"), r.text
    _, admin = proxied
    study = study_of(admin, tmp_path / "b", "HOST-LISTED")
    r = admin.post(f"/api/images/{study}/share", {}, headers=as_host(
        admin, "pacs.lan:8443", Origin="https://pacs.lan:8443", **{"X-Forwarded-Proto": "https"}))
    assert r.status_code == 200 and r.json()["url"].startswith("https://pacs.lan:8443/s/"), r.text
