"""What the filter and the ingest hook observe becomes one audit row per study and session,
per AE burst, or per deletion; resolved in the background against a fake Orthanc."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import FakeOrthanc
from orthanc_nas.audit import Audit, AuditQuery
from orthanc_nas.audit import access as access_module
from orthanc_nas.audit.access import AccessRecorder, classify
from orthanc_nas.clock import ManualClock
from orthanc_nas.orthanc_api import orthanc_patient_id, orthanc_study_id

from .conftest import MakeDb

STUDY = orthanc_study_id("PAT-9", "1.2.3")
PATIENT = orthanc_patient_id("PAT-9")
SERIES = "5" * 8 + ("-" + "5" * 8) * 4
INSTANCE = "6" * 8 + ("-" + "6" * 8) * 4


def fake_orthanc() -> FakeOrthanc:
    """The few resources the recorder asks about."""
    return FakeOrthanc({
        f"/studies/{STUDY}": {"MainDicomTags": {"StudyInstanceUID": "1.2.3"},
                              "PatientMainDicomTags": {"PatientID": "PAT-9"}},
        f"/series/{SERIES}": {"ParentStudy": STUDY},
        f"/instances/{INSTANCE}": {"ParentSeries": SERIES},
        f"/instances/{INSTANCE}/metadata?expand": {"RemoteIP": "10.1.2.3",
                                                   "CalledAET": "ORTHANC"},
        f"/patients/{PATIENT}": {"MainDicomTags": {"PatientID": "PAT-9"}},
    }, posts={"/tools/lookup": lambda body: [{"ID": STUDY, "Type": "Study"}]
              if body == b"1.2.3" else []})


@pytest.fixture
def env(make_db: MakeDb) -> tuple[AccessRecorder, Audit, FakeOrthanc, ManualClock, list[str]]:
    clock = ManualClock()
    db = make_db()
    audit = Audit(db, clock, b"k" * 32)
    orthanc = fake_orthanc()
    errors: list[str] = []
    return AccessRecorder(db, audit, orthanc, clock, errors.append), audit, orthanc, clock, errors


def rows(audit: Audit, event: str) -> list[dict[str, Any]]:
    return audit.search(AuditQuery(event=event, limit=1000))[1]


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", f"/studies/{STUDY}", {}, ("access", "study", STUDY)),
    ("GET", f"/series/{SERIES}/instances", {}, ("access", "series", SERIES)),
    ("GET", f"/instances/{INSTANCE}/file", {}, ("export", "instance", INSTANCE)),
    ("GET", f"/studies/{STUDY}/archive", {}, ("export", "study", STUDY)),
    ("GET", f"/patients/{PATIENT}/media", {}, ("export", "patient", PATIENT)),
    ("GET", "/dicom-web/studies/1.2.3/series", {}, ("access", "uid", "1.2.3")),
    ("GET", "/wado", {"requestType": "WADO", "studyUID": "1.2.3"}, ("access", "uid", "1.2.3")),
    ("GET", f"/api/images/{STUDY}", {}, ("access", "study", STUDY)),
    ("DELETE", f"/studies/{STUDY}", {}, ("delete", "study", STUDY)),
    ("DELETE", f"/studies/{STUDY}/labels/x", {}, None),
    ("POST", f"/studies/{STUDY}/anonymize", {}, None),
    ("POST", f"/studies/{STUDY}/archive", {}, ("export", "study", STUDY)),
    ("POST", f"/series/{SERIES}/media", {}, ("export", "series", SERIES)),
    ("POST", f"/studies/{STUDY}", {}, None),
    ("GET", "/studies", {}, None),
    ("GET", "/system", {}, None),
    ("GET", "/studies/not-an-id", {}, None),
])
def test_classify(method: str, path: str, query: dict[str, str],
                  expected: tuple[str, str, str] | None) -> None:
    assert classify(method, path, query) == expected


def test_one_row_per_study_per_session_whatever_the_route(env: Any) -> None:
    recorder, audit, orthanc, _clock, errors = env
    for _ in range(3):
        recorder.observe("s:one", "anna", "10.0.0.7", "GET", f"/studies/{STUDY}", {})
        recorder.observe("s:one", "anna", "10.0.0.7", "GET", f"/series/{SERIES}", {})
        recorder.observe("s:one", "anna", "10.0.0.7", "GET", "/dicom-web/studies/1.2.3", {})
    assert recorder.drain() == 3  # repeats of one URL never reach the queue
    recorder.observe("s:two", "anna", "10.0.0.8", "GET", f"/instances/{INSTANCE}/tags", {})
    recorder.observe("s:two", "anna", "10.0.0.8", "GET", f"/studies/{STUDY}/archive", {})
    recorder.drain()
    accessed = rows(audit, "instances_accessed")
    assert [(r["actor"], r["ip"], r["event_code"]) for r in accessed] == [
        ("anna", "10.0.0.8", "110103"), ("anna", "10.0.0.7", "110103")]
    assert accessed[0]["patient_id"] == "PAT-9" and accessed[0]["study_uid"] == "1.2.3"
    assert accessed[0]["target"] == STUDY
    downloads = rows(audit, "study_downloaded")
    assert len(downloads) == 1 and downloads[0]["event_code"] == "110106"
    assert errors == []
    assert orthanc.uris().count(f"/series/{SERIES}") == 1  # series -> study is cached


def test_imports_are_one_row_per_ae_and_study_per_burst(env: Any) -> None:
    recorder, audit, _orthanc, clock, _errors = env
    for _ in range(5):
        recorder.observe_import(INSTANCE, "CT01")
        clock.advance(10)
    recorder.observe_import(INSTANCE, "MR02")
    recorder.drain()
    imported = rows(audit, "instances_imported")
    assert [(r["actor"], r["ip"]) for r in imported] == [("AE:MR02", "10.1.2.3"),
                                                         ("AE:CT01", "10.1.2.3")]
    assert imported[1]["details"] == {"calling_aet": "CT01", "called_aet": "ORTHANC"}
    assert imported[1]["event_code"] == "110107" and imported[1]["study_uid"] == "1.2.3"
    clock.advance(access_module.IMPORT_WINDOW + 1)
    recorder.observe_import(INSTANCE, "CT01")
    recorder.drain()
    assert len(rows(audit, "instances_imported")) == 3  # a later burst is a new import


def test_deletions_are_attributed_to_whoever_asked(env: Any) -> None:
    recorder, audit, _orthanc, clock, _errors = env
    recorder.observe_import(INSTANCE, "CT01")
    recorder.drain()  # the trail now knows the study's patient and UID
    recorder.observe("s:one", "root", "10.0.0.9", "DELETE", f"/studies/{STUDY}", {})
    recorder.on_study_deleted(STUDY)
    recorder.observe("s:one", "root", "10.0.0.9", "DELETE", f"/patients/{PATIENT}", {})
    recorder.on_study_deleted(STUDY)  # deleted with its patient
    clock.advance(access_module.DELETE_WINDOW + 1)
    recorder.on_study_deleted(STUDY)  # nobody asked: Orthanc itself (recycling...)
    deleted = rows(audit, "study_deleted")
    assert [(r["actor"], r["ip"]) for r in deleted] == [
        ("orthanc", ""), ("root", "10.0.0.9"), ("root", "10.0.0.9")]
    assert all(r["patient_id"] == "PAT-9" and r["study_uid"] == "1.2.3" for r in deleted)
    assert deleted[0]["event_code"] == "110105" and "reason" in deleted[0]["details"]


def test_unknown_resources_and_failures_do_not_stop_the_others(env: Any) -> None:
    recorder, audit, _orthanc, _clock, errors = env
    missing = "7" * 8 + ("-" + "7" * 8) * 4
    recorder.observe("s:one", "anna", "", "GET", f"/studies/{missing}", {})
    recorder.observe("s:one", "anna", "", "GET", "/dicom-web/studies/9.9.9", {})
    recorder.observe("s:one", "anna", "", "GET", f"/studies/{STUDY}", {})
    recorder.drain()
    assert len(rows(audit, "instances_accessed")) == 1
    assert len(errors) == 1 and "OrthancError" in errors[0]


def test_a_full_queue_is_reported_not_grown(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, audit, _orthanc, _clock, _errors = env
    monkeypatch.setattr(access_module, "QUEUE_MAX", 2)
    recorder = AccessRecorder(recorder._db, audit, recorder._orthanc, recorder._clock,
                              lambda _m: None)
    for _ in range(5):
        recorder.observe_import(INSTANCE, "CT01")
    assert recorder.drain() == 2
    alert = rows(audit, "audit_observations_dropped")
    assert alert[0]["details"] == {"dropped": 3} and alert[0]["outcome_code"] == 8


def test_study_of_any_level(env: Any) -> None:
    recorder = env[0]
    assert recorder.study_of_any(INSTANCE).study_uid == "1.2.3"
    assert recorder.study_of_any(PATIENT).patient_id == "PAT-9"
    assert recorder.study_of_any("nothing") is None


def test_imports_wait_while_a_modality_is_sending(env: Any) -> None:
    recorder, _audit, _orthanc, clock, _errors = env
    recorder.observe_import(INSTANCE, "CT01")
    assert not recorder.due()  # the modality may still be sending
    clock.advance(access_module.INGEST_QUIET)
    assert recorder.due()
    recorder.observe_import(INSTANCE, "CT01")
    clock.advance(access_module.MAX_DEFER)  # the first entry must not wait forever
    recorder.observe_import(INSTANCE, "CT01")
    assert recorder.due()
    recorder.drain()
    assert not recorder.due()  # nothing left
