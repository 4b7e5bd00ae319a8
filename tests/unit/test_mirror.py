"""The mirror worker, one pass at a time: an in-memory NAS that can fail on demand, a manual
clock and fixed jitter drive the outbox through temporary names, verification, retries,
connection loss, re-stores, deletions, series audit rows and reconciliation."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_factory import ct_instance
from orthanc_nas import config
from orthanc_nas.audit import FAILURE, Audit
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import Database, SqliteDatabase
from orthanc_nas.mirror import scrub as scrub_module
from orthanc_nas.mirror import worker
from orthanc_nas.mirror.outbox import Outbox
from orthanc_nas.mirror.scrub import Scrub, within_hours
from orthanc_nas.mirror.worker import Commands, InstanceGone, Mirror, dicom_values
from orthanc_nas.nas import layout
from orthanc_nas.nas.connect import make_storage
from orthanc_nas.nas.storage import (
    ConnectionFailed,
    Entry,
    LocalStorage,
    LogonFailed,
    Space,
    StorageError,
    TargetExists,
)

from .conftest import MakeDb

BASE = 10  # retry_base_seconds
CAP = 100  # retry_max_seconds
IDLE = 5.0  # what step() waits at most when nothing is due


# ---- fakes -----------------------------------------------------------------------------------


@dataclass
class FakeStorage:
    """The Storage protocol over a dict, with switches to fail and a log of every call."""

    files: dict[str, bytes] = field(default_factory=dict)
    ops: list[tuple[str, ...]] = field(default_factory=list)
    connect_error: str | None = None
    write_error: StorageError | None = None  # raised by every write while set
    fail_paths: tuple[str, ...] = ()  # writes of temporaries for these targets fail
    writes_before_disconnect: int | None = None  # then writes raise ConnectionFailed
    corrupt_reads: bool = False
    on_write: Callable[[str], None] | None = None

    def writes(self) -> list[str]:
        return [op[1] for op in self.ops if op[0] == "write"]

    def connect(self) -> None:
        self.ops.append(("connect",))
        if self.connect_error is not None:
            kind = LogonFailed if "LOGON" in self.connect_error else ConnectionFailed
            raise kind("connect", self.connect_error)

    def write(self, path: str, data: bytes) -> None:
        self.ops.append(("write", path))
        if self.write_error is not None:
            raise self.write_error
        if any(path.endswith(f".{p.rpartition('/')[2]}.part") for p in self.fail_paths):
            raise StorageError("write", "access denied")
        if self.writes_before_disconnect is not None:
            if self.writes_before_disconnect <= 0:
                raise ConnectionFailed("write", "connection reset by peer")
            self.writes_before_disconnect -= 1
        self.files[path] = data
        if self.on_write is not None:
            self.on_write(path)

    def write_and_read(self, path: str, data: bytes) -> bytes:
        self.write(path, data)
        return self.read(path)

    def read(self, path: str) -> bytes:
        self.ops.append(("read", path))
        found = [p for p in self.files if p.casefold() == path.casefold()]  # as SMB shares
        if not found:
            raise StorageError("read", f"{path} not found")
        data = self.files[found[0]]
        return bytes([data[0] ^ 0xFF]) + data[1:] if self.corrupt_reads else data

    def replace(self, source: str, target: str, *, overwrite: bool = True) -> None:
        self.ops.append(("replace", source, target))
        taken = [p for p in self.files if p.casefold() == target.casefold()]  # as SMB shares
        if taken and not overwrite:
            raise TargetExists("rename", f"{target} exists")
        for path in taken:
            del self.files[path]
        self.files[target] = self.files.pop(source)

    def delete(self, path: str) -> None:
        self.ops.append(("delete", path))
        self.files.pop(path, None)

    def stat(self, path: str) -> Entry | None:
        self.ops.append(("stat", path))
        if path not in self.files:
            return None
        return Entry(path.rpartition("/")[2], False, len(self.files[path]), 0.0)

    def list(self, path: str) -> list[Entry]:
        prefix = path.rstrip("/") + "/"
        return [Entry(p[len(prefix):], False, len(d), 0.0)
                for p, d in sorted(self.files.items()) if p.startswith(prefix)]

    def space(self) -> Space:
        return Space(1000, 400)

    def close(self) -> None:
        self.ops.append(("close",))


@dataclass
class FakeSource:
    """Orthanc's side of reconciliation: its instance list and files."""

    instances: dict[str, bytes] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)

    def instance(self, instance_id: str) -> bytes:
        self.fetched.append(instance_id)
        if instance_id in self.gone or instance_id not in self.instances:
            raise InstanceGone("deleted from Orthanc before it was mirrored")
        return self.instances[instance_id]

    def instance_ids(self) -> list[str]:
        return sorted(self.instances)


# ---- helpers ---------------------------------------------------------------------------------


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom(**kwargs: Any) -> tuple[bytes, Dataset]:
    ds = ct_instance(size=2, **kwargs)
    return encode(ds), ds


