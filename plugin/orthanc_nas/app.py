"""The plugin as plain Python: configuration, services and routes, with no ``orthanc`` import.

``adapter`` calls ``authorize`` from Orthanc's HTTP filter and ``handle`` from the REST
callbacks; tests drive both directly with fakes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from . import __version__, config, openapi
from .api import native, transfers
from .audit import HEAD_FILE, Audit, read_head
from .audit.access import AccessRecorder
from .audit.forwarder import Forwarder
from .audit.syslog import Sender, TcpSender, UdpSender
from .auth.backend import AuthBackend, Principal
from .auth.keys import KEY_FILE, KeyRing, load_or_create_key
from .auth.lockout import Lockout, Throttle
from .auth.pins import PinHasher, PinRejected
from .auth.policy import Policy
from .auth.service import AuthFailed, AuthService
from .auth.sessions import Sessions
from .auth.tokens import Tokens
from .auth.users import Users
from .clock import Clock, OffsetClock, SystemClock
from .db import Database, open_database
from .health import public_view, run_checks
from .images.catalog import Catalog, OrthancError, orthanc_study_id
from .images.dashboard import Dashboard
from .images.shares import Shares
from .logs import Log
from .mirror.outbox import Outbox, StoredCopy
from .mirror.service import MirrorService
from .pages import Pages
from .settings import Settings
from .web import (
    SECURITY_HEADERS,
    ApiError,
    Networks,
    Request,
    Response,
    Router,
    client_ip,
    error_response,
    json_response,
)

# URIs the plugin answers itself (registered as REST callbacks by the adapter).
ROUTE_PATTERNS = ("/", "/api/(.*)", "/ui/(.*)", "/s/(.*)", "/instances",
                  *transfers.ROUTE_PATTERNS, *native.ROUTE_PATTERNS)
_SHARE_TOKEN = re.compile(r"^(/s/|/api/shared/)[^/]*")
PLUGIN_ROUTES = re.compile("|".join(f"(?:{p})" for p in ROUTE_PATTERNS))
REMEMBER_MAX = 30.0  # seconds a decision may be remembered by the gate, at most

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ADMIN_PIN_ENV = "ORTHANC_NAS_ADMIN_PIN"
TEST_CLOCK_ENV = "ORTHANC_NAS_TEST_CLOCK_FILE"


class OrthancApi(Protocol):
    """Orthanc's own REST API as the plugin uses it (in-process, bypassing the filter).
    Every refusal raises ``OrthancError``."""

    def get(self, uri: str) -> Any: ...

    def get_bytes(self, uri: str) -> bytes: ...

    def post(self, uri: str, body: bytes) -> Any: ...

    def post_bytes(self, uri: str, body: bytes) -> bytes: ...

    def put_bytes(self, uri: str, body: bytes) -> bytes: ...

    def delete(self, uri: str) -> None: ...


class App:
    def __init__(self, cfg: config.Config, db: Database, keys: KeyRing, clock: Clock, log: Log,
                 orthanc: OrthancApi, python: list[str] | None = None,
                 env: dict[str, str] | None = None, orthanc_storage: Path | None = None
                 ) -> None:
        self.cfg = cfg
        self.db = db
        self.keys = keys
        self.clock = clock
        self.log = log
        self.orthanc = orthanc
        self._orthanc_storage = orthanc_storage
        auth = cfg.section("auth")
        self.max_body = auth["max_body_bytes"]
        self._proxies: Networks = tuple(ipaddress.ip_network(n, strict=False)
                                        for n in auth["trusted_proxies"])
        self.settings = Settings(db, clock)
        self.audit = Audit(db, clock, keys.key("audit-chain"))
        self.access = AccessRecorder(db, self.audit, orthanc, clock, lambda problem: log.warning(
            f"OrthancNAS: could not audit an access: {problem}"))
        self.forwarder = self._forwarder(cfg.section("audit")["syslog"])
        self.users = Users(db)
        self.sessions = Sessions(db, keys, clock, idle_seconds=auth["session_idle_minutes"] * 60,
                                 absolute_seconds=auth["session_absolute_hours"] * 3600,
                                 pending_seconds=auth["pending_login_minutes"] * 60)
        self.tokens = Tokens(db, keys, clock)
        public_url = cfg.get("public_url")
        self.public_origin = (f"{urlsplit(public_url).scheme}://{urlsplit(public_url).netloc}"
                              if public_url else None)
        self.backend = AuthBackend(self.users, self.sessions, self.tokens,
                                   Policy(cfg.get("access_policy")), self.two_factor,
                                   self.public_origin, db, clock)
        throttle = Throttle(db, clock, max_failures=auth["ip_max_failures"],
                            window_seconds=auth["ip_window_minutes"] * 60)
        self.auth = AuthService(db, self.users, self.sessions, keys, PinHasher(auth["bcrypt_cost"]),
                                self.lockout, throttle, self.audit, clock, self.two_factor,
                                {"min": auth["pin_min_length"], "max": auth["pin_max_length"]})
        data_dir = self.data_dir = Path(cfg.get("data_dir")).resolve()
        self.mirror = MirrorService(cfg, db, self.settings, keys,
                                    Outbox(db, data_dir / "mirror-spool", clock), self.audit, clock,
                                    python or [sys.executable], env or {}, self._spool_failed,
                                    self._stored_copy)
        self.catalog = Catalog(db, orthanc, clock,
                               lambda ids: self.mirror.outbox.state_of(db, ids))
        shares = cfg.section("shares")
        self.shares = Shares(db, keys, clock, self.audit, self.auth.hasher,
                             pin_max_attempts=shares["pin_max_attempts"],
                             view_seconds=shares["view_minutes"] * 60)
        self.share_throttle = Throttle(db, clock, max_failures=shares["ip_max_failures"],
                                       window_seconds=shares["ip_window_minutes"] * 60)
        self.dashboard = Dashboard(db, orthanc, clock, self.mirror.status)
        self.pages = Pages()
        self.router = Router(self.max_body)
        from .api import account, admin, dashboard, images, login, nas
        from .api import audit as audit_routes
        from .api import shares as share_routes

        for module in (login, account, admin, audit_routes, nas, images, share_routes,
                       dashboard, transfers, native):
            module.register(self.router, self)
        self.router.add("GET", r"/api/health", self._health)
        self.router.add("GET", r"/api/openapi\.json", self._openapi)
        self._openapi_body: bytes | None = None
        self.pages.register(self.router, self)
        self._orthanc_version: str | None = None
        self._stop = threading.Event()
        self._forward_wake = threading.Event()
        # Set by the adapter when the C gate filters requests: (remembered, asked) counts.
        self.gate_stats: Callable[[], tuple[int, int]] | None = None
        self._last_prune = 0.0

    def _forwarder(self, syslog: dict[str, Any]) -> Forwarder | None:
        """Forwarding of the trail to a syslog collector, when configured."""
        if not syslog["enabled"]:
            return None

        def sender() -> Sender:
            kind = TcpSender if syslog["protocol"] == "tcp" else UdpSender
            return kind(syslog["host"], syslog["port"])

        hostname = socket.gethostname()
        return Forwarder(self.db, sender, self.clock, self.log,
                         source_id=syslog["source_id"] or hostname, hostname=hostname,
                         app_name=syslog["app_name"], facility=syslog["facility"])

    def _stored_copy(self, instance_id: str) -> StoredCopy | None:
        """What Orthanc keeps of an instance: its file, when kept uncompressed in a folder,
        and the MD5 of its bytes."""
        if self._orthanc_storage is None:
            return None
        try:
            info = self.orthanc.get(f"/instances/{instance_id}/attachments/dicom/info")
        except OrthancError:
            return None
        uuid = str(info.get("Uuid", ""))
        plain = info.get("CompressedSize") == info.get("UncompressedSize") and UUID.fullmatch(uuid)
        return StoredCopy(self._orthanc_storage / uuid[:2] / uuid[2:4] / uuid if plain else None,
                          str(info.get("UncompressedMD5") or "") or None)

    def _spool_failed(self, problem: str) -> None:
        self.log.error(f"OrthancNAS: could not queue received instances for the NAS "
                       f"({problem}); the next reconciliation will queue them")

    # ---- settings that admins may change at run time -------------------------------------

    def two_factor(self) -> dict[str, Any]:
        """Effective 2FA settings: orthanc.json, overridden by what admins saved."""
        override = self.settings.get("two_factor") or {}
        return {**self.cfg.section("two_factor"), **override}

    def lockout(self) -> Lockout:
        tf = self.two_factor()
        return Lockout(self.db, self.clock, max_failures=tf["max_failed_attempts"],
                       duration_seconds=tf["lockout_duration_minutes"] * 60)

    # ---- entry points used by the adapter -------------------------------------------------

    def authorize(self, request: Request) -> bool:
        return self.decide(request)[0]

    def decide(self, request: Request) -> tuple[bool, float]:
        """The filter's decision, and for how many seconds the same request (URI and
        credential) may be allowed again without asking (0: ask every time)."""
        allowed, principal = self.backend.decide(request)
        if not allowed or principal is None:
            return allowed, 0.0
        request = self._from_client(request)
        scope = (f"s:{principal.session_hash[:16]}" if principal.session_hash
                 else f"t:{principal.token_id}:{int(self.clock.now() // 86400)}")
        self.access.observe(scope, principal.name, request.ip, request.method, request.path,
                            request.query)
        if (request.method != "GET" or request.query or principal.restricted
                or PLUGIN_ROUTES.fullmatch(request.path)):  # the plugin's own routes need the
            return True, 0.0  # filter's view of each request (client IP)
        return True, min(self.backend.remaining(request), REMEMBER_MAX)

    def _from_client(self, request: Request) -> Request:
        """The request with the client's address when a trusted proxy forwarded it."""
        ip = client_ip(request.ip, request.headers.get("x-forwarded-for", ""), self._proxies)
        return request if ip == request.ip else dataclasses.replace(request, ip=ip)

    def handle(self, request: Request) -> Response:
        request = self._from_client(request)
        try:
            response = self.router.dispatch(request)
        except ApiError as err:
            response = error_response(err)
        except AuthFailed as err:
            response = error_response(ApiError(err.status, err.message))
        except PinRejected as err:
            response = error_response(ApiError(400, str(err), field="pin"))
        except Exception as exc:  # a bug: say so without a stack trace or data
            path = _SHARE_TOKEN.sub(r"\1<token>", request.path)  # tokens are secrets
            self.log.error(f"OrthancNAS: {request.method} {path} failed: {type(exc).__name__}")
            response = error_response(ApiError(500, "internal error"))
        response.headers.extend(SECURITY_HEADERS)
        return response

    def explorer_extension(self) -> str:
        return self.pages.explorer_extension()

    def on_stored(self, instance_id: str, data: bytes, calling_aet: str,
                  tags: Callable[[], dict[str, Any]]) -> None:
        """Orthanc stored an instance (C-STORE, upload, modification): queue its mirror copy,
        and give it to the user mapped to the calling AE title, if any."""
        self.mirror.on_stored(instance_id, data)
        if calling_aet:
            self.access.observe_import(instance_id, calling_aet)
        username = self.ae_owners().get(calling_aet) if calling_aet else None
        if username:
            user = self.users.by_name(username)
            values = tags()
            study_id = orthanc_study_id(str(values.get("PatientID", "")),
                                        str(values.get("StudyInstanceUID", "")))
            self.catalog.record_owner(instance_id, study_id, user.id if user else None,
                                      "cstore", calling_aet)

    def ae_owners(self) -> dict[str, str]:
        """Calling AE title -> username: what admins saved, else orthanc.json."""
        saved = self.settings.get("ae_owners")
        mapping: dict[str, str] = saved if saved is not None else self.cfg.get("ae_owners")
        return mapping

    def base_url(self, request: Request) -> str:
        """Where links point: ``public_url``, else the request's own scheme and host."""
        public: str = self.cfg.get("public_url")
        if public:
            return public.rstrip("/")
        scheme = "https" if request.is_https else "http"
        return f"{scheme}://{request.headers.get('host', 'localhost')}"

    def on_instance_deleted(self, instance_id: str) -> None:
        self.mirror.on_deleted(instance_id)

    def on_study_changed(self, study_id: str) -> None:
        """Orthanc reports a study stable (it changed)."""
        self.catalog.forget(study_id)

    def on_study_deleted(self, study_id: str) -> None:
        self.catalog.forget(study_id)
        self.access.on_study_deleted(study_id)

    def started(self, orthanc_url: str, orthanc_token: str) -> None:
        """Orthanc is serving: start the background work."""
        threading.Thread(target=self._housekeeping_loop, name="orthanc-nas-housekeeping",
                         daemon=True).start()
        threading.Thread(target=self.access.run, args=(self._stop,), name="orthanc-nas-access",
                         daemon=True).start()
        if self.forwarder is not None:
            threading.Thread(target=self.forwarder.run, args=(self._stop, self._forward_wake),
                             name="orthanc-nas-syslog", daemon=True).start()
        db_path = getattr(self.db, "path", None)
        if db_path is not None:
            key_path = self.data_dir / KEY_FILE
            self.mirror.start(orthanc_url, orthanc_token, str(db_path), str(key_path))

    def stopping(self) -> None:
        self._stop.set()
        self.access.wake.set()
        self._forward_wake.set()
        self.mirror.stop()

    def housekeeping(self) -> None:
        """Exports the audit chain head (log, head file; the mirror worker copies it to the
        NAS) and prunes the audit trail past its retention, once a day."""
        audit_cfg = self.cfg.section("audit")
        head_file = self.data_dir / HEAD_FILE
        head = self.audit.head()
        if head is not None and head != read_head(head_file):
            tmp = head_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(head))
            tmp.replace(head_file)
            self.log.warning(f"OrthancNAS: audit chain head id={head['id']} mac={head['mac']}")
        now = self.clock.now()
        if now - self._last_prune >= 86400:
            self._last_prune = now
            removed = self.audit.prune(now - audit_cfg["retention_days"] * 86400, "system")
            self.access.prune()
            if removed:
                self.log.warning(f"OrthancNAS: pruned {removed} audit rows past retention")

    def _housekeeping_loop(self) -> None:
        interval = self.cfg.get("audit.head_interval_minutes") * 60
        while not self._stop.is_set():
            try:
                self.housekeeping()
            except Exception as exc:  # never let it die silently; retry next time
                self.log.error(f"OrthancNAS: housekeeping failed: {type(exc).__name__}: {exc}")
            self._stop.wait(interval)

    # ---- helpers for route handlers -------------------------------------------------------

    def principal(self, request: Request, *, allow_restricted: bool = False) -> Principal:
        """The authenticated caller, re-checked in the handler (defence in depth)."""
        principal = self.backend.authenticate(request)
        if principal is None:
            raise ApiError(403, "login required")
        if principal.restricted and not allow_restricted:
            raise ApiError(403, "change your PIN and enroll two-factor authentication first")
        return principal

    def require_admin(self, request: Request) -> Principal:
        principal = self.principal(request)
        if principal.user.role != "admin":
            raise ApiError(403, "admin role required")
        return principal

    def cookie_secure(self, request: Request) -> bool:
        mode = self.cfg.get("auth.cookie_secure")
        return mode == "always" or (mode == "auto" and (
            request.is_https or (self.public_origin or "").startswith("https:")))

    def _health(self, request: Request) -> Response:
        status, body = run_checks({
            "database": self._check_database,
            "two_factor": self._check_two_factor,
            "nas": self._check_nas,
            "audit_forwarding": self._check_forwarding,
            "gate": self._check_gate,
        })
        body.update(plugin_version=__version__, orthanc_version=self._orthanc_version_text())
        caller = self.backend.authenticate(request)
        if caller is None or caller.restricted or caller.user.role != "admin":
            body = public_view(body)
        return json_response(body, status)

    def _openapi(self, request: Request) -> Response:
        """The API's description, made once from the route table (it holds no data)."""
        if self._openapi_body is None:
            doc = openapi.document(self.router.routes, self.backend.policy, config.ROLES,
                                   __version__)
            self._openapi_body = json.dumps(doc, separators=(",", ":")).encode()
        return Response(200, self._openapi_body)

    def _orthanc_version_text(self) -> str:
        if self._orthanc_version is None:
            try:
                self._orthanc_version = str(self.orthanc.get("/system")["Version"])
            except Exception:
                return "unknown"
        return self._orthanc_version

    def _check_database(self) -> dict[str, Any]:
        self.db.ping()
        return {"ok": True, "schema_version": self.db.schema_version()}

    def _check_two_factor(self) -> dict[str, Any]:
        tf = self.two_factor()
        self.keys.mac("health", "probe")
        return {"ok": True, "enabled": tf["enabled"], "allowed_methods": tf["allowed_methods"]}

    def _check_gate(self) -> dict[str, Any]:
        if self.gate_stats is None:
            return {"ok": True, "enabled": False}
        remembered, asked = self.gate_stats()
        return {"ok": True, "enabled": True, "allowed_from_memory": remembered,
                "asked": asked}

    def _check_forwarding(self) -> dict[str, Any]:
        if self.forwarder is None:
            return {"ok": True, "enabled": False}
        status = self.forwarder.status()
        return {**status, "ok": not status["failing"]}

    def _check_nas(self) -> dict[str, Any]:
        status = self.mirror.status()
        ok = not status["enabled"] or status["connected"]
        return {"ok": ok, **{k: status[k] for k in ("enabled", "type", "connected", "pending",
                                                      "failed", "last_error")}}


