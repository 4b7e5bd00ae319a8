"""Account actions from the command line, on the plugin database file directly:
``python -m orthanc_nas.auth.cli unlock USERNAME [--data-dir DIR]``.

The way back in when the last admin is locked out (the account-wide failure ceiling needs an
admin to lift it). Works whether Orthanc runs or not; audited as done from the command line.
Exit status 0 when unlocked, 2 when the database or the user is not found.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from ..audit import Audit
from ..clock import SystemClock
from ..db import DatabaseError, SqliteDatabase
from ..keys import KEY_FILE, KeyFileError, KeyRing, load_or_create_key
from .lockout import unlock
from .users import Users

DATABASE_FILE = "orthanc-nas.sqlite"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthanc_nas.auth.cli",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    unlock_cmd = commands.add_parser("unlock", help="lift every lockout of an account")
    unlock_cmd.add_argument("username")
    unlock_cmd.add_argument("--data-dir", type=Path,
                            default=Path(os.environ.get("ORTHANC_NAS_DATA_DIR", "data")),
                            help="the ORTHANC_NAS_DATA_DIR (default: $ORTHANC_NAS_DATA_DIR, "
                            "else ./data)")
    args = parser.parse_args(argv)
    key_path, db_path = args.data_dir / KEY_FILE, args.data_dir / DATABASE_FILE
    if not key_path.exists() or not db_path.exists():
        print(f"no plugin database or key file in {args.data_dir}", file=sys.stderr)
        return 2
    try:
        key = KeyRing(load_or_create_key(key_path)).key("audit-chain")
        db = SqliteDatabase(db_path)
    except (KeyFileError, DatabaseError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    user = Users(db).by_name(args.username)
    if user is None:
        print(f"no user {args.username!r}", file=sys.stderr)
        return 2
    audit = Audit(db, SystemClock(), key)
    with db.transaction() as tx:
        unlock(tx, user.id)
        audit.record("user_unlocked", actor=f"cli:{getpass.getuser()}", ip="", tx=tx,
                     target=user.username, via="command line")
    print(f"unlocked {user.username}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
