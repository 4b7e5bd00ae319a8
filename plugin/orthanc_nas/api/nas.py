"""Admin routes of the NAS mirror: settings, test, status, browse, queue, retry, backfill."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mirror.service import NasConfigError
from ..nas.storage import OutsideRoot, clean_relative
from ..web import (
    ApiError,
    Request,
    Response,
    Router,
    field_of,
    int_param,
    json_body,
    json_response,
    search_params,
)

if TYPE_CHECKING:
    from ..app import App

QUEUE_STATES = ("pending", "failed", "done", "cancelled")


def register(router: Router, app: App) -> None:
    mirror = app.mirror

    def get_config(request: Request) -> Response:
        app.require_admin(request)
        return json_response(mirror.public())

    def set_config(request: Request) -> Response:
        admin = app.require_admin(request)
        try:
            return json_response(mirror.update(json_body(request, app.max_body), admin.name,
                                               request.ip))
        except NasConfigError as exc:
            raise ApiError(400, str(exc), field=exc.key) from exc

    def test(request: Request) -> Response:
        admin = app.require_admin(request)
        try:
            nas = mirror.candidate(json_body(request, app.max_body))
        except NasConfigError as exc:
            raise ApiError(400, str(exc), field=exc.key) from exc
        result = mirror.run_cli(["test"], nas)
        app.audit.record("nas_test", actor=admin.name, ip=request.ip,
                         outcome="success" if result.get("ok") else "failure",
                         failed_step=result.get("failed_step"))
        return json_response(result)

    def status(request: Request) -> Response:
        app.require_admin(request)
        return json_response(mirror.status())

    def browse(request: Request) -> Response:
        app.require_admin(request)
        raw = search_params(request, app.max_body).get("path", "")
        try:
            path = str(clean_relative(raw)) if raw.strip("/") else ""
        except OutsideRoot as exc:
            raise ApiError(400, "path must stay inside the share root", field="path") from exc
        nas = mirror.effective()
        if not (nas["host"] and nas["share"] if nas["type"] == "smb" else nas["path"]):
            # never the folder Orthanc runs in (an empty local path is the working directory)
            raise ApiError(409, "the NAS is not configured: set its folder or SMB share in the "
                           "NAS settings first", configured=False)
        result = mirror.run_cli(["browse", path], nas)
        if result.get("outside"):  # a link inside the folder that points out of it
            raise ApiError(400, "path must stay inside the share root", field="path")
        if not result.get("ok"):
            raise ApiError(503, result.get("error", "the NAS did not answer"))
        return json_response(result)

    def queue(request: Request) -> Response:
        app.require_admin(request)
        state = request.query.get("state")
        if state is not None and state not in QUEUE_STATES:
            raise ApiError(400, f"parameter state must be one of {QUEUE_STATES}", field="state")
        items = mirror.outbox.items(state, int_param(request.query, "limit", 100, 1, 1000),
                                   int_param(request.query, "offset", 0, 0, 10**9))
        return json_response({"items": items, **mirror.outbox.counts()})

    def retry(request: Request) -> Response:
        admin = app.require_admin(request)
        ids = field_of(json_body(request, app.max_body), "ids", list, required=False)
        if ids is not None and not all(isinstance(i, str) and len(i) < 100 for i in ids):
            raise ApiError(400, "field ids must list instance ids", field="ids")
        count = mirror.outbox.retry(ids)
        app.audit.record("nas_retry", actor=admin.name, ip=request.ip, items=count)
        if mirror.supervisor is not None:
            mirror.supervisor.wake()
        return json_response({"requeued": count})

    def backfill(request: Request) -> Response:
        admin = app.require_admin(request)
        if not mirror.effective()["enabled"]:
            raise ApiError(409, "NAS mirroring is disabled")
        mirror.backfill()
        app.audit.record("nas_backfill", actor=admin.name, ip=request.ip)
        return json_response({"status": "started"})

    router.add("GET", r"/api/nas/config", get_config)
    router.add("POST", r"/api/nas/config", set_config)
    router.add("POST", r"/api/nas/test", test)
    router.add("GET", r"/api/nas/status", status)
    router.add("GET", r"/api/nas/browse", browse)
    router.add("POST", r"/api/nas/browse", browse)
    router.add("GET", r"/api/nas/queue", queue)
    router.add("POST", r"/api/nas/retry", retry)
    router.add("POST", r"/api/nas/backfill", backfill)