def changed(ds: Dataset, description: str) -> bytes:
    """The same instance (same UIDs) with other content: what a re-send may bring."""
    ds.StudyDescription = description
    return encode(ds)


def target_of(ds: Dataset) -> str:
    return f"{ds.PatientID}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


def part_of(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.part"


def nas_settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    nas = config.load({"OrthancNAS": {"data_dir": str(tmp_path)}}).section("nas")
    return {**nas, "retry_base_seconds": BASE, "retry_max_seconds": CAP, "max_attempts": 4,
            **overrides}


@dataclass
class Env:
    db: Database
    clock: ManualClock
    outbox: Outbox
    storage: Any
    mirror: Mirror
    tmp_path: Path

    def row(self, instance_id: str) -> dict[str, Any]:
        found = self.db.one("SELECT * FROM mirror_queue WHERE instance_id = ?", (instance_id,))
        assert found is not None
        return dict(found)

    def audit(self, event: str) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM audit WHERE event = ? ORDER BY id", (event,))
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.outbox.spool_dir.iterdir())

    def record(self, instance_id: str, data: bytes) -> None:
        self.outbox.record_stored_many([(instance_id, data)])
        self.clock.advance(1)  # distinct enqueued_at: a deterministic queue order

    def drain(self, passes: int = 5) -> None:
        for _ in range(passes):
            if self.mirror.step() != 0.0:
                return


def make_env(tmp_path: Path, storage: Any = None, source: Any = None,
             rand: float = 0.5, db: Database | None = None, **nas: Any) -> Env:
    db = db or SqliteDatabase(tmp_path / "db.sqlite")
    clock = ManualClock()
    outbox = Outbox(db, tmp_path / "spool", clock)
    storage = FakeStorage() if storage is None else storage
    audit = Audit(db, clock, b"k" * 32)
    mirror = Mirror(outbox, storage, nas_settings(tmp_path, **nas), audit, db, clock,
                    source=source, rand=lambda: rand)
    return Env(db, clock, outbox, storage, mirror, tmp_path)


@pytest.fixture
def env(tmp_path: Path, make_db: MakeDb) -> Env:
    return make_env(tmp_path, db=make_db())


# ---- the happy path --------------------------------------------------------------------------


def test_recorded_instance_lands_at_its_path_through_a_temporary_name(env: Env) -> None:
    data, ds = dicom()
    env.record("inst-1", data)
    assert len(env.spool_files()) == 1

    assert env.mirror.step() == 0.0  # worked: come back at once
    path = target_of(ds)
    assert env.storage.files == {path: data}
    assert env.spool_files() == []
    row = env.row("inst-1")
    assert (row["state"], row["remote_path"], row["spool"], row["attempts"]) == (
        "done", path, None, 0)
    assert (row["size"], row["series_uid"], row["study_uid"], row["patient_id"]) == (
        len(data), ds.SeriesInstanceUID, ds.StudyInstanceUID, "PAT-1")
    # written under the temporary name (its size confirmed by the write), then renamed:
    # never written in place, not read back (the scrub reads it later)
    part = part_of(path)
    assert env.storage.writes() == [part]
    ops = env.storage.ops
    assert ops.index(("write", part)) < ops.index(("replace", part, path))
    assert ("read", part) not in ops
    assert env.mirror.connected and env.mirror.space == (1000, 400)
    state = env.db.one("SELECT * FROM nas_state WHERE id = 1")
    assert state is not None and state["connected"] == 1 and state["free_bytes"] == 400

    assert env.mirror.step() == IDLE  # nothing due
    assert env.storage.writes() == [part]


def test_end_to_end_on_a_local_folder(tmp_path: Path) -> None:
    root = tmp_path / "nas"
    template = "{Modality}/{PatientName}/{SOPInstanceUID}.dcm"
    env = make_env(tmp_path, LocalStorage(str(root), [str(tmp_path)]), layout=template)
    data, ds = dicom(patient_name="Doe^John")
    env.record("inst-1", data)

    wait = env.mirror.step()  # the folder does not exist yet: a connection failure, looked
    assert wait == worker.RECONNECT_MAX and not env.mirror.connected  # at again soon
    assert env.row("inst-1")["state"] == "pending"

    root.mkdir()
    env.clock.advance(wait)
    assert env.mirror.step() == 0.0
    final = root / "CT" / "Doe^John" / f"{ds.SOPInstanceUID}.dcm"
    assert final.read_bytes() == data
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no .part left behind
    assert env.row("inst-1")["remote_path"] == layout.render(template, dicom_values(data))
    assert env.spool_files() == []


def test_reconciled_instance_already_on_the_nas_is_done_without_writing(
        tmp_path: Path) -> None:
    data, ds = dicom()
    path = target_of(ds)
    env = make_env(tmp_path, source=FakeSource({"inst-1": data}))
    env.storage.files[path] = data
    env.outbox.enqueue_missing(["inst-1"], "reconcile")
    env.mirror.step()
    assert env.storage.writes() == []
    assert not [op for op in env.storage.ops if op[0] == "replace"]
    assert env.row("inst-1")["state"] == "done"
    assert env.row("inst-1")["remote_path"] == path


