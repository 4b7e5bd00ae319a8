"""The C gate (``plugin/gate/gate.c``): Orthanc's HTTP filter in C, deciding through Python.

Orthanc loads ``libOrthancNasGate.so`` as a plugin of its own; the Python plugin finds that
same library (``RTLD_NOLOAD``: already in the process), attaches its decision function, and
clears the gate's memory of allowed requests whenever authentication state may have changed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LIBRARY = "libOrthancNasGate.so"
_STRINGS = ctypes.POINTER(ctypes.c_char_p)
DECIDE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p,
                          ctypes.c_uint32, _STRINGS, _STRINGS, ctypes.c_uint32, _STRINGS,
                          _STRINGS)
ANY_ARGUMENTS = 0x40000000  # in decide's answer: remembered for any GET arguments (gate.c)
Decide = Callable[[int, str, str, dict[str, str], dict[str, str]], int]


class GateError(RuntimeError):
    """The gate is configured but cannot be used."""


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def _pairs(count: int, keys: ctypes.Array[ctypes.c_char_p] | None,
           values: ctypes.Array[ctypes.c_char_p] | None) -> dict[str, str]:
    if not count or keys is None or values is None:
        return {}
    return {_text(keys[i]): _text(values[i]) for i in range(count)}


class Gate:
    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        self._callback: Any = None  # the ctypes callback, kept alive while attached

    @classmethod
    def find(cls, plugins: Iterable[str]) -> Gate | None:
        """The gate among Orthanc's configured plugins, already loaded by Orthanc; None if
        it is not configured."""
        paths = [p for p in plugins if Path(p).name == LIBRARY]
        if not paths:
            return None
        try:
            return cls(ctypes.CDLL(paths[0], mode=os.RTLD_NOLOAD | os.RTLD_NOW))
        except OSError as exc:
            raise GateError(f"{paths[0]} is configured but not loaded by Orthanc: {exc}"
                            ) from exc

    def attach(self, decide: Decide) -> None:
        """From now on the gate asks ``decide(method, uri, ip, headers, get)``: 0 denies,
        1 allows, n >= 2 allows and remembers the request for n - 1 milliseconds; with
        ``ANY_ARGUMENTS`` set in n, also for the same path with other GET arguments."""

        def callback(method: int, uri: bytes | None, ip: bytes | None, headers_count: int,
                     header_keys: ctypes.Array[ctypes.c_char_p] | None,
                     header_values: ctypes.Array[ctypes.c_char_p] | None, get_count: int,
                     get_keys: ctypes.Array[ctypes.c_char_p] | None,
                     get_values: ctypes.Array[ctypes.c_char_p] | None) -> int:
            try:
                return decide(method, _text(uri), _text(ip),
                              _pairs(headers_count, header_keys, header_values),
                              _pairs(get_count, get_keys, get_values))
            except Exception:  # fail closed; decide logs its own errors
                return 0

        self._callback = DECIDE(callback)
        self._library.OrthancNasGateAttach(self._callback)

    def clear(self) -> None:
        self._library.OrthancNasGateClear()

    def stats(self) -> tuple[int, int]:
        """(requests allowed from memory, requests decided by Python)."""
        remembered, asked = ctypes.c_uint64(), ctypes.c_uint64()
        self._library.OrthancNasGateStats(ctypes.byref(remembered), ctypes.byref(asked))
        return remembered.value, asked.value
