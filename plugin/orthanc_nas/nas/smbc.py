"""SMB storage through libsmbclient (Samba's own client library, the one ``smbclient`` uses),
via pysmbc: the default engine, about 4x smbprotocol's speed from Python (issue 14).

libsmbclient takes its protocol, signing and encryption settings from smb.conf, read once per
process when the first context starts: ``configure_process`` writes a private smb.conf and
points ``$HOME`` at it before that. The mirror worker restarts when they change.

pysmbc holds the GIL in every call: copies run in parallel in processes, not threads.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mode
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import smbc

from .storage import (
    ConnectionFailed,
    Entry,
    LogonFailed,
    Space,
    StorageError,
    TargetExists,
    clean_relative,
)

CLOSE_TIMEOUT = 2.0
_configured: tuple[bool, bool] | None = None
_lock = threading.Lock()
# errno values that say the NAS as a whole is unusable (down, refused, logon, share).
_CONNECTION_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                      errno.ENETUNREACH, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED}


def smb_conf(*, encrypt: bool, require_signing: bool) -> str:
    """The client part of smb.conf the session is held to: SMB 2 or later only; signing and
    encryption required when asked (libsmbclient then refuses a session without them)."""
    return ("[global]\n"
            "client min protocol = SMB2_02\n"
            "client max protocol = SMB3\n"
            f"client signing = {'required' if require_signing else 'if_required'}\n"
            f"client ipc signing = {'required' if require_signing else 'if_required'}\n"
            f"client smb encrypt = {'required' if encrypt else 'if_required'}\n"
            "client use spnego = yes\n"
            "client ntlmv2 auth = yes\n")


def configure_process(*, encrypt: bool, require_signing: bool) -> None:
    """Writes the private smb.conf and points libsmbclient at it, once per process; a second
    call with other settings raises (the caller restarts the process instead)."""
    global _configured
    wanted = (encrypt, require_signing)
    with _lock:
        if _configured is not None:
            if _configured != wanted:
                raise StorageError("connect", "signing or encryption settings changed: the "
                                   "process must restart to apply them")
            return
        home = Path(tempfile.mkdtemp(prefix="orthanc-nas-smbc-"))
        (home / ".smb").mkdir(mode=0o700)
        (home / ".smb" / "smb.conf").write_text(smb_conf(encrypt=encrypt,
                                                        require_signing=require_signing))
        os.environ["HOME"] = str(home)
        _configured = wanted


class SmbcStorage:
    """The Storage protocol over one libsmbclient context (one SMB session)."""

    def __init__(self, *, host: str, port: int, share: str, username: str, password: str,
                 path: str = "", encrypt: bool = False, require_signing: bool = True,
                 timeout: int = 30) -> None:
        root = str(clean_relative(path)) if path.strip("/\\") else ""
        netloc = f"[{host}]" if ":" in host else host
        self._base = f"smb://{netloc}:{port}/{urllib.parse.quote(share)}"
        self._root = root
        self._credentials = (username, password)
        self._encrypt = encrypt
        self._require_signing = require_signing
        self._timeout_ms = timeout * 1000
        self._ctx: Any = None
        self._settings: dict[str, Any] = {
            "host": host, "port": port, "share": share, "username": username,
            "password": password, "path": path, "encrypt": encrypt,
            "require_signing": require_signing, "timeout": timeout}
        self._space_engine: Any = None
        self._known_dirs: set[str] = set()

    def _url(self, path: str) -> str:
        rel = str(clean_relative(path)) if path.strip("/\\") else ""
        parts = [p for p in (self._root, rel) if p]
        return "/".join([self._base, *(urllib.parse.quote(p) for p in parts)])

    def _auth(self, _server: str, _share: str, workgroup: str, _user: str, _password: str
              ) -> tuple[str, str, str]:
        return (workgroup or "WORKGROUP", *self._credentials)

    def _context(self) -> Any:
        if self._ctx is None:
            configure_process(encrypt=self._encrypt, require_signing=self._require_signing)
            ctx = smbc.Context(auth_fn=self._auth)
            ctx.optionNoAutoAnonymousLogin = True  # never fall back to a guest session
            ctx.timeout = self._timeout_ms
            self._ctx = ctx
        return self._ctx

    def _call(self, step: str, name: str, *args: Any) -> Any:
        try:
            return getattr(self._context(), name)(*args)
        except smbc.ConnectionRefusedError as exc:
            self._reset()
            raise ConnectionFailed(step, "connection refused (NAS down or wrong port)") from exc
        except smbc.TimedOutError as exc:
            self._reset()
            raise ConnectionFailed(step, "timed out") from exc
        except smbc.PermissionError as exc:
            raise StorageError(step, "access denied (read-only share or missing rights)"
                               ) from exc
        except smbc.NoSpaceError as exc:
            raise StorageError(step, "no space left on the share") from exc
        except smbc.ExistsError as exc:
            raise StorageError(step, "exists") from exc
        except (smbc.SmbError, ValueError, MemoryError, OSError) as exc:
            raise self._classify(step, exc) from exc
        except RuntimeError as exc:  # pysmbc's own errno failures: (103, 'Software caused
            raise self._classify(step, exc) from exc  # connection abort') after an outage

    def _classify(self, step: str, exc: BaseException) -> StorageError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _CONNECTION_ERRNOS:
            self._reset()
            return ConnectionFailed(step, f"connection lost ({os.strerror(code or 0)})")
        return StorageError(step, f"{type(exc).__name__}: {str(exc)[:300]}")

    def _reset(self) -> None:
        self._ctx = None  # libsmbclient frees the context and its connections
        self._known_dirs.clear()

    def connect(self) -> None:
        try:
            self._context().stat(self._base)
        except smbc.PermissionError as exc:  # libsmbclient's logon failure is EACCES/EPERM
            self._reset()
            raise LogonFailed("connect", "logon failure (wrong user name or password) "
                              "or access denied") from exc
        except smbc.NoEntryError as exc:
            self._reset()
            raise ConnectionFailed("connect", "no such share") from exc
        except (smbc.SmbError, ValueError, OSError, RuntimeError) as exc:
            self._reset()
            text = ("connection refused (NAS down or wrong port)"
                    if isinstance(exc, smbc.ConnectionRefusedError)
                    else f"{type(exc).__name__}: {str(exc)[:300]}")
            raise ConnectionFailed("connect", text) from exc
        if self._root:
            self._makedirs("")

    def _makedirs(self, folder: str) -> None:
        """Creates ``folder`` (relative to the root) and its parents, remembered per session."""
        parts = [p for p in (self._root, folder) if p]
        full = "/".join(parts)
        if not full or full in self._known_dirs:
            return
        so_far: list[str] = []
        for part in full.split("/"):
            so_far.append(part)
            here = "/".join(so_far)
            if here in self._known_dirs:
                continue
            url = "/".join([self._base, *(urllib.parse.quote(p) for p in so_far)])
            try:
                self._call("create folder", "mkdir", url, 0o755)
            except StorageError as exc:
                if not isinstance(exc.__cause__, smbc.ExistsError):
                    raise
            self._known_dirs.add(here)

    def _make_parent(self, path: str) -> None:
        folder = str(clean_relative(path).parent)
        self._makedirs("" if folder == "." else folder)

    def write(self, path: str, data: bytes) -> None:
        """Creates or truncates, writes, asks the server the file's size before closing
        (libsmbclient has no flush call: every write is acknowledged by the server)."""
        self._make_parent(path)
        handle = self._call("write", "open", self._url(path),
                            os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            done = 0
            while done < len(data):
                wrote = self._io("write", handle.write, view[done:])
                if wrote <= 0:
                    raise StorageError("write", "the server accepted no bytes")
                done += wrote
            size = self._io("size", handle.fstat)[6]
        finally:
            self._io("close", handle.close)
        if size != len(data):
            raise StorageError("verify", f"the NAS holds {size} bytes, not {len(data)}")

    def _io(self, step: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except smbc.NoSpaceError as exc:
            raise StorageError(step, "no space left on the share") from exc
        except smbc.PermissionError as exc:
            raise StorageError(step, "access denied (read-only share or missing rights)"
                               ) from exc
        except (smbc.SmbError, ValueError, OSError, RuntimeError) as exc:
            raise self._classify(step, exc) from exc

    def write_and_read(self, path: str, data: bytes) -> bytes:
        self.write(path, data)
        return self.read(path)

    def read(self, path: str) -> bytes:
        handle = self._call("read", "open", self._url(path), os.O_RDONLY, 0)
        try:
            chunks = []
            while True:
                chunk = self._io("read", handle.read, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self._io("close", handle.close)
        return b"".join(chunks)

    def replace(self, source: str, target: str, *, overwrite: bool = True) -> None:
        """libsmbclient's rename replaces a target it finds (unlink, rename again): where it
        must not, the target is looked for first (case and normalisation as the NAS folds
        them); the worker never has two copies for one folded name in flight."""
        if not overwrite and self.stat(target) is not None:
            raise TargetExists("rename", f"{target} exists")
        self._call("rename", "rename", self._url(source), self._url(target))

    def delete(self, path: str) -> None:
        try:
            self._call("delete", "unlink", self._url(path))
        except StorageError as exc:
            if not isinstance(exc.__cause__, smbc.NoEntryError):
                raise

    def stat(self, path: str) -> Entry | None:
        try:
            st = self._call("stat", "stat", self._url(path))
        except StorageError as exc:
            if isinstance(exc.__cause__, smbc.NoEntryError):
                return None
            raise
        return Entry(clean_relative(path).name, stat_mode.S_ISDIR(st[0]), int(st[6]),
                     float(st[8]))

    def list(self, path: str) -> list[Entry]:
        url = self._url(path)
        handle = self._call("list", "opendir", url)
        out = []
        for entry in self._io("list", handle.getdents):
            if entry.name in (".", ".."):
                continue
            child = f"{path.rstrip('/')}/{entry.name}" if path.strip("/") else entry.name
            found = self.stat(child)
            if found is not None:
                out.append(found)
        return sorted(out, key=lambda e: e.name)

    def space(self) -> Space:
        """pysmbc has no statvfs: asked through smbprotocol (the worker asks every 30 s)."""
        if self._space_engine is None:
            from .smb import SmbStorage

            self._space_engine = SmbStorage(**self._settings)
        space: Space = self._space_engine.space()
        return space

    def close(self) -> None:
        self._reset()
        if self._space_engine is not None:
            # smbprotocol's goodbye waits for answers without a time limit: a NAS that went
            # quiet must not hold the worker (its threads are daemons; exit closes the socket).
            closing = threading.Thread(target=self._space_engine.close, daemon=True)
            closing.start()
            closing.join(CLOSE_TIMEOUT)
            self._space_engine = None
