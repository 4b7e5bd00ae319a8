"""Backups and restore from the command line: ``python -m orthanc_nas.backup COMMAND``.

  create          make a backup now (on the server; Orthanc may run)
  list            the backups on the NAS, with size and age
  set-passphrase  choose the backup passphrase (a new backup key)
  restore-state   put a backup's plugin state in the data directory (Orthanc stopped)
  import          import every instance on the NAS into the running Orthanc (resumable)
  verify          the drill: open a backup, check its audit chain and that the NAS holds
                  what its catalog says; touches nothing
``scripts/restore`` runs restore-state, starts Orthanc, runs import and stops it again.

The NAS settings come from orthanc.json (``--config``, ``${VAR}`` substituted as Orthanc does),
overridden by what admins saved in the plugin database, and by ``--nas FILE.json``. The
passphrase is read from ORTHANC_NAS_BACKUP_PASSPHRASE, else asked on the terminal.
Exit status: 0 done, 1 done with problems (damaged or missing instances, chain broken),
2 refused (wrong passphrase, nothing to restore, bad arguments), 3 the backup is damaged or
was altered.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from .. import config
from ..clock import SystemClock
from ..db import SqliteDatabase
from ..keys import KEY_FILE, KeyRing
from ..nas.connect import make_storage
from ..nas.storage import StorageError
from . import crypto, restore, runner, snapshot, store
from .service import KEY_SETTING

PASSPHRASE_ENV = "ORTHANC_NAS_BACKUP_PASSPHRASE"  # noqa: S105 (a variable's name)


# ---- the child process the plugin runs -------------------------------------------------------


def child(command: str, request: dict[str, Any]) -> dict[str, Any]:
    if command == "new-key":
        try:
            bundle = crypto.new_key(request["passphrase"])
        except ValueError as exc:
            return {"ok": False, "invalid": True, "error": str(exc)}
        return {"ok": True, "bundle": bundle.to_json(), "fingerprint": bundle.fingerprint()}
    storage = make_storage(request["nas"])
    try:
        if command == "run":
            return runner.run(runner.Job.from_json(request["job"]), storage, SystemClock())
        storage.connect()
        now = SystemClock().now()
        return {"ok": True, "backups": [b.public(now) for b in store.listing(storage)]}
    except (StorageError, OSError) as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        storage.close()


# ---- configuration ---------------------------------------------------------------------------


def render(text: str, env: dict[str, str]) -> Any:
    """Orthanc's own substitution of ${VAR} and ${VAR:-default} in the raw text, then JSON."""

    def sub(match: re.Match[str]) -> str:
        name, _, default = match.group(1).partition(":-")
        return env.get(name) or default

    return json.loads(re.sub(r"\$\{([^}]*)\}", sub, text))


class Setup:
    """What every command needs: the configuration, the data directory and the NAS."""

    def __init__(self, args: argparse.Namespace) -> None:
        path = Path(args.config or os.environ.get("ORTHANC_NAS_CONFIG") or "orthanc.json")
        try:
            self.orthanc = render(path.read_text(), dict(os.environ))
            self.cfg = config.load(self.orthanc)
        except (OSError, ValueError) as exc:
            raise restore.RestoreError(f"cannot read the configuration {path}: {exc}") from exc
        self.data_dir = Path(args.data_dir or self.cfg.get("data_dir")).resolve()
        self.db_path = self.data_dir / restore.DB_FILE
        extra = json.loads(Path(args.nas).read_text()) if args.nas else {}
        self.nas_extra = extra

    def db(self) -> SqliteDatabase | None:
        return SqliteDatabase(self.db_path) if self.db_path.exists() else None

    def nas(self, use_database: bool = True) -> dict[str, Any]:
        nas = dict(self.cfg.section("nas"))
        db = self.db() if use_database else None
        if db is not None and (self.data_dir / KEY_FILE).exists():
            row = db.one("SELECT value FROM settings WHERE key = 'nas'")
            override = json.loads(row["value"]) if row else {}
            override.pop("local_roots", None)
            blob = override.pop("password_encrypted", None)
            if blob is not None:
                keys = KeyRing((self.data_dir / KEY_FILE).read_bytes())
                override["password"] = keys.decrypt("nas-password", bytes.fromhex(blob),
                                                    b"nas").decode()
            nas.update(override)
        nas.update(self.nas_extra)
        return nas

    def orthanc_url(self) -> str:
        return f"http://127.0.0.1:{self.orthanc.get('HttpPort', 8042)}"


def passphrase(confirm: bool = False) -> str:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise restore.RestoreError(f"no passphrase: set {PASSPHRASE_ENV} or run on a terminal")
    value = getpass.getpass("Backup passphrase: ")
    if confirm and getpass.getpass("Again: ") != value:
        raise restore.RestoreError("the two passphrases differ")
    return value


