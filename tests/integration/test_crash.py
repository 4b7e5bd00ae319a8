"""No request crashes Orthanc: bodies nested deep enough to overflow a recursive JSON parser,
sent anonymously and as each role to every route that reads a body, and Orthanc coming back
by itself when it dies anyway (``scripts/start``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import (
    ADMIN_PIN,
    PLATFORM,
    REPO,
    VENV,
    Client,
    OrthancServer,
    admin_account,
    free_port,
    make_user,
    wait_until,
)
from orthanc_nas import jsonbound
from orthanc_nas.api import native, transfers
from orthanc_nas.auth import policy
from orthanc_nas.auth.policy import UNSEEN_BODIES

FAST = {"OrthancNAS": {"auth": {"bcrypt_cost": 4, "ip_max_failures": 100000}}}
FAKE_ID = "-".join(["0" * 8] * 5)  # shaped as an Orthanc ID, of nothing
CRASH_DEPTH = 600  # past both parsers' crash depth (jsoncpp about 200, Python 525)


def nested(depth: int, key: str = "pin") -> bytes:
    """A JSON object whose field ``key`` nests ``depth`` arrays: about 2 bytes a level."""
    return b'{"username":"x","' + key.encode() + b'":' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An Orthanc of its own: a crash here must not take the shared one with it."""
    srv = OrthancServer(tmp_path_factory.mktemp("crash"), FAST).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: OrthancServer) -> Client:
    client = server.client()
    client.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    return client


@pytest.fixture(scope="module")
def viewer(admin: Client) -> Client:
    return make_user(admin, "crash-viewer", "viewer")[0]


def alive(server: OrthancServer) -> None:
    """Orthanc still answers, on a new connection."""
    r = requests.get(server.url + "/api/health", timeout=10)
    assert r.status_code in (200, 503), r.text


