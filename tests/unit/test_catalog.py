"""The study catalog: Orthanc's study ids, who sees what, search over a canned /tools/find
answer (visibility, tags, uploader, sorting, paging) and resolving resources to studies."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from fakes import FakeOrthanc
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database
from orthanc_nas.images import catalog as catalog_module
from orthanc_nas.images.catalog import (
    Catalog,
    Filters,
    NotVisible,
    Viewer,
    valid_tag,
)
from orthanc_nas.orthanc_api import orthanc_study_id

from .conftest import MakeDb

SERIES_A = "5e51e5a0-00000000-00000000-00000000-0000000a"
INSTANCE_A = "1a57a0ce-00000000-00000000-00000000-0000000a"


def study(patient_id: str, uid: str, name: str, date: str, description: str = "",
          series: int = 1) -> dict[str, Any]:
    return {"ID": orthanc_study_id(patient_id, uid), "Type": "Study",
            "MainDicomTags": {"StudyInstanceUID": uid, "StudyDate": date,
                              "StudyDescription": description},
            "PatientMainDicomTags": {"PatientID": patient_id, "PatientName": name},
            "Series": [f"series-{uid}-{i}" for i in range(series)]}


A = study("P-A", "1.2.3.1", "Able^Ann", "20240101", "Chest", series=2)
B = study("P-B", "1.2.3.2", "Baker^Bob", "20230505", "Knee")
C = study("P-C", "1.2.3.3", "Carter^Cy", "20240303", "Head")


def catalog_orthanc(studies: list[dict[str, Any]], resources: dict[str, Any]) -> FakeOrthanc:
    """Orthanc's study list and /tools/find answer from ``studies`` (a test may change it)."""
    return FakeOrthanc({**resources, "/studies": lambda: [s["ID"] for s in studies]},
                       posts={"/tools/find": lambda body: [dict(s) for s in studies]})


@dataclass
class Env:
    db: Database
    clock: ManualClock
    orthanc: FakeOrthanc
    catalog: Catalog
    users: dict[str, int]
    studies: list[dict[str, Any]]

    @property
    def finds(self) -> list[dict[str, Any]]:
        """The /tools/find queries Orthanc was asked."""
        return [json.loads(body) for uri, body in self.orthanc.bodies if uri == "/tools/find"]

    def who(self, name: str, role: str = "user", strict: bool = True) -> Viewer:
        """Strict by default: most tests here are about who owns what."""
        return Viewer(self.users[name], role, strict)

    def ids(self, who: Viewer, **filters: Any) -> list[str]:
        _, rows = self.catalog.search(who, Filters(**filters))
        return [r["id"] for r in rows]


def add_user(db: Database, name: str, role: str) -> int:
    with db.transaction() as tx:
        return tx.insert("INSERT INTO users (username, role, pin_hash, created_at)"
                         " VALUES (?, ?, 'x', 0)", (name, role))


@pytest.fixture
def env(make_db: MakeDb) -> Env:
    db = make_db()
    clock = ManualClock()
    resources = {f"/studies/{s['ID']}": s for s in (A, B, C)}
    resources[f"/series/{SERIES_A}"] = {"ID": SERIES_A, "ParentStudy": A["ID"]}
    resources[f"/instances/{INSTANCE_A}"] = {"ID": INSTANCE_A, "ParentSeries": SERIES_A}
    studies = [A, B, C]
    orthanc = catalog_orthanc(studies, resources)
    catalog = Catalog(db, orthanc, clock, lambda ids: {})
    users = {name: add_user(db, name, role) for name, role in (
        ("admin", "admin"), ("vic", "viewer"), ("alice", "user"), ("bob", "user"),
        ("carol", "user"))}
    catalog.record_owner("inst-a1", A["ID"], users["alice"], "upload")
    clock.advance(60)
    catalog.record_owner("inst-b1", B["ID"], users["bob"], "cstore", "MODALITY1")
    catalog.assign(C["ID"], users["alice"], "admin")
    catalog.add_tag(A["ID"], "urgent", "admin")
    catalog.add_tag(B["ID"], "urgent", "admin")
    catalog.add_tag(C["ID"], "teaching", "admin")
    return Env(db, clock, orthanc, catalog, users, studies)


