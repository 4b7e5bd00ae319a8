"""Orthanc's own routes that parse a JSON body, answered through the plugin.

Orthanc's JSON parser (jsoncpp) recurses on the HTTP thread's stack: a body nested about 200
levels deep kills Orthanc 1.10.1 (measured), and the HTTP filter runs before any body is read.
So every built-in route that reads JSON is registered by the plugin too: the router bounds the
body (size and nesting, as for the plugin's own routes), then hands the untouched body to the
built-in route (``RestApiPost``/``Put`` do not come back through the plugin). ``ROUTES`` was
taken from ``Orthanc --openapi``; ``tests/integration/test_crash.py`` checks it against the
running Orthanc's own list, so a newer Orthanc's new routes cannot slip past.

Two kinds of body-reading routes stay Orthanc's, bounded by the filter instead
(``auth.policy.UNSEEN_BODIES``): those whose URI also streams a download on GET, and the
DICOMweb plugin's server settings, which no plugin can forward.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from ..auth.access import POLICY
from ..orthanc_api import OrthancError
from ..routing import Call, route
from ..web import JSON_TYPE, ApiError, Request, Response, json_response
from .transfers import BODY_MAX, as_object, forward, status_of

if TYPE_CHECKING:
    from ..services import Services

_ID = "[^/]+"
_QUERY = f"/queries/{_ID}"
# (methods, URI pattern): every built-in route of Orthanc that parses a JSON request body.
_ROUTES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("POST",), f"/(?:patients|studies|series|instances)/{_ID}/(?:anonymize|modify)"),
    (("POST",), f"/studies/{_ID}/(?:merge|split)"),
    (("GET", "PUT", "DELETE"), f"/(?:modalities|peers)/{_ID}"),
    (("POST",), f"/modalities/{_ID}/(?:echo|find|find-instance|find-patient|find-series"
                "|find-study|find-worklist|query|storage-commitment)"),
    (("POST",), f"{_QUERY}/answers/{_ID}/(?:query-instances|query-series|query-studies"
                "|retrieve)"),
    (("POST",), f"{_QUERY}/retrieve"),
    (("POST",), "/tools/(?:bulk-anonymize|bulk-content|bulk-delete|bulk-modify|create-dicom"
                "|dicom-echo|find)"),
    (("GET", "PUT"), "/tools/accepted-transfer-syntaxes"),
    # Orthanc 1.11-1.12 (Debian 13): a 404 from Orthanc on 1.10.1.
    (("POST",), f"/(?:patients|studies|series|instances)/{_ID}/reconstruct"),
    (("POST",), "/tools/(?:reconstruct|count-resources)"),
    (("POST",), f"/modalities/{_ID}/get"),
)
# Built-in routes that can run as a job: a synchronous call would hold the interpreter (and so
# every HTTP decision) on plugin 4.0 for as long as the work lasts.
_JOBS = re.compile("|".join((
    f"/(?:patients|studies|series)/{_ID}/(?:anonymize|modify)", f"/studies/{_ID}/(?:merge|split)",
    "/tools/bulk-(?:anonymize|delete|modify)", f"{_QUERY}(?:/answers/{_ID})?/retrieve",
    f"/modalities/{_ID}/get")))


def content_type(body: bytes) -> str:
    """What Orthanc answered: JSON for nearly every route, a DICOM file for an instance's
    modification or anonymization."""
    if body[128:132] == b"DICM":
        return "application/dicom"
    return JSON_TYPE if body.lstrip()[:1] in (b"{", b"[", b'"') else (
        "application/octet-stream")


def _answer(body: bytes) -> Response:
    """Orthanc's answer as it came; an empty one (``/tools/reconstruct`` on 1.10.1) as ``{}``,
    which is what its JSON routes mean by it."""
    body = body if body.strip() else b"{}"
    return Response(200, body, content_type(body))


def _uri(request: Request) -> str:
    """The URI to ask Orthanc: the path quoted again (a decoded ``%3F`` must stay part of the
    path, not start a query), then the arguments."""
    path = quote(request.path, safe="/")
    return path + ("?" + urlencode(dict(request.query)) if request.query else "")


def native(svc: Services, call: Call) -> Response:
    """The built-in route, once the filter (role) and the router (body) admitted it."""
    request = call.request
    try:
        if request.method == "GET":
            return _answer(svc.orthanc.get_bytes(_uri(request)))
        if request.method == "DELETE":
            svc.orthanc.delete(request.path)
            return _answer(b"{}")
        if request.method == "PUT":
            return _answer(svc.orthanc.put_bytes(request.path, request.body))
        if _JOBS.fullmatch(request.path):
            return json_response(forward(svc.orthanc, request.path, request.body,
                                         as_object(request.body)))
        return _answer(svc.orthanc.post_bytes(request.path, request.body))
    except OrthancError as exc:
        raise ApiError(status_of(exc), f"Orthanc refused the request: {exc}") from exc


ROUTES = tuple(route(method, pattern, native, POLICY, body_max=BODY_MAX,
                     produces=(JSON_TYPE, "application/dicom", "application/octet-stream"))
               for methods, pattern in _ROUTES for method in methods)
ROUTE_PATTERNS = tuple(pattern for _, pattern in _ROUTES)
