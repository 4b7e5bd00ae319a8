"""DICOM modalities (admin screen): list, save, delete, and a C-ECHO test."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import ADMIN_ONLY
from ..modalities import EchoFailed, ModalityRejected
from ..openapi import INTEGER, obj, text
from ..routing import Call, route
from ..web import ApiError, Response, field_of, json_body, json_response

if TYPE_CHECKING:
    from ..services import Services

NAME = r"/api/admin/modalities/([A-Za-z0-9_-]{1,64})"


def _refused(exc: ModalityRejected) -> ApiError:
    extra = {"field": exc.field} if exc.field else {}
    return ApiError(exc.status, str(exc), **extra)


def listing(svc: Services, call: Call) -> Response:
    return json_response({"modalities": [m.public() for m in svc.modalities.declared()],
                          "orthanc_aet": svc.orthanc_aet(), "dicom_port": svc.dicom_port()})


def save(svc: Services, call: Call) -> Response:
    data = json_body(call.request, svc.max_body)
    try:
        saved = svc.modalities.save(
            call.args[0], field_of(data, "aet", str, max_len=64),
            field_of(data, "host", str, max_len=253), field_of(data, "port", int),
            field_of(data, "owner", str, required=False, max_len=64) or None,
            actor=call.caller.name, ip=call.ip)
    except ModalityRejected as exc:
        raise _refused(exc) from exc
    return json_response({"modality": saved.public()})


def delete(svc: Services, call: Call) -> Response:
    try:
        left = svc.modalities.delete(call.args[0], actor=call.caller.name, ip=call.ip)
    except ModalityRejected as exc:
        raise _refused(exc) from exc
    return json_response({"status": "deleted",
                          "modality": left.public() if left is not None else None})


def echo(svc: Services, call: Call) -> Response:
    try:
        seconds = svc.modalities.echo(call.args[0])
    except ModalityRejected as exc:
        raise _refused(exc) from exc
    except EchoFailed as exc:  # the modality's problem, not the caller's: 200 with ok false
        return json_response({"ok": False, "message": str(exc)})
    return json_response({"ok": True, "seconds": seconds,
                          "message": f"The modality answered in {seconds:.2f} s."})


def get_ae_owners(svc: Services, call: Call) -> Response:
    """The AE title -> user map the modalities make (read-only: edit the modalities)."""
    return json_response({"ae_owners": svc.modalities.owners()})


ROUTES = (
    route("GET", r"/api/admin/modalities", listing, ADMIN_ONLY),
    route("PUT", NAME, save, ADMIN_ONLY, params=("name",), body=obj(
        ("aet", "host", "port"), aet=text(64), host=text(253), port=INTEGER,
        owner=text(64))),
    route("DELETE", NAME, delete, ADMIN_ONLY, params=("name",)),
    route("POST", f"{NAME}/echo", echo, ADMIN_ONLY, params=("name",)),
    route("GET", r"/api/admin/ae-owners", get_ae_owners, ADMIN_ONLY),
)
