"""The NAS side of one mirrored item, run by ``nas.parallel`` copier processes at once.

The worker reads, hashes and lays out each item and keeps the outbox; a copier only talks to
the NAS: (an existing copy checked) -> write to a temporary name, flush, size confirmed (read
back too with ``verify: "readback"``) -> rename into place. Each copier is a process of its own
with its own SMB session: per-file latency is hidden by several copies in flight, and pysmbc
holds the GIL in every call, so threads would not overlap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import signal
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from ..nas.storage import ConnectionFailed, Storage, StorageError, TargetExists


@dataclass(frozen=True)
class Job:
    instance_id: str
    path: str  # where the copy goes (a put) or the copy to remove (a delete)
    data: bytes = b""
    digest: str = ""
    check_existing: bool = False  # a retry or reconciliation may find its copy there
    overwrite: bool = False  # the path is this instance's own earlier copy
    readback: bool = False
    delete: bool = False


@dataclass(frozen=True)
class Outcome:
    instance_id: str
    path: str | None = None  # where the copy is now
    taken: str | None = None  # the path asked for, when another instance's file holds it
    error: str | None = None
    connection: bool = False  # the NAS as a whole failed: the item is left untouched


def same(back: bytes, digest: str, size: int | None = None) -> bool:
    return (size is None or len(back) == size) and hashlib.sha256(back).hexdigest() == digest


class Copier:
    """Runs jobs against one storage; reconnects once when a kept session turns out dead."""

    def __init__(self, storage: Storage, *, connected: bool = False) -> None:
        self.storage = storage
        self.connected = connected

    def run(self, job: Job) -> Outcome:
        for attempt in range(2):
            fresh = not self.connected
            try:
                if not self.connected:
                    self.storage.connect()
                    self.connected = True
                return self._run(job)
            except ConnectionFailed as exc:
                self.connected = False
                if fresh or attempt:  # a new session failing: the NAS is down
                    return Outcome(job.instance_id, error=str(exc), connection=True)
            except (StorageError, OSError, ValueError) as exc:
                return Outcome(job.instance_id, error=f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, job: Job) -> Outcome:
        storage = self.storage
        if job.delete:
            storage.delete(job.path)
            return Outcome(job.instance_id, job.path)
        path, data = job.path, job.data
        existing = storage.stat(path) if job.check_existing else None
        if existing and existing.size == len(data) and same(storage.read(path), job.digest):
            return Outcome(job.instance_id, path)
        folder, _, name = path.rpartition("/")
        temporary = f"{folder}/.{name}.part" if folder else f".{name}.part"
        try:
            if not job.readback:
                storage.write(temporary, data)
            elif not same(storage.write_and_read(temporary, data), job.digest, len(data)):
                raise StorageError("verify", "the copy read back differs from the original")
        except StorageError:
            with contextlib.suppress(StorageError):
                storage.delete(temporary)
            raise
        return self._place(job, temporary)

    def _place(self, job: Job, temporary: str) -> Outcome:
        """Renames the copy into place. Only this instance's own earlier copy is replaced:
        another instance whose name sanitises, or folds on the NAS (case, Unicode
        normalisation), to the same one keeps its file, and this copy takes a name of its
        own (the Orthanc ID appended), so no copy is ever lost."""
        storage, path = self.storage, job.path
        try:
            storage.replace(temporary, path, overwrite=job.overwrite)
            return Outcome(job.instance_id, path)
        except TargetExists:
            with contextlib.suppress(StorageError):  # unreadable: not known to be ours
                if same(storage.read(path), job.digest):  # ours, an interrupted pass
                    storage.delete(temporary)
                    return Outcome(job.instance_id, path)
        folder, slash, name = path.rpartition("/")
        stem, dot, extension = name.rpartition(".")
        apart = folder + slash + (f"{stem}~{job.instance_id}.{extension}" if dot and stem
                                  else f"{name}~{job.instance_id}")
        storage.replace(temporary, apart)
        return Outcome(job.instance_id, apart, taken=path)


class Pool:
    """Where jobs run: ``submit`` returns a future of the job's Outcome."""

    def submit(self, job: Job) -> concurrent.futures.Future[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InlinePool(Pool):
    """Jobs run at once in this process (unit tests; and the shape of one copier)."""

    def __init__(self, copier: Copier) -> None:
        self.copier = copier

    def submit(self, job: Job) -> concurrent.futures.Future[Outcome]:
        future: concurrent.futures.Future[Outcome] = concurrent.futures.Future()
        future.set_result(self.copier.run(job))
        return future


_COPIER: Copier | None = None


def _start_copier(make: Callable[[], Storage], parent: int) -> None:  # pragma: no cover
    """In each copier process: die with the worker (a kill -9 must not leave copiers
    writing), then open a storage of its own."""
    global _COPIER
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)
    _COPIER = Copier(make())


def _run_job(job: Job) -> Outcome:  # pragma: no cover (in a copier process)
    assert _COPIER is not None
    return _COPIER.run(job)


class ProcessPool(Pool):
    """``size`` copier processes forked from the worker (which has no threads of its own
    and has not started libsmbclient yet when it forks them)."""

    def __init__(self, make: Callable[[], Storage], size: int) -> None:
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=size, mp_context=multiprocessing.get_context("fork"),
            initializer=_start_copier, initargs=(make, os.getpid()))
        self._make = make
        self._size = size

    def submit(self, job: Job) -> concurrent.futures.Future[Outcome]:
        try:
            return self._executor.submit(_run_job, job)
        except concurrent.futures.process.BrokenProcessPool:
            self.restart()
            return self._executor.submit(_run_job, job)

    def restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self._size, mp_context=multiprocessing.get_context("fork"),
            initializer=_start_copier, initargs=(self._make, os.getpid()))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def outcome_of(future: concurrent.futures.Future[Outcome], job: Job) -> Outcome:
    """The job's outcome; a copier that died (a crash, the kernel's OOM killer) is a failed
    attempt of its item."""
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool:
        return Outcome(job.instance_id, error="the copier process died")
    except Exception as exc:
        return Outcome(job.instance_id, error=f"{type(exc).__name__}: {exc}")


def fold_key(path: str) -> str:
    """How a NAS may fold a name (case, Unicode normalisation): two copies with the same key
    are never in flight at once (the no-replace rename is check-then-rename on some engines)."""
    return unicodedata.normalize("NFKC", path).casefold()

