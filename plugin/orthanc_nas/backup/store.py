"""The backups' folder on the NAS: names, listing with size and age, retention."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from ..nas.storage import Storage, StorageError

FOLDER = "_orthanc-nas/backups"
KEY_COPY = f"{FOLDER}/backup-key.json"  # the sealed key, for reference (each backup has it too)
SUFFIX = ".onasbk"
_NAME = re.compile(r"orthanc-nas-(\d{8}T\d{6}Z)\.onasbk")


def name_for(now: float) -> str:
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"orthanc-nas-{stamp}{SUFFIX}"


def created_of(name: str) -> float | None:
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    stamp = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return stamp.timestamp()


@dataclass(frozen=True)
class BackupFile:
    name: str
    created: float
    size: int

    def public(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "size": self.size,
                "age_seconds": max(0.0, now - self.created)}


def listing(storage: Storage) -> list[BackupFile]:
    """The backups on the NAS, newest first (temporary and foreign files ignored)."""
    if storage.stat(FOLDER) is None:
        return []
    out = []
    for entry in storage.list(FOLDER):
        created = created_of(entry.name)
        if created is not None and not entry.is_dir:
            out.append(BackupFile(entry.name, created, entry.size))
    return sorted(out, key=lambda b: b.created, reverse=True)


def to_delete(backups: list[BackupFile], keep_daily: int, keep_weekly: int) -> list[BackupFile]:
    """Retention: the newest backup of each of the ``keep_daily`` most recent days that have
    one, and of each of the ``keep_weekly`` most recent ISO weeks, are kept (UTC); the newest
    backup is always kept. Everything else goes."""
    newest = sorted(backups, key=lambda b: b.created, reverse=True)
    keep: set[str] = set()
    days: list[str] = []
    weeks: list[tuple[int, int]] = []
    for backup in newest:
        when = dt.datetime.fromtimestamp(backup.created, dt.UTC)
        day, week = when.strftime("%Y-%m-%d"), when.isocalendar()[:2]
        if day not in days:
            days.append(day)
            if len(days) <= keep_daily:
                keep.add(backup.name)
        if week not in weeks:
            weeks.append(week)
            if len(weeks) <= keep_weekly:
                keep.add(backup.name)
    if newest:
        keep.add(newest[0].name)
    return [b for b in newest if b.name not in keep]


def write_verified(storage: Storage, name: str, blob: bytes) -> None:
    """Temporary name, read back and compared, then renamed into place."""
    path, temporary = f"{FOLDER}/{name}", f"{FOLDER}/.{name}.part"
    back = storage.write_and_read(temporary, blob)
    if back != blob:
        storage.delete(temporary)
        raise StorageError("verify", "the backup read back from the NAS differs")
    storage.replace(temporary, path)


def save_key_copy(storage: Storage, bundle: dict[str, Any]) -> None:
    data = json.dumps(bundle, indent=2, sort_keys=True).encode()
    storage.write(KEY_COPY + ".part", data)
    storage.replace(KEY_COPY + ".part", KEY_COPY)
