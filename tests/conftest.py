"""Shared fixtures: one real Orthanc with the plugin per test session, and its admin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from browser import browser  # noqa: F401 (a fixture)
from harness import Account, Client, OrthancServer, admin_account

# Fuzz tests (hypothesis): short and the same on every run unless a longer one is asked for
# (docs/testing.md). Schemathesis's runs set their own count (ORTHANC_NAS_FUZZ_EXAMPLES).
settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None,
                          database=None, print_blob=True)
settings.register_profile("long", max_examples=20_000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("ORTHANC_NAS_HYPOTHESIS_PROFILE", "ci"))

# Cheap bcrypt for the shared server; the timing test starts its own at a real cost.
FAST = {"OrthancNAS": {"auth": {"bcrypt_cost": 4, "ip_max_failures": 100000}},
        "DicomModalities": {"storescu": ["STORESCU", "127.0.0.1", 11112],
                            "unmapped": ["UNMAPPED", "127.0.0.1", 11113]}}


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), FAST).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admin_session(orthanc: OrthancServer) -> tuple[Client, Account]:
    """The bootstrap admin after first login (PIN changed, TOTP enrolled)."""
    client = orthanc.client()
    account = admin_account()
    client.onboard(account, "Blue-Harbor-PIN-2024!")
    return client, account


def logged_in(session: tuple[Client, Account]) -> Client:
    session[0].ensure_logged_in()
    return session[0]


@pytest.fixture
def admin(admin_session: tuple[Client, Account]) -> Client:
    return logged_in(admin_session)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
