"""Host readings with a deadline each: CPU, load, memory, filesystems, I/O and service groups.

Every reading runs on its own daemon thread and is waited for until a common deadline; a reading
still running then (a hung network mount, a stuck /proc) is reported as failed, and while it is
still hung it is not started again, so hung threads never pile up and never block exit. All
readings of one snapshot run concurrently: a snapshot takes at most the deadline.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config.schema import NETWORK_FS_TYPES, HostFilesystems, ServiceGroup

_SKIPPED_DISKS = re.compile(r"(loop|ram|zram|fd|sr)\d+")


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


class DeadlineRunner:
    """Runs named blocking calls concurrently, each abandoned at a shared deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hung: dict[str, threading.Thread] = {}

    def run(self, calls: Mapping[str, Callable[[], Any]],
            timeout: float) -> tuple[dict[str, Any], list[ReadingStatus]]:
        """Results of the calls that finished within ``timeout``, and a status for every call."""
        start = time.perf_counter()
        boxes: dict[str, tuple[_Box, threading.Thread]] = {}
        statuses: list[ReadingStatus] = []
        for name, call in calls.items():
            with self._lock:
                previous = self._hung.get(name)
                if previous is not None and previous.is_alive():
                    statuses.append(ReadingStatus(name, False, 0.0,
                                                  "still hung from an earlier reading"))
                    continue
                self._hung.pop(name, None)
            box = _Box(call)
            thread = threading.Thread(target=box.run, name=f"host-reading {name}", daemon=True)
            thread.start()
            boxes[name] = (box, thread)
        results: dict[str, Any] = {}
        deadline = start + timeout
        for name, (box, thread) in boxes.items():
            if not box.done.wait(max(0.0, deadline - time.perf_counter())):
                with self._lock:
                    self._hung[name] = thread  # abandoned: not started again while it hangs
                statuses.append(ReadingStatus(name, False, time.perf_counter() - start,
                                              f"no answer within {timeout:g}s"))
            elif box.error is not None:
                statuses.append(ReadingStatus(name, False, box.seconds, box.error))
            else:
                statuses.append(ReadingStatus(name, True, box.seconds))
                results[name] = box.value
        return results, statuses


class _Box:
    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Event()
        self.value: Any = None
        self.error: str | None = None
        self.seconds = 0.0

    def run(self) -> None:
        start = time.perf_counter()
        try:
            self.value = self.call()
        except Exception as exc:  # a reading's failure is data, reported as its status
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.perf_counter() - start
            self.done.set()


def measured_mounts(settings: HostFilesystems) -> list[tuple[str, str]]:
    """``(mountpoint, fstype)`` of the real mounts to measure, per ``settings``."""
    import psutil  # only an agent with a host: section loads it
    every = bool(settings.mountpoints) or settings.include_network
    return select_mounts([(p.device, p.mountpoint, p.fstype)
                          for p in psutil.disk_partitions(all=every)], settings)


def select_mounts(partitions: Sequence[tuple[str, str, str]],
                  settings: HostFilesystems) -> list[tuple[str, str]]:
    """Filter ``(device, mountpoint, fstype)`` rows: network and pseudo filesystems out unless
    asked for, configured exclusions out, each mount point once."""
    wanted = set(settings.mountpoints)
    seen: set[str] = set()
    mounts: list[tuple[str, str]] = []
    for device, mp, fstype in partitions:
        if mp in seen or mp in settings.exclude_mountpoints:
            continue
        if wanted and mp not in wanted:
            continue
        if fstype in NETWORK_FS_TYPES and not settings.include_network:
            continue
        if not wanted and not device.startswith("/") and fstype not in NETWORK_FS_TYPES:
            continue  # pseudo filesystems (proc, tmpfs, overlay, ...) when listing all mounts
        seen.add(mp)
        mounts.append((mp, fstype))
    return mounts


def _statvfs(mountpoint: str, fstype: str) -> FilesystemUsage:
    st = os.statvfs(mountpoint)
    return FilesystemUsage(mountpoint, fstype, float(st.f_blocks * st.f_frsize),
                           float(st.f_bavail * st.f_frsize), float(st.f_files),
                           float(st.f_favail))


def _cpu() -> tuple[int, dict[str, float]]:
    import psutil  # only an agent with a host: section loads it
    times = psutil.cpu_times()
    return psutil.cpu_count() or 1, {k: float(v) for k, v in times._asdict().items()
                                     if k not in ("guest", "guest_nice")}


