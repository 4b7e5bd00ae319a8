"""The plugin's side of mirroring: settings (orthanc.json + run-time), the on-stored and
on-deleted hooks, status, and the admin actions run in child processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import config
from ..audit import HEAD_FILE, Audit
from ..clock import Clock
from ..db import Database
from ..keys import KeyRing
from ..settings import Settings
from .outbox import Outbox, StoredLookup
from .spooler import Spooler
from .supervisor import Supervisor

SECRET = "password"  # noqa: S105 (the name of the key, not a password)
FIXED = "local_roots"  # set in orthanc.json only: which host folders a local NAS may use
CLI_TIMEOUT = 60


class NasConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class MirrorService:
    def __init__(self, cfg: config.Config, db: Database, settings: Settings, keys: KeyRing,
                 outbox: Outbox, audit: Audit, clock: Clock, python: list[str],
                 env: dict[str, str], on_error: Callable[[str], None],
                 stored: StoredLookup = lambda _id: None) -> None:
        self._cfg = cfg
        self._db = db
        self._settings = settings
        self._keys = keys
        self.outbox = outbox
        self._audit = audit
        self._clock = clock
        self._python = python
        self._env = env
        self.supervisor: Supervisor | None = None
        self._effective: dict[str, Any] | None = None
        self.spooler = Spooler(outbox, self._wake, on_error, stored)

    # ---- settings ---------------------------------------------------------------------------

    def _override(self) -> dict[str, Any]:
        override = dict(config.migrate_nas(self._settings.get("nas") or {}))
        override.pop(FIXED, None)
        blob = override.pop("password_encrypted", None)
        if blob is not None:
            override[SECRET] = self._keys.decrypt("nas-password", bytes.fromhex(blob),
                                                  b"nas").decode()
        return override

    def effective(self) -> dict[str, Any]:
        """The NAS settings in force: orthanc.json, overridden key by key by what admins saved."""
        if self._effective is None:
            self._effective = {**self._cfg.section("nas"), **self._override()}
        return self._effective

    def public(self) -> dict[str, Any]:
        """The settings as shown to admins: never the password, and where each key comes from."""
        nas = self.effective()
        override = self._override()
        shown = {k: v for k, v in nas.items() if k != SECRET}
        shown["password_set"] = bool(nas[SECRET])
        return {"config": shown,
                "sources": {k: "runtime" if k in override else "orthanc.json" for k in nas},
                "updated": self._settings.meta("nas")}

    def update(self, changes: dict[str, Any], actor: str, ip: str) -> dict[str, Any]:
        """Validates and saves run-time settings (``{"reset": true}`` returns to orthanc.json)."""
        self._refuse_fixed(changes)
        changes = config.migrate_nas(changes)  # an old client's boolean verify
        if changes.get("reset") is True:
            override: dict[str, Any] = {}
        else:
            override = {**self._override(), **changes}
        self._validated({**self._cfg.section("nas"), **override}, whole=True)
        self._check_server_change(changes)
        stored = {k: v for k, v in override.items() if k != SECRET}
        if SECRET in override:
            stored["password_encrypted"] = self._keys.encrypt(
                "nas-password", str(override[SECRET]).encode(), b"nas").hex()
        with self._db.transaction() as tx:
            self._settings.put(tx, "nas", stored, actor)
            self._effective = None
            self._audit.record("nas_config_changed", actor=actor, ip=ip, tx=tx,
                               keys=sorted(k for k in changes if k != SECRET),
                               password_changed=SECRET in changes,
                               reset=changes.get("reset") is True)
        if self.supervisor is not None:
            self.supervisor.configure(self.effective())
        return self.public()

    # ---- hooks ------------------------------------------------------------------------------

    def on_stored(self, instance_id: str, data: bytes) -> None:
        if self.effective()["enabled"]:
            self.spooler.submit(instance_id, data)

    def _wake(self) -> None:
        if self.supervisor is not None:
            self.supervisor.wake("stored")  # Orthanc is receiving: the copies may wait

    def on_deleted(self, instance_id: str) -> None:
        if self.effective()["on_delete"] == "propagate":
            self.spooler.flush()  # it may still be on its way to the outbox
            self.outbox.record_deleted(instance_id)
            if self.supervisor is not None:
                self.supervisor.wake()

    def start(self, orthanc_url: str, orthanc_token: str, db_path: str, key_path: str) -> None:
        boot = {"db": db_path, "spool": str(self.outbox.spool_dir), "orthanc_url": orthanc_url,
                "orthanc_token": orthanc_token, "key": key_path, "nas": self.effective(),
                "head_file": str(Path(key_path).parent / HEAD_FILE)}
        self.supervisor = Supervisor([*self._python, "-m", "orthanc_nas.mirror.worker"],
                                     self._env, boot, lambda _m: None)
        self.supervisor.start()

    def stop(self) -> None:
        self.spooler.flush()
        if self.supervisor is not None:
            self.supervisor.stop()

    def backfill(self) -> None:
        if self.supervisor is not None:
            self.supervisor.send("backfill")

    # ---- status and admin actions --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        nas = self.effective()
        row = self._db.one("SELECT * FROM nas_state WHERE id = 1")
        state = dict(row) if row else {}
        counts = self.outbox.counts()  # what the spooler still holds is pending too
        return {"enabled": nas["enabled"], "type": nas["type"],
                "connected": bool(state.get("connected")) if nas["enabled"] else False,
                "last_error": state.get("last_error"),
                "last_error_at": state.get("last_error_at"),
                "total_bytes": state.get("total_bytes"), "free_bytes": state.get("free_bytes"),
                "throughput_bytes_per_second": state.get("throughput_bps") or 0.0,
                "worker_updated_at": state.get("updated_at"),
                **counts, "pending": counts["pending"] + self.spooler.backlog()}

    def run_cli(self, args: list[str], nas: dict[str, Any]) -> dict[str, Any]:
        """Runs an NAS action in a child process (waiting releases the GIL)."""
        try:
            done = subprocess.run([*self._python, "-m", "orthanc_nas.nas.cli", *args],
                                  input=json.dumps(nas).encode(), capture_output=True,
                                  timeout=CLI_TIMEOUT, env=self._env, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"no answer from the NAS within {CLI_TIMEOUT}s"}
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            return {"ok": False, "error": "the NAS helper failed"}
        return result

    def candidate(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Settings to test before saving them: the effective ones with ``changes`` applied
        (each key checked; the cross-key rules only bind what is saved)."""
        self._refuse_fixed(changes)
        nas = self._validated({**self.effective(), **config.migrate_nas(changes)}, whole=False)
        self._check_server_change(changes)
        return nas

    @staticmethod
    def _refuse_fixed(changes: dict[str, Any]) -> None:
        if FIXED in changes:
            raise NasConfigError(FIXED, "nas.local_roots is set in orthanc.json only: the "
                                 "folders a local NAS may use cannot be changed at run time")

    def _check_server_change(self, changes: dict[str, Any]) -> None:
        """The stored password goes only to the server it was given for: pointing the mirror
        at another host or port needs it typed again (else an admin session could send the
        NAS credentials to any server)."""
        current = self.effective()
        moved = any(key in changes and changes[key] != current[key] for key in ("host", "port"))
        if moved and current[SECRET] and SECRET not in changes:
            raise NasConfigError(SECRET, "enter the password again to use another host or port")

    @staticmethod
    def _validated(raw: dict[str, Any], *, whole: bool) -> dict[str, Any]:
        schema = config.SCHEMA["nas"]
        assert not isinstance(schema, config.Field)
        where = f"{config.SECTION}.nas"
        try:
            merged = config.validate_section(schema, raw, where)
            if whole:
                config.check_nas(merged, where)
            else:  # a test writes a probe file: the folder rule binds it too
                config.check_local_path(merged, where)
        except config.ConfigError as exc:
            raise NasConfigError(exc.key.rsplit(".", 1)[-1], str(exc)) from exc
        return merged
