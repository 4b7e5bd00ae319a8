"""One backup: snapshot, encrypt to the backup key, write to the NAS (verified), apply
retention, audit, and record the outcome for the health check.

Runs in a child process (``python -m orthanc_nas.backup child``), never in Orthanc's: the
Python plugin 4.0 holds the GIL during SDK calls, so compressing, encrypting and SMB I/O in
Orthanc's process would stall every request.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..audit import FAILURE, Audit
from ..clock import Clock
from ..db import SqliteDatabase
from ..keys import KeyRing, load_or_create_key
from ..nas.storage import Storage, StorageError
from . import crypto, snapshot, store

STATUS_FILE = "backup-status.json"  # in the data directory: the last attempt, for health


@dataclass(frozen=True)
class Job:
    db_path: Path
    key_path: Path
    bundle: dict[str, Any]
    keep_daily: int
    keep_weekly: int
    actor: str
    trigger: str  # "schedule", "api" or "cli"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(Path(data["db"]), Path(data["key"]), data["bundle"], int(data["keep_daily"]),
                   int(data["keep_weekly"]), str(data["actor"]), str(data["trigger"]))


def read_status(data_dir: Path) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((data_dir / STATUS_FILE).read_text())
        return status
    except (OSError, ValueError):
        return {}


def _write_status(data_dir: Path, status: dict[str, Any]) -> None:
    tmp = data_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(status, sort_keys=True))
    tmp.replace(data_dir / STATUS_FILE)


def run(job: Job, storage: Storage, clock: Clock) -> dict[str, Any]:
    """Makes one backup; returns what happened (``ok`` false with ``error`` on failure). The
    outcome is audited and written to the status file either way."""
    started, t0 = clock.now(), time.monotonic()
    audit = Audit(SqliteDatabase(job.db_path), clock,
                  KeyRing(load_or_create_key(job.key_path)).key("audit-chain"))
    name = store.name_for(started)
    try:
        bundle = crypto.KeyBundle.from_json(job.bundle)
        # Recorded before the snapshot, so a restored trail says which backup it came from.
        audit.record("backup_started", actor=job.actor, ip="", target=name,
                     trigger=job.trigger, key_fingerprint=bundle.fingerprint())
        image = snapshot.database_copy(job.db_path)
        tallies = snapshot.counts(image)
        manifest = {"created": started, "plugin_version": __version__,
                    "host": socket.gethostname(), "counts": tallies,
                    "key_fingerprint": bundle.fingerprint(), "head": audit.head()}
        payload = snapshot.pack(image, job.key_path.read_bytes(), manifest)
        blob = crypto.seal(bundle, payload, {"created": started, "name": name,
                                             "plugin_version": __version__})
        storage.connect()
        storage.write(f"{store.FOLDER}/.keep", b"")
        store.write_verified(storage, name, blob)
        store.save_key_copy(storage, job.bundle)
        deleted = []
        for old in store.to_delete(store.listing(storage), job.keep_daily, job.keep_weekly):
            storage.delete(f"{store.FOLDER}/{old.name}")
            deleted.append(old.name)
    except (StorageError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        audit.record("backup_failed", actor=job.actor, ip="", outcome=FAILURE, target=name,
                     trigger=job.trigger, error=error)
        status = {**read_status(job.db_path.parent), "last_attempt": started, "last_ok": False,
                  "last_error": error}
        _write_status(job.db_path.parent, status)
        return {"ok": False, "name": name, "error": error}
    seconds = round(time.monotonic() - t0, 3)
    audit.record("backup_created", actor=job.actor, ip="", target=name, trigger=job.trigger,
                 size=len(blob), seconds=seconds, deleted=deleted,
                 key_fingerprint=bundle.fingerprint())
    result = {"ok": True, "name": name, "size": len(blob), "seconds": seconds,
              "deleted": deleted, "counts": tallies}
    _write_status(job.db_path.parent, {"last_attempt": started, "last_ok": True,
                                       "last_error": None, "last_success": started,
                                       "last_name": name, "last_size": len(blob),
                                       "last_seconds": seconds})
    return result
