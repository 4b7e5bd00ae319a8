"""Images: uploads with their uploader, search, details, tags, assignments, share creation,
and the AE-title -> user map."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..auth.backend import Principal
from ..images.catalog import (
    DATE_RE,
    ORTHANC_ID,
    SORTS,
    Filters,
    NotVisible,
    OrthancError,
    Viewer,
    valid_tag,
)
from ..openapi import BOOLEAN, INTEGER, SEARCH_VALUE, obj, text
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

ID = f"({ORTHANC_ID})"


def viewer_of(principal: Principal) -> Viewer:
    return Viewer(principal.user.id, principal.user.role)


def register(router: Router, app: App) -> None:
    catalog = app.catalog

    def upload(request: Request) -> Response:
        """Orthanc's own upload route, with the uploader recorded (Orthanc Explorer uses it)."""
        principal = app.principal(request)
        if principal.user.role not in ("user", "admin"):
            raise ApiError(403, "uploading needs the user or admin role")
        try:
            answer = app.orthanc.post("/instances", request.body)
        except OrthancError as exc:
            raise ApiError(400, f"Orthanc refused the file: {exc}") from exc
        stored = answer if isinstance(answer, list) else [answer]
        for item in stored:
            if isinstance(item, dict) and "ID" in item and "ParentStudy" in item:
                catalog.record_owner(item["ID"], item["ParentStudy"], principal.user.id, "upload")
                app.audit.record("instance_uploaded", actor=principal.name, ip=request.ip,
                                 target=item["ParentStudy"], instance=item["ID"],
                                 status=item.get("Status", ""))
        return json_response(answer)

    def list_instances(request: Request) -> Response:
        """GET /instances stays Orthanc's (the upload route above shares its URI)."""
        query = f"?{urlencode(dict(request.query))}" if request.query else ""
        return json_response(app.orthanc.get(f"/instances{query}"))

    def search(request: Request) -> Response:
        principal = app.principal(request)
        q = search_params(request, app.max_body)
        for name in ("date_from", "date_to"):
            value = q.get(name, "").replace("-", "")
            if value and not DATE_RE.fullmatch(value):
                raise ApiError(400, f"parameter {name} must be a date YYYYMMDD", field=name)
        sort = q.get("sort", "-date")
        if sort.lstrip("-") not in SORTS:
            raise ApiError(400, f"parameter sort must be one of {sorted(SORTS)} (- for "
                           "descending)", field="sort")
        for name in ("patient_name", "patient_id", "modality", "description", "tag",
                     "uploader"):
            if len(q.get(name, "")) > 64:
                raise ApiError(400, f"parameter {name} is too long", field=name)
        filters = Filters(
            patient_name=q.get("patient_name") or None, patient_id=q.get("patient_id") or None,
            modality=q.get("modality") or None,
            date_from=q.get("date_from", "").replace("-", "") or None,
            date_to=q.get("date_to", "").replace("-", "") or None,
            description=q.get("description") or None, tag=q.get("tag") or None,
            uploader=q.get("uploader") or None, sort=sort,
            limit=int_param(q, "limit", 50, 1, 500), offset=int_param(q, "offset", 0, 0, 10**7))
        total, items = catalog.search(viewer_of(principal), filters)
        return json_response({"total": total, "offset": filters.offset, "items": items})

    def visible(request: Request, resource_id: str, *, write: bool = False) -> Any:
        principal = app.principal(request)
        if write and principal.user.role not in ("user", "admin"):
            raise ApiError(403, "this needs the user or admin role")
        try:
            return principal, catalog.resolve_visible(viewer_of(principal), resource_id)
        except NotVisible as exc:
            raise ApiError(404, "no such study, series or instance") from exc

    def detail(request: Request, resource_id: str) -> Response:
        principal, _ = visible(request, resource_id)
        body = catalog.detail(viewer_of(principal), resource_id)
        own = None if principal.user.role == "admin" else principal.user.id
        body["shares"] = [s for s in app.shares.list(own) if s["study_id"] == body["study_id"]]
        return json_response(body)

    def add_tag(request: Request, resource_id: str) -> Response:
        principal, resource = visible(request, resource_id, write=True)
        tag = field_of(json_body(request, app.max_body), "tag", str, max_len=40).strip()
        if not valid_tag(tag):
            raise ApiError(400, "field tag: 1 to 40 letters, digits, spaces and . _ : -",
                           field="tag")
        if catalog.add_tag(resource.study_id, tag, principal.name):
            app.audit.record("tag_added", actor=principal.name, ip=request.ip,
                             target=resource.study_id, tag=tag)
        return json_response({"tags": catalog.tags_of([resource.study_id]).get(
            resource.study_id, [])})

    def remove_tag(request: Request, resource_id: str, tag: str) -> Response:
        principal, resource = visible(request, resource_id, write=True)
        if not catalog.remove_tag(resource.study_id, tag):
            raise ApiError(404, "no such tag on this study")
        app.audit.record("tag_removed", actor=principal.name, ip=request.ip,
                         target=resource.study_id, tag=tag)
        return json_response({"tags": catalog.tags_of([resource.study_id]).get(
            resource.study_id, [])})

    def assign(request: Request, resource_id: str) -> Response:
        principal, resource = visible(request, resource_id, write=True)
        username = field_of(json_body(request, app.max_body), "username", str, max_len=64)
        target = app.users.by_name(username)
        if target is None:
            raise ApiError(404, "no such user", field="username")
        catalog.assign(resource.study_id, target.id, principal.name)
        app.audit.record("study_assigned", actor=principal.name, ip=request.ip,
                         target=resource.study_id, to=target.username)
        return json_response({"status": "assigned", "username": target.username})

    def share(request: Request, resource_id: str) -> Response:
        principal, resource = visible(request, resource_id, write=True)
        data = json_body(request, app.max_body)
        limits = app.cfg.section("shares")
        hours = field_of(data, "expires_in_hours", int, required=False,
                         default=limits["default_expiry_hours"])
        if not 1 <= hours <= limits["max_expiry_hours"]:
            raise ApiError(400, f"field expires_in_hours must be from 1 to "
                           f"{limits['max_expiry_hours']}", field="expires_in_hours")
        views = field_of(data, "max_views", int, required=False,
                         default=limits["default_max_views"])
        if not 1 <= views <= limits["max_views"]:
            raise ApiError(400, f"field max_views must be from 1 to {limits['max_views']}",
                           field="max_views")
        pin = field_of(data, "pin", str, required=False, max_len=128)
        if pin is not None and len(pin) < 4:
            raise ApiError(400, "field pin must have at least 4 characters", field="pin")
        download = field_of(data, "allow_download", bool, required=False, default=False)
        created, token = app.shares.create(
            level=resource.level, resource_id=resource.id, study_id=resource.study_id,
            user_id=principal.user.id, actor=principal.name, ip=request.ip,
            expires_in_hours=hours, max_views=views, pin=pin or None, allow_download=download)
        return json_response({**created.public(), "url": f"{app.base_url(request)}/s/{token}"})

    def get_ae_owners(request: Request) -> Response:
        app.require_admin(request)
        return json_response({"ae_owners": app.ae_owners()})

    def set_ae_owners(request: Request) -> Response:
        admin = app.require_admin(request)
        mapping = field_of(json_body(request, app.max_body), "ae_owners", dict)
        for aet, username in mapping.items():
            if not isinstance(username, str) or app.users.by_name(username) is None:
                raise ApiError(400, f"ae_owners: no user {username!r} for AE {aet!r}",
                               field="ae_owners")
            if not 0 < len(aet) <= 16:
                raise ApiError(400, "ae_owners: AE titles have 1 to 16 characters",
                               field="ae_owners")
        with app.db.transaction() as tx:
            app.settings.put(tx, "ae_owners", mapping, admin.name)
            app.audit.record("ae_owners_changed", actor=admin.name, ip=request.ip, tx=tx,
                             ae_owners=json.dumps(mapping, sort_keys=True))
        return json_response({"ae_owners": app.ae_owners()})

    router.add("POST", r"/instances", upload, raw_body=True)
    router.add("GET", r"/instances", list_instances)
    router.add("GET", r"/api/images", search)
    router.add("POST", r"/api/images/search", search, body=obj(**dict.fromkeys(
        ("patient_name", "patient_id", "modality", "date_from", "date_to", "description",
         "tag", "uploader", "sort", "limit", "offset"), SEARCH_VALUE)))
    router.add("GET", rf"/api/images/{ID}", detail)
    router.add("POST", rf"/api/images/{ID}/tags", add_tag, body=obj(("tag",), tag=text(40)))
    router.add("DELETE", rf"/api/images/{ID}/tags/([^/]+)", remove_tag)
    router.add("POST", rf"/api/images/{ID}/assign", assign,
               body=obj(("username",), username=text(64)))
    router.add("POST", rf"/api/images/{ID}/share", share, body=obj(
        expires_in_hours=INTEGER, max_views=INTEGER, pin=text(128), allow_download=BOOLEAN))
    router.add("GET", r"/api/admin/ae-owners", get_ae_owners)
    router.add("PUT", r"/api/admin/ae-owners", set_ae_owners)
