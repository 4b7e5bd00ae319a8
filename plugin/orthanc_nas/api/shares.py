"""Share links: management for their creators, and the public link itself.

``/s/<token>`` is the landing page (counts nothing: link-preview bots use up nothing);
``POST /api/shared/<token>/open`` counts one view and starts a viewing session whose cookie is
scoped to ``/s/<token>/``; the viewer then reads only that resource through ``/s/<token>/...``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..auth.access import PUBLIC, WRITER
from ..images.catalog import NotVisible
from ..images.shares import VIEW_COOKIE, Share, ShareGone, SharePinRequired, ShareUnknown
from ..images.viewer import BadRendering, SeriesMissing, rendering_uri, series_stack
from ..openapi import obj, text
from ..orthanc_api import ORTHANC_ID, OrthancError, run_job
from ..routing import Call, route
from ..web import (
    HTML_TYPE,
    ApiError,
    Request,
    Response,
    field_of,
    json_body,
    json_response,
    redirect,
)

if TYPE_CHECKING:
    from ..services import Services

TOKEN = r"([A-Za-z0-9_-]{43})"  # noqa: S105 (a URL pattern)
INSTANCE = f"({ORTHANC_ID})"


def gone(exc: ShareGone) -> ApiError:
    """Expired, revoked, used up or locked: 410 saying which."""
    return ApiError(410, f"this link is no longer valid: {exc.reason}", reason=exc.reason)


def _own(call: Call) -> int | None:
    """Whose links the caller manages: their own, or everyone's for an admin."""
    return None if call.caller.is_admin else call.caller.user.id


def mine(svc: Services, call: Call) -> Response:
    return json_response({"shares": svc.shares.list(_own(call))})


def revoke(svc: Services, call: Call) -> Response:
    if not svc.shares.revoke(int(call.args[0]), _own(call), call.caller.name, call.ip):
        raise ApiError(404, "no such active share")
    return json_response({"status": "revoked"})


def _lookup(svc: Services, request: Request, token: str) -> Share:
    """The share of a link, with the guessing throttle and clear 404/410 answers."""
    key = f"share:{request.ip}"
    if svc.share_throttle.blocked(key):
        raise ApiError(429, "too many unknown links from this address; try again later")
    try:
        return svc.shares.by_token(token)
    except ShareUnknown as exc:
        svc.share_throttle.failed(key)
        svc.auth_failure(request)
        raise ApiError(404, "no such link") from exc
    except ShareGone as exc:
        raise gone(exc) from exc


def _summary(svc: Services, share: Share) -> dict[str, Any]:
    """What the landing page shows: no patient name or id before an explicit View, and of
    the study only the fields shares.landing_fields lists (a description can name the
    patient or a diagnosis: only when an admin chose to show it)."""
    try:
        study = svc.orthanc.get(f"/studies/{share.study_id}")
    except OrthancError as exc:
        raise ApiError(410, "the shared images were deleted") from exc
    tags = study.get("MainDicomTags", {})
    fields = svc.cfg.get("shares.landing_fields")
    shown: dict[str, Any] = {}
    if "study_date" in fields:
        shown["study_date"] = tags.get("StudyDate", "")
    if "instance_count" in fields:
        shown["instance_count"] = len(svc.catalog.instances_of(share.resource))
    if "study_description" in fields:
        shown["study_description"] = tags.get("StudyDescription", "")
    if "modalities" in fields:
        try:
            series = svc.catalog.detail_of(share.resource)["series"]
        except NotVisible as exc:
            raise ApiError(410, "the shared images were deleted") from exc
        shown["modalities"] = sorted({s["tags"].get("Modality", "") for s in series} - {""})
    return {"level": share.level, **shown, "expires_at": share.expires_at,
            "views_left": share.max_views - share.views,
            "pin_required": share.has_pin, "allow_download": share.allow_download}


def landing_json(svc: Services, call: Call) -> Response:
    return json_response(_summary(svc, _lookup(svc, call.request, call.args[0])))


def landing_page(svc: Services, call: Call) -> Response:
    try:
        _lookup(svc, call.request, call.args[0])
    except ApiError as err:
        return _page_error(svc, err)
    return Response(200, svc.pages.file("share.html"), HTML_TYPE)


def _page_error(svc: Services, err: ApiError) -> Response:
    title = {404: "Unknown link", 410: "Link no longer valid"}.get(err.status, "Not now")
    body = svc.pages.file("share-gone.html").decode()
    body = body.replace("{{title}}", html.escape(title)).replace(
        "{{message}}", html.escape(err.message))
    return Response(err.status, body.encode(), HTML_TYPE)


def open_share(svc: Services, call: Call) -> Response:
    token = call.args[0]
    _lookup(svc, call.request, token)
    pin = field_of(json_body(call.request, svc.max_body), "pin", str, required=False,
                   max_len=128)
    try:
        share, raw = svc.shares.open(token, pin, call.ip)
    except SharePinRequired as exc:
        if pin:
            svc.auth_failure(call.request)
        raise ApiError(403, str(exc), field="pin") from exc
    except ShareGone as exc:
        raise gone(exc) from exc
    response = json_response({**_content(svc, share), "viewer": f"/s/{token}/viewer"})
    response.set_cookie(VIEW_COOKIE, raw, secure=svc.site.cookie_secure(call.request),
                        path=f"/s/{token}/")
    return response


