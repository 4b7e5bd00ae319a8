"""Who uploaded what over HTTP: ``POST /instances`` in every form Orthanc accepts.

Orthanc itself stores the upload (a DICOM body, a ZIP of DICOM files, or multipart/form-data
with one or several files, as Orthanc Explorer sends). The plugin cannot take that route
over: for multipart/form-data, Orthanc's HTTP server splits the body before any handler
runs and calls the handler once per file with only that part's headers (no cookie), then
answers an empty 200 whatever the handler answered; a refusal from a Python handler can only
surface as a 500. So Orthanc answers every form natively, and the plugin learns the uploader
from its own filter: the filter runs on the HTTP thread that then stores the instances, and
OnStoredInstance runs synchronously on that same thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..audit import Audit
from ..auth.access import Principal
from ..db import Database
from ..orthanc_api import orthanc_study_id
from ..web import Request
from .catalog import JOINED, Catalog

UPLOAD_ROLES = frozenset({"user", "admin"})


def is_stow(method: str, path: str) -> bool:
    """DICOMweb's STOW-RS (``POST /dicom-web/studies[/<uid>]``), which stores through
    Orthanc on the same HTTP thread."""
    parts = [c for c in path.split("/") if c]
    return method == "POST" and parts[:2] == ["dicom-web", "studies"] and len(parts) <= 3


def is_upload(method: str, path: str) -> bool:
    """``POST /instances`` as Orthanc routes it: empty URI components do not count, so
    ``/instances/`` (Orthanc Explorer's form) is the same route."""
    return method == "POST" and [c for c in path.split("/") if c] == ["instances"]


@dataclass(frozen=True)
class Uploader:
    user_id: int
    name: str
    ip: str
    via: str = "upload"  # or "stow"


class Uploads:
    def __init__(self, db: Database, catalog: Catalog, audit: Audit) -> None:
        self._db = db
        self._catalog = catalog
        self._audit = audit
        # HTTP thread -> the upload the filter allowed last on it. Every request the filter
        # decides replaces or clears its thread's entry; the only requests that skip the
        # filter carry Orthanc's own API token, which only the plugin's mirror worker holds,
        # and it never stores instances.
        self._by_thread: dict[int, Uploader] = {}

    def allowed(self, request: Request, principal: Principal | None) -> None:
        """The filter allowed ``request`` (``principal`` None: a public route)."""
        thread = threading.get_ident()
        via = ("upload" if is_upload(request.method, request.path)
               else "stow" if is_stow(request.method, request.path) else None)
        if (via is not None and principal is not None and not principal.restricted
                and principal.user.role in UPLOAD_ROLES):
            self._by_thread[thread] = Uploader(principal.user.id, principal.name, request.ip,
                                               via)
        else:
            self._by_thread.pop(thread, None)

    def refused(self) -> None:
        self._by_thread.pop(threading.get_ident(), None)

    def stored(self, instance_id: str, tags: Callable[[], dict[str, Any]]) -> Uploader | None:
        """Orthanc stored an instance without a calling AE title: when this thread is serving
        an upload (or STOW), the uploader is recorded (the ownership rule of
        ``record_owner``) and the upload audited, in one transaction. None: not an upload."""
        uploader = self._by_thread.get(threading.get_ident())
        if uploader is None:
            return None
        values = tags()
        patient_id = str(values.get("PatientID", ""))
        study_uid = str(values.get("StudyInstanceUID", ""))
        study_id = orthanc_study_id(patient_id, study_uid)
        with self._db.transaction(invalidates=False) as tx:
            outcome = self._catalog.record_owner(instance_id, study_id, uploader.user_id,
                                                 "upload", tx=tx)
            extra: dict[str, Any] = ({"joined_study_owned_by_others": True}
                                     if outcome == JOINED else {})
            self._audit.record("instance_uploaded", actor=uploader.name, ip=uploader.ip,
                               target=study_id, tx=tx, patient_id=patient_id,
                               study_uid=study_uid, instance=instance_id, ownership=outcome,
                               via=uploader.via, **extra)
        return uploader
