"""C-MOVE asked by a modality, served by the plugin so that each one is audited.

Python plugin 4.2+ (Debian 13) lets a plugin serve Orthanc's C-MOVE SCP
(``orthanc.RegisterMoveCallback2``); on 4.0 Orthanc's own SCP serves it, unaudited (the plugin
cannot see it there). Orthanc checks the calling modality's right to move before the plugin is
asked. The move is sent as Orthanc's own ``/modalities/{name}/store`` job, waited for outside
the interpreter lock (as the REST sends, api/transfers.py), and recorded once per study as
``instances_sent`` by ``AE:<calling AE>`` with the destination AE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .audit import FAILURE, SUCCESS
from .audit.access import Study
from .orthanc_api import OrthancError, run_job

# C-MOVE level -> (Orthanc level in /tools/lookup answers, the identifier's key).
_LEVELS = {"PATIENT": ("Patient", "PatientID"), "STUDY": ("Study", "StudyInstanceUID"),
           "SERIES": ("Series", "SeriesInstanceUID"), "INSTANCE": ("Instance", "SOPInstanceUID")}
_CHILDREN = {"Patient": "patients", "Study": "studies", "Series": "series"}


class MoveRefused(Exception):
    """The C-MOVE cannot be served (unknown destination, bad level): the modality is told."""


@dataclass
class MoveDriver:
    """One C-MOVE: what it sends, where, for whom; ``apply`` runs once per instance."""

    calling_aet: str
    destination_aet: str
    modality: str
    instances: list[str]
    studies: list[Study]
    applied: int = 0
    errors: list[str] = field(default_factory=list)


class MoveService:
    """Resolves a modality's C-MOVE to Orthanc instances, sends them, audits the outcome."""

    def __init__(self, orthanc: Any, record: Callable[..., None],
                 study_of: Callable[[str], Study | None]) -> None:
        self._orthanc = orthanc
        self._record = record  # Audit.record
        self._study_of = study_of  # AccessRecorder.study_of_any

    def create(self, request: Mapping[str, Any]) -> MoveDriver:
        # OriginatorAET: the modality asking; SourceAET is Orthanc itself, sending.
        calling = str(request.get("OriginatorAET") or "")
        destination = str(request.get("TargetAET", ""))
        level = _LEVELS.get(str(request.get("Level", "")).upper())
        if level is None:
            raise MoveRefused(f"unknown C-MOVE level {request.get('Level')!r}")
        kind, key = level
        resources = [r["ID"] for uid in str(request.get(key, "")).split("\\") if uid.strip()
                     for r in self._orthanc.post("/tools/lookup", uid.strip().encode())
                     if r.get("Type") == kind]
        studies = self._studies(kind, resources)
        modality = self._modality(destination)
        if modality is None:
            self._audit(calling, destination, studies, FAILURE, 0, "unknown destination AE")
            raise MoveRefused(f"C-MOVE destination {destination!r} is not a known modality")
        instances = [i for r in resources for i in self._instances(kind, r)]
        return MoveDriver(calling, destination, modality, instances, studies)

    def size(self, driver: MoveDriver) -> int:
        return len(driver.instances)

    def apply(self, driver: MoveDriver) -> None:
        """One sub-operation. The first sends every instance in one association (a modality
        waits for one per instance otherwise); the others count down what it sent."""
        driver.applied += 1
        if driver.applied != 1:
            if driver.errors:
                raise OrthancError(driver.errors[0])
            return
        try:
            run_job(self._orthanc, f"/modalities/{driver.modality}/store",
                    {"Resources": driver.instances})
        except OrthancError as exc:
            driver.errors.append(str(exc)[:200])
            self._audit(driver.calling_aet, driver.destination_aet, driver.studies, FAILURE,
                        len(driver.instances), driver.errors[0])
            raise
        self._audit(driver.calling_aet, driver.destination_aet, driver.studies, SUCCESS,
                    len(driver.instances), None)

    def _audit(self, calling: str, destination: str, studies: list[Study], outcome: str,
               count: int, error: str | None) -> None:
        details: dict[str, Any] = {"modality": destination, "via": "C-MOVE", "instances": count}
        if error:
            details["error"] = error
        for study in studies or [Study("", "", "")]:
            self._record("instances_sent", actor=f"AE:{calling}", ip="", outcome=outcome,
                         target=study.study_id, patient_id=study.patient_id,
                         study_uid=study.study_uid, **details)

    def _modality(self, aet: str) -> str | None:
        modalities = self._orthanc.get("/modalities?expand")
        for name, settings in (modalities or {}).items():
            if isinstance(settings, dict) and settings.get("AET") == aet:
                return str(name)
        return None

    def _instances(self, kind: str, resource: str) -> list[str]:
        if kind == "Instance":
            return [resource]
        return [str(i["ID"]) for i in self._orthanc.get(f"/{_CHILDREN[kind]}/{resource}/instances")]

    def _studies(self, kind: str, resources: list[str]) -> list[Study]:
        ids = resources
        if kind == "Patient":
            ids = [s for r in resources for s in self._orthanc.get(f"/patients/{r}")["Studies"]]
        found = {s.study_id: s for i in ids if (s := self._study_of(i)) is not None}
        return list(found.values())

