"""The plugin's HTTP routes: each module's ``ROUTES``, declared next to their endpoints."""

from __future__ import annotations

from ..routing import Route
from . import (
    account,
    admin,
    audit,
    backup,
    dashboard,
    docs,
    health,
    images,
    login,
    modalities,
    nas,
    native,
    pages,
    shares,
    transfers,
    viewer,
)

ROUTES: tuple[Route, ...] = (
    *login.ROUTES, *account.ROUTES, *admin.ROUTES, *audit.ROUTES, *backup.ROUTES, *nas.ROUTES,
    *images.ROUTES, *modalities.ROUTES, *shares.ROUTES, *viewer.ROUTES, *dashboard.ROUTES,
    *health.ROUTES, *transfers.ROUTES, *native.ROUTES, *pages.ROUTES, *docs.ROUTES,
)
