"""Admin routes of the audit trail: search, CSV/JSON export, chain verification."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..audit import FAILURE, HEAD_FILE, AuditQuery, read_head
from ..auth.access import ADMIN_ONLY
from ..openapi import SEARCH_VALUE, obj
from ..routing import Call, route
from ..web import JSON_TYPE, ApiError, Response, int_param, json_response, search_params

if TYPE_CHECKING:
    from ..services import Services

CSV_TYPE = "text/csv; charset=utf-8"
CSV_COLUMNS = ("id", "ts", "actor", "ip", "event", "event_code", "event_name", "outcome",
               "outcome_code", "target", "patient_id", "study_uid", "details")


def _float_param(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise ApiError(400, f"parameter {name} must be a UNIX time in seconds",
                       field=name) from exc


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def search(svc: Services, call: Call) -> Response:
    q = search_params(call.request, svc.max_body)
    export = q.get("format", "")
    if export not in ("", "json", "csv"):
        raise ApiError(400, "parameter format must be json or csv", field="format")
    limit_max = 100_000 if export else 1000
    query = AuditQuery(actor=q.get("user"), event=q.get("event"), outcome=q.get("outcome"),
                       patient_id=q.get("patient"), study_uid=q.get("study"),
                       target=q.get("target"), since=_float_param(q, "since"),
                       until=_float_param(q, "until"),
                       limit=int_param(q, "limit", 100, 1, limit_max),
                       offset=int_param(q, "offset", 0, 0, 10**9))
    total, items = svc.audit.search(query)
    if not export:  # the page shows patient and study by name
        body = {"total": total, "items": items,
                "studies": svc.catalog.names_of([str(i["target"]) for i in items])}
        return json_response(body)
    if export != "csv":
        response = json_response({"total": total, "items": items})
        if export:
            response.headers.append(("Content-Disposition",
                                     'attachment; filename="audit.json"'))
        return response
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        writer.writerow([_cell(item[c]) for c in CSV_COLUMNS])
    response = Response(200, out.getvalue().encode(), CSV_TYPE)
    response.headers.append(("Content-Disposition", 'attachment; filename="audit.csv"'))
    return response


def verify(svc: Services, call: Call) -> Response:
    head = read_head(svc.data_dir / HEAD_FILE)
    result = svc.audit.check_head(svc.audit.verify(), head)
    if not result.ok:
        svc.audit.record("audit_verification_failed", actor=call.caller.name, ip=call.ip,
                         outcome=FAILURE, first_bad_id=result.first_bad_id,
                         problem=result.problem)
    return json_response(result.public())


ROUTES = (
    route("GET", r"/api/audit", search, ADMIN_ONLY, produces=(JSON_TYPE, CSV_TYPE)),
    route("POST", r"/api/audit/search", search, ADMIN_ONLY, produces=(JSON_TYPE, CSV_TYPE),
          body=obj(**dict.fromkeys(("user", "event", "outcome", "patient", "study", "target",
                                    "since", "until", "limit", "offset", "format"),
                                   SEARCH_VALUE))),
    route("GET", r"/api/audit/verify", verify, ADMIN_ONLY),
)
