"""Host snapshots against the configured thresholds → ``resource_pressure`` / ``service_down``.

Rates (CPU usage, swap traffic) need two snapshots: the previous one of the same check. A
``resource_pressure`` finding carries the fact ``critical`` (1.0 or 0.0) that the classifier's
rules read to choose L2 over L3.
"""

from __future__ import annotations

from datetime import datetime

from agent.config.schema import HostThresholds
from agent.host.snapshot import HostSnapshot, ServiceUsage
from classifier import Evidence, Finding, FindingKind

RESOURCES_CHECK = "host"
"""Check name of the resource findings (one incident per site for the server's resources)."""


def service_check_name(service: str) -> str:
    """Check name of one service group's findings: each group is its own incident."""
    return f"service-{service}"


def _pressure(site: str, now: datetime, summary: str, resource: str, value: float,
              threshold: float, critical: bool) -> Finding:
    return Finding(site=site, check=RESOURCES_CHECK, kind=FindingKind.RESOURCE_PRESSURE,
                   summary=summary, observed_at=now,
                   evidence=Evidence(details={"resource": resource, "value": f"{value:.4g}",
                                              "threshold": f"{threshold:.4g}"}),
                   facts={"critical": 1.0 if critical else 0.0, "value": value})


def assess_resources(snap: HostSnapshot, previous: HostSnapshot | None, t: HostThresholds,
                     site: str, now: datetime) -> list[Finding]:
    """Findings for every reading past its threshold (none for readings that failed)."""
    found: list[Finding] = []
    interval = snap.taken_at - previous.taken_at if previous is not None else 0.0
    if previous is not None and interval > 0 and snap.cpu_seconds and previous.cpu_seconds:
        total = sum(snap.cpu_seconds.values()) - sum(previous.cpu_seconds.values())
        idle = sum(snap.cpu_seconds.get(m, 0.0) - previous.cpu_seconds.get(m, 0.0)
                   for m in ("idle", "iowait"))
        if total > 0 and (usage := 1.0 - idle / total) >= t.cpu_usage:
            found.append(_pressure(site, now, f"CPU {usage:.0%} busy (threshold "
                                   f"{t.cpu_usage:.0%})", "cpu", usage, t.cpu_usage, False))
    if snap.load is not None and snap.cpus:
        per_cpu = snap.load[1] / snap.cpus
        if per_cpu >= t.load_per_cpu:
            found.append(_pressure(site, now, f"load {snap.load[1]:.1f} over 5m on {snap.cpus} "
                                   f"CPUs (threshold {t.load_per_cpu:g} per CPU)", "load",
                                   per_cpu, t.load_per_cpu, False))
    if snap.memory_total and snap.memory_available is not None:
        used = 1.0 - snap.memory_available / snap.memory_total
        if used >= t.memory_used:
            found.append(_pressure(site, now, f"memory {used:.0%} used (threshold "
                                   f"{t.memory_used:.0%})", "memory", used, t.memory_used, False))
    if snap.swap_total and snap.swap_used is not None:
        used = snap.swap_used / snap.swap_total
        if used >= t.swap_used:
            found.append(_pressure(site, now, f"swap {used:.0%} used (threshold "
                                   f"{t.swap_used:.0%})", "swap", used, t.swap_used, False))
    if previous is not None and interval > 0 and snap.swap_io and previous.swap_io:
        rate = sum(snap.swap_io.values()) - sum(previous.swap_io.values())
        rate /= interval
        if rate >= t.swap_io_bytes_per_second:
            found.append(_pressure(site, now, f"swap thrashing: {rate / 2**20:.1f} MiB/s paged "
                                   f"(threshold {t.swap_io_bytes_per_second / 2**20:.1f} MiB/s)",
                                   "swap_io", rate, t.swap_io_bytes_per_second, True))
    for fs in snap.filesystems:
        if fs.used_ratio >= t.filesystem_used:
            critical = fs.used_ratio >= t.filesystem_used_critical
            limit = t.filesystem_used_critical if critical else t.filesystem_used
            found.append(_pressure(site, now, f"filesystem {fs.mountpoint} {fs.used_ratio:.0%} "
                                   f"full (threshold {limit:.0%})", f"filesystem:{fs.mountpoint}",
                                   fs.used_ratio, limit, critical))
        if fs.inodes_used_ratio >= t.inodes_used:
            critical = fs.inodes_used_ratio >= t.inodes_used_critical
            limit = t.inodes_used_critical if critical else t.inodes_used
            found.append(_pressure(site, now, f"filesystem {fs.mountpoint} has "
                                   f"{fs.inodes_used_ratio:.0%} of its inodes used (threshold "
                                   f"{limit:.0%})", f"inodes:{fs.mountpoint}",
                                   fs.inodes_used_ratio, limit, critical))
    return found


def assess_service(svc: ServiceUsage, site: str, now: datetime) -> list[Finding]:
    """A ``service_down`` finding when the group runs fewer processes than its minimum."""
    if svc.up:
        return []
    running = "no process" if svc.processes == 0 else f"only {svc.processes} processes"
    return [Finding(site=site, check=service_check_name(svc.name), kind=FindingKind.SERVICE_DOWN,
                    summary=f"service {svc.name} is down: {running} running (minimum "
                            f"{svc.min_processes})", observed_at=now,
                    evidence=Evidence(details={"service": svc.name,
                                               "processes": str(svc.processes),
                                               "min_processes": str(svc.min_processes)}),
                    facts={"processes": float(svc.processes)})]
