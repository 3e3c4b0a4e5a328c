"""Host readings: deadlines per reading, mount selection, service groups over real processes."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from agent.config.schema import HostFilesystems, ServiceGroup
from agent.host.readings import (
    DeadlineRunner,
    HostReader,
    match_services,
    measured_mounts,
    select_mounts,
)
from tests.agent.host.conftest import MARKER


def test_a_hung_reading_fails_alone_and_is_not_started_again() -> None:
    release = threading.Event()
    starts: list[str] = []

    def hung() -> str:
        starts.append("hung")
        release.wait(30)
        return "late"

    runner = DeadlineRunner()
    values, statuses = runner.run({"nfs": hung, "load": lambda: (0.1, 0.2, 0.3)}, timeout=0.3)
    by_name = {s.name: s for s in statuses}
    assert values == {"load": (0.1, 0.2, 0.3)}
    assert by_name["load"].ok and not by_name["nfs"].ok
    assert by_name["nfs"].error == "no answer within 0.3s"

    values, statuses = runner.run({"nfs": hung}, timeout=0.3)
    assert values == {} and statuses[0].error == "still hung from an earlier reading"
    assert starts == ["hung"]  # no second thread piled up behind the hung one

    release.set()
    for _ in range(100):
        values, statuses = runner.run({"nfs": hung}, timeout=0.3)
        if values:
            break
        time.sleep(0.02)
    assert values == {"nfs": "late"} and statuses[0].ok


def test_a_reading_that_raises_is_a_failed_status() -> None:
    def broken() -> None:
        raise PermissionError("/proc/1/stat")

    values, statuses = DeadlineRunner().run({"cpu": broken}, timeout=1)
    assert values == {}
    assert statuses[0].error == "PermissionError: /proc/1/stat"


ROWS = [
    ("/dev/vda1", "/", "ext4"),
    ("/dev/vda1", "/", "ext4"),  # bind mount listed twice
    ("/dev/vdb", "/var/lib/mysql", "xfs"),
    ("nas:/export/media", "/srv/media", "nfs4"),
    ("//files/share", "/mnt/share", "cifs"),
    ("tmpfs", "/run", "tmpfs"),
    ("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
]


@pytest.mark.parametrize(("settings", "expected"), [
    (HostFilesystems(), [("/", "ext4"), ("/var/lib/mysql", "xfs")]),
    (HostFilesystems(include_network=True),
     [("/", "ext4"), ("/var/lib/mysql", "xfs"), ("/srv/media", "nfs4"), ("/mnt/share", "cifs")]),
    (HostFilesystems(exclude_mountpoints=["/var/lib/mysql"]), [("/", "ext4")]),
    (HostFilesystems(mountpoints=["/run", "/srv/media"]), [("/run", "tmpfs")]),
    (HostFilesystems(mountpoints=["/srv/media"], include_network=True), [("/srv/media", "nfs4")]),
], ids=["local-only", "network-on-request", "excluded", "named-mounts-still-no-network",
        "named-network-mount"])
def test_mount_selection(settings: HostFilesystems, expected: list[tuple[str, str]]) -> None:
    assert select_mounts(ROWS, settings) == expected


def test_service_groups_match_by_name_or_cmdline() -> None:
    groups = [ServiceGroup(name="php", process_names=["php-fpm8.2"]),
              ServiceGroup(name="search", cmdline=[r"org\.opensearch\.bootstrap"]),
              ServiceGroup(name="db", process_names=["mariadbd", "mysqld"], min_processes=1),
              ServiceGroup(name="varnish", process_names=["varnishd"], min_processes=2)]
    table = [("php-fpm8.2", "php-fpm: pool www", 1.5, 100.0),
             ("php-fpm8.2", "php-fpm: pool www", 2.5, 50.0),
             ("java", "/usr/bin/java -Xms1g org.opensearch.bootstrap.OpenSearch", 9.0, 1e9),
             ("varnishd", "varnishd -a :6081", 1.0, 10.0)]
    usage = {u.name: u for u in match_services(groups, table)}
    assert (usage["php"].processes, usage["php"].cpu_seconds, usage["php"].rss_bytes) == (
        2, 4.0, 150.0)
    assert usage["search"].up and usage["search"].rss_bytes == 1e9
    assert not usage["db"].up and usage["db"].processes == 0
    assert not usage["varnish"].up  # 1 of at least 2


def test_snapshot_of_this_machine(marked_process: subprocess.Popen[bytes]) -> None:
    reader = HostReader(HostFilesystems(), [
        ServiceGroup(name="marked", cmdline=[MARKER]),
        ServiceGroup(name="absent", process_names=["no-such-daemon-storewatch"]),
    ], timeout=5)
    snap = reader.snapshot()
    assert snap.failed() == []
    assert snap.cpus and snap.cpus >= 1 and snap.cpu_seconds["idle"] > 0
    assert snap.memory_total and snap.memory_available is not None
    assert snap.load is not None
    mounts = measured_mounts(HostFilesystems())
    assert [(fs.mountpoint, fs.fstype) for fs in snap.filesystems] == mounts
    assert snap.services is not None
    usage = {u.name: u for u in snap.services}
    assert usage["marked"].up and usage["marked"].processes == 1
    assert usage["marked"].rss_bytes > 0
    assert not usage["absent"].up
    assert {s.name for s in snap.statuses} == {
        "cpu", "load", "memory", "network", "disk", "services", "mounts",
        *(f"filesystem:{mp}" for mp, _ in mounts)}