def _memory() -> tuple[float, float, float, float, dict[str, float]]:
    import psutil  # only an agent with a host: section loads it
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return (float(vm.total), float(vm.available), float(sw.total), float(sw.used),
            {"in": float(sw.sin), "out": float(sw.sout)})


def _network() -> dict[str, tuple[float, float]]:
    import psutil  # only an agent with a host: section loads it
    return {nic: (float(c.bytes_recv), float(c.bytes_sent))
            for nic, c in psutil.net_io_counters(pernic=True).items() if nic != "lo"}


def _disks() -> dict[str, tuple[float, float]]:
    import psutil  # only an agent with a host: section loads it
    return {disk: (float(c.read_bytes), float(c.write_bytes))
            for disk, c in (psutil.disk_io_counters(perdisk=True) or {}).items()
            if not _SKIPPED_DISKS.fullmatch(disk)}


def match_services(groups: Sequence[ServiceGroup],
                   processes: Sequence[tuple[str, str, float, float]]) -> tuple[ServiceUsage, ...]:
    """Group ``(name, cmdline, cpu_seconds, rss)`` process rows into the configured services."""
    patterns = {g.name: [re.compile(p) for p in g.cmdline] for g in groups}
    usage = []
    for group in groups:
        count, cpu, rss = 0, 0.0, 0.0
        for name, cmdline, proc_cpu, proc_rss in processes:
            if name in group.process_names or any(p.search(cmdline)
                                                   for p in patterns[group.name]):
                count, cpu, rss = count + 1, cpu + proc_cpu, rss + proc_rss
        usage.append(ServiceUsage(group.name, count, cpu, rss, group.min_processes))
    return tuple(usage)


def process_table() -> list[tuple[str, str, float, float]]:
    """``(name, cmdline, cpu_seconds, rss_bytes)`` of every visible process except this one."""
    import psutil  # only an agent with a host: section loads it
    rows = []
    me = os.getpid()
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times", "memory_info"]):
        if proc.pid == me:
            continue  # our own cmdline may contain a configured pattern
        info = proc.info
        times, mem = info.get("cpu_times"), info.get("memory_info")
        rows.append((info.get("name") or "", " ".join(info.get("cmdline") or ()),
                     float(times.user + times.system) if times else 0.0,
                     float(mem.rss) if mem else 0.0))
    return rows


class HostReader:
    """Takes ``HostSnapshot``s for the scrape and for the threshold check."""

    def __init__(self, filesystems: HostFilesystems, services: Sequence[ServiceGroup],
                 timeout: float) -> None:
        self.filesystems = filesystems
        self.services = tuple(services)
        self.timeout = timeout
        self.hostname = socket.gethostname()
        self._runner = DeadlineRunner()

    def snapshot(self) -> HostSnapshot:
        """Read everything once, each reading within the deadline (blocks at most that long)."""
        taken_at = time.time()
        listing, statuses = self._runner.run(
            {"mounts": lambda: measured_mounts(self.filesystems)}, self.timeout)
        calls: dict[str, Callable[[], Any]] = {
            "cpu": _cpu, "load": os.getloadavg, "memory": _memory, "network": _network,
            "disk": _disks,
        }
        for mp, fstype in listing.get("mounts", []):
            calls[f"filesystem:{mp}"] = functools.partial(_statvfs, mp, fstype)
        if self.services:
            calls["services"] = process_table
        values, more = self._runner.run(calls, self.timeout)
        statuses.extend(more)
        cpu = values.get("cpu")
        memory = values.get("memory")
        table = values.get("services")
        return HostSnapshot(
            taken_at=taken_at, statuses=tuple(statuses),
            cpus=cpu[0] if cpu else None, cpu_seconds=cpu[1] if cpu else {},
            load=values.get("load"),
            memory_total=memory[0] if memory else None,
            memory_available=memory[1] if memory else None,
            swap_total=memory[2] if memory else None,
            swap_used=memory[3] if memory else None,
            swap_io=memory[4] if memory else {},
            filesystems=tuple(v for k, v in values.items() if k.startswith("filesystem:")),
            network=values.get("network", {}), disks=values.get("disk", {}),
            services=match_services(self.services, table) if table is not None else None,
        )
