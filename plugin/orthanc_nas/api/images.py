"""Images: search, details, tags, assignments, share creation (uploads stay Orthanc's route:
images/uploads.py records who sent them; modalities.py who owns what a modality sends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import WRITER, Principal
from ..images.catalog import (
    DATE_RE,
    SORTS,
    Filters,
    NotVisible,
    Resource,
    Viewer,
    valid_tag,
)
from ..images.shares import ShareRejected
from ..openapi import BOOLEAN, INTEGER, SEARCH_VALUE, obj, text
from ..orthanc_api import ORTHANC_ID
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

ID = f"({ORTHANC_ID})"


def viewer_of(svc: Services, principal: Principal) -> Viewer:
    return Viewer(principal.user.id, principal.user.role,
                  strict=svc.cfg.get("visibility") == "strict")


def search(svc: Services, call: Call) -> Response:
    q = search_params(call.request, svc.max_body)
    for name in ("date_from", "date_to"):
        value = q.get(name, "").replace("-", "")
        if value and not DATE_RE.fullmatch(value):
            raise ApiError(400, f"parameter {name} must be a date YYYYMMDD", field=name)
    sort = q.get("sort", "-date")
    if sort.lstrip("-") not in SORTS:
        raise ApiError(400, f"parameter sort must be one of {sorted(SORTS)} (- for "
                       "descending)", field="sort")
    for name in ("patient_name", "patient_id", "modality", "description", "tag", "uploader"):
        if len(q.get(name, "")) > 64:
            raise ApiError(400, f"parameter {name} is too long", field=name)
    filters = Filters(
        patient_name=q.get("patient_name") or None, patient_id=q.get("patient_id") or None,
        modality=q.get("modality") or None,
        date_from=q.get("date_from", "").replace("-", "") or None,
        date_to=q.get("date_to", "").replace("-", "") or None,
        description=q.get("description") or None, tag=q.get("tag") or None,
        uploader=q.get("uploader") or None, sort=sort,
        mine=str(q.get("mine", "")).lower() in ("1", "true", "yes"),
        limit=int_param(q, "limit", 50, 1, 500), offset=int_param(q, "offset", 0, 0, 10**7))
    total, items = svc.catalog.search(viewer_of(svc, call.caller), filters)
    return json_response({"total": total, "offset": filters.offset, "items": items})


def _visible(svc: Services, call: Call) -> Resource:
    """The study, series or instance the path names, if the caller may see it (else 404)."""
    try:
        return svc.catalog.resolve_visible(viewer_of(svc, call.caller), call.args[0])
    except NotVisible as exc:
        raise ApiError(404, "no such study, series or instance") from exc


def _tags_of(svc: Services, study_id: str) -> Response:
    return json_response({"tags": svc.catalog.tags_of([study_id]).get(study_id, [])})


def detail(svc: Services, call: Call) -> Response:
    _visible(svc, call)
    caller = call.caller
    body = svc.catalog.detail(viewer_of(svc, caller), call.args[0])
    own = None if caller.is_admin else caller.user.id
    body["shares"] = [s for s in svc.shares.list(own) if s["study_id"] == body["study_id"]]
    return json_response(body)


def add_tag(svc: Services, call: Call) -> Response:
    resource = _visible(svc, call)
    tag = field_of(json_body(call.request, svc.max_body), "tag", str, max_len=40).strip()
    if not valid_tag(tag):
        raise ApiError(400, "field tag: 1 to 40 letters, digits, spaces and . _ : -",
                       field="tag")
    if svc.catalog.add_tag(resource.study_id, tag, call.caller.name):
        svc.audit.record("tag_added", actor=call.caller.name, ip=call.ip,
                         target=resource.study_id, tag=tag)
    return _tags_of(svc, resource.study_id)


def remove_tag(svc: Services, call: Call) -> Response:
    resource = _visible(svc, call)
    tag = call.args[1]
    if not svc.catalog.remove_tag(resource.study_id, tag):
        raise ApiError(404, "no such tag on this study")
    svc.audit.record("tag_removed", actor=call.caller.name, ip=call.ip,
                     target=resource.study_id, tag=tag)
    return _tags_of(svc, resource.study_id)


def _givable(svc: Services, call: Call) -> Resource:
    """The resource, if the caller may share or assign it (catalog.may_give says who)."""
    resource = _visible(svc, call)
    if not svc.catalog.may_give(viewer_of(svc, call.caller), resource.study_id):
        raise ApiError(403, "only its owners, the users it was given to, and admins may "
                       "share or assign a study")
    return resource


def assign(svc: Services, call: Call) -> Response:
    resource = _givable(svc, call)
    username = field_of(json_body(call.request, svc.max_body), "username", str, max_len=64)
    target = svc.users.by_name(username)
    if target is None:
        raise ApiError(404, "no such user", field="username")
    svc.catalog.assign(resource.study_id, target.id, call.caller.name)
    svc.audit.record("study_assigned", actor=call.caller.name, ip=call.ip,
                     target=resource.study_id, to=target.username)
    return json_response({"status": "assigned", "username": target.username})


def share(svc: Services, call: Call) -> Response:
    resource = _givable(svc, call)
    base = svc.site.base_url(call.request)  # before anything is created: 409 if links can't
    data = json_body(call.request, svc.max_body)
    caller = call.caller
    try:
        created, token = svc.shares.create(
            level=resource.level, resource_id=resource.id, study_id=resource.study_id,
            user_id=caller.user.id, actor=caller.name, ip=call.ip,
            expires_in_hours=field_of(data, "expires_in_hours", int, required=False),
            max_views=field_of(data, "max_views", int, required=False),
            pin=field_of(data, "pin", str, required=False, max_len=128) or None,
            allow_download=field_of(data, "allow_download", bool, required=False,
                                    default=False))
    except ShareRejected as exc:
        raise ApiError(400, str(exc), field=exc.field) from exc
    return json_response({**created.public(), "url": f"{base}/s/{token}"})


STUDY = rf"/api/images/{ID}"
ROUTES = (
    route("GET", r"/api/images", search),
    route("POST", r"/api/images/search", search, body=obj(**dict.fromkeys(
        ("patient_name", "patient_id", "modality", "date_from", "date_to", "description", "tag",
         "uploader", "sort", "limit", "offset"), SEARCH_VALUE), mine=BOOLEAN)),
    route("GET", STUDY, detail, params=("resource_id",)),
    route("POST", f"{STUDY}/tags", add_tag, WRITER, params=("resource_id",),
          body=obj(("tag",), tag=text(40))),
    route("DELETE", f"{STUDY}/tags/([^/]+)", remove_tag, WRITER, params=("resource_id", "tag")),
    route("POST", f"{STUDY}/assign", assign, WRITER, params=("resource_id",),
          body=obj(("username",), username=text(64))),
    route("POST", f"{STUDY}/share", share, WRITER, params=("resource_id",), body=obj(
        expires_in_hours=INTEGER, max_views=INTEGER, pin=text(128), allow_download=BOOLEAN)),
)
