"""Whether the agent's state (incidents, outbox) is being saved.

The state directory can be unusable from the start (not creatable, not writable, a file in the
way) or stop taking writes later (disk full, read-only remount, I/O errors). Neither stops
probing or ``/metrics``: the incident side reports here instead of raising. A change is logged
once, on one line (``state is not being saved: ...`` / ``state is being saved again``), and the
``storewatch_state_writable`` gauge says 1 or 0.
"""

from __future__ import annotations

import logging
import sqlite3
import sys

from prometheus_client import CollectorRegistry, Gauge

from agent.config.secrets import scrub
from agent.errors import StateError
from agent.metrics import catalog as c

log = logging.getLogger(__name__)


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the incident database cannot be used right now (SQLite locked,
    full or corrupt; PostgreSQL unreachable, restarting, read-only) rather than a bug in our
    SQL."""
    if isinstance(exc, StateError | sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        return True  # type DatabaseError: e.g. "database disk image is malformed"
    pg = sys.modules.get("psycopg")  # loaded only when a PostgreSQL store is in use
    return pg is not None and isinstance(exc, pg.OperationalError | pg.InterfaceError
                                         | pg.errors.ReadOnlySqlTransaction)


def is_state_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the state cannot be read or written (not a bug in our SQL)."""
    return isinstance(exc, OSError) or is_database_error(exc)


class StateHealth:
    """The saved/not-saved state of one agent, with its log lines and gauge."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.writable = True
        self.reason: str | None = None
        self._gauge: Gauge | None = None
        if registry is not None:
            self._gauge = Gauge(c.STATE_WRITABLE.name, c.STATE_WRITABLE.help, registry=registry)
            self._gauge.set(1)

    def failed(self, reason: str) -> None:
        """State could not be saved (``reason``: one line); logged only when this is news."""
        reason = scrub(" ".join(reason.split()))
        if self.writable:
            log.error("state is not being saved: %s; probing and /metrics go on, incidents and "
                      "tickets wait until it can be saved again", reason)
        self.writable, self.reason = False, reason
        if self._gauge is not None:
            self._gauge.set(0)

    def saved(self) -> None:
        """A write succeeded; logged only when state had not been saved before."""
        if not self.writable:
            log.warning("state is being saved again (it was not: %s)", self.reason)
        self.writable, self.reason = True, None
        if self._gauge is not None:
            self._gauge.set(1)