def test_a_file_just_received_is_written_without_looking_first(env: Env) -> None:
    data, ds = dicom()
    path = target_of(ds)
    env.storage.files[path] = data  # e.g. the same instance sent twice
    env.record("inst-1", data)
    env.mirror.step()
    assert [op[0] for op in env.storage.ops if op[0] != "connect"][:3] == [
        "write", "replace", "read"]  # the rename that must not replace finds it: compared
    assert env.storage.files == {path: data} and env.spool_files() == []


def test_a_file_of_unknown_origin_at_the_path_is_kept(tmp_path: Path) -> None:
    """Nothing says whose it is (another instance whose name folds to the same one?): both
    are kept, the new copy under a name of its own, and the audit trail says so."""
    data, ds = dicom()
    path = target_of(ds)
    env = make_env(tmp_path, source=FakeSource({"inst-1": data}))
    env.storage.files[path] = bytes(len(data))
    env.outbox.enqueue_missing(["inst-1"], "reconcile")
    env.mirror.step()
    apart = path.removesuffix(".dcm") + "~inst-1.dcm"
    assert env.storage.files == {path: bytes(len(data)), apart: data}
    assert env.row("inst-1")["remote_path"] == apart
    (row,) = env.audit("nas_name_taken")
    assert row["details"] == {"path": path, "stored_as": apart}


