"""Orthanc's own REST API as the plain-Python side sees it: one protocol, one error, the
identifier helpers and long operations run as jobs. ``adapter`` implements the protocol with the
SDK (in-process, bypassing the filter); tests with one fake.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Protocol

ORTHANC_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"


class OrthancError(Exception):
    """Orthanc refused or failed a call (an unknown resource, a bad file...)."""


class OrthancApi(Protocol):
    """Every refusal raises ``OrthancError``."""

    def get(self, uri: str) -> Any: ...

    def get_bytes(self, uri: str) -> bytes: ...

    def post(self, uri: str, body: bytes) -> Any: ...

    def post_bytes(self, uri: str, body: bytes) -> bytes: ...

    def put_bytes(self, uri: str, body: bytes) -> bytes: ...

    def delete(self, uri: str) -> None: ...


def _orthanc_id(text: str) -> str:
    h = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    return "-".join(h[i:i + 8] for i in range(0, 40, 8))


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's identifier of a study: SHA-1 of ``PatientID|StudyInstanceUID``, dashed."""
    return _orthanc_id(f"{patient_id}|{study_uid}")


def orthanc_patient_id(patient_id: str) -> str:
    """Orthanc's identifier of a patient: SHA-1 of ``PatientID``, dashed."""
    return _orthanc_id(patient_id)


def run_job(orthanc: OrthancApi, path: str, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Runs the built-in route as a job and waits for it outside the interpreter lock (a
    synchronous call would hold it, on plugin 4.0, for as long as the work lasts); returns
    the job's ID and content."""
    job = orthanc.post(path, json.dumps({**request, "Asynchronous": True}).encode())
    if not (isinstance(job, dict) and "ID" in job):
        raise OrthancError("Orthanc did not start a job")
    delay = 0.02
    while True:
        info = orthanc.get(f"/jobs/{job['ID']}")
        if info.get("State") == "Success":
            return str(job["ID"]), info.get("Content", {})
        if info.get("State") == "Failure":
            raise OrthancError(str(info.get("ErrorDescription") or "the job failed"))
        time.sleep(delay)  # releases the interpreter: the filter keeps serving meanwhile
        delay = min(delay * 2, 1.0)
