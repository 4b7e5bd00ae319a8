"""What a backup holds: a consistent copy of the plugin database (SQLite's online backup API,
taken while the plugin runs), the key file (so TOTP secrets, the NAS password and the audit
chain's key work again) and a manifest, packed as a gzip'd tar in memory."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_MEMBER = "orthanc-nas.sqlite"
KEY_MEMBER = "orthanc-nas.key"
MANIFEST = "manifest.json"


class SnapshotError(ValueError):
    """A backup's content is not what a snapshot holds."""


def database_copy(db_path: Path) -> bytes:
    """A consistent image of the live database: the online backup copies pages under a read
    transaction, so concurrent writers (the plugin, the mirror worker) neither block it for
    long nor leave it half-written."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(":memory:")
    try:
        src.backup(dst, pages=4096)
        image = bytearray(dst.serialize())
    finally:
        dst.close()
        src.close()
    # The copy keeps the live file's WAL marks (header bytes 18-19): a database image read
    # from memory or written as a lone file must say "rollback journal" (1) to open.
    image[18:20] = b"\x01\x01"
    return bytes(image)


def counts(image: bytes) -> dict[str, int]:
    """Rows in the tables a restore report speaks of."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(image)
        out = {}
        for table, where in (("users", ""), ("audit", ""), ("shares", " WHERE revoked_at IS NULL"),
                             ("instance_owners", ""), ("study_tags", ""),
                             ("mirror_queue", " WHERE state = 'done' AND op = 'put'")):
            out[table] = int(conn.execute(f"SELECT COUNT(*) FROM {table}{where}"  # noqa: S608
                                          ).fetchone()[0])
        return out
    finally:
        conn.close()


def pack(image: bytes, key: bytes, manifest: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        for name, data in ((MANIFEST, json.dumps(manifest, sort_keys=True).encode()),
                           (DB_MEMBER, image), (KEY_MEMBER, key)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class Snapshot:
    manifest: dict[str, Any]
    database: bytes
    key: bytes


def unpack(payload: bytes) -> Snapshot:
    """Reads the three members by name (never extracting paths from the archive)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            for name in (MANIFEST, DB_MEMBER, KEY_MEMBER):
                f = tar.extractfile(name)
                if f is None:
                    raise SnapshotError(f"{name} is not a file")
                members[name] = f.read()
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise SnapshotError(f"not a plugin snapshot: {exc}") from exc
    return Snapshot(json.loads(members[MANIFEST]), members[DB_MEMBER], members[KEY_MEMBER])
