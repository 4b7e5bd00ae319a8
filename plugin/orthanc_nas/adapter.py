"""The one module that imports ``orthanc``: turns SDK callbacks into plain calls on ``App``.

Differences between Python plugin 4.0 (Debian 12) and 4.2+/7.x (orthancteam images) are
handled here and, for the REST output, in ``answer.py``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any
from urllib.parse import unquote_plus

import orthanc

from . import jsonbound
from .answer import answer
from .app import ROUTE_PATTERNS, App, create_app
from .dicom_move import MoveDriver, MoveService
from .gate import ANY_ARGUMENTS, Gate
from .orthanc_api import OrthancApi, OrthancError
from .web import Request, Response, routed_path

_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}|\+")
_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}  # OrthancPluginHttpMethod
_app: App | None = None
# What Orthanc answers may nest DICOM sequences: deeper than a request, still far from a crash.
ORTHANC_DEPTH = 128
# What the filter last saw on each OS thread (see _client_ip); threading.local() does not
# survive between two callbacks of plugin 4.0, which makes a new thread state for each.
_last_filtered: dict[int, tuple[str, str, str]] = {}


def _sdk(call: Any, *args: Any) -> Any:
    """An SDK call; its refusals (one exception type for all) become OrthancError."""
    try:
        return call(*args)
    except Exception as exc:
        raise OrthancError(str(exc)) from exc


class _Orthanc(OrthancApi):
    """Orthanc's own REST API, called in-process (never from the filter or OnStored)."""

    def get_bytes(self, uri: str) -> bytes:
        return bytes(_sdk(orthanc.RestApiGet, uri))

    def get(self, uri: str) -> Any:
        return _sdk(jsonbound.loads, self.get_bytes(uri), ORTHANC_DEPTH)

    def post_bytes(self, uri: str, body: bytes) -> bytes:
        return bytes(_sdk(orthanc.RestApiPost, uri, body))

    def post(self, uri: str, body: bytes) -> Any:
        return _sdk(jsonbound.loads, self.post_bytes(uri, body), ORTHANC_DEPTH)

    def put_bytes(self, uri: str, body: bytes) -> bytes:
        return bytes(_sdk(orthanc.RestApiPut, uri, body))

    def delete(self, uri: str) -> None:
        _sdk(orthanc.RestApiDelete, uri)


class _Log:
    def info(self, message: str) -> None:
        orthanc.LogInfo(message)

    def warning(self, message: str) -> None:
        orthanc.LogWarning(message)

    def error(self, message: str) -> None:
        orthanc.LogError(message)


def _decide(method_code: int, uri: str, ip: str, headers: dict[str, str],
            get: dict[str, str]) -> int:
    """The filter's decision: 0 denies, 1 allows, n >= 2 allows and lets the gate remember
    the request for n - 1 ms (with Gate.ANY_ARGUMENTS: whatever its arguments). Any error
    denies."""
    try:
        method = _METHODS.get(method_code, "")
        _last_filtered[threading.get_ident()] = (routed_path(uri), method, ip)
        if _app is None or not method:
            return 0
        allowed, remember, any_arguments = _app.decide(
            Request(method, uri, headers, get, b"", ip))
        if not allowed:
            return 0
        if remember <= 0:
            return 1
        return (1 + int(remember * 1000)) | (ANY_ARGUMENTS if any_arguments else 0)
    except Exception as exc:  # fail closed
        orthanc.LogError(f"OrthancNAS: authorization filter failed, denying {uri}: "
                         f"{type(exc).__name__}")
        return 0


def _filter(uri: str, **request: Any) -> bool:
    """The Python filter, used when the C gate is not configured."""
    return _decide(int(request.get("method", 0)), uri, str(request.get("ip", "")),
                   request.get("headers") or {}, request.get("get") or {}) > 0


def _client_ip(uri: str, method: str) -> str:
    """REST callbacks get no client IP on plugin 4.0: take the one the filter just saw
    for this very request on this thread (the filter always runs first)."""
    seen = _last_filtered.get(threading.get_ident())
    return seen[2] if seen and seen[0] == uri and seen[1] == method else ""


def _query(raw: dict[str, str] | None) -> dict[str, str]:
    """GET arguments, URL-decoded: plugin 4.0 passes them as they came (``..%2F..``)."""
    return {k: unquote_plus(v) if _ENCODED.search(v) else v for k, v in (raw or {}).items()}