def test_names_that_fold_together_never_overwrite_each_other(env: Env) -> None:
    """PatientIDs 'PAT:1' and 'PAT_1' sanitise to one folder; 'pat-9' and 'PAT-9' are one
    folder on a case-insensitive share. Each instance keeps its own file, and deleting one
    in Orthanc (deletions propagate) removes only that one."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()

    def same_uids(patient_id: str) -> bytes:
        ds = ct_instance(patient_id=patient_id, study_uid=study, series_uid=series, size=2)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        return encode(ds)

    first, second, third, fourth = map(same_uids, ("PAT:1", "PAT_1", "pat-9", "PAT-9"))
    for instance_id, data in (("a", first), ("b", second), ("c", third), ("d", fourth)):
        env.record(instance_id, data)
    env.drain()
    assert sorted(env.storage.files.values()) == sorted([first, second, third, fourth])
    env.outbox.record_deleted("a")
    env.drain()
    assert sorted(env.storage.files.values()) == sorted([second, third, fourth])
    assert len(env.audit("nas_name_taken")) == 2


# ---- verification, item errors and backoff ---------------------------------------------------


def test_verification_failure_is_a_failed_attempt_and_removes_the_temporary(
        tmp_path: Path) -> None:
    env = make_env(tmp_path, verify="readback")
    data, ds = dicom()
    path, part = target_of(ds), part_of(path=target_of(ds))
    env.storage.corrupt_reads = True
    env.record("inst-1", data)
    start = env.clock.now()

    env.mirror.step()
    row = env.row("inst-1")
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == start + BASE
    assert "verify" in row["last_error"]
    assert ("delete", part) in env.storage.ops
    assert env.storage.files == {}  # neither the temporary nor the final name
    assert len(env.spool_files()) == 1  # kept for the next attempt

    env.storage.corrupt_reads = False
    assert env.mirror.step() == IDLE  # not due yet
    env.clock.advance(BASE)
    env.mirror.step()
    assert env.row("inst-1")["state"] == "done"
    assert env.storage.files == {path: data}


@pytest.mark.parametrize("verify", ["size", False])  # False: the old boolean, read as "size"
def test_without_readback_the_temporary_is_not_read_back(tmp_path: Path,
                                                         verify: str | bool) -> None:
    env = make_env(tmp_path, verify=verify)
    data, ds = dicom()
    env.storage.corrupt_reads = True
    env.record("inst-1", data)
    env.mirror.step()
    assert env.row("inst-1")["state"] == "done"
    assert ("read", part_of(target_of(ds))) not in env.storage.ops


@pytest.mark.parametrize(("attempts", "jitter", "expected"), [
    (0, 0.5, BASE), (1, 0.5, BASE), (2, 0.5, 2 * BASE), (3, 0.5, 4 * BASE),
    (4, 0.5, 8 * BASE), (5, 0.5, CAP), (30, 0.5, CAP),
    (1, 0.0, BASE * 0.5), (3, 0.99, 4 * BASE * 1.49), (9, 0.0, CAP * 0.5),
])
def test_backoff_doubles_up_to_the_cap_with_jitter(tmp_path: Path, attempts: int,
                                                    jitter: float, expected: float) -> None:
    env = make_env(tmp_path, rand=jitter)
    assert env.mirror.backoff(attempts) == pytest.approx(expected)


def test_item_errors_back_off_then_park_as_failed_with_an_audit_row(tmp_path: Path) -> None:
    env = make_env(tmp_path, rand=0.25, max_attempts=4, retry_max_seconds=25)
    env.storage.write_error = StorageError("write", "access denied")
    data, _ = dicom()
    env.record("inst-1", data)

    delays = []
    for attempt in (1, 2, 3):
        before = env.clock.now()
        assert env.mirror.step() == 0.0
        row = env.row("inst-1")
        assert (row["state"], row["attempts"]) == ("pending", attempt)
        assert "access denied" in row["last_error"]
        delays.append(row["next_attempt_at"] - before)
        assert env.mirror.step() == min(IDLE, delays[-1])  # waits, does not retry early
        assert env.row("inst-1")["attempts"] == attempt
        env.clock.advance(delays[-1])
    assert delays == pytest.approx([BASE * 0.75, 2 * BASE * 0.75, 25 * 0.75])
    assert env.audit("nas_mirror_failed") == []

    env.mirror.step()
    row = env.row("inst-1")
    assert (row["state"], row["attempts"]) == ("failed", 4)
    failed = env.audit("nas_mirror_failed")
    assert len(failed) == 1
    assert (failed[0]["target"], failed[0]["outcome"], failed[0]["actor"]) == (
        "inst-1", FAILURE, "system")
    assert failed[0]["details"]["attempts"] == 4
    assert "access denied" in failed[0]["details"]["error"]
    assert env.mirror.last_error is not None and "inst-1" in env.mirror.last_error

    env.clock.advance(10 * CAP)  # parked: never retried on its own
    assert env.mirror.step() == IDLE
    assert env.row("inst-1")["attempts"] == 4 and len(env.storage.writes()) == 4


def test_retry_requeues_failed_items(tmp_path: Path) -> None:
    env = make_env(tmp_path, max_attempts=1)
    env.storage.write_error = StorageError("write", "access denied")
    items = {f"inst-{i}": dicom() for i in range(3)}
    for instance_id, (data, _) in items.items():
        env.record(instance_id, data)
    env.mirror.step()
    assert {env.row(i)["state"] for i in items} == {"failed"}
    assert len(env.audit("nas_mirror_failed")) == 3
    assert len(env.spool_files()) == 3  # failed items keep their bytes

    env.storage.write_error = None
    assert env.outbox.retry(["inst-0", "unknown"]) == 1
    assert env.row("inst-0")["state"] == "pending" and env.row("inst-0")["attempts"] == 0
    env.drain()
    assert env.row("inst-0")["state"] == "done"
    assert env.row("inst-1")["state"] == "failed"

    assert env.outbox.retry(None) == 2
    assert env.outbox.retry(None) == 0
    env.drain()
    assert {env.row(i)["state"] for i in items} == {"done"}
    assert sorted(env.storage.files) == sorted(target_of(ds) for _, ds in items.values())
    assert env.spool_files() == []


def test_source_reporting_the_instance_gone_parks_it_at_once(tmp_path: Path) -> None:
    source = FakeSource()
    env = make_env(tmp_path, source=source, max_attempts=10)
    env.outbox.enqueue_missing(["inst-1"], "reconcile")
    env.mirror.step()
    row = env.row("inst-1")
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert "InstanceGone" in row["last_error"]
    assert source.fetched == ["inst-1"]
    assert len(env.audit("nas_mirror_failed")) == 1


def test_no_spool_copy_and_no_source_parks_the_item(env: Env) -> None:
    data, _ = dicom()
    env.record("inst-1", data)
    for name in env.spool_files():
        (env.outbox.spool_dir / name).unlink()
    env.mirror.step()
    assert env.row("inst-1")["state"] == "failed"
    assert env.storage.writes() == []


# ---- connection failures ---------------------------------------------------------------------


def test_connection_failure_counts_no_attempt_and_backs_off(env: Env) -> None:
    env.storage.connect_error = "NT_STATUS_LOGON_FAILURE"
    items = {f"inst-{i}": dicom() for i in range(2)}
    for instance_id, (data, _) in items.items():
        env.record(instance_id, data)
    start = env.clock.now()

    assert env.mirror.step() == BASE
    assert not env.mirror.connected
    assert env.mirror.last_error is not None and "NT_STATUS_LOGON_FAILURE" in env.mirror.last_error
    assert env.mirror.retry_connect_at == start + BASE
    for instance_id in items:
        row = env.row(instance_id)
        assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, 0)
    state = env.db.one("SELECT * FROM nas_state WHERE id = 1")
    assert state is not None and state["connected"] == 0
    assert "NT_STATUS_LOGON_FAILURE" in state["last_error"]

    env.clock.advance(4)
    assert env.mirror.step() == BASE - 4  # no reconnection before its time
    assert env.storage.ops.count(("connect",)) == 1

    env.clock.advance(BASE - 4)
    assert env.mirror.step() == 2 * BASE  # failed again: the delay doubles
    assert env.mirror.retry_connect_at == env.clock.now() + 2 * BASE
    assert env.storage.ops.count(("connect",)) == 2

    env.storage.connect_error = None
    env.clock.advance(2 * BASE)
    assert env.mirror.step() == 0.0
    assert env.mirror.connected and env.mirror.connect_failures == 0
    assert {env.row(i)["state"] for i in items} == {"done"}
    assert {env.row(i)["attempts"] for i in items} == {0}
    assert env.audit("nas_mirror_failed") == []


def test_connection_lost_mid_batch_leaves_the_rest_untouched(env: Env) -> None:
    env.storage.writes_before_disconnect = 1
    items = {f"inst-{i}": dicom() for i in range(3)}
    for instance_id, (data, _) in items.items():
        env.record(instance_id, data)

    wait = env.mirror.step()
    assert wait == worker.RECONNECT_MAX and not env.mirror.connected
    assert env.row("inst-0")["state"] == "done"
    for instance_id in ("inst-1", "inst-2"):
        row = env.row(instance_id)
        assert (row["state"], row["attempts"]) == ("pending", 0)
    assert "connection reset" in (env.mirror.last_error or "")

    env.storage.writes_before_disconnect = None
    env.clock.advance(wait)
    env.drain()
    assert {env.row(i)["state"] for i in items} == {"done"}
    assert sorted(env.storage.files) == sorted(target_of(ds) for _, ds in items.values())
    assert env.spool_files() == []


# ---- re-stores and generations ---------------------------------------------------------------


def test_restore_while_pending_supersedes_the_in_flight_item(env: Env) -> None:
    first, ds = dicom(description="first")
    env.record("inst-1", first)
    (old,) = env.outbox.due(10)
    second = changed(ds, "second")
    env.record("inst-1", second)

    assert env.outbox.done(old, "somewhere") is False
    row = env.row("inst-1")  # where the old copy went is known: this instance's to replace
    assert (row["state"], row["gen"], row["remote_path"]) == ("pending", old.gen + 1,
                                                              "somewhere")
    assert env.spool_files() == [row["spool"]]  # the old copy went, the new one stays
    assert (env.outbox.spool_dir / row["spool"]).read_bytes() == second


def test_restore_during_the_write_mirrors_the_new_version(env: Env) -> None:
    first, ds = dicom(description="first")
    second = changed(ds, "second")
    env.record("inst-1", first)
    env.storage.on_write = lambda _path: env.outbox.record_stored_many([("inst-1", second)])
    env.mirror.step()
    env.storage.on_write = None
    assert env.row("inst-1")["state"] == "pending"  # the old generation did not close it
    assert env.audit("nas_mirrored") == []

    env.drain()
    assert env.row("inst-1")["state"] == "done"
    assert env.storage.files == {target_of(ds): second}
    assert env.spool_files() == []
    assert [a["details"]["instances"] for a in env.audit("nas_mirrored")] == [1]


def test_stored_twice_before_mirroring_leaves_no_spool_copy(env: Env) -> None:
    """Bug: record_stored_many keeps the previous spool file when the row is still pending (the
    worker might be reading it), but nothing removes it later unless the worker restarts."""
    data, ds = dicom()
    env.record("inst-1", data)
    env.record("inst-1", data)  # a modality sends the study again while the NAS is behind
    env.drain()
    assert env.row("inst-1")["state"] == "done"
    assert env.storage.files == {target_of(ds): data}
    assert env.spool_files() == []


# ---- deletions -------------------------------------------------------------------------------


def test_deleting_a_mirrored_instance_deletes_the_nas_copy(env: Env) -> None:
    data, ds = dicom()
    env.record("inst-1", data)
    env.mirror.step()
    path = target_of(ds)
    assert path in env.storage.files

    env.outbox.record_deleted("inst-1")
    row = env.row("inst-1")
    assert (row["op"], row["state"], row["gen"]) == ("delete", "pending", 2)
    env.drain()
    assert ("delete", path) in env.storage.ops
    assert env.storage.files == {}
    assert env.row("inst-1")["state"] == "done"


def test_deleting_a_never_mirrored_instance_cancels_it(env: Env) -> None:
    data, _ = dicom()
    env.record("inst-1", data)
    env.outbox.record_deleted("inst-1")
    env.outbox.record_deleted("unknown")  # nothing queued: nothing to do
    assert env.row("inst-1")["state"] == "cancelled"
    assert env.mirror.step() == IDLE
    assert env.storage.writes() == []
    assert env.row("inst-1")["state"] == "cancelled"


def test_deleting_a_never_mirrored_instance_leaves_no_spool_copy(env: Env) -> None:
    """Bug: the cancelled row keeps its spool name, so the DICOM file of a deleted instance
    stays in the spool forever (even remove_orphan_spool_files keeps it)."""
    data, _ = dicom()
    env.record("inst-1", data)
    env.outbox.record_deleted("inst-1")
    env.mirror.step()
    env.outbox.remove_orphan_spool_files(older_than=0)
    assert env.row("inst-1")["state"] == "cancelled"
    assert env.spool_files() == []


def test_deleting_during_the_write_leaves_no_copy_on_the_nas(env: Env) -> None:
    """Bug: a put in flight when the instance is deleted still renames its copy into place;
    done() then refuses the old generation and the cancelled row forgets the path."""
    data, ds = dicom()
    env.record("inst-1", data)
    env.storage.on_write = lambda _path: env.outbox.record_deleted("inst-1")
    env.drain()
    env.storage.on_write = None
    env.drain()
    assert target_of(ds) not in env.storage.files


# ---- series audit ----------------------------------------------------------------------------


def series(count: int, **kwargs: Any) -> list[tuple[bytes, Dataset]]:
    study, serie = generate_uid(), generate_uid()
    return [dicom(study_uid=study, series_uid=serie, instance_number=i + 1, **kwargs)
            for i in range(count)]


def test_one_audit_row_per_mirrored_series(env: Env) -> None:
    ct = series(3)
    mr = series(1, modality="MR", patient_id="PAT-2")
    for i, (data, _) in enumerate(ct + mr):
        env.record(f"inst-{i}", data)
    env.drain()
    env.clock.advance(60)
    env.mirror.step()

    rows = {a["target"]: a for a in env.audit("nas_mirrored")}
    assert len(env.audit("nas_mirrored")) == 2
    ct_row = rows[ct[0][1].SeriesInstanceUID]
    assert ct_row["details"] == {"instances": 3, "bytes": sum(len(d) for d, _ in ct)}
    assert (ct_row["study_uid"], ct_row["patient_id"]) == (ct[0][1].StudyInstanceUID, "PAT-1")
    assert ct_row["event_code"] == "110102"  # DICOM: Begin Transferring DICOM Instances
    assert rows[mr[0][1].SeriesInstanceUID]["details"]["instances"] == 1


def test_series_stays_open_while_one_of_its_instances_is_retried(env: Env) -> None:
    instances = series(3)
    for i, (data, _) in enumerate(instances):
        env.record(f"inst-{i}", data)
    env.storage.fail_paths = (target_of(instances[1][1]),)
    env.mirror.step()
    assert env.row("inst-1")["state"] == "pending"
    assert env.audit("nas_mirrored") == []

    env.storage.fail_paths = ()
    env.clock.advance(BASE)
    env.drain()
    (row,) = env.audit("nas_mirrored")
    assert row["details"]["instances"] == 3


def test_series_larger_than_a_batch_gets_one_audit_row(env: Env,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: series_open() only sees rows already described by a pass, so a series spread over
    several batches is closed (and audited) once per batch."""
    monkeypatch.setattr(worker, "BATCH", 2)
    instances = series(5)
    for i, (data, _) in enumerate(instances):
        env.record(f"inst-{i}", data)
    env.drain()
    assert {env.row(f"inst-{i}")["state"] for i in range(5)} == {"done"}
    assert [a["details"]["instances"] for a in env.audit("nas_mirrored")] == [5]


