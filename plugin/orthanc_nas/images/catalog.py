"""Studies as users see them: ownership, visibility, search, details and tags.

DICOM fields are matched by Orthanc's own index (``/tools/find``, its wildcard and date-range
semantics); who owns, who was given, and which tags come from the plugin database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..db import Database, Row, Transaction
from ..orthanc_api import ORTHANC_ID, OrthancApi, OrthancError

TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,39}")
DATE_RE = re.compile(r"\d{8}")
INDEX_BATCH = 200  # more unknown studies than this: one expanded find instead of N reads
# What recording an instance's sender did (Catalog.record_owner).
OWNER, JOINED, UNOWNED, KNOWN = "owner", "joined", "unowned", "known"
SORTS = {"date": "StudyDate", "patient_name": "PatientName", "patient_id": "PatientID",
         "description": "StudyDescription", "uploaded": "uploaded_at"}


class NotVisible(LookupError):
    """Unknown, or not for this caller: both answer 404."""


@dataclass(frozen=True)
class Viewer:
    """Who asks. In the shared mode (the default) every role sees every study, as in Orthanc
    Explorer; in the strict mode a ``user`` sees only what they brought or were given
    (docs/security.md, "Who sees which study")."""

    user_id: int
    role: str
    strict: bool = False

    @property
    def sees_all(self) -> bool:
        return not self.strict or self.role in ("admin", "viewer")


@dataclass(frozen=True)
class Resource:
    level: str  # study, series or instance
    id: str
    study_id: str


@dataclass(frozen=True)
class Filters:
    patient_name: str | None = None
    patient_id: str | None = None
    modality: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    description: str | None = None
    tag: str | None = None
    uploader: str | None = None
    mine: bool = False  # only studies the caller brought or was given
    sort: str = "-date"
    limit: int = 50
    offset: int = 0


PERSON_SEPARATORS = re.compile(r"\s*,\s*")  # "Smith, John" as typed: DICOM's "Smith^John"


def part_of(value: str) -> str:
    """A search term as people mean it: without wildcards of their own, any value containing
    it ("smith" finds "Smith^John"; the find is case-insensitive)."""
    return value if "*" in value or "?" in value else f"*{value}*"


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


class Catalog:
    def __init__(self, db: Database, orthanc: OrthancApi, clock: Clock,
                 nas_state: Callable[[list[str]], dict[str, str]]) -> None:
        self._db = db
        self._orthanc = orthanc
        self._clock = clock
        self._nas_state = nas_state

    # ---- ownership ------------------------------------------------------------------------

    def record_owner(self, instance_id: str, study_id: str, user_id: int | None, source: str,
                     calling_aet: str = "", tx: Transaction | None = None) -> str:
        """Records who sent an instance, and whether that makes them an owner of its study
        (docs/security.md, "Study ownership"). Anyone who can read a study's PatientID and
        StudyInstanceUID can send an instance into it: sending makes its sender an owner only
        of a study the plugin has no instance of yet, or that they already own. Returns
        ``owner``, ``joined`` (stored in a study others own, no ownership), ``unowned`` (no
        sender known) or ``known`` (the instance was already recorded; nothing changes)."""
        # Ownership decides what the plugin's own routes show, never what the filter allows.
        if tx is None:
            with self._db.transaction(invalidates=False) as own:
                return self._record_owner(own, instance_id, study_id, user_id, source,
                                          calling_aet)
        return self._record_owner(tx, instance_id, study_id, user_id, source, calling_aet)

    def _record_owner(self, tx: Transaction, instance_id: str, study_id: str,
                      user_id: int | None, source: str, calling_aet: str) -> str:
        if tx.one("SELECT 1 FROM instance_owners WHERE instance_id = ?", (instance_id,)):
            return KNOWN
        outcome = UNOWNED
        if user_id is not None:
            new_study = tx.one("SELECT 1 FROM instance_owners WHERE study_id = ? LIMIT 1",
                               (study_id,)) is None
            outcome = OWNER if new_study or tx.one(
                "SELECT 1 FROM instance_owners WHERE study_id = ? AND user_id = ? LIMIT 1",
                (study_id, user_id)) else JOINED
        tx.execute("INSERT INTO instance_owners (instance_id, study_id, user_id, source,"
                   " calling_aet, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (instance_id, study_id, user_id if outcome == OWNER else None, source,
                    calling_aet, self._clock.now()))
        return outcome

    def assign(self, study_id: str, user_id: int, by: str) -> None:
        # Which studies one sees is checked by the plugin's routes at each request, never by
        # the filter: nothing remembered depends on it.
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("INSERT INTO study_assignments VALUES (?, ?, ?, ?)"
                       " ON CONFLICT DO NOTHING", (study_id, user_id, by, self._clock.now()))

    def visible_studies(self, who: Viewer) -> set[str] | None:
        """None means every study."""
        return None if who.sees_all else self.own_studies(who.user_id)

    def own_studies(self, user_id: int) -> set[str]:
        """The studies a user owns (brought first) or was given."""
        rows = self._db.all("SELECT study_id FROM instance_owners WHERE user_id = ? UNION"
                            " SELECT study_id FROM study_assignments WHERE user_id = ?",
                            (user_id, user_id))
        return {r["study_id"] for r in rows}

    def may_give(self, who: Viewer, study_id: str) -> bool:
        """Sharing a study, or assigning it to someone: admins any study, users the ones
        they own or were given (seeing a study is not enough in the shared mode)."""
        if who.role == "admin":
            return True
        return who.role == "user" and study_id in self.own_studies(who.user_id)

    # ---- resources ---------------------------------------------------------------------------

    def _get(self, uri: str) -> Any:
        try:
            return self._orthanc.get(uri)
        except OrthancError as exc:
            raise NotVisible(uri) from exc

    def resolve(self, resource_id: str) -> Resource:
        if not re.fullmatch(ORTHANC_ID, resource_id):
            raise NotVisible(resource_id)
        for level, uri in (("study", "/studies/"), ("series", "/series/"),
                           ("instance", "/instances/")):
            try:
                found = self._orthanc.get(uri + resource_id)
            except OrthancError:
                continue
            if level == "study":
                return Resource(level, resource_id, resource_id)
            if level == "series":
                return Resource(level, resource_id, found["ParentStudy"])
            series = self._get(f"/series/{found['ParentSeries']}")
            return Resource(level, resource_id, series["ParentStudy"])
        raise NotVisible(resource_id)

    def resolve_visible(self, who: Viewer, resource_id: str) -> Resource:
        resource = self.resolve(resource_id)
        visible = self.visible_studies(who)
        if visible is not None and resource.study_id not in visible:
            raise NotVisible(resource_id)
        return resource

    # ---- search --------------------------------------------------------------------------------

    def search(self, who: Viewer, f: Filters) -> tuple[int, list[dict[str, Any]]]:
        query: dict[str, str] = {}
        if f.patient_name:
            query["PatientName"] = part_of(PERSON_SEPARATORS.sub("^", f.patient_name.strip()))
        if f.patient_id:
            query["PatientID"] = part_of(f.patient_id.strip())
        if f.modality:
            query["ModalitiesInStudy"] = f.modality
        if f.description:
            query["StudyDescription"] = part_of(f.description.strip())
        if f.date_from or f.date_to:
            query["StudyDate"] = f"{f.date_from or ''}-{f.date_to or ''}"
        studies = self._find(query)
        candidates: set[str] | None = self.visible_studies(who)
        for extra in (self.own_studies(who.user_id) if f.mine else None,
                      self._tagged(f.tag) if f.tag else None,
                      self._uploaded_by(f.uploader) if f.uploader else None):
            if extra is not None:
                candidates = extra if candidates is None else candidates & extra
        if candidates is not None:
            studies = [s for s in studies if s["ID"] in candidates]
        uploads = self._upload_info([s["ID"] for s in studies])
        rows = [self._summary(s, uploads.get(s["ID"])) for s in studies]
        key = SORTS[f.sort.lstrip("-")]
        rows.sort(key=lambda r: (r.get(key) is not None, r.get(key) or "", r["id"]),
                  reverse=f.sort.startswith("-"))
        page = rows[f.offset:f.offset + f.limit]
        ids = [r["id"] for r in page]
        tags = self.tags_of(ids)
        nas = self._nas_summary({r["StudyInstanceUID"]: r["id"] for r in page})
        for r in page:
            r["tags"] = tags.get(r["id"], [])
            r["nas"] = nas.get(r["id"], "not queued")
        return len(rows), page

    def _find(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """Expanded studies matching ``query``; without DICOM constraints, Orthanc's id list
        plus the summary index (only unknown studies are expanded)."""
        if query:
            return list(self._orthanc.post("/tools/find", _json(
                {"Level": "Study", "Expand": True, "Query": query, "CaseSensitive": False})))
        ids: list[str] = self._orthanc.get("/studies")
        known = self._indexed(ids)
        missing = [i for i in ids if i not in known]
        if len(missing) > INDEX_BATCH:
            fresh = list(self._orthanc.post("/tools/find", _json(
                {"Level": "Study", "Expand": True, "Query": {}})))
        else:
            fresh = []
            for study_id in missing:
                try:
                    fresh.append(self._orthanc.get(f"/studies/{study_id}"))
                except OrthancError:
                    continue  # deleted meanwhile
        self._index(fresh)
        wanted = set(ids) - set(known)
        return [*known.values(), *(s for s in fresh if s["ID"] in wanted)]

    def _rows_in(self, sql: str, ids: list[str]) -> Iterator[Row]:
        """The rows of ``sql`` for ``ids``, whose ``{marks}`` is the IN list, queried in
        chunks small enough for SQLite's parameter limit."""
        for chunk in _chunks(ids):
            yield from self._db.all(sql.format(marks=",".join("?" * len(chunk))), chunk)

    def _indexed(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {r["study_id"]: json.loads(r["summary"]) for r in self._rows_in(
            "SELECT study_id, summary FROM study_index WHERE study_id IN ({marks})", ids)}

    def _index(self, studies: list[dict[str, Any]]) -> None:
        if not studies:
            return
        now = self._clock.now()
        keep = ("ID", "MainDicomTags", "PatientMainDicomTags", "Series")
        with self._db.transaction(invalidates=False) as tx:
            for study in studies:
                tx.execute("INSERT INTO study_index VALUES (?, ?, ?) ON CONFLICT(study_id)"
                           " DO UPDATE SET summary = excluded.summary,"
                           " updated_at = excluded.updated_at",
                           (study["ID"], json.dumps({k: study.get(k) for k in keep}), now))

    def names_of(self, study_ids: list[str]) -> dict[str, dict[str, str]]:
        """Patient and study of each id Orthanc still holds, for people reading the audit
        trail (the summary index first; deleted studies are left out)."""
        wanted = [i for i in dict.fromkeys(study_ids) if re.fullmatch(ORTHANC_ID, i)]
        studies = self._indexed(wanted)
        for study_id in wanted:
            if study_id not in studies:
                try:
                    studies[study_id] = self._orthanc.get(f"/studies/{study_id}")
                except OrthancError:
                    continue
        out = {}
        for study_id, study in studies.items():
            summary = self._summary(study, None)
            out[study_id] = {k: summary[k] for k in ("PatientName", "PatientID", "StudyDate",
                                                     "StudyDescription")}
        return out

    def forget(self, study_id: str) -> None:
        """Orthanc changed or deleted the study: its summary is fetched again when needed."""
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("DELETE FROM study_index WHERE study_id = ?", (study_id,))

    def _tagged(self, tag: str) -> set[str]:
        return {r["study_id"] for r in self._db.all(
            "SELECT study_id FROM study_tags WHERE tag = ?", (tag,))}

    def _uploaded_by(self, username: str) -> set[str]:
        return {r["study_id"] for r in self._db.all(
            "SELECT o.study_id FROM instance_owners o JOIN users u ON u.id = o.user_id"
            " WHERE u.username = ?", (username,))}

    def _upload_info(self, study_ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in self._rows_in(
                "SELECT o.study_id, MIN(o.created_at) AS at, u.username FROM instance_owners o"
                " LEFT JOIN users u ON u.id = o.user_id WHERE o.study_id IN ({marks})"
                " GROUP BY o.study_id, u.username", study_ids):
            info = out.setdefault(r["study_id"], {"at": r["at"], "users": []})
            info["at"] = min(info["at"], r["at"])
            if r["username"]:
                info["users"] = sorted([*info["users"], r["username"]])
        return out

    @staticmethod
    def _summary(study: dict[str, Any], upload: dict[str, Any] | None) -> dict[str, Any]:
        tags = study.get("MainDicomTags", {})
        patient = study.get("PatientMainDicomTags", {})
        return {"id": study["ID"], "PatientName": patient.get("PatientName", ""),
                "PatientID": patient.get("PatientID", ""), "StudyDate": tags.get("StudyDate", ""),
                "StudyDescription": tags.get("StudyDescription", ""),
                "StudyInstanceUID": tags.get("StudyInstanceUID", ""),
                "AccessionNumber": tags.get("AccessionNumber", ""),
                "series_count": len(study.get("Series", [])),
                "uploaded_by": upload["users"] if upload else [],
                "uploaded_at": upload["at"] if upload else None}

    def _nas_summary(self, by_uid: dict[str, str]) -> dict[str, str]:
        """Orthanc study id -> the worst mirror state of its instances (by StudyInstanceUID,
        which the mirror worker records; items not yet read by it are not counted)."""
        rank = {"failed": 3, "pending": 2, "done": 1}
        names = {3: "failed", 2: "pending", 1: "mirrored"}
        out: dict[str, int] = {}
        for r in self._rows_in("SELECT DISTINCT study_uid, state FROM mirror_queue"
                               " WHERE study_uid IN ({marks})", [u for u in by_uid if u]):
            study = by_uid[r["study_uid"]]
            out[study] = max(out.get(study, 0), rank.get(r["state"], 0))
        return {study: names[level] for study, level in out.items() if level}

    # ---- details ---------------------------------------------------------------------------------

    def detail(self, who: Viewer, resource_id: str) -> dict[str, Any]:
        return self.detail_of(self.resolve_visible(who, resource_id))

    def detail_of(self, resource: Resource) -> dict[str, Any]:
        """The patient/study/series/instance hierarchy of a resource, with tags and NAS state."""
        study = self._get(f"/studies/{resource.study_id}")
        series_list = self._get(f"/studies/{resource.study_id}/series")
        series_out = []
        instance_ids: list[str] = []
        for series in series_list:
            if resource.level == "series" and series["ID"] != resource.id:
                continue
            instances = series.get("Instances", [])
            if resource.level == "instance":
                if resource.id not in instances:
                    continue
                instances = [resource.id]
            instance_ids += instances
            series_out.append({"id": series["ID"], "tags": series.get("MainDicomTags", {}),
                               "instances": instances})
        states = self._nas_state(instance_ids) if instance_ids else {}
        owners = self._upload_info([resource.study_id]).get(resource.study_id)
        study_uid = study.get("MainDicomTags", {}).get("StudyInstanceUID", "")
        return {"level": resource.level, "id": resource.id, "study_id": resource.study_id,
                "patient": study.get("PatientMainDicomTags", {}),
                "study": study.get("MainDicomTags", {}), "series": series_out,
                "uploaded_by": owners["users"] if owners else [],
                "tags": self.tags_of([resource.study_id]).get(resource.study_id, []),
                "nas": {"instances": states,
                        "summary": self._nas_summary({study_uid: resource.study_id}).get(
                            resource.study_id, "not queued")}}

    def instances_of(self, resource: Resource) -> list[str]:
        """Every instance inside a study, series or instance."""
        if resource.level == "instance":
            return [resource.id]
        uri = "/studies/" if resource.level == "study" else "/series/"
        return [i["ID"] for i in self._get(f"{uri}{resource.id}/instances")]

    # ---- tags ------------------------------------------------------------------------------------

    def tags_of(self, study_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self._rows_in("SELECT study_id, tag FROM study_tags"
                               " WHERE study_id IN ({marks}) ORDER BY tag", study_ids):
            out.setdefault(r["study_id"], []).append(r["tag"])
        return out

    def add_tag(self, study_id: str, tag: str, by: str) -> bool:
        with self._db.transaction(invalidates=False) as tx:
            return tx.execute("INSERT INTO study_tags VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                              (study_id, tag, by, self._clock.now())) == 1

    def remove_tag(self, study_id: str, tag: str) -> bool:
        with self._db.transaction(invalidates=False) as tx:
            return tx.execute("DELETE FROM study_tags WHERE study_id = ? AND tag = ?",
                              (study_id, tag)) == 1


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()