# ---- identifiers and tags --------------------------------------------------------------------


def test_orthanc_study_id_is_the_dashed_sha1_of_patient_and_study() -> None:
    assert orthanc_study_id("PAT-1", "1.2.840.113619.2.1") == (
        "8accddc8-9c9df2a3-80f64081-2e177b7e-45c30cf3")
    digest = hashlib.sha1(b"P-A|1.2.3.1", usedforsecurity=False).hexdigest()
    assert orthanc_study_id("P-A", "1.2.3.1") == "-".join(
        digest[i:i + 8] for i in range(0, 40, 8))
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}", orthanc_study_id("", ""))
    assert orthanc_study_id("P-A", "1.2.3.1") != orthanc_study_id("P-B", "1.2.3.1")


@pytest.mark.parametrize(("tag", "ok"), [
    ("urgent", True), ("Follow-up 2024", True), ("a.b:c_d", True), ("9", True),
    ("x" * 40, True), ("x" * 41, False), ("", False), (" lead", False), ("-lead", False),
    ("semi;colon", False), ("new\nline", False), ("<b>", False), ("émoji", False),
])
def test_valid_tag(tag: str, ok: bool) -> None:
    assert valid_tag(tag) is ok


# ---- visibility ------------------------------------------------------------------------------


def test_visible_studies(env: Env) -> None:
    assert env.catalog.visible_studies(env.who("admin", "admin")) is None
    assert env.catalog.visible_studies(env.who("vic", "viewer")) is None
    assert env.catalog.visible_studies(env.who("alice")) == {A["ID"], C["ID"]}  # own + given
    assert env.catalog.visible_studies(env.who("bob")) == {B["ID"]}
    assert env.catalog.visible_studies(env.who("carol")) == set()


def test_shared_mode_shows_every_study_and_mine_filters(env: Env) -> None:
    alice = env.who("alice", strict=False)
    assert env.catalog.visible_studies(alice) is None
    assert sorted(env.ids(alice)) == sorted([A["ID"], B["ID"], C["ID"]])
    assert sorted(env.ids(alice, mine=True)) == sorted([A["ID"], C["ID"]])
    assert env.ids(env.who("carol", strict=False), mine=True) == []


def test_only_owners_assignees_and_admins_may_give_a_study(env: Env) -> None:
    """Seeing every study (shared mode) is not a right to share or assign it."""
    assert env.catalog.may_give(env.who("alice", strict=False), A["ID"])  # owner
    assert env.catalog.may_give(env.who("alice", strict=False), C["ID"])  # given to her
    assert not env.catalog.may_give(env.who("bob", strict=False), A["ID"])
    assert not env.catalog.may_give(env.who("vic", "viewer", strict=False), B["ID"])
    assert env.catalog.may_give(env.who("admin", "admin", strict=False), B["ID"])


@pytest.mark.parametrize(("typed", "sent"), [("smith", "*smith*"), ("Smith*", "Smith*"),
                                             ("J?nes", "J?nes")])
def test_search_terms_match_by_part_and_case_insensitively(env: Env, typed: str,
                                                           sent: str) -> None:
    env.catalog.search(env.who("admin", "admin"), Filters(patient_name=typed))
    assert env.finds[-1]["Query"] == {"PatientName": sent}
    assert env.finds[-1]["CaseSensitive"] is False


def test_a_name_typed_as_people_write_it_is_searched_as_dicom_writes_it(env: Env) -> None:
    env.catalog.search(env.who("admin", "admin"), Filters(patient_name="Smith, John"))
    assert env.finds[-1]["Query"] == {"PatientName": "*Smith^John*"}


def test_record_owner_keeps_the_first_owner(env: Env) -> None:
    assert env.catalog.record_owner("inst-a1", A["ID"], env.users["bob"], "upload") == "known"
    assert A["ID"] not in (env.catalog.visible_studies(env.who("bob")) or set())


