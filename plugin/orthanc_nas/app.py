"""The plugin as plain Python: builds the services from the configuration and wires them to
the entry points ``adapter`` calls, with no ``orthanc`` import.

``decide`` answers Orthanc's HTTP filter, ``handle`` the plugin's REST routes (the caller is
resolved once, then ``Router`` runs the endpoint), ``on_stored``/``on_*`` Orthanc's events;
tests drive them directly with fakes (tests/fakes.py).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import config
from .accounts import AccountError, Accounts
from .api import ROUTES, native, transfers
from .audit import HEAD_FILE, Audit
from .audit.access import AccessRecorder, reads_query
from .audit.forwarder import forwarder_from_config
from .auth.backend import AuthBackend
from .auth.lockout import Lockout, Throttle
from .auth.pins import PinHasher, PinRejected
from .auth.policy import Policy
from .auth.service import AuthFailed, AuthService
from .auth.sessions import Sessions
from .auth.tokens import Tokens
from .auth.users import Users
from .backup.service import BackupService
from .clock import Clock, OffsetClock, SystemClock
from .db import PG_DSN_ENV, Database, location_of, open_database
from .housekeeping import Housekeeping
from .images.catalog import Catalog
from .images.dashboard import Dashboard
from .images.received import DICOM, OTHER, Received
from .images.shares import ShareLimits, Shares
from .images.uploads import Uploads
from .images.visibility import STRICT, strict_refusal
from .keys import KEY_FILE, KeyRing, load_or_create_key
from .logs import Log
from .mirror.outbox import Outbox
from .mirror.samples import MirrorSamples
from .mirror.service import MirrorService
from .mirror.stored import stored_copy
from .modalities import Modalities
from .orthanc_api import OrthancApi, orthanc_study_id
from .pages import Pages
from .routing import Router
from .settings import Settings
from .site import Site
from .web import (
    SECURITY_HEADERS,
    ApiError,
    Networks,
    Request,
    Response,
    client_ip,
    client_scheme,
    error_response,
    redacted_path,
    routed_path,
)

# URIs the plugin answers itself (registered as REST callbacks by the adapter).
# POST /instances stays Orthanc's in every form (images/uploads.py says why).
ROUTE_PATTERNS = ("/", "/api/(.*)", "/ui/(.*)", "/s/(.*)", *transfers.ROUTE_PATTERNS,
                  *native.ROUTE_PATTERNS)
PLUGIN_ROUTES = re.compile("|".join(f"(?:{p})" for p in ROUTE_PATTERNS))
REMEMBER_MAX = 30.0  # seconds a decision may be remembered by the gate, at most
COUNTERS_SECONDS = 5.0  # how often the received counters reach the database



class Decision(NamedTuple):
    """What the filter answers the gate (see App.decide)."""

    allowed: bool
    remember: float  # seconds the gate may allow the same path and credential again
    any_arguments: bool = False  # ...whatever the GET arguments

ADMIN_PIN_ENV = "ORTHANC_NAS_ADMIN_PIN"
TEST_CLOCK_ENV = "ORTHANC_NAS_TEST_CLOCK_FILE"


class App:
    def __init__(self, cfg: config.Config, db: Database, keys: KeyRing, clock: Clock, log: Log,
                 orthanc: OrthancApi, python: list[str] | None = None,
                 env: dict[str, str] | None = None, orthanc_storage: Path | None = None,
                 https_listener: bool = False,
                 orthanc_config: Mapping[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.keys = keys
        self.clock = clock
        self.log = log
        self.orthanc = orthanc
        auth = cfg.section("auth")
        self.max_body = auth["max_body_bytes"]
        self._proxies: Networks = tuple(ipaddress.ip_network(n, strict=False)
                                        for n in auth["trusted_proxies"])
        self._https_listener = https_listener  # Orthanc's own SslEnabled
        local = {"localhost", "127.0.0.1", "::1", socket.gethostname().lower()}
        allowed_hosts = local | {h.strip("[]").lower() for h in cfg.get("allowed_hosts")}
        self.settings = Settings(db, clock)
        self.audit = Audit(db, clock, keys.key("audit-chain"))
        self.access = AccessRecorder(db, self.audit, orthanc, clock, lambda problem: log.warning(
            f"OrthancNAS: could not audit an access: {problem}"))
        self.forwarder = forwarder_from_config(db, clock, log, cfg.section("audit")["syslog"])
        self.users = Users(db)
        self.sessions = Sessions(db, keys, clock, idle_seconds=auth["session_idle_minutes"] * 60,
                                 absolute_seconds=auth["session_absolute_hours"] * 3600,
                                 pending_seconds=auth["pending_login_minutes"] * 60)
        self.tokens = Tokens(db, keys, clock, max_days=auth["token_max_days"])
        self.site = Site(cfg.get("public_url"), allowed_hosts, auth["cookie_secure"])
        self.router: Router[App] = Router(ROUTES, self.max_body)
        self.backend = AuthBackend(self.users, self.sessions, self.tokens,
                                   Policy(cfg.get("access_policy")), self.two_factor,
                                   self.site.public_origin, db, clock, self.router.access_of)
        throttle = Throttle(db, clock, max_failures=auth["ip_max_failures"],
                            window_seconds=auth["ip_window_minutes"] * 60)
        self.auth = AuthService(db, self.users, self.sessions, keys, PinHasher(auth["bcrypt_cost"]),
                                self.lockout, throttle, self.audit, clock, self.two_factor,
                                {"min": auth["pin_min_length"], "max": auth["pin_max_length"],
                                 "score": auth["pin_min_score"]})
        data_dir = self.data_dir = Path(cfg.get("data_dir")).resolve()
        self.mirror = MirrorService(cfg, db, self.settings, keys,
                                    Outbox(db, data_dir / "mirror-spool", clock), self.audit, clock,
                                    python or [sys.executable], env or {}, self._spool_failed,
                                    functools.partial(stored_copy, orthanc, orthanc_storage))
        self.backup = BackupService(cfg.section("backup"), db, self.settings, self.audit, clock,
                                    data_dir, self.mirror.effective, python or [sys.executable],
                                    env or {})
        self.catalog = Catalog(db, orthanc, clock,
                               lambda ids: self.mirror.outbox.state_of(db, ids))
        self.uploads = Uploads(db, self.catalog, self.audit)
        self.received = Received(db, clock)
        self.mirror_samples = MirrorSamples(db, clock)
        shares = cfg.section("shares")
        self.shares = Shares(db, keys, clock, self.audit, self.auth.hasher,
                             pin_max_attempts=shares["pin_max_attempts"],
                             view_seconds=shares["view_minutes"] * 60,
                             limits=ShareLimits(shares["default_expiry_hours"],
                                                shares["max_expiry_hours"],
                                                shares["default_max_views"], shares["max_views"]))
        self.accounts = Accounts(db, self.users, self.sessions, self.tokens, self.shares,
                                 self.auth, self.audit, clock, self.lockout)
        self.share_throttle = Throttle(db, clock, max_failures=shares["ip_max_failures"],
                                       window_seconds=shares["ip_window_minutes"] * 60)
        self._orthanc_config = dict(orthanc_config or {})
        self.modalities = Modalities(db, orthanc, self.users, self.audit, clock,
                                     self._orthanc_config.get("DicomModalities") or {},
                                     self._file_ae_owners)
        self.dashboard = Dashboard(db, orthanc, clock, self.mirror.status, self.received)
        self.pages = Pages()
        self._orthanc_version: str | None = None
        self._stop = threading.Event()
        self._forward_wake = threading.Event()
        # Set by the adapter when the C gate filters requests: (remembered, asked) counts.
        self.gate_stats: Callable[[], tuple[int, int]] | None = None
        self.housekeeping = Housekeeping(self.audit, self.access, self.lockout, clock, log,
                                         data_dir / HEAD_FILE,
                                         cfg.get("audit.retention_days"),
                                         cfg.get("audit.head_interval_minutes") * 60)

    def _spool_failed(self, problem: str) -> None:
        self.log.error(f"OrthancNAS: could not queue received instances for the NAS "
                       f"({problem}); the next reconciliation will queue them")

    # ---- settings that admins may change at run time -------------------------------------

    def two_factor(self) -> dict[str, Any]:
        """Effective 2FA settings: orthanc.json, overridden by what admins saved."""
        return self.settings.effective("two_factor", self.cfg.section("two_factor"))

    def lockout(self) -> Lockout:
        tf, auth = self.two_factor(), self.cfg.section("auth")
        return Lockout(self.db, self.clock, max_failures=tf["max_failed_attempts"],
                       duration_seconds=tf["lockout_duration_minutes"] * 60,
                       account_max=auth["account_max_failures"],
                       account_window_seconds=auth["account_failure_window_hours"] * 3600)

    # ---- entry points used by the adapter -------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """The filter's decision, for how many seconds the same request (path and credential)
        may be allowed again without asking (0: ask every time), and whether that holds for
        any GET arguments (the decision and the access audit looked at the path alone)."""
        request = self._from_client(request)
        allowed, principal = self.backend.decide(request)
        if not allowed:
            self.uploads.refused()
            return Decision(False, 0.0)
        self.uploads.allowed(request, principal)
        if principal is None:
            return Decision(True, 0.0)
        scope = (f"s:{principal.session_hash[:16]}" if principal.session_hash
                 else f"t:{principal.token_id}:{int(self.clock.now() // 86400)}")
        self.access.observe(scope, principal.name, request.ip, request.method, request.path,
                            request.query)
        any_arguments = not reads_query(request.path)
        if (request.method != "GET" or (request.query and not any_arguments)
                or principal.restricted
                or PLUGIN_ROUTES.fullmatch(request.path)):  # the plugin's own routes need the
            return Decision(True, 0.0)  # filter's view of each request (client IP)
        return Decision(True, min(self.backend.remaining(request), REMEMBER_MAX), any_arguments)

    def _from_client(self, request: Request) -> Request:
        """The request with the path Orthanc routes (``routed_path``), and the client's address
        and scheme: a trusted proxy's word for them, else the connection's (X-Forwarded-Proto
        is replaced by what we believe)."""
        path = routed_path(request.path)
        if path != request.path:
            request = dataclasses.replace(request, path=path)
        headers = request.headers
        proto = headers.get("x-forwarded-proto")
        scheme = client_scheme(request.ip, proto or "", self._proxies, self._https_listener)
        if proto != scheme and not (proto is None and scheme == "http"):
            headers = {**headers, "x-forwarded-proto": scheme}
        ip = client_ip(request.ip, headers.get("x-forwarded-for", ""), self._proxies)
        if ip == request.ip and headers is request.headers:
            return request
        return dataclasses.replace(request, ip=ip, headers=headers)

    def handle(self, request: Request) -> Response:
        request = self._from_client(request)
        try:
            caller = self.backend.authenticate(request)  # the filter's, from its cache
            pending = None if caller is not None else self.backend.pending(request)
            response = self.router.dispatch(self, request, caller, pending)
        except ApiError as err:
            response = error_response(err)
        except AccountError as err:
            extra = {"field": err.field} if err.field else {}
            response = error_response(ApiError(err.status, str(err), **extra))
        except AuthFailed as err:
            self.auth_failure(request)
            extra = {"field": err.field} if err.field else {}
            response = error_response(ApiError(err.status, err.message, **extra))
        except PinRejected as err:
            response = error_response(ApiError(400, str(err), field="pin"))
        except Exception as exc:  # a bug: say so without a stack trace or data
            self.log.error(f"OrthancNAS: {request.method} {redacted_path(request.path)} "
                           f"failed: {type(exc).__name__}")
            response = error_response(ApiError(500, "internal error"))
        response.headers.extend(SECURITY_HEADERS)
        return response

    def auth_failure(self, request: Request) -> None:
        """One log line per refused credential (login, code, share link or PIN), read by
        fail2ban (deploy/fail2ban): the client's address and the route, never what was typed."""
        self.log.warning(f"OrthancNAS: authentication failure from {request.ip} on "
                         f"{request.method} {redacted_path(request.path)}")

    def explorer_extension(self) -> str:
        return self.pages.explorer_extension()

    def on_stored(self, instance_id: str, data: bytes, calling_aet: str,
                  tags: Callable[[], dict[str, Any]]) -> None:
        """Orthanc stored an instance (C-STORE, upload, modification): queue its mirror copy,
        and record its sender: the uploader, or the user mapped to the calling AE title."""
        self.mirror.on_stored(instance_id, data)
        if not calling_aet:
            uploader = self.uploads.stored(instance_id, tags)
            if uploader is None:
                self.received.count(OTHER)
            else:
                self.received.count(uploader.via, uploader.name)
            return
        self.received.count(DICOM, calling_aet)
        self.access.observe_import(instance_id, calling_aet)
        owner = self.modalities.owner_of(calling_aet)
        if owner is not None:
            values = tags()
            study_id = orthanc_study_id(str(values.get("PatientID", "")),
                                        str(values.get("StudyInstanceUID", "")))
            self.catalog.record_owner(instance_id, study_id, owner, "cstore", calling_aet)

    def _file_ae_owners(self) -> dict[str, str]:
        """AE title -> username for modalities orthanc.json declares: ``ae_owners``, and
        what admins saved with the former run-time map (the modalities screen replaced it)."""
        return self.settings.effective("ae_owners", self.cfg.get("ae_owners"), merge=False)

    def orthanc_aet(self) -> str:
        return str(self._orthanc_config.get("DicomAet", "ORTHANC"))

    def dicom_port(self) -> int:
        return int(self._orthanc_config.get("DicomPort", 4242))

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
        threading.Thread(target=self.housekeeping.run, args=(self._stop,),
                         name="orthanc-nas-housekeeping", daemon=True).start()
        threading.Thread(target=self.access.run, args=(self._stop,), name="orthanc-nas-access",
                         daemon=True).start()
        threading.Thread(target=self._counters_loop, name="orthanc-nas-counters",
                         daemon=True).start()
        if self.forwarder is not None:
            threading.Thread(target=self.forwarder.run, args=(self._stop, self._forward_wake),
                             name="orthanc-nas-syslog", daemon=True).start()
        refused = self.modalities.apply_all()
        if refused:
            self.log.error("OrthancNAS: Orthanc refused the saved DICOM modalities "
                           f"{', '.join(refused)}: they cannot send until corrected")
        key_path = self.data_dir / KEY_FILE
        self.mirror.start(orthanc_url, orthanc_token, location_of(self.db), str(key_path))
        db_path = getattr(self.db, "path", None)
        if db_path is not None:  # PostgreSQL is backed up with its own tools (docs/scaling.md)
            self.backup.db_path, self.backup.key_path = Path(db_path), key_path
            threading.Thread(target=self.backup.run_schedule, args=(self._stop,),
                             name="orthanc-nas-backup", daemon=True).start()

    def stopping(self) -> None:
        self._stop.set()
        try:
            self.received.flush()
        except Exception as exc:  # stopping anyway: say what is lost
            self.log.error(f"OrthancNAS: received counts not saved: {type(exc).__name__}")
        self.access.wake.set()
        self._forward_wake.set()
        self.mirror.stop()

    def _counters_loop(self) -> None:
        """Adds the received-instance counters to the database, and samples the mirror."""
        while not self._stop.wait(COUNTERS_SECONDS):
            try:
                self.received.flush()
                self.mirror_samples.maybe_record(self.mirror.status())
            except Exception as exc:  # never let it die silently; retry next time
                self.log.error(f"OrthancNAS: counters failed: {type(exc).__name__}: {exc}")

    # ---- helpers for route handlers -------------------------------------------------------

    def orthanc_version(self) -> str:
        if self._orthanc_version is None:
            try:
                self._orthanc_version = str(self.orthanc.get("/system")["Version"])
            except Exception:
                return "unknown"
        return self._orthanc_version


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
    if cfg.get("visibility") == STRICT:
        raise config.ConfigError(f"{config.SECTION}.visibility", strict_refusal(orthanc))
    data_dir = Path(cfg.get("data_dir")).resolve()
    db_path = Path(cfg.get("database.path") or data_dir / "orthanc-nas.sqlite")
    db = open_database(cfg.get("database.backend"), db_path, dsn=env.get(PG_DSN_ENV, ""))
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
    app = App(cfg, db, keys, clock, log, orthanc, python, child_env, storage,
              https_listener=bool(orthanc_config.get("SslEnabled", False)),
              orthanc_config=orthanc_config)
    bootstrap_admin(app, env)
    return app
