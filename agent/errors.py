"""Typed errors of the storewatch agent.

Hierarchy::

    StorewatchError                 base of every error the agent raises on purpose
    ├── ConfigError                 bad config: one line naming file:line and field (exit 2)
    ├── StateError                  the state directory cannot be read or written
    └── SinkError                   a ticket tracker refused or failed a delivery
        ├── RetryableSinkError      5xx, 429, timeouts, network: the outbox retries later
        └── PermanentSinkError      4xx, bad auth or config: retrying cannot help

A storefront's fault is never an exception: probes turn it into a Finding.
"""

from __future__ import annotations


class StorewatchError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(StorewatchError):
    """Invalid configuration; ``str()`` is one line that names where the problem is.

    When validation found several independent problems, ``str()`` is the first one and
    ``lines()`` lists every one (``storewatch validate`` prints them all, one per line).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, more: tuple[ConfigError, ...] = ()) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.problem = message
        self.more = more
        """The other problems found in the same pass, in file order after this one."""
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        if field:
            where += f"{field}: "
        super().__init__(f"{where}{message}")

    def lines(self) -> list[str]:
        """Every problem, one line each, this one first."""
        return [str(self), *(str(e) for e in self.more)]


class StateError(StorewatchError):
    """The state directory or database cannot be used."""


class SinkError(StorewatchError):
    """A ticket sink failed to deliver."""


class RetryableSinkError(SinkError):
    """A delivery failure that may succeed later (5xx, 429, timeout, network)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the tracker asked us to wait (Retry-After / rate-limit reset), if it said."""


class PermanentSinkError(SinkError):
    """A delivery failure that retrying cannot fix (4xx, auth, config)."""
