"""The plugin's state in PostgreSQL: several Orthanc replicas sharing users, sessions, shares,
audit and one mirror queue (docs/scaling.md).

Behaves as ``SqliteDatabase`` does, across processes and machines:
- one connection per OS thread, in autocommit outside transactions;
- write transactions serialized by one transaction-scoped advisory lock, as SQLite's
  ``BEGIN IMMEDIATE`` serializes them: a read-then-write (lockout counts, a share's last view,
  the audit chain's next MAC) stays atomic whichever replica runs it;
- a committed write that invalidates sends ``NOTIFY``; every other replica's listener thread
  bumps ``generation`` and calls the same ``on_invalidate`` hooks (filter cache, C gate), so
  a logout on one replica is refused on the others within milliseconds.
SQL keeps SQLite's ``?`` placeholders; ``translate`` makes them PostgreSQL's, here only.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.adapt import Loader

from .db import DatabaseError, Params, Row
from .schema import MIGRATIONS, POSTGRES_PREPARE, for_dialect

CHANNEL = "orthanc_nas_invalidate"
# pg_advisory_xact_lock keys (any constant bigints of our own).
WRITER_LOCK = 0x4F4E_0001
MIGRATION_LOCK = 0x4F4E_0002
LISTEN_RETRY = 1.0  # seconds between reconnection attempts of the listener
CONNECT_TIMEOUT = 10

_PLACEHOLDER = re.compile(r"IS NOT \?|\?|%")


def translate(sql: str) -> str:
    """SQLite-flavoured SQL as psycopg takes it: ``?`` -> ``%s``, a literal ``%`` doubled,
    ``IS NOT ?`` (SQLite's null-safe comparison) -> ``IS DISTINCT FROM %s``."""
    return _PLACEHOLDER.sub(lambda m: {"?": "%s", "%": "%%"}.get(m.group(0),
                                                               "IS DISTINCT FROM %s"), sql)


def _params(params: Params) -> Sequence[Any]:
    # The schema keeps SQLite's integers for flags: a Python bool is sent as one.
    return [int(p) if isinstance(p, bool) else p for p in params]


class PgRow(tuple[Any, ...]):
    """A row readable by column name or position, like ``sqlite3.Row``."""

    _names: dict[str, int]
    _keys: list[str]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return super().__getitem__(self._names[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._keys)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], PgRow]:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in reversed(list(enumerate(names)))}

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row._names, row._keys = index, names
        return row

    return make


class _NumberLoader(Loader):
    """numeric (what SUM of integers gives) as an int when whole, else a float: SQLite's
    answers, and JSON-serialisable."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class _PgTransaction:
    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(translate(sql), _params(params)).rowcount

    def insert(self, sql: str, params: Params = ()) -> int:
        row = self._conn.execute(translate(sql) + " RETURNING id", _params(params)).fetchone()
        assert row is not None
        return int(row[0])

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self._conn.execute(translate(sql), _params(params)).fetchone()

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self._conn.execute(translate(sql), _params(params)).fetchall())


class PostgresDatabase:
    """PostgreSQL through psycopg 3; ``dsn`` a libpq connection string (or empty: PG*
    environment variables, including PGSSLMODE and the other TLS settings)."""

    dialect = "postgresql"

    def __init__(self, dsn: str, *, listen: bool = True) -> None:
        self._dsn = dsn
        self._conns: dict[int, psycopg.Connection[PgRow]] = {}
        self._origin = secrets.token_hex(8)  # our own notifications are not news
        self.generation = 0
        self._generation_lock = threading.Lock()  # bumped by writers and by the listener
        self.on_invalidate: list[Callable[[], None]] = []
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        try:
            self._migrate()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot open the PostgreSQL database: {exc}") from exc
        if listen:
            self._listener = threading.Thread(target=self._listen, name="orthanc-nas-listen",
                                              daemon=True)
            self._listener.start()

    def _connect(self, *, autocommit: bool = True) -> psycopg.Connection[PgRow]:
        conn = psycopg.connect(self._dsn, autocommit=autocommit, row_factory=_row_factory,
                               connect_timeout=CONNECT_TIMEOUT,
                               application_name="orthanc-nas")
        conn.adapters.register_loader("numeric", _NumberLoader)
        return conn

    def _conn(self) -> psycopg.Connection[PgRow]:
        ident = threading.get_ident()
        conn = self._conns.get(ident)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._conns[ident] = conn
        return conn

    @contextmanager
    def transaction(self, *, invalidates: bool = True) -> Iterator[_PgTransaction]:
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            yield _PgTransaction(conn)
            if invalidates:  # delivered at commit, to every listening replica
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._origin))
        if invalidates:
            self._invalidated()

    def _invalidated(self) -> None:
        with self._generation_lock:
            self.generation += 1
        for listener in self.on_invalidate:
            listener()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self._conn().execute(translate(sql), _params(params)).fetchone()

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self._conn().execute(translate(sql), _params(params)).fetchall())

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(str(exc)) from exc

    def schema_version(self) -> int:
        row = self.one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    def close(self) -> None:
        self._closed.set()
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()  # the listener ends within its poll interval

    def _listen(self) -> None:
        """Hears the other replicas' invalidations; after a lost connection (notifications
        missed meanwhile) it invalidates once, then listens again."""
        lost = False
        while not self._closed.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        self._invalidated()
                    lost = False
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.payload != self._origin:
                                self._invalidated()
            except psycopg.Error:
                lost = True
                self._closed.wait(LISTEN_RETRY)

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            with conn.transaction():  # replicas starting together migrate one at a time
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                for statement in POSTGRES_PREPARE:
                    conn.execute(statement)
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                             "version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                current = int(row[0]) if row and row[0] is not None else 0
                latest = max(MIGRATIONS)
                if current > latest:
                    raise DatabaseError(f"database schema {current} is newer than this plugin"
                                        f" ({latest})")
                for version in sorted(v for v in MIGRATIONS if v > current):
                    for statement in for_dialect(MIGRATIONS[version], self.dialect):
                        conn.execute(statement.encode())  # DDL: no placeholders to translate
                    conn.execute("INSERT INTO schema_version VALUES (%s, to_char(now() AT TIME"
                                 " ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))", (version,))
        finally:
            conn.close()
