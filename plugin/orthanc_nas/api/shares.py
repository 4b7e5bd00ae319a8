"""Share links: management for their creators, and the public link itself.

``/s/<token>`` is the landing page (counts nothing: link-preview bots use up nothing);
``POST /api/shared/<token>/open`` counts one view and starts a viewing session whose cookie is
scoped to ``/s/<token>/``; the viewer then reads only that resource through ``/s/<token>/...``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..images.catalog import ORTHANC_ID, NotVisible, OrthancError
from ..images.shares import VIEW_COOKIE, Share, ShareGone, SharePinRequired, ShareUnknown
from ..openapi import obj, text
from ..web import (
    HTML_TYPE,
    ApiError,
    Request,
    Response,
    Router,
    field_of,
    json_body,
    json_response,
    redirect,
)
from .transfers import run_job

if TYPE_CHECKING:
    from ..app import App

TOKEN = r"([A-Za-z0-9_-]{43})"  # noqa: S105 (a URL pattern)
INSTANCE = f"({ORTHANC_ID})"


def gone(exc: ShareGone) -> ApiError:
    """Expired, revoked, used up or locked: 410 saying which."""
    return ApiError(410, f"this link is no longer valid: {exc.reason}", reason=exc.reason)


def register(router: Router, app: App) -> None:
    shares = app.shares

    def mine(request: Request) -> Response:
        principal = app.principal(request)
        own = None if principal.user.role == "admin" else principal.user.id
        return json_response({"shares": shares.list(own)})

    def revoke(request: Request, share_id: str) -> Response:
        principal = app.principal(request)
        own = None if principal.user.role == "admin" else principal.user.id
        if not shares.revoke(int(share_id), own, principal.name, request.ip):
            raise ApiError(404, "no such active share")
        return json_response({"status": "revoked"})

    def lookup(request: Request, token: str) -> Share:
        """The share of a link, with the guessing throttle and clear 404/410 answers."""
        key = f"share:{request.ip}"
        if app.share_throttle.blocked(key):
            raise ApiError(429, "too many unknown links from this address; try again later")
        try:
            return shares.by_token(token)
        except ShareUnknown as exc:
            app.share_throttle.failed(key)
            raise ApiError(404, "no such link") from exc
        except ShareGone as exc:
            raise gone(exc) from exc

    def summary(share: Share) -> dict[str, Any]:
        """What the landing page shows: no patient name or id before an explicit View."""
        try:
            study = app.orthanc.get(f"/studies/{share.study_id}")
        except OrthancError as exc:
            raise ApiError(410, "the shared images were deleted") from exc
        tags = study.get("MainDicomTags", {})
        return {"level": share.level, "study_date": tags.get("StudyDate", ""),
                "description": tags.get("StudyDescription", ""),
                "instances": len(app.catalog.instances_of(share.resource)),
                "expires_at": share.expires_at, "views_left": share.max_views - share.views,
                "pin_required": share.has_pin, "allow_download": share.allow_download}

    def landing_json(request: Request, token: str) -> Response:
        return json_response(summary(lookup(request, token)))

    def landing_page(request: Request, token: str) -> Response:
        try:
            lookup(request, token)
        except ApiError as err:
            return page_error(err)
        return Response(200, app.pages.file("share.html"), HTML_TYPE)

    def page_error(err: ApiError) -> Response:
        title = {404: "Unknown link", 410: "Link no longer valid"}.get(err.status, "Not now")
        body = app.pages.file("share-gone.html").decode()
        body = body.replace("{{title}}", html.escape(title)).replace(
            "{{message}}", html.escape(err.message))
        return Response(err.status, body.encode(), HTML_TYPE)

    def open_share(request: Request, token: str) -> Response:
        lookup(request, token)
        pin = field_of(json_body(request, app.max_body), "pin", str, required=False,
                       max_len=128)
        try:
            share, raw = shares.open(token, pin, request.ip)
        except SharePinRequired as exc:
            raise ApiError(403, str(exc), field="pin") from exc
        except ShareGone as exc:
            raise gone(exc) from exc
        response = json_response({**content(share), "viewer": f"/s/{token}/viewer"})
        response.set_cookie(VIEW_COOKIE, raw, secure=app.cookie_secure(request),
                            path=f"/s/{token}/")
        return response

    def viewing(request: Request, token: str) -> Share:
        try:
            return shares.viewing(token, request.cookie(VIEW_COOKIE))
        except ShareUnknown as exc:
            raise ApiError(403, "open the link first (View)") from exc

    def content(share: Share) -> dict[str, Any]:
        try:
            detail = app.catalog.detail_of(share.resource)
        except NotVisible as exc:
            raise ApiError(410, "the shared images are no longer stored") from exc
        return {"patient": detail["patient"], "study": detail["study"],
                "series": detail["series"], "allow_download": share.allow_download,
                "expires_at": share.expires_at}

    def viewer_page(request: Request, token: str) -> Response:
        try:
            viewing(request, token)
        except ApiError:
            return redirect(f"/s/{token}")
        return Response(200, app.pages.file("share-viewer.html"), HTML_TYPE)

    def viewer_content(request: Request, token: str) -> Response:
        return json_response(content(viewing(request, token)))

    def preview(request: Request, token: str, instance_id: str) -> Response:
        share = viewing(request, token)
        if instance_id not in app.catalog.instances_of(share.resource):
            raise ApiError(404, "not part of this share")
        try:
            png = app.orthanc.get_bytes(f"/instances/{instance_id}/preview")
        except OrthancError as exc:
            raise ApiError(404, "no preview for this instance") from exc
        return Response(200, png, "image/png")

    def download(request: Request, token: str) -> Response:
        share = viewing(request, token)
        if not share.allow_download:
            raise ApiError(403, "this link does not allow downloading")
        uri = {"study": "/studies/", "series": "/series/"}.get(share.level)
        if uri:  # zipped by a job: a synchronous archive would hold the interpreter throughout
            job_id, _ = run_job(app.orthanc, f"{uri}{share.resource_id}/archive", {})
            data = app.orthanc.get_bytes(f"/jobs/{job_id}/archive")
        else:
            data = app.orthanc.get_bytes(f"/instances/{share.resource_id}/file")
        app.audit.record("share_downloaded", actor=f"share:{share.id}", ip=request.ip,
                         target=share.study_id, share=share.id)
        response = Response(200, data, "application/zip" if uri else "application/dicom")
        name = "images.zip" if uri else "image.dcm"
        response.headers.append(("Content-Disposition", f'attachment; filename="{name}"'))
        return response

    router.add("GET", r"/api/shares", mine)
    router.add("DELETE", r"/api/shares/([0-9]{1,12})", revoke)
    router.add("GET", rf"/api/shared/{TOKEN}", landing_json)
    router.add("POST", rf"/api/shared/{TOKEN}/open", open_share, body=obj(pin=text(128)))
    router.add("GET", rf"/s/{TOKEN}", landing_page, produces=(HTML_TYPE,))
    router.add("GET", rf"/s/{TOKEN}/viewer", viewer_page, produces=(HTML_TYPE,))
    router.add("GET", rf"/s/{TOKEN}/content", viewer_content)
    router.add("GET", rf"/s/{TOKEN}/preview/{INSTANCE}", preview, produces=("image/png",))
    router.add("GET", rf"/s/{TOKEN}/download", download,
               produces=("application/zip", "application/dicom"))
