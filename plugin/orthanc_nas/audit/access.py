"""Who looked at, downloaded, received or deleted which study, without slowing Orthanc down.

The HTTP filter and the ingest hook only *observe*: a regular expression and a set lookup,
then an entry in a bounded in-memory queue. A background thread resolves each entry to its
study (Orthanc's REST API, in-process) and writes one audit row per study per session
("DICOM Instances Accessed", "Export"), per calling AE and study within a burst ("Import"),
or per deletion ("DICOM Study Deleted", attributed to whoever asked for it).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..db import Database
from ..orthanc_api import ORTHANC_ID, OrthancApi, orthanc_patient_id
from .trail import Audit

_NATIVE = re.compile(rf"/(patients|studies|series|instances)/({ORTHANC_ID})(/[^?]*)?")
_DICOMWEB = re.compile(r"/dicom-web/studies/([0-9.]{1,64})(/[^?]*)?")
_PLUGIN_STUDY = re.compile(rf"/api/images/({ORTHANC_ID})")
_DOWNLOADS = ("/archive", "/media", "/file")
_LEVELS = {"patients": "patient", "studies": "study", "series": "series",
           "instances": "instance"}

IMPORT_WINDOW = 900.0  # seconds without an instance from that AE for that study: a new import
DELETE_WINDOW = 3600.0  # seconds a requested deletion waits for Orthanc to report it
INGEST_QUIET = 1.0  # seconds without a received instance before imports are resolved...
MAX_DEFER = 30.0  # ...unless an entry has waited this long
SEEN_DAYS = 8  # dedup rows are kept a little longer than the longest session
QUEUE_MAX = 20_000
MEMORY_MAX = 50_000


@dataclass(frozen=True)
class Observation:
    """One thing seen: ``kind`` is access, export, delete or import."""

    kind: str
    level: str  # patient, study, series, instance or uid (a StudyInstanceUID)
    resource: str
    scope: str = ""
    actor: str = ""
    ip: str = ""
    at: float = 0.0


def classify(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(kind, level, resource) of a request that touches one study's data, else None."""
    if method not in ("GET", "DELETE", "POST") or len(path) < 5:
        return None
    match = _NATIVE.fullmatch(path)
    if match is not None:
        level, resource, rest = _LEVELS[match[1]], match[2], match[3] or ""
        if method == "DELETE":
            return ("delete", level, resource) if not rest else None
        if method == "POST":  # an archive or media by POST (a body with options, or a job)
            return ("export", level, resource) if rest in ("/archive", "/media") else None
        return ("export" if rest.endswith(_DOWNLOADS) else "access", level, resource)
    if method != "GET":
        return None
    match = _DICOMWEB.fullmatch(path)
    if match is not None:
        return "access", "uid", match[1]
    if path == "/wado" and query.get("studyUID"):
        return "access", "uid", query["studyUID"][:64]
    match = _PLUGIN_STUDY.fullmatch(path)
    if match is not None:
        return "access", "study", match[1]
    return None


def reads_query(path: str) -> bool:
    """Whether ``classify`` looks at the GET arguments of ``path`` (elsewhere a request is
    audited the same whatever its arguments, so the gate may allow it again from memory)."""
    return path == "/wado"


@dataclass(frozen=True)
class Study:
    study_id: str
    patient_id: str
    study_uid: str


EVENTS = {"access": "instances_accessed", "export": "study_downloaded",
          "import": "instances_imported"}