def bootstrap_admin(app: App, env: dict[str, str]) -> None:
    """First start with no users: create ``admin`` with a PIN that must be changed."""
    if app.users.count() > 0:
        return
    pin = env.get(ADMIN_PIN_ENV) or secrets.token_urlsafe(12)
    with app.db.transaction() as tx:
        app.users.create(tx, username="admin", role="admin", pin_hash=app.auth.hasher.hash(pin),
                         now=app.clock.now(), display_name="Administrator", must_change_pin=True)
        app.audit.record("user_created", actor="system", ip="", target="admin", tx=tx,
                         role="admin", bootstrap=True)
    if ADMIN_PIN_ENV in env:
        app.log.warning(f"OrthancNAS: created user 'admin' with the PIN from {ADMIN_PIN_ENV}")
    else:  # shown once, on purpose: the admin's only way in; it must be changed at first login
        app.log.warning(f"OrthancNAS: created user 'admin' with the one-time PIN: {pin} "
                        "(change it at first login)")


def create_app(orthanc_config: dict[str, Any], env: dict[str, str], log: Log,
               orthanc: OrthancApi) -> App:
    """Validates the configuration, opens the database and keys; raises on any problem."""
    cfg = config.load(orthanc_config)
    data_dir = Path(cfg.get("data_dir")).resolve()
    db_path = Path(cfg.get("database.path") or data_dir / "orthanc-nas.sqlite")
    db = open_database(cfg.get("database.backend"), db_path)
    keys = KeyRing(load_or_create_key(data_dir / KEY_FILE))
    clock: Clock = SystemClock()
    if env.get(TEST_CLOCK_ENV):
        log.warning(f"OrthancNAS: TEST CLOCK enabled from {TEST_CLOCK_ENV}: never in production")
        clock = OffsetClock(Path(env[TEST_CLOCK_ENV]))
    venv_python = Path(env.get("ORTHANC_NAS_VENV", "/nonexistent")) / "bin" / "python"
    python = [str(venv_python) if venv_python.exists() else "/usr/bin/python3"]
    plugin_dir = str(Path(__file__).resolve().parent.parent)
    child_env = {**env, "PYTHONPATH": plugin_dir}
    # Orthanc's own files, relative to its working directory (which is ours: same process).
    storage = Path(str(orthanc_config.get("StorageDirectory", "OrthancStorage"))).resolve()
    app = App(cfg, db, keys, clock, log, orthanc, python, child_env, storage)
    bootstrap_admin(app, env)
    return app
