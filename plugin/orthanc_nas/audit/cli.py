"""Checks the audit chain from the command line: ``scripts/audit-verify [DATA_DIR]``.

Exit status 0 when the whole chain verifies (and still holds the last exported head), 1 when
it breaks, naming the first bad row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..clock import SystemClock
from ..db import SqliteDatabase
from ..keys import KEY_FILE, KeyRing, load_or_create_key
from .trail import HEAD_FILE, Audit, read_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path, help="the ORTHANC_NAS_DATA_DIR")
    parser.add_argument("--head", type=Path, help="an exported head (JSON) to check against, "
                        "e.g. the copy on the NAS; default: <data_dir>/audit-head.json")
    args = parser.parse_args(argv)
    key_path = args.data_dir / KEY_FILE
    db_path = args.data_dir / "orthanc-nas.sqlite"
    if not key_path.exists() or not db_path.exists():
        print(f"no plugin database or key file in {args.data_dir}", file=sys.stderr)
        return 2
    audit = Audit(SqliteDatabase(db_path), SystemClock(),
                  KeyRing(load_or_create_key(key_path)).key("audit-chain"))
    result = audit.check_head(audit.verify(), read_head(args.head or args.data_dir / HEAD_FILE))
    print(json.dumps(result.public(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
