"""Sends to modalities and peers: the request forms Orthanc accepts, run as a job and waited
for, and Orthanc's refusals turned into the right status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakes import FakeOrthanc
from orthanc_nas import orthanc_api
from orthanc_nas.api import transfers
from orthanc_nas.orthanc_api import OrthancError


def job_orthanc(states: list[dict[str, Any]]) -> FakeOrthanc:
    """Orthanc's built-in route: answers a job, then its ``states`` one GET at a time."""

    def post(body: bytes) -> Any:
        parsed = json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
        if isinstance(parsed, dict) and parsed.get("Asynchronous"):
            return {"ID": "job-1", "Path": "/jobs/job-1"}
        return {"InstancesCount": 1}

    return FakeOrthanc({"/jobs/job-1": lambda: states.pop(0)}, post_otherwise=post)


def posted(orthanc: FakeOrthanc) -> list[tuple[str, Any]]:
    return [(uri, json.loads(body)) for uri, body in orthanc.bodies]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orthanc_api.time, "sleep", lambda _s: None)


@pytest.mark.parametrize(("body", "resources"), [
    (b"0a1b2c", ["0a1b2c"]),
    (b'["a", "b"]', ["a", "b"]),
    (b'{"Resources": ["a"], "Synchronous": true}', ["a"]),
    (b"", []),
    (b"[1, 2", ["[1, 2"]),  # not JSON: one ID as text, which Orthanc will refuse
])
def test_store_bodies(body: bytes, resources: list[str]) -> None:
    assert transfers._store_resources(transfers.as_object(body)) == resources


def test_move_names_studies_by_uid() -> None:
    body = b'{"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2", "PatientID": "P"}]}'
    studies = transfers._move_studies(transfers.as_object(body))
    assert [(s.patient_id, s.study_uid) for s in studies] == [("P", "1.2")]


def test_a_synchronous_send_runs_as_a_job_and_returns_its_content() -> None:
    orthanc = job_orthanc([{"State": "Running"}, {"State": "Pending"},
                           {"State": "Success", "Content": {"InstancesCount": 3}}])
    body = b"study-1"
    answer = transfers.forward(orthanc, "/modalities/pacs/store", body,
                               transfers.as_object(body))
    assert answer == {"InstancesCount": 3}
    assert posted(orthanc) == [("/modalities/pacs/store",
                               {"Resources": ["study-1"], "Asynchronous": True})]


def test_a_failed_job_is_an_error() -> None:
    orthanc = job_orthanc([{"State": "Failure", "ErrorDescription": "DICOM association"}])
    body = b'{"Resources": ["s"]}'
    with pytest.raises(OrthancError, match="association"):
        transfers.forward(orthanc, "/peers/p/store", body, transfers.as_object(body))


def test_an_asynchronous_request_is_passed_as_it_came() -> None:
    states: list[dict[str, Any]] = []
    orthanc = job_orthanc(states)
    body = b'{"Resources": ["s"], "Asynchronous": true}'
    assert transfers.forward(orthanc, "/modalities/m/store", body,
                             transfers.as_object(body)) == {"ID": "job-1",
                                                            "Path": "/jobs/job-1"}
    assert orthanc.uris() == []  # not waited for


@pytest.mark.parametrize(("message", "status"), [
    ("Inexistent item", 404), ("Unknown modality", 404), ("Bad request", 400),
    ("Bad file format", 400), ("DicomAssociation: connection refused", 502),
    # The SDK's own form, "(code, 'description')": a fuzzed C-FIND query naming no real tag
    # was a 502 (Orthanc failing) where Orthanc itself answers the caller's mistake with 404.
    ("(27, 'Unknown DICOM tag')", 404), ("(15, 'Bad file format')", 400),
    ("(9, 'Error in the network protocol')", 502),
    ("(2019, 'Only string values are supported when creating DICOM instances')", 400),
])
def test_orthanc_refusals_become_statuses(message: str, status: int) -> None:
    assert transfers.status_of(OrthancError(message)) == status
