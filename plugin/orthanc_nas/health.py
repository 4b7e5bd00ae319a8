"""GET /api/health: versions and the state of each subsystem, no patient data.

The endpoint is public: anyone else than an admin gets the status and each check's name with
its ok flag only. Versions tell an attacker which flaws to try, the gate's counters measure
the traffic from outside, and error texts name files whose paths hold patient identifiers.
"""

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


def public_view(body: dict[str, Any]) -> dict[str, Any]:
    """The health answer for callers other than admins: status and ok flags only."""
    return {"status": body["status"], "failing": body["failing"],
            "checks": {name: {"ok": bool(result.get("ok"))}
                       for name, result in body["checks"].items()}}