def test_instances_arriving_during_a_pass_join_their_series_row(env: Env) -> None:
    """A modality still sending while the worker mirrors the first instance: the series is
    not closed while queued instances are unread (their series is unknown until read)."""
    instances = series(5)
    env.record("inst-0", instances[0][0])

    def more_arrive(_path: str) -> None:
        env.storage.on_write = None
        for i, (more, _) in enumerate(instances[1:], start=1):
            env.record(f"inst-{i}", more)

    env.storage.on_write = more_arrive
    env.mirror.step()  # the first instance alone, the others queued meanwhile
    assert env.audit("nas_mirrored") == []
    env.drain()
    assert [a["details"]["instances"] for a in env.audit("nas_mirrored")] == [5]


# ---- spool housekeeping and reconciliation ---------------------------------------------------


def test_remove_orphan_spool_files_keeps_referenced_ones(env: Env) -> None:
    data, _ = dicom()
    env.record("inst-1", data)
    (kept,) = env.spool_files()
    (env.outbox.spool_dir / "crashed.1234.dcm").write_bytes(b"x")
    (env.outbox.spool_dir / ".half.dcm.tmp").write_bytes(b"x")
    # Just written: perhaps the spooler's, its row not yet committed.
    assert env.outbox.remove_orphan_spool_files() == 0
    assert env.outbox.remove_orphan_spool_files(older_than=0) == 2
    assert env.spool_files() == [kept]
    assert env.outbox.remove_orphan_spool_files(older_than=0) == 0


