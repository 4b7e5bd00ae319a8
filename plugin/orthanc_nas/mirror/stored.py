"""Where Orthanc keeps an instance's file: the mirror reads it from there instead of copying
the bytes again in the ingest path (see ``spooler``)."""

from __future__ import annotations

import re
from pathlib import Path

from ..orthanc_api import OrthancApi, OrthancError
from .outbox import StoredCopy

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def stored_copy(orthanc: OrthancApi, storage: Path | None, instance_id: str) -> StoredCopy | None:
    """What Orthanc keeps of an instance: its file, when kept uncompressed in ``storage``
    (Orthanc's StorageDirectory; None: unknown), and the MD5 of its bytes."""
    if storage is None:
        return None
    try:
        info = orthanc.get(f"/instances/{instance_id}/attachments/dicom/info")
    except OrthancError:
        return None
    uuid = str(info.get("Uuid", ""))
    plain = info.get("CompressedSize") == info.get("UncompressedSize") and UUID.fullmatch(uuid)
    return StoredCopy(storage / uuid[:2] / uuid[2:4] / uuid if plain else None,
                      str(info.get("UncompressedMD5") or "") or None)
