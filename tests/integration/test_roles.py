"""The default role policy over a table of real Orthanc routes, for each role."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import logged_in
from dicom_factory import write_series
from harness import Account, Client, make_user

V, U, A = "viewer", "user", "admin"
ALL = {V, U, A}

# (method, path, body, roles allowed). "{study}" etc. are filled with a stored study.
MATRIX: list[tuple[str, str, object, set[str]]] = [
    ("GET", "/system", None, ALL),
    ("GET", "/statistics", None, ALL),
    ("GET", "/patients", None, ALL),
    ("GET", "/studies/{study}", None, ALL),
    ("GET", "/series/{series}", None, ALL),
    ("GET", "/instances/{instance}/simplified-tags", None, ALL),
    ("GET", "/instances/{instance}/preview", None, ALL),
    ("GET", "/instances/{instance}/file", None, ALL),
    ("GET", "/studies/{study}/archive", None, ALL),
    ("POST", "/tools/find", {"Level": "Study", "Query": {}}, ALL),
    ("GET", "/dicom-web/studies", None, ALL),
    ("GET", "/dicom-web/studies/{study_uid}/metadata", None, ALL),
    ("GET", "/plugins", None, ALL),
    ("POST", "/instances", "DICOM", {U, A}),
    ("GET", "/modalities", None, {A}),
    ("GET", "/peers", None, {A}),
    ("GET", "/jobs", None, {A}),
    ("GET", "/changes", None, {A}),
    ("GET", "/tools/log-level", None, {A}),
    ("POST", "/studies/{study}/anonymize", {}, {A}),
    ("GET", "/api/admin/users", None, {A}),
    ("GET", "/api/audit", None, {A}),
    ("GET", "/api/2fa/config", None, {A}),
    ("GET", "/ui/admin", None, {A}),
    ("GET", "/api/profile", None, ALL),
    ("GET", "/api/tokens", None, ALL),
    ("GET", "/ui/account", None, ALL),
    ("GET", "/a/route/nobody/declared", None, {A}),
    ("DELETE", "/instances/{victim}", None, {A}),
]
# Admin-only routes too disruptive to run for real (or, for execute-script, refused by Orthanc
# itself since orthanc.json disables remote Lua): refused to the others here, and allowed to
# admins by the policy's unit tests.
DENIED_ONLY = [("POST", "/tools/execute-script"), ("POST", "/tools/reset"),
               ("POST", "/tools/shutdown"), ("DELETE", "/patients/{patient}"),
               ("PUT", "/modalities/x")]


@pytest.fixture(scope="module")
def clients(admin_session: tuple[Client, Account]) -> dict[str, Client]:
    admin = logged_in(admin_session)
    return {"viewer": make_user(admin, "matrix-viewer", "viewer")[0],
            "user": make_user(admin, "matrix-user", "user")[0], "admin": admin}


@pytest.fixture(scope="module")
def ids(clients: dict[str, Client], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    admin = clients["admin"]
    folder = tmp_path_factory.mktemp("matrix")
    files = write_series(folder, 2, patient_id="MATRIX")
    uploaded = [admin.post("/instances", data=f.read_bytes()).json() for f in files]
    instance = admin.get(f"/instances/{uploaded[0]['ID']}").json()
    series = admin.get(f"/series/{instance['ParentSeries']}").json()
    study = admin.get(f"/studies/{series['ParentStudy']}").json()
    return {"instance": uploaded[0]["ID"], "series": series["ID"], "study": study["ID"],
            "patient": study["ParentPatient"],
            "study_uid": study["MainDicomTags"]["StudyInstanceUID"],
            "dicom": str(files[0]), "victim_file": str(files[1])}


def _call(clients: dict[str, Client], role: str, method: str, path: str, body: object,
          ids: dict[str, str]) -> int:
    if "{victim}" in path:  # (re)stored by the admin each time, so every role has one to delete
        victim = clients["admin"].post("/instances", data=Path(ids["victim_file"]).read_bytes())
        path = path.replace("{victim}", victim.json()["ID"])
    path = path.format(**ids)
    client = clients[role]
    if body == "DICOM":
        return client.post(path, data=Path(ids["dicom"]).read_bytes()).status_code
    if isinstance(body, str):
        return client.post(path, data=body.encode()).status_code
    return client.request(method, path, json=body).status_code


@pytest.mark.parametrize("role", [V, U, A])
@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_role_matrix(clients: dict[str, Client], ids: dict[str, str], role: str, method: str,
                     path: str, body: object, allowed: set[str]) -> None:
    status = _call(clients, role, method, path, body, ids)
    if role in allowed:
        assert status != 403, f"{role} should reach {method} {path}"
        assert status < 500
    else:
        assert status == 403, f"{role} must not reach {method} {path} (got {status})"


@pytest.mark.parametrize("role", [V, U])
@pytest.mark.parametrize(("method", "path"), DENIED_ONLY, ids=[" ".join(r) for r in DENIED_ONLY])
def test_disruptive_routes_are_refused_to_non_admins(clients: dict[str, Client],
                                                     ids: dict[str, str], role: str,
                                                     method: str, path: str) -> None:
    assert clients[role].request(method, path.format(**ids), json={}).status_code == 403
    assert clients["admin"].get(f"/patients/{ids['patient']}").status_code == 200
