"""GET /api/health: versions and the state of each subsystem, no patient data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[], dict[str, Any]]


def run_checks(checks: dict[str, Check]) -> tuple[int, dict[str, Any]]:
    """Runs every check; 200 when all are ok, else 503 naming the failing ones."""
    results: dict[str, Any] = {}
    failing: list[str] = []
    for name, check in checks.items():
        try:
            result = check()
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        results[name] = result
        if not result.get("ok", False):
            failing.append(name)
    status = 200 if not failing else 503
    return status, {"status": "ok" if not failing else "failing", "failing": failing,
                    "checks": results}
