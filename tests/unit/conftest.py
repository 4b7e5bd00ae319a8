"""Fixtures of the unit tests: the plugin's database on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orthanc_nas.db import Database, open_database
from pg_cluster import PgCluster

BACKENDS = ("sqlite", "postgresql")

MakeDb = Callable[..., Database]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL server for the session; each test gets its own database."""
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def make_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeDb]:
    """Opens the test's database on the backend of this run: ``make_db()`` the plugin's,
    ``make_db("name")`` another; the same name again opens the same database as a second
    process (a replica) would. All closed at the end."""
    backend = request.param
    opened: list[Database] = []
    dsns: dict[str, str] = {}

    def make(name: str = "db") -> Database:
        if backend == "sqlite":
            db: Database = open_database("sqlite", tmp_path / f"{name}.sqlite")
        else:
            cluster: PgCluster = request.getfixturevalue("pg_cluster")
            if name not in dsns:
                dsns[name] = cluster.create_database()
            db = open_database("postgresql", Path(), dsn=dsns[name])
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()
