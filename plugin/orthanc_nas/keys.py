"""The plugin's secret key file and what is derived from it (AES-GCM, HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
KEY_FILE = "orthanc-nas.key"  # in the data directory


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable, malformed or readable by others."""


class DecryptionError(ValueError):
    """A ciphertext does not authenticate (wrong key, wrong associated data, tampering)."""


def load_or_create_key(path: Path) -> bytes:
    """Reads the key file, creating it (mode 0600) with fresh random bytes on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"key file {path} must not be readable by others (mode {mode:o})")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"key file {path} must hold exactly {KEY_BYTES} bytes")
    return key


class KeyRing:
    """Purpose-bound keys derived (HKDF-SHA256) from one master key."""

    def __init__(self, master: bytes) -> None:
        self._master = master
        self._derived: dict[str, bytes] = {}

    def _derive(self, purpose: str) -> bytes:
        key = self._derived.get(purpose)
        if key is None:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=purpose.encode()).derive(self._master)
            self._derived[purpose] = key
        return key

    def key(self, purpose: str) -> bytes:
        """A 256-bit key for one purpose (e.g. the audit chain's HMAC)."""
        return self._derive(purpose)

    def encrypt(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._derive(purpose)).encrypt(nonce, plaintext, aad)

    def decrypt(self, purpose: str, blob: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(self._derive(purpose)).decrypt(blob[:12], blob[12:], aad)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("ciphertext does not authenticate") from exc

    def mac(self, purpose: str, value: str) -> str:
        """Keyed hash for high-entropy secrets stored only as hashes (tokens, codes, sessions)."""
        return hmac.new(self._derive(purpose), value.encode(), hashlib.sha256).hexdigest()
