"""The image viewer behind the login: a series as the viewer scrolls it, and a study's
thumbnail. The frames themselves are Orthanc's own renderings (``/instances/<id>/frames/<n>/
rendered``), allowed to every reading role by the access policy; share links have their own
routes (api/shares.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth.access import ANY_ROLE
from ..images.catalog import NotVisible
from ..images.viewer import SeriesMissing, series_stack, thumbnail_uri
from ..orthanc_api import ORTHANC_ID, OrthancError
from ..routing import Call, route
from ..web import ApiError, Response, json_response
from .images import viewer_of

if TYPE_CHECKING:
    from ..services import Services

ID = f"({ORTHANC_ID})"


def _visible(svc: Services, call: Call, level: str) -> str:
    try:
        resource = svc.catalog.resolve_visible(viewer_of(svc, call.caller), call.args[0])
    except NotVisible as exc:
        raise ApiError(404, f"no such {level}") from exc
    if resource.level != level:
        raise ApiError(404, f"no such {level}")
    return resource.id


def series(svc: Services, call: Call) -> Response:
    try:
        return json_response(series_stack(svc.orthanc, _visible(svc, call, "series")))
    except SeriesMissing as exc:
        raise ApiError(404, "no image to show in this series") from exc


def thumbnail(svc: Services, call: Call) -> Response:
    try:
        uri = thumbnail_uri(svc.orthanc, _visible(svc, call, "study"))
        image = svc.orthanc.get_bytes(uri)
    except (SeriesMissing, OrthancError) as exc:
        raise ApiError(404, "no image to show for this study") from exc
    return Response(200, image, "image/png")


ROUTES = (
    route("GET", rf"/api/viewer/series/{ID}", series, ANY_ROLE, params=("series_id",)),
    route("GET", rf"/api/viewer/thumbnail/{ID}", thumbnail, ANY_ROLE, params=("study_id",),
          produces=("image/png",)),
)
