"""PIN rules and hashing: bcrypt over a SHA-256 pre-hash, so no PIN is ever truncated."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import bcrypt
from zxcvbn import zxcvbn

# zxcvbn refuses longer inputs (its default max_length); 72 characters are strong anyway
# or caught by the other rules.
ESTIMATE_CHARS = 72


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


def check_new_pin(pin: str, *, username: str, min_length: int, max_length: int,
                  min_score: int = 3, user_inputs: Iterable[str] = ()) -> None:
    """Raises PinRejected when ``pin`` may not be used: too short or long, common, holding
    the username, or guessable by zxcvbn's estimate (score below ``min_score``, 0 to 4) with
    the username and ``user_inputs`` (display name, email) among the words it tries."""
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
    if min_score > 0:
        # zxcvbn matches whole dictionary words: "Anna Smith" must give "anna" and "smith".
        words = [w for text in (username, *user_inputs) for w in (text, *re.split(r"[\W_]+", text))
                 if len(w) >= 3]
        estimate = zxcvbn(pin[:ESTIMATE_CHARS], user_inputs=words)
        if estimate["score"] < min_score:
            raise PinRejected(weak_message(estimate["feedback"]))


def weak_message(feedback: dict[str, object]) -> str:
    """Why zxcvbn finds a PIN guessable, and what would help, as one sentence or two."""
    warning = str(feedback.get("warning") or "").rstrip(".")
    hints = feedback.get("suggestions")
    suggestions = [str(h) for h in hints] if isinstance(hints, list) else []
    reason = warning or "it follows a pattern that guessing tools try early"
    advice = " ".join(suggestions) or "Add another word or two. Uncommon words are better."
    return f"this PIN is too easy to guess: {reason[0].lower()}{reason[1:]}. {advice}"


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