def _orthanc_answers(url: str) -> bool:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) == 0


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# ---- commands --------------------------------------------------------------------------------


def cmd_create(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    db = setup.db()
    bundle = db.one("SELECT value FROM settings WHERE key = ?", (KEY_SETTING,)) if db else None
    if bundle is None:
        raise restore.RestoreError("no backup passphrase is set: run set-passphrase first")
    backup = setup.cfg.section("backup")
    job = runner.Job(setup.db_path, setup.data_dir / KEY_FILE, json.loads(bundle["value"]),
                     backup["keep_daily"], backup["keep_weekly"], _actor(), "cli")
    return runner.run(job, make_storage(setup.nas()), SystemClock())


def cmd_list(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    return child("list", {"nas": setup.nas()})


def cmd_set_passphrase(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    from ..audit import Audit
    from ..settings import Settings

    db = setup.db()
    if db is None:
        raise restore.RestoreError(f"no plugin database in {setup.data_dir}")
    bundle = crypto.new_key(passphrase(confirm=True))
    clock = SystemClock()
    audit = Audit(db, clock, KeyRing((setup.data_dir / KEY_FILE).read_bytes()).key("audit-chain"))
    with db.transaction() as tx:
        Settings(db, clock).put(tx, KEY_SETTING, bundle.to_json(), _actor())
        audit.record("backup_key_set", actor=_actor(), ip="", tx=tx,
                     fingerprint=bundle.fingerprint(), via="command line")
    return {"ok": True, "fingerprint": bundle.fingerprint(),
            "note": "restart Orthanc so the plugin reads the new key"}


def _open(setup: Setup, args: argparse.Namespace, use_database: bool
          ) -> tuple[Any, str, dict[str, Any], snapshot.Snapshot]:
    storage = make_storage(setup.nas(use_database))
    name, blob = restore.fetch(storage, args.backup)
    meta, snap = restore.open_backup(blob, passphrase())
    return storage, name, meta, snap


def cmd_restore_state(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    if _orthanc_answers(setup.orthanc_url()):
        raise restore.RestoreError(f"Orthanc answers at {setup.orthanc_url()}: stop it first "
                                   "(the plugin's database and key file are replaced)")
    storage, name, meta, snap = _open(setup, args, use_database=False)
    storage.close()
    report = restore.restore_state(setup.data_dir, name, meta, snap, SystemClock(), _actor())
    return {"ok": report["audit_chain"]["ok"], **report}


def cmd_import(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    url = args.orthanc_url or setup.orthanc_url()
    nas = setup.nas()
    importer = restore.Importer(setup.data_dir, lambda: make_storage(nas), url, SystemClock(),
                                workers=args.workers)
    report = importer.run(_actor())
    ok = report["audit_chain"]["ok"] and not report["damaged"] and not report["missing_from_nas"]
    return {"ok": ok, **report}


def cmd_verify(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    storage, name, meta, snap = _open(setup, args, use_database=True)
    try:
        return restore.verify(storage, name, meta, snap, SystemClock(), quick=args.quick)
    finally:
        storage.close()


COMMANDS = {"create": cmd_create, "list": cmd_list, "set-passphrase": cmd_set_passphrase,
            "restore-state": cmd_restore_state, "import": cmd_import, "verify": cmd_verify}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"] and len(argv) == 2:
        print(json.dumps(child(argv[1], json.loads(sys.stdin.read()))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m orthanc_nas.backup",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", help="orthanc.json (default: $ORTHANC_NAS_CONFIG, "
                        "else ./orthanc.json)")
    parser.add_argument("--data-dir", help="the plugin's data directory (default: data_dir "
                        "of the configuration)")
    parser.add_argument("--nas", help="a JSON file of NAS settings overriding the "
                        "configuration's (e.g. the password on a fresh install)")
    parser.add_argument("--backup", help="the backup's name (default: the newest)")
    parser.add_argument("--workers", type=int, default=4, help="instances imported at a time")
    parser.add_argument("--orthanc-url", help="Orthanc's HTTP address for the import "
                        "(default: http://127.0.0.1:HttpPort)")
    parser.add_argument("--quick", action="store_true",
                        help="verify: compare sizes, not SHA-256")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args(argv)
    try:
        result = COMMANDS[args.command](Setup(args), args)
    except crypto.WrongPassphrase as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except crypto.TamperedBackup as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    except (crypto.BackupFormatError, snapshot.SnapshotError) as exc:
        print(f"refused: the backup cannot be read: {exc}", file=sys.stderr)
        return 3
    except (restore.RestoreError, StorageError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=None if args.json else 2, sort_keys=True))
    return 0 if result.get("ok") else 1
