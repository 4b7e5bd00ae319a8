"""Admin routes of the audit trail: search, CSV/JSON export, chain verification."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..audit import FAILURE, HEAD_FILE, AuditQuery, read_head
from ..openapi import SEARCH_VALUE, obj
from ..web import (
    JSON_TYPE,
    ApiError,
    Request,
    Response,
    Router,
    int_param,
    json_response,
    search_params,
)

if TYPE_CHECKING:
    from ..app import App

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


def register(router: Router, app: App) -> None:
    def search(request: Request) -> Response:
        app.require_admin(request)
        q = search_params(request, app.max_body)
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
        total, items = app.audit.search(query)
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
        response = Response(200, out.getvalue().encode(), "text/csv; charset=utf-8")
        response.headers.append(("Content-Disposition", 'attachment; filename="audit.csv"'))
        return response

    def verify(request: Request) -> Response:
        admin = app.require_admin(request)
        head = read_head(app.data_dir / HEAD_FILE)
        result = app.audit.check_head(app.audit.verify(), head)
        if not result.ok:
            app.audit.record("audit_verification_failed", actor=admin.name, ip=request.ip,
                             outcome=FAILURE, first_bad_id=result.first_bad_id,
                             problem=result.problem)
        return json_response(result.public())

    router.add("GET", r"/api/audit", search, produces=(JSON_TYPE, "text/csv; charset=utf-8"))
    router.add("POST", r"/api/audit/search", search, body=obj(**dict.fromkeys(
        ("user", "event", "outcome", "patient", "study", "target", "since", "until", "limit",
         "offset", "format"), SEARCH_VALUE)))
    router.add("GET", r"/api/audit/verify", verify)
