"""Mirroring to a real Samba share: C-STORE and upload, outages, kill -9, bad settings,
hostile values, reconciliation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from conftest import FAST
from dicom_factory import ct_instance, write_series
from harness import Client, OrthancServer, admin_account, deep_merge, storescu, wait_until
from orthanc_nas.orthanc_api import orthanc_patient_id
from samba import SambaServer

DRAIN_TIMEOUT = 180


@pytest.fixture(scope="module")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaServer]:
    server = SambaServer(tmp_path_factory.mktemp("samba")).start()
    yield server
    server.stop()


ENGINES = ["libsmbclient", "smbprotocol"]
PARALLEL = 4  # several copies in flight through every fault below


@pytest.fixture(scope="module", params=ENGINES)
def nas_orthanc(request: pytest.FixtureRequest, samba: SambaServer,
                tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[OrthancServer, Client]]:
    for child in samba.share_dir.iterdir():  # each engine starts from an empty share
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    nas = samba.nas_config(engine=request.param, parallel=PARALLEL)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc-nas"),
                           deep_merge(FAST, {"OrthancNAS": {"nas": nas}}))
    server.start()
    admin = server.client()
    account = admin_account()
    admin.onboard(account, "Blue-Harbor-PIN-2024!")
    yield server, admin
    server.stop()


def status(admin: Client) -> dict[str, Any]:
    r = admin.get("/api/nas/status")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def drained(admin: Client) -> bool:
    s = status(admin)
    return s["pending"] == 0 and s["failed"] == 0


def instance_path(share: Path, admin: Client, instance_id: str) -> Path:
    tags = admin.get(f"/instances/{instance_id}/simplified-tags").json()
    return (share / tags["PatientID"] / tags["StudyInstanceUID"] / tags["SeriesInstanceUID"]
            / f"{tags['SOPInstanceUID']}.dcm")


def assert_mirrored(share: Path, admin: Client, instance_ids: list[str]) -> None:
    """Each instance is on the share at its templated path, byte-identical to Orthanc's copy."""
    for instance_id in instance_ids:
        path = instance_path(share, admin, instance_id)
        assert path.read_bytes() == admin.get(f"/instances/{instance_id}/file").content
    leftovers = list(share.rglob("*.dcm.part"))  # the audit head is rewritten after each pass
    assert leftovers == []


def patient_instances(admin: Client, patient_id: str) -> list[str]:
    found = admin.post("/tools/find", {"Level": "Instance", "Query": {"PatientID": patient_id}})
    ids: list[str] = found.json()
    return ids


def send(server: OrthancServer, folder: Path, count: int, patient_id: str) -> None:
    files = write_series(folder, count, patient_id=patient_id)
    result = storescu(server, files)
    assert result.returncode == 0, result.stderr