def test_reconcile_enqueues_only_unknown_instances(tmp_path: Path) -> None:
    copies = {f"inst-{i}": dicom()[0] for i in range(3)}
    source = FakeSource(dict(copies))
    env = make_env(tmp_path, source=source)
    env.record("inst-0", copies["inst-0"])

    assert env.mirror.reconcile() == 2
    assert env.mirror.reconcile() == 0
    (audit,) = env.audit("nas_reconciled")
    assert audit["details"] == {"instances": 2}
    for instance_id in ("inst-1", "inst-2"):
        row = env.row(instance_id)
        assert (row["source"], row["spool"], row["state"]) == ("reconcile", None, "pending")
    assert env.row("inst-0")["source"] == "store"

    env.drain()
    assert sorted(source.fetched) == ["inst-1", "inst-2"]  # inst-0 came from the spool
    assert sorted(env.storage.files.values()) == sorted(copies.values())


def test_reconcile_without_a_source_does_nothing(env: Env) -> None:
    assert env.mirror.reconcile() == 0
    assert env.audit("nas_reconciled") == []


def test_missing_spool_copy_falls_back_to_the_source(tmp_path: Path) -> None:
    data, ds = dicom()
    source = FakeSource({"inst-1": data})
    env = make_env(tmp_path, source=source)
    env.record("inst-1", data)
    for name in env.spool_files():
        (env.outbox.spool_dir / name).unlink()
    env.mirror.step()
    assert source.fetched == ["inst-1"]
    assert env.storage.files == {target_of(ds): data}


