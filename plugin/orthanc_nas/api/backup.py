"""Admin routes of backups: status, passphrase (the backup key), run now, listing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import ADMIN_ONLY
from ..backup.crypto import PASSPHRASE_MAX
from ..backup.service import BackupError
from ..openapi import obj, text
from ..routing import Call, route
from ..web import ApiError, Response, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..services import Services


def status(svc: Services, call: Call) -> Response:
    return json_response(svc.backup.status())


def set_key(svc: Services, call: Call) -> Response:
    data = json_body(call.request, svc.max_body)
    passphrase = field_of(data, "passphrase", str, max_len=PASSPHRASE_MAX)
    try:
        return json_response(svc.backup.set_passphrase(passphrase, call.caller.name, call.ip))
    except BackupError as exc:
        raise ApiError(exc.status, str(exc), field="passphrase") from exc


def run_now(svc: Services, call: Call) -> Response:
    try:
        result = svc.backup.run(call.caller.name, "api")
    except BackupError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    if not result.get("ok"):
        raise ApiError(502, f"the backup failed: {result.get('error', 'unknown error')}")
    return json_response(result)


def listing(svc: Services, call: Call) -> Response:
    try:
        return json_response(svc.backup.listing())
    except BackupError as exc:
        raise ApiError(exc.status, str(exc)) from exc


ROUTES = (
    route("GET", r"/api/admin/backup", status, ADMIN_ONLY),
    route("POST", r"/api/admin/backup", run_now, ADMIN_ONLY),
    route("PUT", r"/api/admin/backup/passphrase", set_key, ADMIN_ONLY,
          body=obj(("passphrase",), passphrase=text(PASSPHRASE_MAX))),
    route("GET", r"/api/admin/backups", listing, ADMIN_ONLY),
)
