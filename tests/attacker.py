"""Someone with write access to the plugin's database file, for tamper-evidence tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def attacker(db_path: Path, *statements: str) -> None:
    """Drops the triggers that refuse UPDATE and DELETE on the trail, then runs
    ``statements``."""
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
