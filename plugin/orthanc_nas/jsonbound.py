"""JSON read with a bound on nesting, checked before any recursive parser sees the text.

Python's ``json`` and Orthanc's jsoncpp both recurse once per level on the HTTP thread's stack:
a body nested a few hundred levels deep (a kilobyte of ``[``) kills Orthanc with a segfault
(measured on 1.10.1: jsoncpp at 200 levels, Python at 525). Every body a caller sends is
measured here first, by a scan that keeps no stack; no legitimate request nests past a dozen.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # well under the shallowest crash measured (jsoncpp, about 150-200 levels)
# Strings and comments (Orthanc's jsoncpp accepts /* */ and // comments) hide brackets.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|/\*.*?(?:\*/|\Z)|//[^\r\n]*|[\[\]{}]', re.DOTALL)


class TooDeep(ValueError):
    """The text nests arrays and objects deeper than allowed."""


def depth(text: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``text``, outside strings and comments; linear,
    no recursion. Never less than what a parser would reach: a stray closing bracket does not
    lower the level below zero, and unbalanced text still gets a depth.

    Python's ``json`` also reads UTF-16 and UTF-32 (told by their zero bytes), where a byte
    of a character can be a quote and so hide brackets from a byte scan: such text is scanned
    decoded too (jsoncpp reads the bytes as they are: they are scanned as well)."""
    deepest = _scan(text)
    encoding = json.detect_encoding(text)
    if encoding not in ("utf-8", "utf-8-sig"):
        try:
            decoded = text.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
        except UnicodeError:  # Python's json cannot read it either
            return deepest
        deepest = max(deepest, _scan(decoded))
    return deepest


def _scan(text: bytes) -> int:
    deepest = level = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        elif char in (b"]", b"}"):
            level = max(level - 1, 0)
    return deepest


def check(text: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raises ``TooDeep`` when ``text`` nests deeper than ``max_depth``."""
    if (b"[" in text or b"{" in text) and depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")


def loads(text: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for text from outside the process; ``TooDeep`` (a ``ValueError``) when
    it nests deeper than ``max_depth``."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    check(raw, max_depth)
    return json.loads(raw)
