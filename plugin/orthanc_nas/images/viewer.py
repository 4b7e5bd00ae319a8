"""What the image viewer needs of a series, and which renderings of a frame it may ask for.

The viewer draws Orthanc's own renderings (``/instances/<id>/frames/<n>/rendered`` applies the
rescale, the window and MONOCHROME1's inversion; ``/preview`` stretches min to max), so the
browser never decodes DICOM. This module only describes a series (frames in order, default
window, colour or not) and checks the few query parameters a rendering may take: the share
routes forward them to Orthanc, so nothing else may pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from ..orthanc_api import OrthancApi, OrthancError

RENDERINGS = ("rendered", "preview")  # what a frame route may answer
MAX_FRAMES = 10_000  # frames listed for one series (a very long cine is cut here)
THUMB_SIZE = 128
_NUMBER = re.compile(r"-?[0-9]{1,7}(\.[0-9]{1,4})?")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_ICT",
           "YBR_RCT", "PALETTE COLOR")


class SeriesMissing(LookupError):
    """No such series, or none of its instances may be shown (404)."""


class BadRendering(ValueError):
    """A frame asked for with parameters the viewer never sends (400)."""


def first_number(value: Any) -> float | None:
    """The first value of a DICOM decimal string ("40\\400" -> 40.0), None when absent/bad."""
    if value is None:
        return None
    text = str(value).split("\\")[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any, default: int) -> int:
    number = first_number(value)
    return int(number) if number is not None else default


def describe(tags: Mapping[str, Any]) -> dict[str, Any]:
    """How to show a series whose first instance has these (simplified) tags."""
    photometric = str(tags.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    colour = photometric in _COLOUR or _int(tags.get("SamplesPerPixel"), 1) > 1
    center, width = first_number(tags.get("WindowCenter")), first_number(tags.get("WindowWidth"))
    window = [center, width] if center is not None and width is not None and width > 0 else None
    slope = first_number(tags.get("RescaleSlope")) or 1.0
    intercept = first_number(tags.get("RescaleIntercept")) or 0.0
    bits = max(1, min(_int(tags.get("BitsStored"), 8), 32))
    signed = _int(tags.get("PixelRepresentation"), 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    smallest = first_number(tags.get("SmallestImagePixelValue"))
    largest = first_number(tags.get("LargestImagePixelValue"))
    if smallest is not None and largest is not None and largest > smallest:
        low, high = int(smallest), int(largest)
    values = sorted((low * slope + intercept, high * slope + intercept))
    return {"modality": str(tags.get("Modality", "")).strip(), "photometric": photometric,
            "colour": colour, "window": None if colour else window,
            "range": None if colour else values,
            "rows": _int(tags.get("Rows"), 0), "columns": _int(tags.get("Columns"), 0)}


def _order(instance: Mapping[str, Any]) -> tuple[float, str]:
    number = first_number(instance.get("MainDicomTags", {}).get("InstanceNumber"))
    return (number if number is not None else math.inf, str(instance.get("ID", "")))


def series_stack(orthanc: OrthancApi, series_id: str,
                 allowed: Collection[str] | None = None) -> dict[str, Any]:
    """A series as the viewer scrolls it: every frame of every instance, in instance-number
    order, and how to show them; ``allowed``: only these instances (a share of one instance)."""
    try:
        series = orthanc.get(f"/series/{series_id}")
        instances = orthanc.get(f"/series/{series_id}/instances")
    except OrthancError as exc:
        raise SeriesMissing(series_id) from exc
    shown = sorted((i for i in instances if allowed is None or i.get("ID") in allowed),
                   key=_order)
    if not shown:
        raise SeriesMissing(series_id)
    try:
        first = orthanc.get(f"/instances/{shown[0]['ID']}/tags?simplify")
    except OrthancError as exc:
        raise SeriesMissing(series_id) from exc
    frames: list[list[Any]] = []
    for instance in shown:
        count = max(1, _int(instance.get("MainDicomTags", {}).get("NumberOfFrames"), 1))
        frames += [[instance["ID"], n] for n in range(min(count, MAX_FRAMES - len(frames)))]
        if len(frames) >= MAX_FRAMES:
            break
    tags = series.get("MainDicomTags", {})
    return {"id": series_id, "study_id": series.get("ParentStudy", ""),
            "number": tags.get("SeriesNumber", ""), "description": tags.get(
                "SeriesDescription", ""), "instances": len(shown), "frames": frames,
            **describe(first)}


def rendering_uri(instance_id: str, frame: str, kind: str,
                  query: Mapping[str, str]) -> str:
    """Orthanc's URI for a frame's rendering; ``BadRendering`` for anything the viewer never
    asks (only a numeric window for ``rendered``, nothing for ``preview``)."""
    if kind not in RENDERINGS:
        raise BadRendering(f"rendering must be one of {list(RENDERINGS)}")
    if not frame.isdigit() or int(frame) >= MAX_FRAMES:
        raise BadRendering("frame must be a number")
    params = []
    for name, value in sorted(query.items()):
        if kind != "rendered" or name not in ("window-center", "window-width"):
            raise BadRendering(f"parameter {name} is not allowed here")
        if not _NUMBER.fullmatch(value):
            raise BadRendering(f"parameter {name} must be a number")
        params.append(f"{name}={value}")
    if len(params) == 1:
        raise BadRendering("give both window-center and window-width, or neither")
    if params and float(query["window-width"]) <= 0:
        raise BadRendering("window-width must be positive")
    suffix = "?" + "&".join(params) if params else ""
    return f"/instances/{instance_id}/frames/{int(frame)}/{kind}{suffix}"


def thumbnail_uri(orthanc: OrthancApi, study_id: str) -> str:
    """A small image for a study: the middle image of its first series, scaled by Orthanc when
    it can render it well (colour, or a window in the tags), else the min-max preview."""
    try:
        series = orthanc.get(f"/studies/{study_id}/series")
    except OrthancError as exc:
        raise SeriesMissing(study_id) from exc
    series = sorted((s for s in series if s.get("Instances")),
                    key=lambda s: (first_number(s.get("MainDicomTags", {}).get("SeriesNumber"))
                                   or 0.0, s.get("ID", "")))
    if not series:
        raise SeriesMissing(study_id)
    stack = series_stack(orthanc, series[0]["ID"])
    instance, frame = stack["frames"][len(stack["frames"]) // 2]
    if stack["colour"] or stack["window"]:
        return (f"/instances/{instance}/frames/{frame}/rendered"
                f"?width={THUMB_SIZE}&height={THUMB_SIZE}&smooth=1")
    return f"/instances/{instance}/frames/{frame}/preview"
