"""What the endpoints may use: the services ``App`` wires together, as one typed interface.

Endpoints depend on this protocol, not on ``App``: the route modules sit below the wiring, and
unit tests can hand an endpoint anything that has these attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from . import config
from .accounts import Accounts
from .audit import Audit
from .audit.access import AccessRecorder
from .audit.forwarder import Forwarder
from .auth.backend import AuthBackend
from .auth.lockout import Throttle
from .auth.service import AuthService
from .auth.sessions import Sessions
from .auth.tokens import Tokens
from .auth.users import Users
from .backup.service import BackupService
from .clock import Clock
from .db import Database
from .images.catalog import Catalog
from .images.dashboard import Dashboard
from .images.shares import Shares
from .keys import KeyRing
from .mirror.samples import MirrorSamples
from .mirror.service import MirrorService
from .modalities import Modalities
from .orthanc_api import OrthancApi
from .pages import Pages
from .routing import Router
from .settings import Settings
from .site import Site
from .web import Request


class Services(Protocol):
    cfg: config.Config
    db: Database
    keys: KeyRing
    clock: Clock
    orthanc: OrthancApi
    max_body: int
    data_dir: Path
    site: Site
    settings: Settings
    audit: Audit
    access: AccessRecorder
    forwarder: Forwarder | None
    users: Users
    sessions: Sessions
    tokens: Tokens
    backend: AuthBackend
    auth: AuthService
    accounts: Accounts
    mirror: MirrorService
    backup: BackupService
    catalog: Catalog
    shares: Shares
    share_throttle: Throttle
    dashboard: Dashboard
    modalities: Modalities
    mirror_samples: MirrorSamples
    pages: Pages
    router: Router[Any]
    gate_stats: Callable[[], tuple[int, int]] | None

    def two_factor(self) -> dict[str, Any]: ...

    def orthanc_aet(self) -> str: ...

    def dicom_port(self) -> int: ...

    def orthanc_version(self) -> str: ...

    def auth_failure(self, request: Request) -> None: ...