# ---- small pieces ----------------------------------------------------------------------------


def test_dicom_values_and_make_storage(tmp_path: Path) -> None:
    data, ds = dicom(patient_name="Doe^Jane")
    values = dicom_values(data)
    assert set(values) == set(layout.FIELDS)
    assert values["PatientName"] == "Doe^Jane" and values["SeriesNumber"] == ""
    assert values["SOPInstanceUID"] == ds.SOPInstanceUID
    storage = make_storage({**nas_settings(tmp_path), "type": "local", "path": str(tmp_path),
                            "local_roots": [str(tmp_path)]})
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path


def test_throughput_counts_the_last_minute(env: Env) -> None:
    data, _ = dicom()
    env.record("inst-1", data)
    env.mirror.step()
    assert env.mirror.throughput() == pytest.approx(len(data) / 60)
    env.clock.advance(61)
    assert env.mirror.throughput() == 0.0


def test_commands_returns_complete_lines_only() -> None:
    read_fd, write_fd = os.pipe()
    try:
        commands = Commands(read_fd)
        os.write(write_fd, b"a\nb\npartial")
        assert commands.read(1.0) == ["a", "b"]
        assert commands.read(0) == []  # nothing new: the partial line waits
        assert not commands.closed
        os.write(write_fd, b" line\nconfig {}\n")
        assert commands.read(1.0) == ["partial line", "config {}"]
        os.close(write_fd)
        write_fd = -1
        assert commands.read(1.0) == []
        assert commands.closed
        assert commands.read(None) == []  # closed: never blocks again
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_local_rename_that_must_not_replace(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path), [str(tmp_path)])
    storage.write("a/.x.part", b"new")
    storage.write("a/x.dcm", b"old")
    with pytest.raises(TargetExists):
        storage.replace("a/.x.part", "a/x.dcm", overwrite=False)
    assert storage.read("a/x.dcm") == b"old"
    storage.replace("a/.x.part", "a/x.dcm")
    assert storage.read("a/x.dcm") == b"new" and storage.stat("a/.x.part") is None


def test_local_write_never_follows_a_planted_link(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path), [str(tmp_path)])
    storage.write("b/victim.dcm", b"victim")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".x.part").symlink_to(tmp_path / "b" / "victim.dcm")
    with pytest.raises(OSError):
        storage.write("a/.x.part", b"attacker")
    assert storage.read("b/victim.dcm") == b"victim"


# ---- the scrub -------------------------------------------------------------------------------


def scrubbed_env(tmp_path: Path, rate: int = 1) -> tuple[Env, Scrub]:
    env = make_env(tmp_path)
    scrub = Scrub(env.outbox, env.mirror.audit, env.clock, rate, (0, 24),
                  target=worker.target_of(env.mirror.nas))
    return env, scrub  # stepped by the test, not by the mirror's idle passes


def test_scrub_finds_a_corrupted_copy_recopies_and_audits_it(tmp_path: Path) -> None:
    env, scrub = scrubbed_env(tmp_path)
    data, ds = dicom()
    env.mirror.source = FakeSource({"inst-1": data})  # the spool copy is gone once mirrored
    env.record("inst-1", data)
    env.drain()
    path = target_of(ds)
    assert env.outbox.counts()["unverified"] == 1
    flipped = bytearray(env.storage.files[path])
    flipped[-1] ^= 0xFF  # behind the mirror's back
    env.storage.files[path] = bytes(flipped)

    scrub.step(env.storage)
    assert env.row("inst-1")["state"] == "pending"  # queued to be copied again
    (row,) = env.audit("nas_scrub_mismatch")
    assert row["target"] == "inst-1" and "differs" in row["details"]["error"]
    env.drain()
    assert env.storage.files[path] == data and env.row("inst-1")["state"] == "done"
    env.clock.advance(60)
    scrub.step(env.storage)
    counts = env.outbox.counts()
    assert (counts["verified"], counts["unverified"]) == (1, 0)
    assert counts["oldest_unverified_age_seconds"] is None