def owners_of(env: Env, study_id: str) -> dict[str, int | None]:
    return {r["instance_id"]: r["user_id"] for r in env.db.all(
        "SELECT instance_id, user_id FROM instance_owners WHERE study_id = ?", (study_id,))}


@pytest.mark.parametrize("source", ["upload", "cstore"])
def test_sending_into_a_study_others_own_grants_nothing(env: Env, source: str) -> None:
    """The takeover: bob read alice's PatientID/StudyInstanceUID and sent a new instance
    with them (by upload, or from a modality mapped to him)."""
    outcome = env.catalog.record_owner("inst-bob", A["ID"], env.users["bob"], source)
    assert outcome == "joined"
    assert A["ID"] not in (env.catalog.visible_studies(env.who("bob")) or set())
    assert owners_of(env, A["ID"]) == {"inst-a1": env.users["alice"], "inst-bob": None}
    # Sending more changes nothing; alice keeps it and still owns what she sends into it.
    assert env.catalog.record_owner("inst-bob2", A["ID"], env.users["bob"], source) == "joined"
    assert env.catalog.record_owner("inst-a2", A["ID"], env.users["alice"], source) == "owner"
    assert A["ID"] in (env.catalog.visible_studies(env.who("alice")) or set())
    assert A["ID"] not in (env.catalog.visible_studies(env.who("bob")) or set())


def test_the_first_sender_of_a_study_owns_it(env: Env) -> None:
    new = orthanc_study_id("P-NEW", "1.2.3.99")
    assert env.catalog.record_owner("n1", new, env.users["carol"], "upload") == "owner"
    assert env.catalog.record_owner("n2", new, env.users["carol"], "upload") == "owner"
    assert env.catalog.visible_studies(env.who("carol")) == {new}
    assert env.catalog.record_owner("n3", new, env.users["bob"], "upload") == "joined"


def test_a_study_with_instances_of_no_known_sender_is_nobody_s_to_take(env: Env) -> None:
    """An instance on record without an owner (its owner's account was deleted, or it joined
    a study others owned) keeps the study from being claimed by the next sender: only an
    admin's assignment gives it."""
    orphan = orthanc_study_id("P-ORPHAN", "1.2.3.98")
    assert env.catalog.record_owner("o1", orphan, None, "cstore", "UNKNOWN") == "unowned"
    assert env.catalog.record_owner("o2", orphan, env.users["bob"], "upload") == "joined"
    assert orphan not in (env.catalog.visible_studies(env.who("bob")) or set())
    with env.db.transaction() as tx:
        tx.execute("DELETE FROM users WHERE id = ?", (env.users["alice"],))
    assert env.catalog.record_owner("a9", A["ID"], env.users["bob"], "upload") == "joined"


def test_assignment_is_not_ownership(env: Env) -> None:
    """alice was given study C: she sees it, but sending into it does not make her its
    owner (what she may do with it stays what the assignment gives)."""
    assert env.catalog.record_owner("c1", C["ID"], env.users["carol"], "upload") == "owner"
    assert env.catalog.record_owner("c2", C["ID"], env.users["alice"], "upload") == "joined"


# ---- search ----------------------------------------------------------------------------------


def test_search_sorts_by_date_by_default(env: Env) -> None:
    total, rows = env.catalog.search(env.who("admin", "admin"), Filters())
    assert total == 3
    assert [r["id"] for r in rows] == [C["ID"], A["ID"], B["ID"]]
    first = rows[1]
    assert (first["PatientName"], first["PatientID"], first["StudyDate"]) == (
        "Able^Ann", "P-A", "20240101")
    assert first["series_count"] == 2 and first["uploaded_by"] == ["alice"]
    assert first["tags"] == ["urgent"] and first["nas"] == "not queued"
    assert rows[0]["uploaded_by"] == [] and rows[0]["uploaded_at"] is None
    assert env.finds == []  # no DICOM filter: Orthanc's id list and the index


