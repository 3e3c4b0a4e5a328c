"""Host readings with a deadline each: CPU, load, memory, filesystems, I/O and service groups.

Every reading runs on its own daemon thread and is waited for until a common deadline; a reading
still running then (a hung network mount, a stuck /proc) is reported as failed, and while it is
still hung it is not started again, so hung threads never pile up and never block exit. All
readings of one snapshot run concurrently: a snapshot takes at most the deadline. This module
imports psutil: only an agent with a ``host:`` section imports it (agent/host/monitor.py).
"""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from agent.config.schema import NETWORK_FS_TYPES, HostFilesystems, ServiceGroup
from agent.host.snapshot import FilesystemUsage, HostSnapshot, ReadingStatus, ServiceUsage

_SKIPPED_DISKS = re.compile(r"(loop|ram|zram|fd|sr)\d+")


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
    times = psutil.cpu_times()
    return psutil.cpu_count() or 1, {k: float(v) for k, v in times._asdict().items()
                                     if k not in ("guest", "guest_nice")}


def _memory() -> tuple[float, float, float, float, dict[str, float]]:
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return (float(vm.total), float(vm.available), float(sw.total), float(sw.used),
            {"in": float(sw.sin), "out": float(sw.sout)})


def _network() -> dict[str, tuple[float, float]]:
    return {nic: (float(c.bytes_recv), float(c.bytes_sent))
            for nic, c in psutil.net_io_counters(pernic=True).items() if nic != "lo"}


def _disks() -> dict[str, tuple[float, float]]:
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