class AccessRecorder:
    def __init__(self, db: Database, audit: Audit, orthanc: OrthancApi, clock: Clock,
                 on_error: Callable[[str], None]) -> None:
        self._db = db
        self._audit = audit
        self._orthanc = orthanc
        self._clock = clock
        self._on_error = on_error
        self._queue: deque[Observation] = deque(maxlen=QUEUE_MAX)
        self._seen: set[tuple[str, str, str, str]] = set()
        self._deletes: dict[str, tuple[str, str, float]] = {}
        self._parents: dict[str, str] = {}  # series id -> study id
        self.wake = threading.Event()
        self.dropped = 0
        self._last_import = 0.0

    # ---- observing: called from Orthanc's callbacks, must stay cheap ----------------------

    def observe(self, scope: str, actor: str, ip: str, method: str, path: str,
                query: Mapping[str, str]) -> None:
        """A request the filter allowed; ``scope`` is the session (or token and day)."""
        found = classify(method, path, query)
        if found is None:
            return
        kind, level, resource = found
        if kind == "delete":
            self._deletes[resource] = (actor, ip, self._clock.now())
            return
        key = (scope, kind, level, resource)
        if key in self._seen:
            return
        if len(self._seen) >= MEMORY_MAX:
            self._seen.clear()
        self._seen.add(key)
        self._push(Observation(kind, level, resource, scope, actor, ip, self._clock.now()))

    def observe_import(self, instance_id: str, calling_aet: str) -> None:
        """Orthanc stored an instance received by C-STORE from ``calling_aet``."""
        self._last_import = now = self._clock.now()
        self._push(Observation("import", "instance", instance_id, calling_aet,
                               calling_aet, "", now))

    def _push(self, item: Observation) -> None:
        if len(self._queue) == QUEUE_MAX:
            self.dropped += 1  # counted and reported rather than growing without bound
        self._queue.append(item)
        self.wake.set()

    # ---- recording: background thread ---------------------------------------------------------

    def drain(self, limit: int = 500) -> int:
        """Resolves and records up to ``limit`` observations; returns how many were handled."""
        handled = 0
        while handled < limit and self._queue:
            item = self._queue.popleft()
            handled += 1
            try:
                study = self._study_of(item.level, item.resource)
                if study is None:
                    continue
                if item.kind == "import":
                    self._record_import(item, study)
                else:
                    self._record_once(item, study)
            except Exception as exc:  # one bad entry must not stop the others
                self._on_error(f"{item.kind} of {item.level} {item.resource}: "
                               f"{type(exc).__name__}")
            time.sleep(0)  # hand the interpreter to Orthanc's callbacks between entries
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            self._audit.record("audit_observations_dropped", actor="system", ip="",
                               outcome="failure", dropped=dropped)
        return handled

    def _record_once(self, item: Observation, study: Study) -> None:
        with self._db.transaction(invalidates=False) as tx:
            fresh = tx.execute("INSERT INTO audit_access_seen VALUES (?, ?, ?, ?)"
                               " ON CONFLICT DO NOTHING",
                               (item.scope, study.study_id, item.kind, item.at))
            if fresh:
                self._audit.record(EVENTS[item.kind], actor=item.actor, ip=item.ip, tx=tx,
                                   target=study.study_id, patient_id=study.patient_id,
                                   study_uid=study.study_uid, via=item.level)

    def _record_import(self, item: Observation, study: Study) -> None:
        """One row per calling AE and study while instances keep coming (a burst)."""
        scope = "cstore:" + item.scope
        with self._db.transaction(invalidates=False) as tx:
            last = tx.one("SELECT seen_at FROM audit_access_seen WHERE scope = ? AND"
                          " resource = ? AND kind = 'import'", (scope, study.study_id))
            tx.execute("INSERT INTO audit_access_seen VALUES (?, ?, 'import', ?)"
                       " ON CONFLICT(scope, resource, kind)"
                       " DO UPDATE SET seen_at = excluded.seen_at",
                       (scope, study.study_id, item.at))
            if last is not None and item.at - last["seen_at"] < IMPORT_WINDOW:
                return
            origin = self._orthanc.get(f"/instances/{item.resource}/metadata?expand")
            self._audit.record(EVENTS["import"], actor=f"AE:{item.actor}",
                               ip=str(origin.get("RemoteIP", "")), tx=tx,
                               target=study.study_id, patient_id=study.patient_id,
                               study_uid=study.study_uid, calling_aet=item.actor,
                               called_aet=str(origin.get("CalledAET", "")))

    def on_study_deleted(self, study_id: str) -> None:
        """Orthanc deleted a study: who asked, and which patient and study it was (from the
        trail itself, which saw the study arrive or be looked at)."""
        known = self._db.one("SELECT patient_id, study_uid FROM audit WHERE target = ? AND"
                             " study_uid != '' ORDER BY id DESC LIMIT 1", (study_id,))
        patient_id = known["patient_id"] if known else ""
        study_uid = known["study_uid"] if known else ""
        horizon = self._clock.now() - DELETE_WINDOW
        for key, (_, _, at) in list(self._deletes.items()):
            if at < horizon:
                self._deletes.pop(key, None)
        asked = self._deletes.pop(study_id, None)
        if asked is None and patient_id:  # the patient's other studies may follow
            asked = self._deletes.get(orthanc_patient_id(patient_id))
        actor, ip = (asked[0], asked[1]) if asked else ("orthanc", "")
        details: dict[str, Any] = {} if asked else {
            "reason": "not requested through the HTTP API (recycling, a script, or the "
                      "deletion of its last series)"}
        self._audit.record("study_deleted", actor=actor, ip=ip, target=study_id,
                           patient_id=patient_id, study_uid=study_uid, **details)

    def study_of_any(self, resource: str) -> Study | None:
        """The study of an Orthanc ID of any level (the patient, for a patient), or None."""
        for level in ("study", "series", "instance", "patient"):
            try:
                return self._study_of(level, resource)
            except Exception:  # noqa: S112 - not of this level: try the next one
                continue
        return None

    def _study_of(self, level: str, resource: str) -> Study | None:
        if level == "uid":
            found = self._orthanc.post("/tools/lookup", resource.encode())
            ids = [r["ID"] for r in found if r.get("Type") == "Study"]
            if not ids:
                return None
            level, resource = "study", ids[0]
        if level == "instance":
            level, resource = "series", self._orthanc.get(f"/instances/{resource}")[
                "ParentSeries"]
        if level == "series":
            parent = self._parents.get(resource)
            if parent is None:
                parent = str(self._orthanc.get(f"/series/{resource}")["ParentStudy"])
                if len(self._parents) >= MEMORY_MAX:
                    self._parents.clear()
                self._parents[resource] = parent
            level, resource = "study", parent
        if level == "patient":
            info = self._orthanc.get(f"/patients/{resource}")
            return Study(resource, str(info["MainDicomTags"].get("PatientID", "")), "")
        info = self._orthanc.get(f"/studies/{resource}")
        return Study(resource, str(info["PatientMainDicomTags"].get("PatientID", "")),
                     str(info["MainDicomTags"].get("StudyInstanceUID", "")))

    def prune(self) -> None:
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("DELETE FROM audit_access_seen WHERE seen_at < ?",
                       (self._clock.now() - SEEN_DAYS * 86400,))

    def due(self) -> bool:
        """Something to record now: not while a modality is sending (resolving competes with
        ingest for the interpreter), unless the oldest entry waited too long or many wait."""
        if not self._queue:
            return False
        now = self._clock.now()
        return (now - self._last_import >= INGEST_QUIET or now - self._queue[0].at >= MAX_DEFER
                or len(self._queue) >= QUEUE_MAX // 2)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.wake.wait(5.0)
            self.wake.clear()
            while self._queue and not stop.is_set():
                if not self.due():
                    stop.wait(INGEST_QUIET)
                    continue
                try:
                    self.drain(limit=20)
                except Exception as exc:  # the database may be busy: try again later
                    self._on_error(type(exc).__name__)
                    stop.wait(1.0)