def test_scrub_of_a_missing_copy_recopies_it(tmp_path: Path) -> None:
    env, scrub = scrubbed_env(tmp_path)
    data, ds = dicom()
    env.mirror.source = FakeSource({"inst-1": data})
    env.record("inst-1", data)
    env.drain()
    del env.storage.files[target_of(ds)]
    scrub.step(env.storage)
    assert "unreadable" in env.audit("nas_scrub_mismatch")[0]["details"]["error"]
    env.drain()
    assert env.storage.files[target_of(ds)] == data


def test_scrub_rate_cap_holds_over_a_window(tmp_path: Path) -> None:
    """At 1 MB/s, the bytes read over any 10 s of the (injected) clock stay within 10 MB and
    one file: whatever the caller's loop, reads wait for the cap."""
    env, scrub = scrubbed_env(tmp_path, rate=1)
    big = ct_instance(size=512)  # ~0.5 MB each
    for i in range(30):
        big.SOPInstanceUID = generate_uid()
        env.record(f"inst-{i}", encode(big))
    env.drain(passes=10)
    size = len(encode(big))
    start = env.clock.now()
    reads: list[tuple[float, int]] = []
    while env.clock.now() - start < 10:
        before = scrub.bytes_read
        wait = scrub.step(env.storage)
        if scrub.bytes_read > before:
            reads.append((env.clock.now() - start, scrub.bytes_read - before))
        env.clock.advance(min(wait, 0.05) if wait > 0 else 0.05)  # a busy caller
    total = sum(n for _, n in reads)
    assert 9e6 - size <= total <= 10e6 + size
    assert len(reads) >= 10


def test_scrub_waits_outside_its_hours(tmp_path: Path) -> None:
    env, scrub = scrubbed_env(tmp_path)
    env.record("inst-1", dicom()[0])
    env.drain()
    hour = __import__("time").localtime(env.clock.now()).tm_hour
    scrub.hours = ((hour + 1) % 24, (hour + 2) % 24 or 24)
    assert scrub.step(env.storage) == scrub_module.IDLE and scrub.bytes_read == 0
    assert within_hours(0, (0, 24))


def test_scrub_reads_only_copies_on_the_nas_configured_now(tmp_path: Path) -> None:
    """Pointed at another share, the mirror's earlier copies are not there: not damage."""
    env, scrub = scrubbed_env(tmp_path)
    env.record("inst-1", dicom()[0])
    env.drain()
    scrub.target = "smb://elsewhere:445/other/"
    env.storage.files.clear()
    assert scrub.step(env.storage) == scrub_module.IDLE and scrub.bytes_read == 0
    assert env.row("inst-1")["state"] == "done" and env.audit("nas_scrub_mismatch") == []


def test_copies_wait_for_a_burst_of_ingest_within_a_bound(env: Env) -> None:
    """On a shared box the NAS client and server would take CPU from ingest: while instances
    keep arriving the copies wait, but never more than DEFER_MAX of one burst."""
    env.record("inst-1", dicom()[0])
    env.mirror.note_ingest()
    assert env.mirror.step() == pytest.approx(worker.INGEST_QUIET)
    assert env.row("inst-1")["state"] == "pending" and env.storage.writes() == []
    env.clock.advance(worker.INGEST_QUIET)  # quiet: copy
    assert env.mirror.step() == 0.0 and env.row("inst-1")["state"] == "done"

    env.record("inst-2", dicom()[0])
    start = env.clock.now()
    while env.clock.now() - start < worker.DEFER_MAX:  # a burst that does not stop
        env.mirror.note_ingest()
        assert env.mirror.step() > 0 and env.row("inst-2")["state"] == "pending"
        env.clock.advance(0.25)
    env.mirror.note_ingest()
    env.mirror.step()
    assert env.row("inst-2")["state"] == "done"


def test_pysmbc_runtime_errors_are_classified_not_raised() -> None:
    """pysmbc raises RuntimeError((errno, text)) for some socket failures (seen: 103,
    'Software caused connection abort', during a scrub read): a lost connection, never a
    worker crash."""
    from orthanc_nas.nas.smbc import SmbcStorage

    storage = SmbcStorage(host="127.0.0.1", port=1, share="s", username="u", password="p",
                          path="", encrypt=False, require_signing=True, timeout=1)

    class Aborting:
        def open(self, *_args: object) -> None:
            raise RuntimeError(103, "Software caused connection abort")

    storage._ctx = Aborting()
    with pytest.raises(ConnectionFailed):
        storage.read("x.dcm")
    assert storage._ctx is None  # the context is dropped: the next call reconnects
