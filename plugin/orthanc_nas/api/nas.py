"""Admin routes of the NAS mirror: settings, test, status, browse, queue, retry, backfill."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import ADMIN_ONLY
from ..mirror.service import NasConfigError
from ..nas.connect import configured
from ..nas.storage import OutsideRoot, clean_relative
from ..routing import Call, route
from ..web import (
    ApiError,
    Response,
    field_of,
    int_param,
    json_body,
    json_response,
    search_params,
)

if TYPE_CHECKING:
    from ..services import Services

QUEUE_STATES = ("pending", "failed", "done", "cancelled")


def get_config(svc: Services, call: Call) -> Response:
    return json_response(svc.mirror.public())


def set_config(svc: Services, call: Call) -> Response:
    admin = call.caller
    try:
        return json_response(svc.mirror.update(json_body(call.request, svc.max_body),
                                               admin.name, call.ip))
    except NasConfigError as exc:
        raise ApiError(400, str(exc), field=exc.key) from exc


def test(svc: Services, call: Call) -> Response:
    admin = call.caller
    try:
        nas = svc.mirror.candidate(json_body(call.request, svc.max_body))
    except NasConfigError as exc:
        raise ApiError(400, str(exc), field=exc.key) from exc
    result = svc.mirror.run_cli(["test"], nas)
    svc.audit.record("nas_test", actor=admin.name, ip=call.ip,
                     outcome="success" if result.get("ok") else "failure",
                     failed_step=result.get("failed_step"))
    return json_response(result)


def status(svc: Services, call: Call) -> Response:
    return json_response(svc.mirror.status())


def history(svc: Services, call: Call) -> Response:
    """The mirror's backlog and throughput over the last 24 h (a sample every 5 minutes)."""
    return json_response({"samples": svc.mirror_samples.last_day()})


def browse(svc: Services, call: Call) -> Response:
    raw = search_params(call.request, svc.max_body).get("path", "")
    try:
        path = str(clean_relative(raw)) if raw.strip("/") else ""
    except OutsideRoot as exc:
        raise ApiError(400, "path must stay inside the share root", field="path") from exc
    nas = svc.mirror.effective()
    if not configured(nas):
        raise ApiError(409, "the NAS is not configured: set its folder or SMB share in the "
                       "NAS settings first", configured=False)
    result = svc.mirror.run_cli(["browse", path], nas)
    if result.get("outside"):  # a link inside the folder that points out of it
        raise ApiError(400, "path must stay inside the share root", field="path")
    if not result.get("ok"):
        raise ApiError(503, result.get("error", "the NAS did not answer"))
    return json_response(result)


def queue(svc: Services, call: Call) -> Response:
    state = call.request.query.get("state")
    if state is not None and state not in QUEUE_STATES:
        raise ApiError(400, f"parameter state must be one of {QUEUE_STATES}", field="state")
    query = call.request.query
    items = svc.mirror.outbox.items(state, int_param(query, "limit", 100, 1, 1000),
                                    int_param(query, "offset", 0, 0, 10**9))
    return json_response({"items": items, **svc.mirror.outbox.counts()})


def retry(svc: Services, call: Call) -> Response:
    admin = call.caller
    ids = field_of(json_body(call.request, svc.max_body), "ids", list, required=False)
    if ids is not None and not all(isinstance(i, str) and len(i) < 100 for i in ids):
        raise ApiError(400, "field ids must list instance ids", field="ids")
    count = svc.mirror.outbox.retry(ids)
    svc.audit.record("nas_retry", actor=admin.name, ip=call.ip, items=count)
    if svc.mirror.supervisor is not None:
        svc.mirror.supervisor.wake()
    return json_response({"requeued": count})


def backfill(svc: Services, call: Call) -> Response:
    admin = call.caller
    if not svc.mirror.effective()["enabled"]:
        raise ApiError(409, "NAS mirroring is disabled")
    svc.mirror.backfill()
    svc.audit.record("nas_backfill", actor=admin.name, ip=call.ip)
    return json_response({"status": "started"})


ROUTES = (
    route("GET", r"/api/nas/config", get_config, ADMIN_ONLY),
    route("POST", r"/api/nas/config", set_config, ADMIN_ONLY),
    route("POST", r"/api/nas/test", test, ADMIN_ONLY),
    route("GET", r"/api/nas/status", status, ADMIN_ONLY),
    route("GET", r"/api/nas/history", history, ADMIN_ONLY),
    route("GET", r"/api/nas/browse", browse, ADMIN_ONLY),
    route("POST", r"/api/nas/browse", browse, ADMIN_ONLY),
    route("GET", r"/api/nas/queue", queue, ADMIN_ONLY),
    route("POST", r"/api/nas/retry", retry, ADMIN_ONLY),
    route("POST", r"/api/nas/backfill", backfill, ADMIN_ONLY),
)
