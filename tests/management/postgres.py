"""Debian's PostgreSQL for tests: initdb into a temp dir, postgres on a free loopback port.

As root (CI runs as root) the server runs as the ``postgres`` user, which owns the data
directory; initdb refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import missing

BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_bin() -> Path | None:
    if (BIN / "postgres").exists():
        return BIN
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class PostgresServer:
    """A throw-away PostgreSQL cluster (trust authentication, loopback only)."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            missing("PostgreSQL (initdb, postgres)")
        self.bin = Path(str(binaries))
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="viva-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                        "trust", "-E", "UTF8", "--no-sync"], check=True,
                       capture_output=True, **self._user)
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
             "-c", "max_connections=60", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "wb"),  # noqa: SIM115
            **self._user)
        wait_port(self.port, timeout=30, proc=self.proc)
        self._wait_ready(time.monotonic() + 30)
        return self

    def _wait_ready(self, deadline: float) -> None:
        """The port opens before the server accepts sessions ("the database system is
        starting up"): wait for pg_isready."""
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", "postgres", "-d", "postgres"]).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL on port {self.port} is not ready after 30s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def reset(self) -> None:
        """Drop every table, so each test starts from an empty database."""
        self.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")

    def sql(self, statement: str) -> str:
        return subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement],
            check=True, capture_output=True, text=True).stdout

    def dump(self) -> bytes:
        """Every row of the database (pg_dump --data-only), for greps."""
        return subprocess.run(
            [str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "--data-only", "postgres"], check=True, capture_output=True).stdout
