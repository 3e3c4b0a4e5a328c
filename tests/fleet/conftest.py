"""Fixtures for several agents on one shared store.

``shared_state`` yields where the fleet's state lives. Today that is a SQLite file (the agents
share one ``agent.state_dir``); a PostgreSQL parameter can be added here once the store runs on
PostgreSQL, and every fleet test then runs on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.state.store import Store, db_path


@dataclass(frozen=True)
class SharedState:
    """The store a fleet of agents shares."""

    kind: str
    """``sqlite`` (later also ``postgresql``)."""
    location: str
    """The state directory of the shared SQLite file (later: a ``postgresql://`` URL)."""

    def agent_yaml(self, indent: int = 2) -> str:
        """The ``agent:`` section lines that point an agent at this store."""
        return " " * indent + f"state_dir: {self.location}\n"

    def open(self) -> Store:
        """A store connection for the test's own reads and writes (close it)."""
        return Store(db_path(Path(self.location)))


@pytest.fixture(params=["sqlite"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    """The store location every agent of a test fleet uses."""
    state_dir = tmp_path / "shared-state"
    state_dir.mkdir()
    yield SharedState(request.param, str(state_dir))
