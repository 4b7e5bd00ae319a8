"""GET /api/health: versions and the state of each subsystem, no patient data.

The endpoint is public, so error texts (a failed NAS write names the file's path, which the
folder layout builds from patient and study identifiers) are shown to admins only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[], dict[str, Any]]
DETAIL_KEYS = frozenset({"error", "last_error", "last_error_at"})


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


def public_view(body: dict[str, Any]) -> dict[str, Any]:
    """The health answer without error texts, for callers other than admins."""
    checks = {name: {k: v for k, v in result.items() if k not in DETAIL_KEYS}
              for name, result in body["checks"].items()}
    return {**body, "checks": checks}