def test_unfiltered_listings_use_the_summary_index(env: Env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    admin = env.who("admin", "admin")
    env.catalog.search(admin, Filters())
    reads = len([g for g in env.orthanc.uris() if g.startswith("/studies/")])
    assert reads >= 3  # each study expanded...
    env.catalog.search(admin, Filters())
    assert len([g for g in env.orthanc.uris() if g.startswith("/studies/")]) == reads  # ...once
    env.catalog.forget(A["ID"])  # Orthanc reported it changed
    env.catalog.search(admin, Filters())
    assert env.orthanc.uris()[-1] == f"/studies/{A['ID']}"
    monkeypatch.setattr(catalog_module, "INDEX_BATCH", 1)
    for study in (A, B):
        env.catalog.forget(study["ID"])
    total, _ = env.catalog.search(admin, Filters())
    assert total == 3 and env.finds[-1]["Query"] == {}  # many unknown: one find


@pytest.mark.parametrize(("sort", "order"), [
    ("date", "BAC"), ("-date", "CAB"), ("patient_name", "ABC"), ("-patient_name", "CBA"),
    ("description", "ACB"), ("patient_id", "ABC"),
])
def test_search_sorts(env: Env, sort: str, order: str) -> None:
    by_letter = {"A": A["ID"], "B": B["ID"], "C": C["ID"]}
    assert env.ids(env.who("vic", "viewer"), sort=sort) == [by_letter[c] for c in order]


def test_search_sorts_by_upload_time_with_studies_nobody_uploaded(env: Env) -> None:
    """Bug: studies without an owner row (C-STORE from an unmapped AE title, or stored before
    the plugin) have uploaded_at None; the sort key turns it into "" and compares it with the
    float timestamps of uploaded studies: TypeError (a 500 on /images?sort=uploaded)."""
    for sort in ("uploaded", "-uploaded"):
        ids = env.ids(env.who("admin", "admin"), sort=sort)
        assert sorted(ids) == sorted([A["ID"], B["ID"], C["ID"]])
        uploaded = [i for i in ids if i != C["ID"]]
        assert uploaded == ([A["ID"], B["ID"]] if sort == "uploaded" else [B["ID"], A["ID"]])


def test_search_passes_dicom_filters_to_orthanc(env: Env) -> None:
    env.catalog.search(env.who("admin", "admin"), Filters(
        patient_name="Able*", patient_id="P-A", modality="CT", description="Chest",
        date_from="20240101"))
    env.catalog.search(env.who("admin", "admin"), Filters(date_to="20231231"))
    assert [f["Query"] for f in env.finds] == [
        {"PatientName": "Able*", "PatientID": "*P-A*", "ModalitiesInStudy": "CT",
         "StudyDescription": "*Chest*", "StudyDate": "20240101-"},
        {"StudyDate": "-20231231"}]


def test_search_shows_users_their_own_and_given_studies(env: Env) -> None:
    assert env.ids(env.who("alice")) == [C["ID"], A["ID"]]
    assert env.ids(env.who("bob")) == [B["ID"]]
    assert env.ids(env.who("carol")) == []


def test_search_intersects_with_what_orthanc_found(env: Env) -> None:
    env.studies[:] = [A, B]  # C did not match the DICOM filters
    assert env.ids(env.who("alice")) == [A["ID"]]
    assert env.ids(env.who("admin", "admin")) == [A["ID"], B["ID"]]


def test_search_by_tag_and_uploader(env: Env) -> None:
    admin, alice = env.who("admin", "admin"), env.who("alice")
    assert env.ids(admin, tag="urgent") == [A["ID"], B["ID"]]
    assert env.ids(admin, tag="teaching") == [C["ID"]]
    assert env.ids(admin, tag="unknown") == []
    assert env.ids(alice, tag="urgent") == [A["ID"]]  # B is tagged but not hers
    assert env.ids(admin, uploader="bob") == [B["ID"]]
    assert env.ids(alice, uploader="bob") == []
    assert env.ids(admin, uploader="alice", tag="urgent") == [A["ID"]]
    assert env.ids(admin, uploader="alice", tag="teaching") == []


def test_search_pages(env: Env) -> None:
    admin = env.who("admin", "admin")
    total, rows = env.catalog.search(admin, Filters(sort="date", limit=2, offset=0))
    assert total == 3 and [r["id"] for r in rows] == [B["ID"], A["ID"]]
    total, rows = env.catalog.search(admin, Filters(sort="date", limit=2, offset=2))
    assert total == 3 and [r["id"] for r in rows] == [C["ID"]]
    total, rows = env.catalog.search(admin, Filters(limit=2, offset=5))
    assert total == 3 and rows == []


def test_search_summarizes_the_nas_state(env: Env) -> None:
    """The worst state of the study's queued instances, matched by StudyInstanceUID."""
    with env.db.transaction() as tx:
        for instance_id, uid, state in (("a1", "1.2.3.1", "done"), ("a2", "1.2.3.1", "done"),
                                        ("b1", "1.2.3.2", "done"), ("b2", "1.2.3.2", "failed"),
                                        ("b3", "1.2.3.2", "pending"), ("x", None, "failed")):
            tx.execute("INSERT INTO mirror_queue (instance_id, state, source, enqueued_at,"
                       " study_uid) VALUES (?, ?, 'store', 0, ?)", (instance_id, state, uid))
    _, rows = env.catalog.search(env.who("admin", "admin"), Filters())
    assert {r["id"]: r["nas"] for r in rows} == {
        A["ID"]: "mirrored", B["ID"]: "failed", C["ID"]: "not queued"}
    with env.db.transaction() as tx:
        tx.execute("UPDATE mirror_queue SET state = 'pending' WHERE instance_id = 'a2'")
    _, rows = env.catalog.search(env.who("admin", "admin"), Filters())
    assert {r["id"]: r["nas"] for r in rows}[A["ID"]] == "pending"


# ---- resolving resources ---------------------------------------------------------------------


def test_resolve_walks_up_to_the_study(env: Env) -> None:
    study_ref = env.catalog.resolve(A["ID"])
    assert (study_ref.level, study_ref.id, study_ref.study_id) == ("study", A["ID"], A["ID"])
    series_ref = env.catalog.resolve(SERIES_A)
    assert (series_ref.level, series_ref.study_id) == ("series", A["ID"])
    instance_ref = env.catalog.resolve(INSTANCE_A)
    assert (instance_ref.level, instance_ref.id, instance_ref.study_id) == (
        "instance", INSTANCE_A, A["ID"])
    assert env.orthanc.uris()[-2:] == [f"/instances/{INSTANCE_A}", f"/series/{SERIES_A}"]


@pytest.mark.parametrize("bad", [
    "", "../../system", "ABCDEF01-00000000-00000000-00000000-00000000",
    "0000000-00000000-00000000-00000000-00000000", "00000000-00000000-00000000-00000000",
    "00000000-00000000-00000000-00000000-00000000/../x", "00000000_00000000_00000000_0000000",
])
def test_resolve_rejects_malformed_ids_without_asking_orthanc(env: Env, bad: str) -> None:
    with pytest.raises(NotVisible):
        env.catalog.resolve(bad)
    assert env.orthanc.uris() == []


def test_resolve_unknown_id(env: Env) -> None:
    unknown = "deadbeef-00000000-00000000-00000000-00000000"
    with pytest.raises(NotVisible):
        env.catalog.resolve(unknown)
    assert env.orthanc.uris() == [f"/studies/{unknown}", f"/series/{unknown}",
                                f"/instances/{unknown}"]


def test_resolve_visible(env: Env) -> None:
    assert env.catalog.resolve_visible(env.who("alice"), INSTANCE_A).study_id == A["ID"]
    assert env.catalog.resolve_visible(env.who("vic", "viewer"), B["ID"]).id == B["ID"]
    with pytest.raises(NotVisible):
        env.catalog.resolve_visible(env.who("bob"), SERIES_A)
    with pytest.raises(NotVisible):
        env.catalog.resolve_visible(env.who("carol"), C["ID"])
