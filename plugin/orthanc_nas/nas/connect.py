"""The storage the NAS settings name: a local folder, or an SMB share.

Here, not in the mirror worker, so that the admin's probe (``nas/cli.py``) builds the same
storage without importing the worker (and pydicom with it).
"""

from __future__ import annotations

from typing import Any

from .storage import LocalStorage, Storage


def configured(nas: dict[str, Any]) -> bool:
    """Whether the settings name a place: an SMB host and share, or a folder (an empty local
    path would be the folder Orthanc runs in, never meant)."""
    return bool(nas["host"] and nas["share"] if nas["type"] == "smb" else nas["path"])


def make_storage(nas: dict[str, Any]) -> Storage:
    if nas["type"] == "local":
        return LocalStorage(nas["path"], nas.get("local_roots") or [])
    settings: dict[str, Any] = {
        "host": nas["host"], "port": nas["port"], "share": nas["share"],
        "username": nas["username"], "password": nas["password"], "path": nas["path"],
        "encrypt": nas["encrypt"], "require_signing": nas["require_signing"],
        "timeout": nas["timeout_seconds"]}
    if nas.get("engine", "libsmbclient") == "libsmbclient":
        from .smbc import SmbcStorage  # SMB clients only where SMB is used

        return SmbcStorage(**settings)
    from .smb import SmbStorage

    return SmbStorage(**settings)


def target_of(nas: dict[str, Any]) -> str:
    """Which NAS copies go to: another host, share or folder holds none of the earlier ones."""
    if nas["type"] == "local":
        return f"local:{nas['path']}"
    return f"smb://{nas['host']}:{nas['port']}/{nas['share']}/{nas['path'].strip('/')}"
