"""The filter judges the request that runs: attacks where the HTTP filter and the route that
Orthanc runs saw two different requests (a trailing slash, a pending login taken for a
signed-in caller), against the real Orthanc with the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import logged_in
from dicom_factory import write_series
from harness import Account, Client, OrthancServer, make_user

DEEP = b"[" * 100_000  # far past jsoncpp's crash depth (about 200 levels)


@pytest.fixture(scope="module")
def viewer(admin_session: tuple[Client, Account]) -> Client:
    return make_user(logged_in(admin_session), "paths-viewer", "viewer")[0]


@pytest.fixture(scope="module")
def study(admin_session: tuple[Client, Account], tmp_path_factory: pytest.TempPathFactory) -> str:
    admin = logged_in(admin_session)
    [dicom] = write_series(tmp_path_factory.mktemp("paths"), 1, patient_id="PATHS")
    stored = admin.post("/instances", data=dicom.read_bytes())
    assert stored.status_code == 200, stored.text
    return str(stored.json()["ParentStudy"])


def test_a_pending_login_is_not_an_admin_on_public_routes(
        orthanc: OrthancServer, admin_session: tuple[Client, Account]) -> None:
    """Knowing the admin's PIN (not the second factor) showed the admin's view of the health
    check: versions, gate counters, NAS errors."""
    account = admin_session[1]
    pending = orthanc.client()
    r = pending.post("/api/login", {"username": account.username, "pin": account.pin})
    assert r.status_code == 200 and r.json()["status"] == "2fa_required", r.text
    health = pending.get("/api/health").json()
    assert set(health) == {"status", "failing", "checks"}, health
    assert all(set(check) == {"ok"} for check in health["checks"].values()), health
    assert pending.get("/").headers["Location"] == "/ui/login"
    assert pending.get("/ui/admin").headers["Location"].startswith("/ui/login")
    # Its own routes still work: the second factor, then logging out.
    assert pending.post("/api/logout").status_code == 200


def test_a_trailing_slash_cannot_skip_the_body_bound(admin: Client, study: str,
                                                     orthanc: OrthancServer) -> None:
    """``POST /studies/{id}/archive`` is Orthanc's (its GET streams the archive): the filter
    bounds its body. With a trailing slash the filter saw another path, let any body through,
    and Orthanc's parser overflowed its stack (the process died)."""
    for path in (f"/studies/{study}/archive", f"/studies/{study}/archive/",
                 f"/studies/{study}/media/"):
        r = admin.post(path, data=DEEP, headers={"Content-Type": "application/json"})
        assert r.status_code == 403, (path, r.status_code)
    assert orthanc.client().get("/api/health").status_code == 200
    # A small body still goes through, slash or not.
    for path in (f"/studies/{study}/archive", f"/studies/{study}/archive/"):
        r = admin.post(path, {"Asynchronous": True})
        assert r.status_code == 200 and "ID" in r.json(), (path, r.text)


def test_a_trailing_slash_is_judged_as_the_route_it_runs(viewer: Client, admin: Client,
                                                         orthanc: OrthancServer) -> None:
    """The filter judged ``/tools/find/`` as an unknown route (admins only) while Orthanc ran
    ``/tools/find``: a viewer was refused what the policy allows, and an admin's plugin route
    lost the client's address (a refused PIN logged "from  on", which fail2ban cannot ban)."""
    find = {"Level": "Study", "Query": {}}
    for path in ("/tools/find", "/tools/find/"):
        assert viewer.post(path, find).status_code == 200, path
    for path in ("/system/", "/api/profile/"):
        assert viewer.get(path).status_code == 200, path
    for path in ("/api/admin/users/", "/modalities/storescu/", "/tools/log-level/"):
        assert viewer.get(path).status_code == 403, path
    r = admin.post("/api/tokens/", {"name": "x", "pin": "not-the-pin"})
    assert r.status_code == 403, r.text
    lines = [line for line in orthanc.log_text().splitlines()
             if "authentication failure" in line and "/api/tokens" in line]
    assert lines and "from 127.0.0.1 on POST /api/tokens" in lines[-1], lines[-1:]


def test_anonymous_callers_reach_public_routes_with_a_trailing_slash(
        orthanc: OrthancServer, tmp_path: Path) -> None:
    anonymous = orthanc.client()
    assert anonymous.get("/api/health/").status_code == 200
    assert anonymous.get("/ui/login/").status_code == 200
    assert anonymous.get("/api/profile/").status_code == 403
