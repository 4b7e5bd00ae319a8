"""Orthanc's own "send" and bulk-export routes, wrapped so each is audited per study.

The plugin answers ``POST /modalities/{name}/store``, ``/modalities/{name}/move``,
``/peers/{name}/store`` and ``/tools/create-{archive,media,media-extended}`` itself: it notes
the studies, hands the untouched body to Orthanc's built-in route (``RestApiPost`` does not
come back through the plugin) and records the outcome. The filter sees no request bodies, so
these routes are the only place where the studies they name can be known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import jsonbound
from ..audit import FAILURE, SUCCESS
from ..audit.access import Study
from ..auth.access import POLICY
from ..orthanc_api import OrthancError, run_job
from ..routing import Call, route
from ..web import JSON_TYPE, ApiError, Response, json_response

if TYPE_CHECKING:
    from ..services import Services

BODY_MAX = 16 * 2**20  # bytes; 100,000 Orthanc IDs in a bulk request take 4.6 MB
SYNC_ARCHIVE_MAX = 512 * 2**20  # larger archives: ask for a job ("Asynchronous": true)
# Orthanc's own HTTP status for its error codes that are the caller's fault (its
# ErrorCodes.json); the SDK raises them as "(code, 'description')" with no status.
CLIENT_ERRORS = {3: 400, 5: 400, 6: 400, 7: 404, 8: 400, 12: 400, 13: 404, 15: 400, 17: 404,
                 21: 404, 27: 404, 28: 400, 29: 403, 33: 400, 34: 406, 38: 400, 41: 416, 43: 409,
                 **dict.fromkeys(range(2019, 2027), 400)}  # CreateDicom*: a bad request
_CODE = re.compile(r"\(\s*(-?\d+)\s*,")
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


def as_object(body: bytes) -> dict[str, Any] | None:
    """The request in its JSON-object form (a store's body may also be one ID as text or a
    list of IDs), or None if it cannot be read."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        parsed: Any = jsonbound.loads(text)
    except jsonbound.TooDeep:
        raise  # never handed on as text: Orthanc would parse it
    except ValueError:
        parsed = text
    if isinstance(parsed, str | list):
        parsed = {"Resources": [parsed] if isinstance(parsed, str) else parsed}
    return parsed if isinstance(parsed, dict) else None


def forward(orthanc: Any, path: str, body: bytes, request: dict[str, Any] | None) -> Any:
    """A send as the caller asked: a job's description, or (synchronous) its outcome."""
    if request is None or request.get("Asynchronous"):  # as the caller asked
        return orthanc.post(path, body)
    return run_job(orthanc, path, request)[1]


def export(orthanc: Any, path: str, body: bytes, request: dict[str, Any] | None) -> Response:
    """An archive or media as the caller asked: a job's description, or the ZIP itself."""
    if request is None or request.get("Asynchronous"):
        return json_response(orthanc.post(path, body))
    job_id, content = run_job(orthanc, path, request)
    if int(content.get("ArchiveSize", 0) or 0) > SYNC_ARCHIVE_MAX:
        raise ApiError(413, f"the archive exceeds {SYNC_ARCHIVE_MAX // 2**20} MB: ask for it"
                       ' with "Asynchronous": true and download it from the job')
    return Response(200, orthanc.get_bytes(f"/jobs/{job_id}/archive"), "application/zip")


def status_of(exc: OrthancError) -> int:
    """The status to answer for Orthanc's refusal: the caller's fault is a 4xx, as Orthanc
    itself would answer it; only what remains is Orthanc failing (502)."""
    code = _CODE.match(str(exc))
    if code and int(code.group(1)) in CLIENT_ERRORS:
        return CLIENT_ERRORS[int(code.group(1))]
    text = str(exc).lower()
    if any(word in text for word in _NOT_FOUND):
        return 404
    return 400 if any(word in text for word in _BAD_REQUEST) else 502


def _audited(svc: Services, call: Call, event: str, studies: list[Study],
             details: dict[str, Any], what: str, run: Callable[[], Any]) -> Any:
    """Runs ``run`` and records its outcome once per study (once if none is known)."""
    try:
        answer, outcome, error = run(), SUCCESS, None
    except OrthancError as exc:
        answer, outcome, error = None, FAILURE, exc
    if error is not None:
        details = {**details, "error": str(error)[:200]}
    for study in studies or [Study("", "", "")]:
        svc.audit.record(event, actor=call.caller.name, ip=call.ip, outcome=outcome,
                         target=study.study_id, patient_id=study.patient_id,
                         study_uid=study.study_uid, **details)
    if error is not None:
        raise ApiError(status_of(error), f"Orthanc could not {what}: {error}")
    return answer


def _studies_of(svc: Services, body: dict[str, Any] | None) -> list[Study]:
    return [s for r in _store_resources(body) if (s := svc.access.study_of_any(r)) is not None]


def send(svc: Services, call: Call) -> Response:
    request = call.request
    destination = call.args[0]
    operation = call.args[1] if len(call.args) > 1 else "store"
    kind = "modality" if request.path.startswith("/modalities/") else "peer"
    body = as_object(request.body)
    if operation == "move":
        event, studies = "retrieve_requested", _move_studies(body)
    else:
        event, studies = "instances_sent", _studies_of(svc, body)
    return json_response(_audited(
        svc, call, event, studies, {kind: destination}, operation,
        lambda: forward(svc.orthanc, request.path, request.body, body)))


def create(svc: Services, call: Call) -> Response:
    request = call.request
    kind = call.args[0]
    body = as_object(request.body)
    if body is not None and not _store_resources(body):
        # An archive of nothing: Orthanc 1.10.1 makes the first one, then its plugin engine
        # fails every later synchronous one (a 500 the plugin cannot catch). Said plainly here.
        raise ApiError(400, "field Resources must name at least one patient, study, series or "
                       "instance", field="Resources")
    answer: Response = _audited(
        svc, call, "study_downloaded", _studies_of(svc, body), {"route": kind}, kind,
        lambda: export(svc.orthanc, request.path, request.body, body))
    return answer


ROUTES = (
    route("POST", r"/modalities/([^/]+)/(store|move)", send, POLICY, body_max=BODY_MAX,
          params=("destination", "operation")),
    route("POST", r"/peers/([^/]+)/store", send, POLICY, body_max=BODY_MAX,
          params=("destination",)),
    route("POST", r"/tools/(create-archive|create-media|create-media-extended)", create, POLICY,
          body_max=BODY_MAX, produces=(JSON_TYPE, "application/zip"), params=("kind",)),
)
ROUTE_PATTERNS = tuple(r.pattern.pattern for r in ROUTES)
