"""Where an instance goes on the NAS: a path template filled with sanitized DICOM values.

No DICOM value can leave the share root or make an invalid SMB/Windows name: separators,
``..``, reserved device names, control and forbidden characters, trailing dots and spaces,
and over-long components are all neutralized. Whatever the template says, every file name
ends in ``.dcm``: a template (set by an admin at run time) cannot make a script or any other
kind of file on the NAS.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping

FIELDS = ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
          "StudyDate", "Modality", "AccessionNumber", "StudyDescription", "SeriesNumber",
          "InstanceNumber")
DEFAULT_TEMPLATE = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
MAX_VALUE = 64  # bytes of one DICOM value in a name
MAX_COMPONENT = 255  # bytes of one path component (NTFS, ext4 and SMB limits)
EXTENSION = ".dcm"
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.IGNORECASE)


class LayoutError(ValueError):
    """The template is unusable (unknown field, no SOPInstanceUID, bad syntax)."""


def check_template(template: str) -> None:
    try:
        names = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise LayoutError(f"bad template syntax: {exc}") from exc
    for name in names:
        if name not in FIELDS:
            raise LayoutError(f"unknown field {{{name}}}; known: {', '.join(FIELDS)}")
    if "SOPInstanceUID" not in names:
        raise LayoutError("the template must contain {SOPInstanceUID} (one file per instance)")
    if template.startswith("/") or "\\" in template:
        raise LayoutError("the template is a relative path with '/' separators")


def sanitize(value: str, limit: int = MAX_COMPONENT) -> str:
    """One safe path component from any string, at most ``limit`` UTF-8 bytes."""
    clean = _FORBIDDEN.sub("_", value).strip().rstrip(". ")
    if clean in ("", ".", ".."):
        clean = "_" + clean.replace(".", "_")
    if _RESERVED.fullmatch(clean):
        clean = "_" + clean
    if len(clean.encode("utf-8")) > limit:  # keep it unique: a digest of the whole value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        clean = clean.encode("utf-8")[:limit - 13].decode("utf-8", "ignore")
        clean = f"{clean.rstrip('. ')}~{digest}"
    return clean


def render(template: str, values: Mapping[str, str]) -> str:
    """The relative path (``/``-separated) of an instance; every component is sanitized and
    the file name ends in ``.dcm`` (appended when the template gives another ending)."""
    parts = []
    for literal_part in template.split("/"):
        filled = literal_part.format_map(
            {f: sanitize(str(values.get(f) or ""), MAX_VALUE) for f in FIELDS})
        parts.append(sanitize(filled))
    name = parts[-1]
    if not name.endswith(EXTENSION):
        parts[-1] = sanitize(name, MAX_COMPONENT - len(EXTENSION)) + EXTENSION
    return "/".join(parts)
