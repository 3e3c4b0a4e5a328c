"""A fleet of real agents (`python -m agent run -c …` subprocesses) sharing one store.

``state`` yields where the shared store lives: one SQLite file shared by the agent processes
(the state directory; the default), or a fresh PostgreSQL database on the session's throw-away
cluster (``@pytest.mark.parametrize("state", ["postgresql"], indirect=True)``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.errors import StateError
from agent.state.database import Row, is_driver_error, open_database
from agent.state.store import db_path
from tests.conftest import ROOT, fresh_database

BACKENDS = ["sqlite", "postgresql"]
"""Parameters of ``state`` for the tests that run on both backends."""


@dataclass
class SharedState:
    """The store every agent of a test shares (``url``: PostgreSQL; else the SQLite file of
    ``state_dir``). The state directory is shared too: files (baselines, evidence) and the
    ``sqlite`` ticket sink's local tickets, which always live in ``<state_dir>/storewatch.db``."""

    state_dir: Path
    url: str | None = None

    @property
    def location(self) -> str | Path:
        """The store as ``agent.state`` / ``--state`` name it."""
        return self.url if self.url is not None else db_path(self.state_dir)

    def agent_yaml(self) -> str:
        """The ``agent:`` keys (indented two spaces) that point an agent at the store."""
        state = f"  state: {self.url}\n" if self.url is not None else ""
        return f"  state_dir: {self.state_dir}\n" + state

    def cli_args(self) -> list[str]:
        """Arguments that point ``storewatch incidents|tickets|silence`` at the store."""
        return ["--state", str(self.location)]

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        """Rows of ``sql`` on the shared store ([] before its schema exists); a query of the
        ``local_tickets`` table reads the sqlite sink's file in the state directory."""
        where = db_path(self.state_dir) if "local_tickets" in sql else self.location
        if isinstance(where, Path) and not where.exists():
            return []
        try:
            db = open_database(where)
        except StateError:
            return []
        try:
            return list(db.execute(sql, args).fetchall())
        except Exception as exc:  # schema not created yet
            if not is_driver_error(exc):
                raise
            return []
        finally:
            db.close()


@pytest.fixture
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    """The shared store: a SQLite state directory, or with the parameter ``"postgresql"`` a
    fresh database of the session's PostgreSQL cluster."""
    backend = getattr(request, "param", "sqlite")
    url = None
    if backend == "postgresql":
        url = fresh_database(request.getfixturevalue("pg_cluster"))
    yield SharedState(tmp_path / "state", url)


@dataclass
class Agent:
    """One agent process of the fleet."""

    name: str
    location: str
    config: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    pids: list[int] = field(default_factory=list)

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "-c", str(self.config), cwd=ROOT,
                stdout=out, stderr=out)
        self.pids.append(self.proc.pid)

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 15)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


AGENTS = (("a1", "fra"), ("a2", "nyc"), ("a3", "sgp"))


@dataclass
class Fleet:
    """Agents a1 (fra), a2 (nyc), a3 (sgp) with one config body each."""

    agents: list[Agent]

    def by_pid(self, pid: int) -> Agent:
        return next(a for a in self.agents if a.proc is not None and a.proc.pid == pid)

    async def start(self) -> None:
        for agent in self.agents:
            await agent.start()

    async def stop(self) -> None:
        for agent in self.agents:
            await agent.kill(signal.SIGTERM)

    def logs(self) -> str:
        return "".join(a.log.read_text(errors="replace") for a in self.agents
                       if a.log.exists())


@pytest.fixture
async def fleet(tmp_path: Path, state: SharedState
                ) -> AsyncIterator[Callable[[str], Fleet]]:
    """``fleet(body)``: three agents on the shared store, each with ``body`` (YAML after the
    ``agent:`` section: defaults, sites, incidents, sinks...)."""
    made: list[Fleet] = []

    def make(body: str) -> Fleet:
        agents = []
        for name, location in AGENTS:
            config = tmp_path / f"{name}.yaml"
            config.write_text(
                "agent:\n"
                f"  name: {name}\n  location: {location}\n  listen: 127.0.0.1:0\n"
                "  jitter: 0\n" + state.agent_yaml() + textwrap.dedent(body))
            agents.append(Agent(name, location, config, tmp_path / f"{name}.log"))
        made.append(Fleet(agents))
        return made[-1]

    yield make
    for f in made:
        await f.stop()


async def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
