"""The log the plugin writes to: Orthanc's, through the adapter (a list in tests)."""

from __future__ import annotations

from typing import Protocol


class Log(Protocol):
    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...
