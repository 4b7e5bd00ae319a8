"""Orthanc's own "send" routes, wrapped so every C-STORE/C-MOVE out is audited per study.

The plugin answers ``POST /modalities/{name}/store``, ``/modalities/{name}/move`` and
``/peers/{name}/store`` itself: it notes the studies, hands the untouched body to Orthanc's
built-in route (``RestApiPost`` does not come back through the plugin) and records the outcome.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..audit import FAILURE, SUCCESS
from ..audit.access import Study
from ..images.catalog import OrthancError
from ..web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from ..app import App

ROUTE_PATTERNS = ("/modalities/([^/]+)/(store|move)", "/peers/([^/]+)/store")
_NOT_FOUND = ("inexistent", "unknown resource", "unknown modality", "unknown peer")
_BAD_REQUEST = ("bad request", "bad file format", "parameter out of range", "bad json")


def _store_resources(request: dict[str, Any] | None) -> list[str]:
    """The resource IDs of a store request."""
    resources = (request or {}).get("Resources", [])
    return [str(r) for r in resources] if isinstance(resources, list) else []


def _move_studies(request: dict[str, Any] | None) -> list[Study]:
    """The studies named by a move request's ``Resources`` queries (as far as they say)."""
    resources = (request or {}).get("Resources", [])
    return [Study("", str(r.get("PatientID", "")), str(r.get("StudyInstanceUID", "")))
            for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []


def _as_object(body: bytes) -> dict[str, Any] | None:
    """The request in its JSON-object form (a store's body may also be one ID as text or a
    list of IDs), or None if it cannot be read."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    if isinstance(parsed, str | list):
        parsed = {"Resources": [parsed] if isinstance(parsed, str) else parsed}
    return parsed if isinstance(parsed, dict) else None


def forward(orthanc: Any, path: str, body: bytes, request: dict[str, Any] | None) -> Any:
    """Runs the built-in route as a job and waits for it outside the interpreter lock (a
    synchronous send would hold it, on plugin 4.0, for as long as the transfer lasts)."""
    if request is None or request.get("Asynchronous"):  # as the caller asked
        return orthanc.post(path, body)
    job = orthanc.post(path, json.dumps({**request, "Asynchronous": True}).encode())
    if not (isinstance(job, dict) and "ID" in job):
        return job
    delay = 0.02
    while True:
        info = orthanc.get(f"/jobs/{job['ID']}")
        if info.get("State") == "Success":
            return info.get("Content", {})
        if info.get("State") == "Failure":
            raise OrthancError(str(info.get("ErrorDescription") or "the job failed"))
        time.sleep(delay)  # releases the interpreter: the filter keeps serving meanwhile
        delay = min(delay * 2, 1.0)


def _status_of(exc: OrthancError) -> int:
    text = str(exc).lower()
    if any(word in text for word in _NOT_FOUND):
        return 404
    return 400 if any(word in text for word in _BAD_REQUEST) else 502


def register(router: Router, app: App) -> None:
    def send(request: Request, destination: str, operation: str = "store") -> Response:
        principal = app.principal(request)
        kind = "modality" if request.path.startswith("/modalities/") else "peer"
        body = _as_object(request.body)
        if operation == "move":
            event, studies = "retrieve_requested", _move_studies(body)
        else:
            event = "instances_sent"
            studies = [s for r in _store_resources(body)
                       if (s := app.access.study_of_any(r)) is not None]
        try:
            answer = forward(app.orthanc, request.path, request.body, body)
            outcome, error = SUCCESS, None
        except OrthancError as exc:
            outcome, error = FAILURE, exc
        details: dict[str, Any] = {kind: destination}
        if error is not None:
            details["error"] = str(error)[:200]
        for study in studies or [Study("", "", "")]:
            app.audit.record(event, actor=principal.name, ip=request.ip, outcome=outcome,
                             target=study.study_id, patient_id=study.patient_id,
                             study_uid=study.study_uid, **details)
        if error is not None:
            raise ApiError(_status_of(error), f"Orthanc could not {operation}: {error}")
        return json_response(answer)

    router.add("POST", r"/modalities/([^/]+)/(store|move)", send)
    router.add("POST", r"/peers/([^/]+)/store", send)
