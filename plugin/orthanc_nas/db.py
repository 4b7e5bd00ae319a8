"""The plugin's own state store: a small SQL interface, on SQLite (default) or PostgreSQL.

Repositories (users, sessions, audit, ...) speak portable SQL with ``?`` placeholders through
``Database`` (upserts with ``ON CONFLICT``, no SQLite-only functions; ``dialect`` for the rare
fragment that differs). Migrations are versioned and applied at start, the same on both; the
PostgreSQL backend (several Orthanc replicas sharing one state) lives in ``db_postgres``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from .schema import MIGRATIONS, for_dialect

Params = Sequence[Any]


class Row(Protocol):
    """A result row: by column name or position (``sqlite3.Row`` and its PostgreSQL twin)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class DatabaseError(RuntimeError):
    """The database cannot be opened, migrated or reached."""


class Transaction(Protocol):
    def execute(self, sql: str, params: Params = ()) -> int:
        """Runs a statement; returns the affected row count."""

    def insert(self, sql: str, params: Params = ()) -> int:
        """Runs an INSERT; returns the new row id."""

    def one(self, sql: str, params: Params = ()) -> Row | None: ...

    def all(self, sql: str, params: Params = ()) -> list[Row]: ...


class Database(Protocol):
    dialect: str
    """``sqlite`` or ``postgresql``: for the few SQL fragments that differ."""
    generation: int
    """Bumped by every committed write that may change who is allowed what."""
    on_invalidate: list[Callable[[], None]]
    """Called after each such bump (e.g. to clear the gate's memory of allowed requests)."""

    def transaction(self, *, invalidates: bool = True) -> AbstractContextManager[Transaction]:
        """A ``Transaction`` committed on success, rolled back on error (writer lock).
        ``invalidates=False`` only for writes that can change neither what the filter decides
        nor a cached caller (users, sessions begun or ended, tokens, settings all invalidate):
        activity marks such as ``last_seen``, logs, queues, counters read afresh each time.
        Write transactions are serialized (one writer at a time, across replicas too), so a
        read followed by a write in one transaction is atomic."""

    def one(self, sql: str, params: Params = ()) -> Row | None: ...

    def all(self, sql: str, params: Params = ()) -> list[Row]: ...

    def ping(self) -> None: ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def insert(self, sql: str, params: Params = ()) -> int:
        rowid = self._conn.execute(sql, params).lastrowid
        assert rowid is not None
        return rowid

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()


class SqliteDatabase:
    """SQLite in WAL mode, one connection per OS thread, foreign keys on."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        # Keyed by OS thread id: the Orthanc plugin gives each callback a fresh Python thread
        # state, so threading.local() would open a new connection on every request.
        self._conns: dict[int, sqlite3.Connection] = {}
        self.generation = 0
        self.on_invalidate: list[Callable[[], None]] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        ident = threading.get_ident()
        conn = self._conns.get(ident)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conns[ident] = conn
        return conn

    @contextmanager
    def transaction(self, *, invalidates: bool = True) -> Iterator[_SqliteTransaction]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTransaction(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if invalidates:
            self.generation += 1
            for listener in self.on_invalidate:
                listener()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn().execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn().execute(sql, params).fetchall()

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc

    def schema_version(self) -> int:
        row = self.one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    def close(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()

    def _migrate(self) -> None:
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                     "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        current = self.schema_version()
        latest = max(MIGRATIONS)
        if current > latest:
            raise DatabaseError(f"database schema {current} is newer than this plugin ({latest})")
        for version in sorted(v for v in MIGRATIONS if v > current):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in for_dialect(MIGRATIONS[version], self.dialect):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, datetime('now'))", (version,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


PG_DSN_ENV = "ORTHANC_NAS_PG_DSN"  # libpq connection string (else libpq's PG* variables)
POSTGRES_LOCATION = "postgresql:"  # where a child process (the mirror worker) finds the state


def location_of(db: Database) -> str:
    """What ``open_location`` opens again in another process: SQLite's file, or PostgreSQL
    through the same environment."""
    path = getattr(db, "path", None)
    return str(path) if path is not None else POSTGRES_LOCATION


def open_location(location: str, env: dict[str, str], *, listen: bool = True) -> Database:
    if location == POSTGRES_LOCATION:
        return open_database("postgresql", Path(), dsn=env.get(PG_DSN_ENV, ""), listen=listen)
    return open_database("sqlite", Path(location))


def open_database(backend: str, path: Path, *, dsn: str = "", listen: bool = True) -> Database:
    """Opens (and migrates) the configured backend. ``path`` is SQLite's file; ``dsn`` a
    libpq connection string for PostgreSQL (empty: libpq's PG* environment variables);
    ``listen`` whether to hear other replicas' invalidations (processes that cache nothing
    need not)."""
    if backend == "sqlite":
        return SqliteDatabase(path)
    if backend == "postgresql":
        from .db_postgres import PostgresDatabase  # psycopg only where it is used

        return PostgresDatabase(dsn, listen=listen)
    raise DatabaseError(f"unsupported database backend {backend!r}")