def _handle(uri: str, method: str, request: dict[str, Any]) -> Response:
    if _app is None:
        return Response(503, b'{"error":"starting"}')
    return _app.handle(Request(method, uri, request.get("headers") or {},
                               _query(request.get("get")), request.get("body") or b"",
                               _client_ip(uri, method)))


def _rest(output: Any, uri: str, **request: Any) -> None:
    """Every plugin route: always an HTTP answer (answer.py), never a closed connection."""
    method = str(request.get("method", ""))
    answer(output, method, uri, lambda: _handle(uri, method, request), orthanc.LogError)


def _on_stored(dicom: Any, instance_id: str) -> None:
    """Runs in the ingest path: only records the instance in the durable outbox."""
    try:
        if _app is not None:
            _app.on_stored(instance_id, dicom.GetInstanceData(), dicom.GetInstanceRemoteAet(),
                           lambda: jsonbound.loads(dicom.GetInstanceSimplifiedJson(),
                                                         ORTHANC_DEPTH))
    except Exception as exc:
        orthanc.LogError(f"OrthancNAS: could not queue instance {instance_id} for the NAS "
                         f"({type(exc).__name__}: {exc}); it will be found at reconciliation")


def _on_change(change_type: int, level: int, resource_id: str) -> None:
    if _app is None:
        return
    try:
        if change_type == orthanc.ChangeType.ORTHANC_STARTED:
            config = json.loads(orthanc.GetConfiguration())
            url = f"http://127.0.0.1:{int(config.get('HttpPort', 8042))}"
            _app.started(url, orthanc.GenerateRestApiAuthorizationToken())
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            _app.stopping()
        elif (change_type == orthanc.ChangeType.DELETED
              and level == orthanc.ResourceType.INSTANCE):
            _app.on_instance_deleted(resource_id)
        elif level == orthanc.ResourceType.STUDY:
            if change_type == orthanc.ChangeType.STABLE_STUDY:
                _app.on_study_changed(resource_id)
            elif change_type == orthanc.ChangeType.DELETED:
                _app.on_study_deleted(resource_id)
    except Exception as exc:
        orthanc.LogError(f"OrthancNAS: change {change_type} failed: {type(exc).__name__}: {exc}")


def _move_service() -> MoveService:
    assert _app is not None
    return MoveService(_app.orthanc, _app.audit.record, _app.access.study_of_any)


def _move_create(**request: Any) -> MoveDriver:
    """A modality's C-MOVE (plugin 4.2+); raising makes Orthanc answer it with a failure."""
    try:
        return _move_service().create(request)
    except Exception as exc:
        orthanc.LogError(f"OrthancNAS: C-MOVE refused: {type(exc).__name__}: {exc}")
        raise


def _move_size(driver: MoveDriver) -> int:
    return _move_service().size(driver)


def _move_apply(driver: MoveDriver) -> int:
    try:
        _move_service().apply(driver)
    except Exception as exc:
        orthanc.LogError(f"OrthancNAS: C-MOVE to {driver.destination_aet} failed: {exc}")
        raise
    return 0


def _move_free(driver: MoveDriver) -> None:
    """Nothing to free: the driver is a plain object."""


def start() -> None:
    """Entry point called by plugin/entry.py at Orthanc's start; raising stops Orthanc."""
    global _app
    config = json.loads(orthanc.GetConfiguration())
    try:
        _app = create_app(config, dict(os.environ), _Log(), _Orthanc())
    except Exception as exc:
        orthanc.LogError(f"OrthancNAS: refusing to start: {exc}")
        raise
    gate = Gate.find(config.get("Plugins", []))
    if gate is None:
        orthanc.LogWarning("OrthancNAS: the C gate is not configured: every request enters "
                           "Python (slower, as safe)")
        orthanc.RegisterIncomingHttpRequestFilter(_filter)
    else:
        gate.attach(_decide)
        _app.db.on_invalidate.append(gate.clear)
        _app.gate_stats = gate.stats
    for pattern in ROUTE_PATTERNS:
        orthanc.RegisterRestCallback(pattern, _rest)
    orthanc.RegisterOnStoredInstanceCallback(_on_stored)
    orthanc.RegisterOnChangeCallback(_on_change)
    if hasattr(orthanc, "RegisterMoveCallback2"):  # plugin 4.2+: C-MOVE audited
        orthanc.RegisterMoveCallback2(_move_create, _move_size, _move_apply, _move_free)
    orthanc.ExtendOrthancExplorer(_app.explorer_extension())
