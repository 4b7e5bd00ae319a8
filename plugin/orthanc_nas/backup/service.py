"""The plugin's side of backups: the backup key, the schedule, on-demand runs, the listing and
the health check. Everything slow (scrypt, the snapshot, encryption, NAS I/O) runs in a child
process (``python -m orthanc_nas.backup child ...``): waiting for it releases the GIL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audit import Audit
from ..clock import Clock
from ..db import Database
from ..nas.connect import configured
from ..settings import Settings
from .runner import read_status

KEY_SETTING = "backup_key"
RUN_TIMEOUT = 6 * 3600
SHORT_TIMEOUT = 120
GRACE = 3600.0  # a backup that did not succeed within this after its slot is overdue


class BackupError(Exception):
    """A backup action cannot be done now; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Schedule:
    enabled: bool
    every_hours: int
    start_time: str  # HH:MM, local time

    def last_slot(self, now: float) -> float:
        """The most recent scheduled time at or before ``now``: ``start_time`` each day and
        every ``every_hours`` after it until the day ends."""
        hour, minute = (int(x) for x in self.start_time.split(":"))
        today = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
        best = None
        for day in (today - dt.timedelta(days=1), today):
            slot = day.replace(hour=hour, minute=minute)
            while slot < day + dt.timedelta(days=1):
                t = slot.timestamp()
                if t <= now and (best is None or t > best):
                    best = t
                slot += dt.timedelta(hours=self.every_hours)
        assert best is not None
        return best


Runner = Callable[[list[str], dict[str, Any], int], dict[str, Any]]


class BackupService:
    def __init__(self, backup_cfg: dict[str, Any], db: Database, settings: Settings,
                 audit: Audit, clock: Clock, data_dir: Path, nas: Callable[[], dict[str, Any]],
                 python: list[str], env: dict[str, str], runner: Runner | None = None) -> None:
        self.schedule = Schedule(backup_cfg["enabled"], backup_cfg["every_hours"],
                                 backup_cfg["start_time"])
        self._keep = (backup_cfg["keep_daily"], backup_cfg["keep_weekly"])
        self._db = db
        self._settings = settings
        self._audit = audit
        self._clock = clock
        self._data_dir = data_dir
        self._nas = nas
        self._python = python
        self._env = env
        self._run_child = runner or self._subprocess
        self._running = threading.Lock()
        self.db_path: Path | None = None
        self.key_path: Path | None = None

    # ---- child processes ------------------------------------------------------------------

    def _subprocess(self, args: list[str], stdin: dict[str, Any], timeout: int
                    ) -> dict[str, Any]:
        try:
            done = subprocess.run([*self._python, "-m", "orthanc_nas.backup", "child", *args],
                                  input=json.dumps(stdin).encode(), capture_output=True,
                                  timeout=timeout, env=self._env, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"the backup helper did not finish within {timeout}s"}
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            return {"ok": False, "error": f"the backup helper failed: {tail[0][:300]}"}
        return result

    # ---- the key --------------------------------------------------------------------------

    def key(self) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = self._settings.get(KEY_SETTING)
        return bundle

    def set_passphrase(self, passphrase: str, actor: str, ip: str) -> dict[str, Any]:
        """A new key pair sealed with ``passphrase``; only its public half and the sealed
        private half are kept. Backups made before keep needing the passphrase they had."""
        result = self._run_child(["new-key"], {"passphrase": passphrase}, SHORT_TIMEOUT)
        if not result.get("ok"):
            raise BackupError(400 if result.get("invalid") else 500,
                              result.get("error", "could not make the backup key"))
        bundle, replaced = result["bundle"], self.key() is not None
        with self._db.transaction() as tx:
            self._settings.put(tx, KEY_SETTING, bundle, actor)
            self._audit.record("backup_key_set", actor=actor, ip=ip, tx=tx,
                               fingerprint=result["fingerprint"], replaced=replaced)
        return self.status()

    # ---- runs -----------------------------------------------------------------------------

    def _ready(self) -> dict[str, Any]:
        bundle = self.key()
        if bundle is None:
            raise BackupError(409, "set a backup passphrase first")
        self._configured_nas()
        if self.db_path is None or self.key_path is None:
            raise BackupError(503, "backups need the SQLite database")
        return bundle

    def run(self, actor: str, trigger: str) -> dict[str, Any]:
        """One backup now, in a child process; 409 while another one runs."""
        bundle = self._ready()
        if not self._running.acquire(blocking=False):
            raise BackupError(409, "a backup is already running")
        try:
            job = {"db": str(self.db_path), "key": str(self.key_path), "bundle": bundle,
                   "keep_daily": self._keep[0], "keep_weekly": self._keep[1], "actor": actor,
                   "trigger": trigger}
            return self._run_child(["run"], {"job": job, "nas": self._nas()}, RUN_TIMEOUT)
        finally:
            self._running.release()

    def _configured_nas(self) -> dict[str, Any]:
        nas = self._nas()
        if not configured(nas):
            raise BackupError(409, "the NAS is not configured: backups are written to it")
        return nas

    def listing(self) -> dict[str, Any]:
        nas = self._configured_nas()
        result = self._run_child(["list"], {"nas": nas}, SHORT_TIMEOUT)
        if not result.get("ok"):
            raise BackupError(503, result.get("error", "the NAS did not answer"))
        now = self._clock.now()
        for item in result["backups"]:
            item["age_seconds"] = max(0.0, now - item["created"])
        return result

    # ---- schedule and status ----------------------------------------------------------------

    def due(self) -> bool:
        if not self.schedule.enabled or self.key() is None:
            return False
        last = read_status(self._data_dir).get("last_attempt") or 0.0
        return bool(last < self.schedule.last_slot(self._clock.now()))

    def run_schedule(self, stop: threading.Event, interval: float = 60.0) -> None:
        """The scheduler thread: checks every ``interval`` seconds whether a slot passed."""
        while not stop.wait(interval):
            try:
                if self.due():
                    self.run("system", "schedule")
            except BackupError:
                continue  # not configured (NAS, database): the health check says so

    def status(self) -> dict[str, Any]:
        now = self._clock.now()
        bundle = self.key()
        meta = self._settings.meta(KEY_SETTING)
        last = read_status(self._data_dir)
        overdue = False
        if bundle is not None and self.schedule.enabled and meta is not None:
            slot = self.schedule.last_slot(now - GRACE)
            since = max(last.get("last_success") or 0.0, float(meta["updated_at"]))
            overdue = since < slot
        return {"configured": bundle is not None,
                "key_fingerprint": _fingerprint(bundle) if bundle else None,
                "key_set_at": meta["updated_at"] if meta else None,
                "schedule": {"enabled": self.schedule.enabled,
                             "every_hours": self.schedule.every_hours,
                             "start_time": self.schedule.start_time},
                "retention": {"keep_daily": self._keep[0], "keep_weekly": self._keep[1]},
                "running": self._running.locked(), "overdue": overdue,
                "last": last or None}

    def health(self) -> dict[str, Any]:
        """Failing when the last backup failed or none succeeded since a missed slot; an
        install without a backup passphrase is not failing (nothing was asked of it)."""
        status = self.status()
        last = status["last"] or {}
        failed = last.get("last_ok") is False
        ok = not status["configured"] or not (failed or status["overdue"])
        return {"ok": ok, "configured": status["configured"], "overdue": status["overdue"],
                "last_success": last.get("last_success"), "last_error":
                last.get("last_error") if failed else None}


def _fingerprint(bundle: dict[str, Any]) -> str:
    from .crypto import KeyBundle

    return KeyBundle.from_json(bundle).fingerprint()
