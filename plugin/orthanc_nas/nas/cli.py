"""Short NAS actions for the admin API, run in a child process (off Orthanc's GIL).

``python -m orthanc_nas.nas.cli test|browse [PATH]`` with the NAS settings as JSON on stdin;
prints one JSON object.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict
from typing import Any

from .connect import make_storage
from .storage import OutsideRoot, StorageError


def probe(nas: dict[str, Any]) -> dict[str, Any]:
    """Connect, write, read back, delete a probe file: says which step failed."""
    steps: list[dict[str, Any]] = []
    storage = make_storage(nas)
    name = f".orthanc-nas-probe-{secrets.token_hex(6)}"
    payload = secrets.token_bytes(4096)
    actions = [("connect", storage.connect),
               ("write", lambda: storage.write(name, payload)),
               ("read", lambda: _check(storage.read(name), payload)),
               ("delete", lambda: storage.delete(name)),
               ("free space", lambda: asdict(storage.space()))]
    ok = True
    for step, action in actions:
        try:
            result = action()
            steps.append({"step": step, "ok": True, **({"result": result} if result else {})})
        except (StorageError, OSError, ValueError) as exc:
            steps.append({"step": step, "ok": False, "error": str(exc)})
            ok = False
            break
    storage.close()
    return {"ok": ok, "steps": steps, "failed_step": None if ok else steps[-1]["step"]}


def _check(back: bytes, payload: bytes) -> None:
    if hashlib.sha256(back).digest() != hashlib.sha256(payload).digest():
        raise ValueError("read back different bytes")


def browse(nas: dict[str, Any], path: str) -> dict[str, Any]:
    storage = make_storage(nas)
    try:
        storage.connect()
        entries = [asdict(e) for e in storage.list(path)]
        return {"ok": True, "path": path, "entries": entries}
    except OutsideRoot as exc:
        return {"ok": False, "path": path, "outside": True, "error": str(exc)}
    except (StorageError, OSError) as exc:
        return {"ok": False, "path": path, "error": str(exc)}
    finally:
        storage.close()


def main() -> None:
    # libsmbclient prints its complaints (a bad signature...) on stdout: only the answer goes
    # there, everything else to stderr.
    answer = os.dup(1)
    os.dup2(2, 1)
    nas = json.loads(sys.stdin.read())
    command = sys.argv[1]
    result = probe(nas) if command == "test" else browse(nas, sys.argv[2] if len(sys.argv) > 2
                                                             else "")
    os.write(answer, json.dumps(result).encode() + b"\n")


if __name__ == "__main__":
    main()
