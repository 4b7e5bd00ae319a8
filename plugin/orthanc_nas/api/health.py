"""GET /api/health: the state of each subsystem (health.py says what anyone may see)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..auth.access import PUBLIC
from ..health import Check, public_view, run_checks
from ..routing import Call, route
from ..web import Response, json_response

if TYPE_CHECKING:
    from ..services import Services


def _database(svc: Services) -> dict[str, Any]:
    svc.db.ping()
    return {"ok": True, "schema_version": svc.db.schema_version()}


def _two_factor(svc: Services) -> dict[str, Any]:
    tf = svc.two_factor()
    svc.keys.mac("health", "probe")
    return {"ok": True, "enabled": tf["enabled"], "allowed_methods": tf["allowed_methods"]}


def _gate(svc: Services) -> dict[str, Any]:
    if svc.gate_stats is None:
        return {"ok": True, "enabled": False}
    remembered, asked = svc.gate_stats()
    return {"ok": True, "enabled": True, "allowed_from_memory": remembered, "asked": asked,
            "cleared": svc.db.generation}


def _forwarding(svc: Services) -> dict[str, Any]:
    if svc.forwarder is None:
        return {"ok": True, "enabled": False}
    status = svc.forwarder.status()
    return {**status, "ok": not status["failing"]}


def _nas(svc: Services) -> dict[str, Any]:
    status = svc.mirror.status()
    ok = not status["enabled"] or status["connected"]
    return {"ok": ok, **{k: status[k] for k in ("enabled", "type", "connected", "pending",
                                                  "failed", "last_error")}}


def _backup(svc: Services) -> dict[str, Any]:
    return svc.backup.health()


CHECKS = {"database": _database, "two_factor": _two_factor, "nas": _nas,
          "audit_forwarding": _forwarding, "gate": _gate, "backup": _backup}


def health(svc: Services, call: Call) -> Response:
    checks: dict[str, Check] = {name: functools.partial(check, svc)
                                for name, check in CHECKS.items()}
    status, body = run_checks(checks)
    body.update(plugin_version=__version__, orthanc_version=svc.orthanc_version())
    caller = call.principal
    if caller is None or caller.restricted or not caller.is_admin:
        body = public_view(body)
    return json_response(body, status)


ROUTES = (route("GET", r"/api/health", health, PUBLIC),)
