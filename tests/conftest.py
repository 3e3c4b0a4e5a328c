"""Shared fixtures: the real demo store on a free port, config files, TLS material."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.demo.storefront import DemoStore, start_store
from agent.httpclient import HttpClients
from agent.state.store import db_path
from tests.pgcluster import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def store() -> AsyncIterator[DemoStore]:
    """A healthy demo store on an ephemeral loopback port."""
    shop = await start_store("127.0.0.1", 0)
    try:
        yield shop
    finally:
        await shop.close()


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    """The agent's shared HTTP client stack (closed after the test)."""
    stack = HttpClients("storewatch-test")
    yield stack
    await stack.aclose()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL server on 127.0.0.1 for the session (tests/pgcluster.py)."""
    with PostgresCluster(user="storewatch", database="storewatch") as cluster:
        yield cluster


_databases = itertools.count(1)


def fresh_database(cluster: PostgresCluster) -> str:
    """Create an empty database in ``cluster``; returns its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.url(name)


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """The ``postgresql://`` URL of a fresh, empty database (one per test)."""
    return fresh_database(pg_cluster)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's incident store lives, once per backend: the SQLite file of ``tmp_path``
    as state directory, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return db_path(tmp_path)
    return fresh_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a YAML config (dedented) to a temp file and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def storewatch(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``python -m agent``)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT)


@dataclass(frozen=True)
class TLSMaterial:
    """A private CA, and leaf certificates for 127.0.0.1 signed by it or by themselves."""

    ca_cert: Path
    leaf_cert: Path        # valid 60 days, signed by the CA
    leaf_key: Path
    short_cert: Path       # valid 3 days, signed by the CA
    selfsigned_cert: Path  # not signed by the CA
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """Certificates made with the real openssl CLI, once per test session."""
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "30", "-subj", "/CN=storewatch test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, days in (("leaf.pem", "60"), ("short.pem", "3")):
        _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", name, "-days", days, "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-key", "leaf.key", "-out", "self.pem", "-days", "60",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    return TLSMaterial(d / "ca.pem", d / "leaf.pem", d / "leaf.key", d / "short.pem",
                       d / "self.pem", d / "leaf.key")
