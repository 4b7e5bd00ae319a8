"""PIN rules and hashing: bcrypt over a SHA-256 pre-hash, so no PIN is ever truncated."""

from __future__ import annotations

import base64
import gzip
import hashlib
import unicodedata
from functools import lru_cache
from importlib import resources

import bcrypt


class PinRejected(ValueError):
    """A new PIN breaks the rules; the message says which."""


@lru_cache(maxsize=1)
def common_pins() -> frozenset[str]:
    """The shipped blocklist of common passwords (lower-cased)."""
    raw = resources.files("orthanc_nas.auth").joinpath("common-pins.txt.gz").read_bytes()
    return frozenset(line.strip().lower() for line in gzip.decompress(raw).decode().splitlines()
                     if line.strip())


def normalize(pin: str) -> str:
    return unicodedata.normalize("NFKC", pin)


def check_new_pin(pin: str, *, username: str, min_length: int, max_length: int) -> None:
    """Raises PinRejected when ``pin`` may not be used."""
    pin = normalize(pin)
    if len(pin) < min_length:
        raise PinRejected(f"the PIN must have at least {min_length} characters")
    if len(pin) > max_length:
        raise PinRejected(f"the PIN must have at most {max_length} characters")
    lowered = pin.lower()
    if lowered in common_pins():
        raise PinRejected("this PIN is too common: choose another")
    if username and username.lower() in lowered:
        raise PinRejected("the PIN must not contain the username")
    if len(set(pin)) < 3:
        raise PinRejected("the PIN must not repeat one or two characters")


def _prehash(pin: str) -> bytes:
    # 44 base64 bytes: under bcrypt's 72-byte limit, and no NUL bytes.
    return base64.b64encode(hashlib.sha256(normalize(pin).encode("utf-8")).digest())


class PinHasher:
    """bcrypt at a configurable cost; ``verify_dummy`` spends the same time for unknown users."""

    def __init__(self, cost: int) -> None:
        self.cost = cost
        self._dummy = self.hash("not a real PIN: equalizes timing")

    def hash(self, pin: str) -> str:
        return bcrypt.hashpw(_prehash(pin), bcrypt.gensalt(self.cost)).decode()

    def verify(self, pin: str, hashed: str) -> bool:
        try:
            return bcrypt.checkpw(_prehash(pin), hashed.encode())
        except ValueError:
            return False

    def verify_dummy(self, pin: str) -> bool:
        self.verify(pin, self._dummy)
        return False
