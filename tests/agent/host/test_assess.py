"""Thresholds → findings → support levels, through the real classifier rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.config.schema import HostThresholds
from agent.host.assess import assess_resources, assess_service
from agent.host.snapshot import FilesystemUsage, HostSnapshot, ServiceUsage
from classifier import FindingKind, Level, SiteContext, classify

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 2.0**30


def snap(taken_at: float = 100.0, **fields: object) -> HostSnapshot:
    return HostSnapshot(taken_at=taken_at, statuses=(), **fields)  # type: ignore[arg-type]


def disk(used: float, inodes_used: float = 0.1) -> FilesystemUsage:
    return FilesystemUsage("/var", "ext4", 100 * GIB, (1 - used) * 100 * GIB, 1000.0,
                           (1 - inodes_used) * 1000)


IDLE = {"user": 10.0, "system": 5.0, "idle": 85.0, "iowait": 0.0}
BUSY = {"user": 60.0, "system": 37.0, "idle": 88.0, "iowait": 0.0}  # +97 busy of +100


@pytest.mark.parametrize(("current", "previous", "expected"), [
    (snap(filesystems=(disk(0.5),), load=(1.0, 1.0, 1.0), cpus=4, memory_total=8 * GIB,
          memory_available=4 * GIB, swap_total=GIB, swap_used=0.1 * GIB), None, []),
    (snap(filesystems=(disk(0.91),)), None, [("filesystem:/var", Level.L3)]),
    (snap(filesystems=(disk(0.96),)), None, [("filesystem:/var", Level.L2)]),
    (snap(filesystems=(disk(0.2, inodes_used=0.97),)), None, [("inodes:/var", Level.L2)]),
    (snap(memory_total=8 * GIB, memory_available=0.4 * GIB), None, [("memory", Level.L3)]),
    (snap(swap_total=GIB, swap_used=0.9 * GIB), None, [("swap", Level.L3)]),
    (snap(load=(9.0, 9.0, 9.0), cpus=4), None, [("load", Level.L3)]),
    (snap(taken_at=110.0, cpu_seconds=BUSY), snap(cpu_seconds=IDLE), [("cpu", Level.L3)]),
    (snap(taken_at=110.0, swap_io={"in": 300 * 2.0**20, "out": 100 * 2.0**20}),
     snap(swap_io={"in": 0.0, "out": 0.0}), [("swap_io", Level.L2)]),
    (snap(cpu_seconds=BUSY), None, []),  # a rate needs a previous snapshot
], ids=["healthy", "disk-warning", "disk-critical", "inodes-critical", "memory", "swap-used",
        "load", "cpu", "swap-thrashing", "first-run-no-rate"])
def test_thresholds_to_levels(current: HostSnapshot, previous: HostSnapshot | None,
                              expected: list[tuple[str, Level]]) -> None:
    findings = assess_resources(current, previous, HostThresholds(), "shop", NOW)
    got = [(f.evidence.details["resource"], classify(f, SiteContext("shop")).level)
           for f in findings]
    assert got == expected
    assert all(f.kind is FindingKind.RESOURCE_PRESSURE and f.check == "host" for f in findings)


def test_a_missing_service_is_service_down_l2() -> None:
    (finding,) = assess_service(ServiceUsage("php", 0, 0.0, 0.0, 1), "shop", NOW)
    assert finding.kind is FindingKind.SERVICE_DOWN and finding.check == "service-php"
    assert classify(finding, SiteContext("shop")).level is Level.L2
    assert finding.summary == "service php is down: no process running (minimum 1)"
    assert assess_service(ServiceUsage("php", 3, 1.0, 1.0, 1), "shop", NOW) == []
