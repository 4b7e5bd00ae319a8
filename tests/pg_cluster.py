"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries, ``initdb``
and ``pg_ctl`` in a temporary folder, run as an unprivileged user, on a free port."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from harness import free_port

PG_USER = "postgres"  # Debian's postgresql package creates it; initdb refuses to run as root


def pg_bin() -> Path:
    """The newest installed server's binaries (/usr/lib/postgresql/<version>/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return versions[-1].parent


class PgCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orthanc-nas-pg-"))
        self.port = free_port()
        self.bin = pg_bin()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam(PG_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", PG_USER, "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PgCluster:
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        # Two Orthanc replicas with their HTTP threads, their workers and the tests.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                   " -c max_connections=400 -c fsync=off -c synchronous_commit=off"
                   " -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options,
                  "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_USER} dbname={dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its connection string."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
