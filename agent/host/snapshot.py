"""What one host snapshot holds: plain values, shared by the reader, the collector and the
threshold check (kept apart from ``agent.host.readings`` so that using them loads no psutil)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReadingStatus:
    """Whether one reading finished within its deadline, and how long it took."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    """Space and inodes of one mount."""

    mountpoint: str
    fstype: str
    size_bytes: float
    avail_bytes: float
    inodes: float
    inodes_free: float

    @property
    def used_ratio(self) -> float:
        """Share of the space an unprivileged user cannot use any more."""
        return 1.0 - self.avail_bytes / self.size_bytes if self.size_bytes > 0 else 0.0

    @property
    def inodes_used_ratio(self) -> float:
        """Share of inodes in use (0 when the filesystem has no inode limit)."""
        return 1.0 - self.inodes_free / self.inodes if self.inodes > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ServiceUsage:
    """The processes of one service group."""

    name: str
    processes: int
    cpu_seconds: float
    rss_bytes: float
    min_processes: int

    @property
    def up(self) -> bool:
        """At least the minimum number of processes runs."""
        return self.processes >= self.min_processes


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything read in one pass; a reading that failed leaves its field empty."""

    taken_at: float
    statuses: tuple[ReadingStatus, ...]
    cpus: int | None = None
    cpu_seconds: Mapping[str, float] = field(default_factory=dict)
    load: tuple[float, float, float] | None = None
    memory_total: float | None = None
    memory_available: float | None = None
    swap_total: float | None = None
    swap_used: float | None = None
    swap_io: Mapping[str, float] = field(default_factory=dict)
    filesystems: tuple[FilesystemUsage, ...] = ()
    network: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    disks: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    services: tuple[ServiceUsage, ...] | None = None

    def failed(self) -> list[ReadingStatus]:
        """Readings that did not finish or raised."""
        return [s for s in self.statuses if not s.ok]
