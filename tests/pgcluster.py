"""A throw-away PostgreSQL cluster on loopback for tests (Debian ``postgresql`` binaries).

Used by the real-shop tests (EverShop's database) and the incident store's PostgreSQL tests
(tests/conftest.py: ``pg_cluster`` per session, ``pg_url`` a fresh database per test).

``PostgresCluster`` runs ``initdb`` into a fresh temp directory, starts the server on
127.0.0.1 on a free port (no Unix socket outside that directory) and stops it by the PID in
``postmaster.pid``. PostgreSQL refuses to run as root: as root the cluster belongs to the
``postgres`` system user (``runuser``), otherwise to the calling user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_LIB = Path("/usr/lib/postgresql")


class PostgresError(RuntimeError):
    """The cluster could not be made or started (message names the step and its output)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    versions = sorted((p for p in PG_LIB.glob("*/bin/postgres")),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise PostgresError(f"no PostgreSQL server under {PG_LIB} (apt-get install postgresql)")
    return versions[-1].parent


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresCluster:
    """One cluster: ``start()`` → ``dsn`` fields → ``stop()`` (also a context manager)."""

    def __init__(self, user: str = "evershop", database: str = "evershop") -> None:
        self.user = user
        self.database = database
        self.port = 0
        self.root: Path | None = None
        self.pid: int | None = None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        assert self.root is not None
        return self.root / "data"

    def start(self) -> PostgresCluster:
        """initdb, start on 127.0.0.1:<free port>, create the database; returns self."""
        bindir = pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="storewatch-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                   "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"], "initdb")
        self.port = free_port()
        try:
            self.resume()
            self._run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                       "-U", self.user, self.database], "createdb")
        except BaseException:
            self.stop()  # no server or temp directory left behind
            raise
        return self

    def url(self, database: str | None = None, password: str | None = None) -> str:
        """A ``postgresql://`` URL of a database of this cluster (trust auth: any password)."""
        secret = f":{password}" if password else ""
        return (f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    def pause(self) -> None:
        """Stop the server by PID (fast shutdown), keeping its data and port for ``resume``."""
        if self.pid is not None:
            _stop_pid(self.pid, signal.SIGINT, 30.0)
            self.pid = None

    def resume(self) -> None:
        """Start the server (again) on its port and wait until it accepts connections."""
        assert self.root is not None
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l",
                   str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start"],
                  "pg_ctl start")
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def _run(self, cmd: list[str], step: str) -> None:
        proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120,
                              cwd=self.root)
        if proc.returncode != 0:
            raise PostgresError(f"{step} failed ({proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()[-2000:]}")

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after 30 s; removes the temp directory."""
        self.pause()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pid(pid: int, sig: signal.Signals, grace: float) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
