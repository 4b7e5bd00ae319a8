"""One small file-storage interface for the NAS, with a local-folder implementation.

Paths are relative, ``/``-separated, and always resolved inside the configured root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISDIR
from typing import Protocol


class StorageError(OSError):
    """A storage operation failed; ``step`` names what was being done."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


class ConnectionFailed(StorageError):
    """The NAS cannot be reached or refuses us (down, wrong password, missing share)."""


class LogonFailed(ConnectionFailed):
    """The NAS refuses our credentials: retried slowly (NAS block lists count failures)."""


class OutsideRoot(StorageError):
    """A path tried to leave the share root."""


class TargetExists(StorageError):
    """A rename that must not replace anything found its target taken."""


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float


@dataclass(frozen=True)
class Space:
    total: int
    free: int


class Storage(Protocol):
    """What the mirror needs from a NAS."""

    def connect(self) -> None:
        """Opens (or checks) the connection; raises ConnectionFailed."""

    def write(self, path: str, data: bytes) -> None:
        """Creates or truncates ``path`` (parents included), writes and flushes ``data``, then
        confirms the size the storage holds (StorageError ``verify`` if it differs)."""

    def write_and_read(self, path: str, data: bytes) -> bytes:
        """``write``, then returns what the storage holds at ``path`` (for verification)."""

    def read(self, path: str) -> bytes: ...

    def replace(self, source: str, target: str, *, overwrite: bool = True) -> None:
        """Renames ``source`` to ``target``, replacing it if present when ``overwrite``, else
        raising TargetExists (the NAS decides what "present" means: case, normalisation)."""

    def delete(self, path: str) -> None: ...

    def stat(self, path: str) -> Entry | None: ...

    def list(self, path: str) -> list[Entry]: ...

    def space(self) -> Space: ...

    def close(self) -> None: ...


def clean_relative(path: str) -> PurePosixPath:
    """``path`` as a relative path without ``..``; raises OutsideRoot otherwise."""
    rel = PurePosixPath("/" + path.replace("\\", "/").strip("/")).relative_to("/")
    if any(part in ("..", ".") for part in rel.parts) or "\x00" in path:
        raise OutsideRoot("path", f"{path!r} leaves the share root")
    return rel


def within(path: str, roots: Sequence[str]) -> bool:
    """Whether the absolute folder ``path``, symlinks resolved, is one of ``roots`` (symlinks
    resolved too) or inside one: the only folders a local NAS may write to (issue 11)."""
    if not path or not os.path.isabs(path) or "\x00" in path:
        return False
    real = os.path.realpath(path)
    for root in roots:
        if root and os.path.isabs(root) and "\x00" not in root:
            real_root = os.path.realpath(root)
            if os.path.commonpath([real_root, real]) == real_root:
                return True
    return False


class LocalStorage:
    """A folder (a mounted share) inside one of the roots orthanc.json allows; checked at
    every operation, so a symlink swapped in after the settings were saved is caught too."""

    def __init__(self, root: str, allowed_roots: Sequence[str]) -> None:
        self.root = Path(root)
        self._raw_root = root
        self._allowed = tuple(allowed_roots)

    def _real_root(self) -> str:
        if not self._raw_root:
            raise ConnectionFailed("connect", "no local folder is configured")
        if not within(self._raw_root, self._allowed):
            raise ConnectionFailed("connect", f"folder {self._raw_root} is not inside a folder "
                                   "listed in nas.local_roots of orthanc.json")
        return os.path.realpath(self.root)

    def _abs(self, path: str) -> Path:
        real_root = self._real_root()
        full = self.root / clean_relative(path)
        if os.path.commonpath([real_root, os.path.realpath(full)]) != real_root:
            raise OutsideRoot("path", f"{path!r} resolves outside the root")
        return full

    def connect(self) -> None:
        self._real_root()
        if not self.root.is_dir():
            raise ConnectionFailed("connect", f"folder {self.root} does not exist")

    def write(self, path: str, data: bytes) -> None:
        full = self._abs(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link planted at the name (the root check saw the link's target).
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        if size != len(data):
            raise StorageError("verify", f"the folder holds {size} bytes, not {len(data)}")

    def write_and_read(self, path: str, data: bytes) -> bytes:
        self.write(path, data)
        return self.read(path)

    def read(self, path: str) -> bytes:
        return self._abs(path).read_bytes()

    def replace(self, source: str, target: str, *, overwrite: bool = True) -> None:
        full = self._abs(target)
        if not overwrite and os.path.lexists(full):  # the worker is the only writer
            raise TargetExists("rename", f"{target} exists")
        os.replace(self._abs(source), full)

    def delete(self, path: str) -> None:
        self._abs(path).unlink(missing_ok=True)

    def stat(self, path: str) -> Entry | None:
        full = self._abs(path)
        try:
            st = full.stat()
        except FileNotFoundError:
            return None
        return Entry(full.name, full.is_dir(), st.st_size, st.st_mtime)

    def list(self, path: str) -> list[Entry]:
        full = self._abs(path)
        out = []
        for child in sorted(full.iterdir()):
            st = child.lstat()  # a link is listed as itself: nothing of where it points
            out.append(Entry(child.name, S_ISDIR(st.st_mode), st.st_size, st.st_mtime))
        return out

    def space(self) -> Space:
        self._real_root()
        usage = shutil.disk_usage(self.root)
        return Space(usage.total, usage.free)

    def close(self) -> None:
        pass