def refused_deep(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    assert "nested deeper" in response.json()["error"]


def test_bound_sits_under_the_measured_crash_depths() -> None:
    assert jsonbound.MAX_DEPTH < 150
    assert jsonbound.depth(nested(CRASH_DEPTH)) == CRASH_DEPTH + 1
    assert jsonbound.depth(b'{"a":"' + b"[" * 500 + b'\\"["}') == 1  # inside a string


@pytest.mark.parametrize("path", ["/api/login", "/api/2fa/verify",
                                  "/api/shared/" + "A" * 43 + "/open"])
def test_anonymous_deep_bodies_on_public_routes(server: OrthancServer, path: str) -> None:
    """The reported crash: one anonymous request of 1.2 KB killed Orthanc."""
    r = requests.post(server.url + path, data=nested(CRASH_DEPTH), timeout=10,
                      headers={"Content-Type": "application/json", "Origin": server.url})
    if path == "/api/login":
        refused_deep(r)
    else:  # no pending login / no such link: refused before any parser, by the filter
        assert r.status_code in (400, 403, 404), r.text
    alive(server)


def test_anonymous_deep_utf16_body(server: OrthancServer) -> None:
    """Python's json also reads UTF-16: there U+225B is the bytes '[' '"', and a nesting scan
    of the bytes took the string to end inside it, then the real closing quote to open one
    that hid every bracket after it (found by tests/unit/test_parsing_fuzz.py)."""
    text = '{"username":"\u225b","pin":' + "[" * CRASH_DEPTH + "]" * CRASH_DEPTH + "}"
    r = requests.post(server.url + "/api/login", data=text.encode("utf-16-le"), timeout=10,
                      headers={"Content-Type": "application/json", "Origin": server.url})
    refused_deep(r)
    alive(server)


def test_deep_body_on_every_plugin_route(server: OrthancServer, admin: Client) -> None:
    """As admin, every plugin route and method that takes a body: 400, never a crash."""
    body = nested(CRASH_DEPTH)
    study = FAKE_ID
    for method, path in [("POST", "/api/login"), ("POST", "/api/logout"), ("PUT", "/api/profile"),
                         ("POST", "/api/2fa/setup/totp"), ("POST", "/api/2fa/setup/totp/verify"),
                         ("POST", "/api/2fa/backup-codes/generate"), ("POST", "/api/tokens"),
                         ("POST", "/api/admin/users"), ("PUT", "/api/admin/users/1"),
                         ("POST", "/api/2fa/config"), ("POST", "/api/images/search"),
                         ("POST", f"/api/images/{study}/tags"),
                         ("POST", f"/api/images/{study}/assign"),
                         ("POST", f"/api/images/{study}/share"), ("PUT", "/api/admin/modalities/x"),
                         ("POST", "/api/audit/search"), ("POST", "/api/nas/config"),
                         ("POST", "/api/nas/test"), ("POST", "/api/nas/browse"),
                         ("POST", "/api/nas/retry"), ("POST", "/api/nas/backfill"),
                         ("POST", "/tools/create-archive"), ("POST", "/peers/x/store"),
                         ("POST", "/modalities/x/store"), ("POST", "/modalities/x/move")]:
        refused_deep(admin.request(method, path, data=body,
                                   headers={"Content-Type": "application/json"}))
        alive(server)


def test_viewer_find_deep_query(server: OrthancServer, viewer: Client) -> None:
    """The second report: a viewer's /tools/find nested 900 deep crashed Orthanc's jsoncpp."""
    body = b'{"Level":"Study","Query":{},"Foo":' + b"[" * 900 + b"]" * 900 + b"}"
    refused_deep(viewer.request("POST", "/tools/find", data=body))
    alive(server)
    # Orthanc's parser skips comments: closing brackets hidden there must not fool the count.
    hidden = b'{"Level":"Study","Query":{},"Foo":' + b"[/* ] */" * 900 + b"]" * 900 + b"}"
    refused_deep(viewer.request("POST", "/tools/find", data=hidden))
    alive(server)
    r = viewer.post("/tools/find", {"Level": "Study", "Query": {}})
    assert r.status_code == 200 and r.json() == [], r.text  # a normal find still works


def test_nesting_at_the_bound_is_parsed(server: OrthancServer, viewer: Client) -> None:
    depth = jsonbound.MAX_DEPTH - 1
    body = b'{"Level":"Study","Query":{},"Foo":' + b"[" * depth + b"]" * depth + b"}"
    r = viewer.request("POST", "/tools/find", data=body)
    assert r.status_code == 200, r.text
    refused_deep(viewer.request("POST", "/tools/find", data=body.replace(b":[", b":[[", 1)
                                .replace(b"]}", b"]]}", 1)))


def _orthanc_body_routes() -> list[tuple[str, str, list[str]]]:
    """Every POST/PUT route of the installed Orthanc, from its own OpenAPI description."""
    out = subprocess.run(PLATFORM.command("--openapi=-"), capture_output=True, timeout=60,
                         check=True)
    doc = json.loads(out.stdout)
    routes = []
    for path, operations in doc["paths"].items():
        for method in ("post", "put"):
            if method in operations:
                content = operations[method].get("requestBody", {}).get("content", {})
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x1", path), list(content)))
    return routes


def _plugin_pattern(method: str, path: str) -> bool:
    patterns = [r.pattern.pattern for r in (*native.ROUTES, *transfers.ROUTES)
                if r.method == method]
    return any(re.fullmatch(p, path) for p in patterns)


def test_every_json_route_of_orthanc_is_guarded() -> None:
    """Orthanc's own list, so a newer Orthanc's new JSON routes cannot slip past: each is
    either answered through the plugin (its body bounded) or bounded by the filter."""
    unseen = [(m, re.compile(p)) for m, p, _ in UNSEEN_BODIES]
    json_routes = [(m, p) for m, p, content in _orthanc_body_routes()
                   if "application/json" in content]
    assert len(json_routes) > 40
    missing = [(m, p) for m, p in json_routes
               if not _plugin_pattern(m, p) and not any(m == um and up.fullmatch(p)
                                                        for um, up in unseen)]
    assert missing == []


def test_deep_bodies_on_every_orthanc_route_as_admin(server: OrthancServer,
                                                     admin: Client) -> None:
    """Admins are people too: a deep body on any of Orthanc's body routes, of any content
    type, never kills it."""
    body = nested(CRASH_DEPTH, "Resources")
    for method, path, _ in _orthanc_body_routes():
        if path in ("/tools/shutdown", "/tools/reset"):
            continue
        r = admin.request(method, path, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code < 500 or r.status_code == 502, (method, path, r.status_code)
        if _plugin_pattern(method, path):
            refused_deep(r)
        alive(server)


def test_streamed_download_routes_take_short_option_bodies_only(
        server: OrthancServer, viewer: Client) -> None:
    """POST .../archive stays Orthanc's own route (its GET streams the ZIP): the filter lets
    through only bodies too short to nest dangerously deep."""
    short_deep = b"[" * 128 + b"]" * 128  # 256 bytes, the allowance
    r = viewer.request("POST", f"/studies/{FAKE_ID}/archive", data=short_deep)
    assert r.status_code in (400, 404), r.text  # Orthanc itself parsed it and said no
    alive(server)
    r = viewer.request("POST", f"/studies/{FAKE_ID}/archive", data=b" " + short_deep)
    assert r.status_code == 403  # one byte over
    alive(server)


def test_dicomweb_server_settings_refused(admin: Client) -> None:
    """The DICOMweb plugin's JSON routes cannot be forwarded by another plugin: refused."""
    r = admin.request("PUT", "/dicom-web/servers/x", data=nested(CRASH_DEPTH, "Url"))
    assert r.status_code == 403
    assert admin.get("/dicom-web/servers").status_code == 200


def test_forwarded_routes_behave_as_orthancs(admin: Client) -> None:
    """Taken over, Orthanc's routes keep their answers: a modality's settings round trip,
    errors with a JSON body and a 4xx status."""
    r = admin.put("/modalities/crashtest", {"AET": "CRASHTEST", "Host": "127.0.0.1",
                                            "Port": 11119})
    assert r.status_code == 200, r.text
    r = admin.get("/modalities/crashtest")
    assert r.status_code == 200 and "echo" in r.json()
    r = admin.post("/tools/create-dicom", {"Tags": {"PatientName": "Crash^Test"}})
    assert r.status_code == 200 and r.json()["Path"].startswith("/instances/"), r.text
    r = admin.post("/instances/nope/modify", {"Replace": {"PatientName": "X"}})
    assert r.status_code == 404 and "error" in r.json()
    assert admin.delete("/modalities/crashtest").status_code == 200


def test_start_brings_orthanc_back_after_a_crash(tmp_path: Path) -> None:
    """``scripts/start``: Orthanc killed with -9 is back and serving, with a log line."""
    port = free_port()
    env = {**os.environ, "ORTHANC_NAS_VENV": str(VENV), "ORTHANC_NAS_DATA_DIR": str(tmp_path),
           "ORTHANC_NAS_HTTP_PORT": str(port), "ORTHANC_NAS_DICOM_PORT": str(free_port()),
           "ORTHANC_NAS_ADMIN_PIN": ADMIN_PIN, "ORTHANC_NAS_RESTART_PAUSE": "1",
           **PLATFORM.env()}
    log = (tmp_path / "start.log").open("w")
    start = subprocess.Popen(PLATFORM.wrap([str(REPO / "scripts" / "start")]), env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/health"

    def serving() -> bool:
        try:
            return requests.get(url, timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    try:
        wait_until(serving, 90, "Orthanc under scripts/start")
        first = int((tmp_path / "orthanc.pid").read_text())
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: int((tmp_path / "orthanc.pid").read_text()) != first and serving(),
                   30, "Orthanc started again")
        text = (tmp_path / "start.log").read_text()
        assert "Orthanc stopped with status 137; starting it again" in text
        start.send_signal(signal.SIGTERM)
        assert start.wait(timeout=30) == 0
        assert not serving()
    finally:
        if start.poll() is None:
            os.killpg(start.pid, signal.SIGKILL)
        log.close()


def test_lone_surrogate_in_a_login_is_a_400(server: OrthancServer) -> None:
    """Found by review: a username of one escaped half surrogate was a 500 on its way into the
    database."""
    r = requests.post(server.url + "/api/login", data=b'{"username": "\\ud800", "pin": "x"}',
                      headers={"Origin": server.url}, timeout=10)
    assert r.status_code == 400 and "Unicode" in r.json()["error"], r.text
    alive(server)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/dicom+json",
    'multipart/related; type="application/dicom+json"; boundary=b',
    'multipart/related; type="application/dicom"; boundary=b'])
def test_deep_bodies_to_stow_as_a_user(server: OrthancServer, admin: Client,
                                       content_type: str) -> None:
    """STOW-RS (the DICOMweb plugin's own route, open to users) never reads JSON: a deep body
    in any of the forms it could take is refused without a crash."""
    user = make_user(admin, f"stow-{abs(hash(content_type)) % 10**6}", "user")[0]
    deep = b"[" * CRASH_DEPTH + b"]" * CRASH_DEPTH
    body = (b"--b\r\nContent-Type: application/dicom+json\r\n\r\n" + deep + b"\r\n--b--\r\n"
            if content_type.startswith("multipart") else deep)
    r = user.request("POST", "/dicom-web/studies", data=body,
                     headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
    assert r.status_code < 500 or r.status_code == 501, (r.status_code, r.text[:200])
    alive(server)


def test_an_empty_synchronous_archive_is_answered(server: OrthancServer, viewer: Client) -> None:
    """Found by review: an archive of nothing was Orthanc's 500 "Error encountered within the
    plugin engine" (from the second one on)."""
    for _ in range(3):
        r = viewer.post("/tools/create-archive", {"Resources": []})
        assert r.status_code == 400 and r.json()["field"] == "Resources", r.text
    alive(server)


def test_signed_in_bodies_are_bounded_before_orthanc_reads_them(server: OrthancServer,
                                                                viewer: Client) -> None:
    """Orthanc reads a whole body into memory before any route: a viewer must not be able to
    send gigabytes to /tools/find (or any route), declared or chunked."""
    too_big = b" " * (policy.SIGNED_IN_BODY_MAX + 1)
    assert viewer.request("POST", "/tools/find", data=too_big).status_code == 403
    chunks = (piece for piece in (b'{"Level":', b'"Study","Query":{}}'))  # chunked: no length
    assert viewer.request("POST", "/tools/find", data=chunks).status_code == 403
    assert viewer.post("/tools/find", {"Level": "Study", "Query": {}}).status_code == 200
    alive(server)