def _viewing(svc: Services, call: Call) -> Share:
    try:
        return svc.shares.viewing(call.args[0], call.request.cookie(VIEW_COOKIE))
    except ShareUnknown as exc:
        raise ApiError(403, "open the link first (View)") from exc


def _content(svc: Services, share: Share) -> dict[str, Any]:
    try:
        detail = svc.catalog.detail_of(share.resource)
    except NotVisible as exc:
        raise ApiError(410, "the shared images are no longer stored") from exc
    return {"patient": detail["patient"], "study": detail["study"],
            "series": detail["series"], "allow_download": share.allow_download,
            "expires_at": share.expires_at}


def viewer_page(svc: Services, call: Call) -> Response:
    try:
        _viewing(svc, call)
    except ApiError:
        return redirect(f"/s/{call.args[0]}")
    return Response(200, svc.pages.file("share-viewer.html"), HTML_TYPE)


def viewer_content(svc: Services, call: Call) -> Response:
    return json_response(_content(svc, _viewing(svc, call)))


def _shared_instances(svc: Services, share: Share) -> list[str]:
    try:
        return svc.catalog.instances_of(share.resource)
    except NotVisible as exc:
        raise ApiError(410, "the shared images are no longer stored") from exc


def _member(svc: Services, share: Share, instance_id: str) -> None:
    """Every image route of a share: the instance must be one the link shares."""
    if instance_id not in _shared_instances(svc, share):
        raise ApiError(404, "not part of this share")


def viewer_series(svc: Services, call: Call) -> Response:
    """A shared series as the viewer scrolls it: only the instances the link shares."""
    share = _viewing(svc, call)
    try:
        stack = series_stack(svc.orthanc, call.args[1], set(_shared_instances(svc, share)))
    except SeriesMissing as exc:
        raise ApiError(404, "not part of this share") from exc
    return json_response(stack)


def frame(svc: Services, call: Call) -> Response:
    """A frame of a shared instance, rendered by Orthanc (window/level as the viewer asks)."""
    share = _viewing(svc, call)
    _, instance_id, number, kind = call.args
    try:
        uri = rendering_uri(instance_id, number, kind, call.request.query)
    except BadRendering as exc:
        raise ApiError(400, str(exc)) from exc
    _member(svc, share, instance_id)
    try:
        image = svc.orthanc.get_bytes(uri)
    except OrthancError as exc:
        raise ApiError(404, "this image cannot be shown") from exc
    return Response(200, image, "image/png")


def preview(svc: Services, call: Call) -> Response:
    share = _viewing(svc, call)
    instance_id = call.args[1]
    _member(svc, share, instance_id)
    try:
        png = svc.orthanc.get_bytes(f"/instances/{instance_id}/preview")
    except OrthancError as exc:
        raise ApiError(404, "no preview for this instance") from exc
    return Response(200, png, "image/png")


def download(svc: Services, call: Call) -> Response:
    share = _viewing(svc, call)
    if not share.allow_download:
        raise ApiError(403, "this link does not allow downloading")
    uri = {"study": "/studies/", "series": "/series/"}.get(share.level)
    if uri:  # zipped by a job: a synchronous archive would hold the interpreter throughout
        job_id, _ = run_job(svc.orthanc, f"{uri}{share.resource_id}/archive", {})
        data = svc.orthanc.get_bytes(f"/jobs/{job_id}/archive")
    else:
        data = svc.orthanc.get_bytes(f"/instances/{share.resource_id}/file")
    svc.audit.record("share_downloaded", actor=f"share:{share.id}", ip=call.ip,
                     target=share.study_id, share=share.id)
    response = Response(200, data, "application/zip" if uri else "application/dicom")
    name = "images.zip" if uri else "image.dcm"
    response.headers.append(("Content-Disposition", f'attachment; filename="{name}"'))
    return response


LINK = f"/s/{TOKEN}"
ROUTES = (
    route("GET", r"/api/shares", mine, WRITER),
    route("DELETE", r"/api/shares/([0-9]{1,12})", revoke, WRITER, params=("share_id",)),
    route("GET", rf"/api/shared/{TOKEN}", landing_json, PUBLIC, params=("token",)),
    route("POST", rf"/api/shared/{TOKEN}/open", open_share, PUBLIC, params=("token",),
          body=obj(pin=text(128))),
    route("GET", LINK, landing_page, PUBLIC, params=("token",), produces=(HTML_TYPE,)),
    route("GET", f"{LINK}/viewer", viewer_page, PUBLIC, params=("token",),
          produces=(HTML_TYPE,)),
    route("GET", f"{LINK}/content", viewer_content, PUBLIC, params=("token",)),
    route("GET", f"{LINK}/preview/{INSTANCE}", preview, PUBLIC, params=("token", "instance_id"),
          produces=("image/png",)),
    route("GET", rf"{LINK}/series/{INSTANCE}", viewer_series, PUBLIC,
          params=("token", "series_id")),
    route("GET", rf"{LINK}/frames/{INSTANCE}/([0-9]{{1,5}})/(rendered|preview)", frame, PUBLIC,
          params=("token", "instance_id", "frame", "rendering"), produces=("image/png",)),
    route("GET", f"{LINK}/download", download, PUBLIC, params=("token",),
          produces=("application/zip", "application/dicom")),
)