def test_cstore_and_upload_are_mirrored_byte_identical(
        nas_orthanc: tuple[OrthancServer, Client], samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    send(server, tmp_path / "a", 5, "NAS-CSTORE")
    upload = write_series(tmp_path / "b", 1, patient_id="NAS-UPLOAD")[0]
    uploaded = admin.post("/instances", data=upload.read_bytes()).json()["ID"]
    wait_until(lambda: drained(admin) and status(admin)["mirrored"] >= 6, DRAIN_TIMEOUT,
               "the mirror to drain")
    ids = patient_instances(admin, "NAS-CSTORE")
    assert len(ids) == 5
    assert_mirrored(samba.share_dir, admin, [*ids, uploaded])
    listed = admin.get("/api/images", params={"patient_id": "NAS-CSTORE"}).json()["items"]
    assert [i["nas"] for i in listed] == ["mirrored"]  # C-STORE from an unmapped AE too
    detail = admin.get(f"/api/images/{ids[0]}").json()
    assert detail["nas"]["instances"] == {ids[0]: "done"}
    s = status(admin)
    assert s["connected"] is True and s["mirrored_bytes"] > 0, json.dumps(s)
    assert s["verified"] + s["unverified"] == s["mirrored"]  # the scrub's progress
    assert s["free_bytes"] and s["total_bytes"] >= s["free_bytes"]
    health = admin.get("/api/health").json()  # details are for admins
    assert health["checks"]["nas"]["connected"] is True

    def series_rows() -> list[dict[str, Any]]:  # written at the end of the worker's pass
        audit = admin.get("/api/audit", params={"event": "nas_mirrored", "limit": 1000}).json()
        return [i for i in audit["items"] if i["patient_id"] == "NAS-CSTORE"]

    # One row per series and pass of the worker (normally one: unit tests cover how a
    # series stays open while its instances arrive); together they count every instance.
    rows = wait_until(lambda: (r := series_rows()) and sum(
        i["details"]["instances"] for i in r) == 5 and r, 30, "the series' audit rows")
    assert len({r["target"] for r in rows}) == 1


def test_duplicates_are_harmless(nas_orthanc: tuple[OrthancServer, Client],
                                 samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    files = write_series(tmp_path, 3, patient_id="NAS-DUP")
    for _ in range(2):
        assert storescu(server, files).returncode == 0
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    ids = patient_instances(admin, "NAS-DUP")
    assert_mirrored(samba.share_dir, admin, ids)
    assert len(list((samba.share_dir / "NAS-DUP").rglob("*.dcm"))) == 3


def test_a_duplicate_with_other_bytes_never_replaces_the_copy(
        nas_orthanc: tuple[OrthancServer, Client], samba: SambaServer, tmp_path: Path) -> None:
    """Orthanc keeps the first copy of a re-sent instance (OverwriteInstances off) but still
    runs the hook with the refused bytes: the NAS must keep holding what Orthanc holds."""
    server, admin = nas_orthanc
    genuine = write_series(tmp_path / "a", 1, patient_id="NAS-FORGED")[0]
    assert storescu(server, [genuine]).returncode == 0
    wait_until(lambda: drained(admin) and patient_instances(admin, "NAS-FORGED"),
               DRAIN_TIMEOUT, "the genuine copy to be mirrored")
    (instance_id,) = patient_instances(admin, "NAS-FORGED")
    kept = admin.get(f"/instances/{instance_id}/file").content
    info = admin.get(f"/instances/{instance_id}/attachments/dicom/info").json()
    assert info["UncompressedMD5"] == hashlib.md5(kept, usedforsecurity=False).hexdigest()
    forged = pydicom.dcmread(genuine)
    forged.PatientName = "Forged^Content"
    forged.ImageComments = "x" * 1000  # another size too
    forged_file = tmp_path / "forged.dcm"
    forged.save_as(forged_file)
    mirrored_before = status(admin)["mirrored"]
    assert storescu(server, [forged_file]).returncode == 0
    wait_until(lambda: drained(admin) and status(admin)["mirrored"] >= mirrored_before,
               DRAIN_TIMEOUT, "the duplicate to be handled")
    assert admin.get(f"/instances/{instance_id}/file").content == kept  # Orthanc kept its copy
    assert_mirrored(samba.share_dir, admin, [instance_id])  # and so does the NAS


def test_patient_ids_that_fold_together_keep_their_own_files(
        nas_orthanc: tuple[OrthancServer, Client], samba: SambaServer, tmp_path: Path) -> None:
    """Same UIDs under patient IDs that sanitise ('NAS:FOLD' / 'NAS_FOLD') or, on the share,
    case-fold ('nas-fold' / 'NAS-FOLD') to one name: Orthanc keeps four instances, the NAS
    four files, none overwritten (a real Samba answers the rename that must not replace)."""
    server, admin = nas_orthanc
    files = []
    template = write_series(tmp_path / "t", 1, patient_id="NAS-TEMPLATE")[0]
    for i, patient_id in enumerate(("NAS:FOLD", "NAS_FOLD", "nas-fold", "NAS-FOLD")):
        ds = pydicom.dcmread(template)
        ds.PatientID = patient_id
        files.append(tmp_path / f"fold-{i}.dcm")
        ds.save_as(files[-1])
    assert storescu(server, files).returncode == 0
    ids = [i for p in ("NAS:FOLD", "NAS_FOLD", "nas-fold", "NAS-FOLD")
           for i in patient_instances(admin, p)]
    assert len(set(ids)) == 4
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    on_share = {p.read_bytes() for p in samba.share_dir.rglob("*.dcm")}
    assert all(admin.get(f"/instances/{i}/file").content in on_share for i in ids)
    taken = admin.get("/api/audit", params={"event": "nas_name_taken"}).json()["items"]
    assert len(taken) == 2 and not list(samba.share_dir.rglob("*.part"))


def test_an_smb_outage_loses_nothing(nas_orthanc: tuple[OrthancServer, Client],
                                     samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    samba.stop()
    try:
        send(server, tmp_path, 200, "NAS-OUTAGE")  # ingest does not wait for the NAS
        wait_until(lambda: status(admin)["connected"] is False, 60, "the outage to be seen")
        s = status(admin)
        assert s["pending"] > 0 and s["last_error"]
        public = server.client().get("/api/health").json()
        assert public["failing"] == ["nas"]
        assert "last_error" not in public["checks"]["nas"]  # error texts may name patients
        assert admin.get("/api/health").json()["checks"]["nas"]["last_error"]
    finally:
        samba.start()
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain after the outage")
    ids = patient_instances(admin, "NAS-OUTAGE")
    assert len(ids) == 200
    assert_mirrored(samba.share_dir, admin, ids)


def test_deleted_in_orthanc_before_it_is_mirrored_is_still_mirrored(
        nas_orthanc: tuple[OrthancServer, Client], samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    files = write_series(tmp_path, 4, patient_id="NAS-GONE")
    spool = server.data_dir / "mirror-spool"
    samba.stop()
    try:
        assert storescu(server, files).returncode == 0
        ids = patient_instances(admin, "NAS-GONE")

        def spooled() -> list[Path]:
            found = [p for p in spool.iterdir() if p.name.split(".")[0] in ids]
            return found if len(found) == len(ids) else []

        linked = wait_until(spooled, 60, "the instances to be spooled")
        assert all(p.stat().st_nlink == 2 for p in linked)  # Orthanc's own files, not copies
        assert admin.delete(f"/patients/{orthanc_patient_id('NAS-GONE')}").status_code == 200
        assert all(p.stat().st_nlink == 1 for p in linked)  # gone from Orthanc, kept here
    finally:
        samba.start()
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    on_nas = [pydicom.dcmread(p) for p in (samba.share_dir / "NAS-GONE").rglob("*.dcm")]
    sent = [pydicom.dcmread(f) for f in files]
    assert sorted((d.SOPInstanceUID, d.PixelData) for d in on_nas) == sorted(
        (d.SOPInstanceUID, d.PixelData) for d in sent)


def test_kill_9_mid_mirror_then_restart(nas_orthanc: tuple[OrthancServer, Client],
                                        samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    send(server, tmp_path, 300, "NAS-KILL")
    wait_until(lambda: status(admin)["mirrored"] > 0, 60, "mirroring to begin")
    db = sqlite3.connect(server.data_dir / "orthanc-nas.sqlite")
    (worker_pid,) = db.execute("SELECT worker_pid FROM nas_state").fetchone()
    db.close()
    niceness = int(Path(f"/proc/{worker_pid}/stat").read_text().rpartition(")")[2].split()[16])
    assert niceness == 10  # mirroring yields the CPU to Orthanc receiving images
    server.stop(kill=True)
    os.kill(worker_pid, signal.SIGKILL)  # the worker dies mid-copy too
    server.start()
    admin.ensure_logged_in()
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain after kill -9")
    ids = patient_instances(admin, "NAS-KILL")
    assert len(ids) == 300
    assert_mirrored(samba.share_dir, admin, ids)


@pytest.fixture(autouse=True)
def _logged_in(nas_orthanc: tuple[OrthancServer, Client]) -> None:
    nas_orthanc[1].ensure_logged_in()


def test_probe_names_the_failing_step(nas_orthanc: tuple[OrthancServer, Client],
                                      samba: SambaServer) -> None:
    _, admin = nas_orthanc
    ok = admin.post("/api/nas/test", {}).json()
    assert ok["ok"] is True and [s["step"] for s in ok["steps"]] == [
        "connect", "write", "read", "delete", "free space"]
    wrong = admin.post("/api/nas/test", {"password": "not-the-password"}).json()
    assert wrong["failed_step"] == "connect" and "logon failure" in wrong["steps"][-1]["error"]
    missing = admin.post("/api/nas/test", {"share": "nosuchshare"}).json()
    assert missing["failed_step"] == "connect"
    readonly = admin.post("/api/nas/test", {"share": "readonly"}).json()
    assert readonly["failed_step"] == "write" and "access denied" in readonly["steps"][-1]["error"]
    assert list(samba.readonly_dir.iterdir()) == []
    assert admin.post("/api/nas/test", {"port": "445"}).json()["field"] == "port"
    elsewhere = admin.post("/api/nas/test", {"host": "nas.example.org"})  # not with our password
    assert elsewhere.status_code == 400 and elsewhere.json()["field"] == "password"
    assert admin.post("/api/nas/config", {"port": 4450}).json()["field"] == "password"


def test_wrong_password_then_fixed(nas_orthanc: tuple[OrthancServer, Client],
                                   samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    good = admin.get("/api/nas/config").json()
    assert good["config"]["password_set"] is True and "password" not in good["config"]
    r = admin.post("/api/nas/config", {"password": "not-the-password"})
    assert r.status_code == 200 and r.json()["sources"]["password"] == "runtime"
    assert "not-the-password" not in r.text
    try:
        send(server, tmp_path, 10, "NAS-PASSWORD")
        wait_until(lambda: "logon failure" in (status(admin)["last_error"] or ""), 60,
                   "the logon failure in the status")
        assert status(admin)["pending"] >= 10 and status(admin)["failed"] == 0
    finally:
        admin.post("/api/nas/config", {"reset": True})
    assert admin.get("/api/nas/config").json()["sources"]["password"] == "orthanc.json"
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    assert_mirrored(samba.share_dir, admin, patient_instances(admin, "NAS-PASSWORD"))
    audit = admin.get("/api/audit", params={"event": "nas_config_changed"}).json()["items"]
    assert audit[0]["details"]["reset"] is True and "not-the-password" not in str(audit)


def test_read_only_share_parks_items_then_retry(nas_orthanc: tuple[OrthancServer, Client],
                                                samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    admin.post("/api/nas/config", {"share": "readonly", "max_attempts": 2})
    try:
        send(server, tmp_path, 4, "NAS-RO")
        wait_until(lambda: status(admin)["failed"] >= 4, 90, "the items to be parked")
        failed = admin.get("/api/nas/queue", params={"state": "failed"}).json()["items"]
        assert all("access denied" in i["last_error"] for i in failed)
    finally:
        admin.post("/api/nas/config", {"reset": True})
    assert admin.post("/api/nas/retry", {}).json()["requeued"] >= 4
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain after retry")
    assert_mirrored(samba.share_dir, admin, patient_instances(admin, "NAS-RO"))
    parked = admin.get("/api/audit", params={"event": "nas_mirror_failed"}).json()
    assert parked["total"] >= 4


def test_full_share_keeps_items_queued_then_retry(nas_orthanc: tuple[OrthancServer, Client],
                                                 samba: SambaServer, tmp_path: Path) -> None:
    """A share that fills up mid-burst: what did not fit stays visible in the queue (parked
    after its attempts), nothing is lost, and a retry once there is room copies the rest."""
    server, admin = nas_orthanc
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(samba.full_dir)],
                   check=True)
    try:
        admin.post("/api/nas/config", {"share": "full", "max_attempts": 2})
        files = write_series(tmp_path, 12, patient_id="NAS-FULL", size=256)  # ~1.5 MB
        assert storescu(server, files).returncode == 0
        ids = patient_instances(admin, "NAS-FULL")
        assert len(ids) == 12
        wait_until(lambda: (s := status(admin))["pending"] == 0 and s["failed"] > 0, 120,
                   "the items that do not fit to be parked")
        on_share = list(samba.full_dir.rglob("*.dcm"))
        assert len(on_share) + status(admin)["failed"] >= 12  # on the NAS or in the queue
        failed = admin.get("/api/nas/queue", params={"state": "failed"}).json()["items"]
        assert all("space" in i["last_error"] for i in failed), failed
        subprocess.run(["mount", "-o", "remount,size=64m", str(samba.full_dir)], check=True)
        assert admin.post("/api/nas/retry", {}).json()["requeued"] >= 1
        wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain after retry")
        assert_mirrored(samba.full_dir, admin, ids)
    finally:
        admin.post("/api/nas/config", {"reset": True})
        subprocess.run(["umount", "-l", str(samba.full_dir)], check=False)  # smbd may hold it


@pytest.mark.parametrize("engine", ENGINES)
def test_signing_required_refuses_a_guest_session(
        nas_orthanc: tuple[OrthancServer, Client], samba: SambaServer, engine: str) -> None:
    """An unknown user is mapped to a guest by this Samba, and a guest session cannot be
    signed: with signing required (the default) the NAS is refused and nothing is written."""
    _, admin = nas_orthanc
    guest = {"engine": engine, "share": "guest", "username": "nosuchuser"}
    refused = admin.post("/api/nas/test", guest).json()
    assert refused["ok"] is False and refused["failed_step"] == "connect"
    assert list(samba.guest_dir.iterdir()) == []
    if engine == "libsmbclient":  # the refusal is the signing requirement's
        unsigned = admin.post("/api/nas/test", {**guest, "require_signing": False}).json()
        assert unsigned["steps"][1] == {"step": "write", "ok": True}, unsigned


@pytest.mark.parametrize("engine", ENGINES)
def test_encrypted_session(nas_orthanc: tuple[OrthancServer, Client], engine: str) -> None:
    _, admin = nas_orthanc
    assert admin.post("/api/nas/test", {"engine": engine, "encrypt": True}).json()["ok"] is True


HOSTILE = ["../../x", "CON", "..", "a" * 64, "bad\r\nname\x07", "C:\\Windows\\x", "nul.txt"]


def test_hostile_patient_ids_stay_inside_the_root(nas_orthanc: tuple[OrthancServer, Client],
                                                  samba: SambaServer, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    files = []
    for i, patient_id in enumerate(HOSTILE):
        ds = ct_instance(patient_id=patient_id, instance_number=i + 1)
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    assert storescu(server, files).returncode == 0
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    root = samba.share_dir.resolve()
    everything = list(samba.workdir.rglob("*.dcm"))
    assert everything and all(root in p.resolve().parents for p in everything)
    top = {p.name for p in samba.share_dir.iterdir()}
    assert "_CON" in top and "CON" not in top and ".." not in top
    assert all(len(name.encode()) <= 255 and "\r" not in name and "\\" not in name
               for name in top)


def test_local_folder_backend_and_backfill(tmp_path: Path) -> None:
    folder = tmp_path / "mounted-share"
    folder.mkdir()
    server = OrthancServer(tmp_path / "o", deep_merge(FAST, {"OrthancNAS": {"nas": {
        "local_roots": [str(tmp_path)]}}})).start()  # mirroring off at first
    try:
        admin = server.client()
        account = admin_account()
        admin.onboard(account, "Blue-Harbor-PIN-2024!")
        send(server, tmp_path / "dcm", 3, "NAS-LOCAL")
        assert admin.post("/api/nas/backfill", {}).status_code == 409
        r = admin.post("/api/nas/config", {"enabled": True, "type": "local",
                                           "path": str(folder)})
        assert r.status_code == 200
        wait_until(lambda: drained(admin) and status(admin)["mirrored"] == 3, DRAIN_TIMEOUT,
                   "the instances stored before mirroring to be reconciled")
        assert_mirrored(folder, admin, patient_instances(admin, "NAS-LOCAL"))
        # Deleted in Orthanc: the NAS copy stays by default (the NAS is the archive).
        victim = patient_instances(admin, "NAS-LOCAL")[0]
        path = instance_path(folder, admin, victim)
        assert admin.delete(f"/instances/{victim}").status_code == 200
        assert admin.post("/api/nas/backfill", {}).status_code == 200
        assert path.exists()
    finally:
        server.stop()


def test_nas_admin_page_shows_status_queue_and_share(
        nas_orthanc: tuple[OrthancServer, Client], browser: WebDriver, tmp_path: Path) -> None:
    server, admin = nas_orthanc
    send(server, tmp_path, 2, "NAS-PAGE")
    wait_until(lambda: drained(admin), DRAIN_TIMEOUT, "the mirror to drain")
    expected = status(admin)["mirrored"]
    listing = admin.post("/api/nas/browse", {"path": "NAS-PAGE"}).json()  # as the page asks
    assert admin.get("/api/nas/browse", params={"path": "NAS-PAGE"}).json() == listing
    assert listing["ok"] and [e["is_dir"] for e in listing["entries"]] == [True]
    outside = admin.get("/api/nas/browse", params={"path": "../.."})
    assert outside.status_code == 400 and outside.json()["field"] == "path"
    assert admin.account is not None
    browser_login(browser, server.url + "/ui/nas", server.client(), admin.account)
    wait(browser).until(ec.url_contains("/ui/nas"))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "browse-table"), "NAS-PAGE"))
    wait(browser).until(lambda _d: browser.find_element(By.ID, "nas-mirrored").text != "—")
    badge = browser.find_element(By.ID, "nas-connected")
    assert badge.get_attribute("data-connected") == "true"
    mirrored = int(browser.find_element(By.ID, "nas-mirrored").text.replace(",", ""))
    assert mirrored == expected
    shown = [browser.find_element(By.ID, i).text for i in ("nas-verified", "nas-unverified")]
    assert all(t.isdigit() for t in shown), shown  # the scrub's progress
    browser.find_element(By.CSS_SELECTOR, 'button[data-path="NAS-PAGE"]').click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "browse-path"), "NAS-PAGE"))
