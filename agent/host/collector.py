"""Renders a fresh host snapshot at scrape time (no background polling for metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.host.snapshot import HostSnapshot, ReadingStatus
from agent.metrics import catalog as c

if TYPE_CHECKING:  # importing the reader loads psutil
    from agent.host.readings import HostReader


def _gauge(metric: c.MetricDef) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))


def _counter(metric: c.MetricDef) -> CounterMetricFamily:
    return CounterMetricFamily(metric.name.removesuffix("_total"), metric.help,
                               labels=list(metric.labels))


class HostCollector(Collector):
    """Host resources, service groups, mail queue and heartbeat state, read per scrape."""

    def __init__(self, reader: Callable[[], HostReader | None], site: Callable[[], str | None],
                 extra: Callable[[], Iterator[Metric]] | None = None,
                 extra_statuses: Callable[[], list[ReadingStatus]] | None = None,
                 node_metrics: Callable[[], bool] = lambda: True) -> None:
        self._reader = reader
        self._site = site
        self._extra = extra
        self._extra_statuses = extra_statuses
        self._node_metrics = node_metrics

    def collect(self) -> Iterator[Metric]:
        """Fresh families from one snapshot; nothing when the config has no ``host:``.

        With ``host.node_metrics: false`` no snapshot is taken: only ``storewatch_host_info``
        and the mail queue and heartbeat gauges (node_exporter has no equivalent of those).
        """
        reader, site = self._reader(), self._site()
        if reader is None or site is None:
            return
        info = _gauge(c.HOST_INFO)
        info.add_metric([site, reader.hostname], 1.0)
        yield info
        if self._node_metrics():
            more = self._extra_statuses() if self._extra_statuses is not None else []
            yield from render_snapshot(reader.snapshot(), more)
        if self._extra is not None:
            yield from self._extra()


def render_snapshot(snap: HostSnapshot,
                    extra_statuses: Sequence[ReadingStatus] = ()) -> Iterator[Metric]:
    """The metric families of one snapshot (families of failed readings are left out)."""
    if snap.cpus is not None:
        cpus = _gauge(c.HOST_CPUS)
        cpus.add_metric([], float(snap.cpus))
        yield cpus
        cpu = _counter(c.HOST_CPU_SECONDS)
        for mode, seconds in snap.cpu_seconds.items():
            cpu.add_metric([mode], seconds)
        yield cpu
    if snap.load is not None:
        load = _gauge(c.HOST_LOAD)
        for period, value in zip(("1m", "5m", "15m"), snap.load, strict=True):
            load.add_metric([period], value)
        yield load
    memory: tuple[tuple[c.MetricDef, float | None], ...] = (
        (c.HOST_MEM_TOTAL, snap.memory_total), (c.HOST_MEM_AVAILABLE, snap.memory_available),
        (c.HOST_SWAP_TOTAL, snap.swap_total), (c.HOST_SWAP_USED, snap.swap_used))
    for metric, reading in memory:
        if reading is not None:
            family = _gauge(metric)
            family.add_metric([], reading)
            yield family
    if snap.swap_io:
        swap_io = _counter(c.HOST_SWAP_IO)
        for direction, value in snap.swap_io.items():
            swap_io.add_metric([direction], value)
        yield swap_io
    if snap.filesystems:
        size, avail = _gauge(c.HOST_FS_SIZE), _gauge(c.HOST_FS_AVAIL)
        inodes, inodes_free = _gauge(c.HOST_FS_INODES), _gauge(c.HOST_FS_INODES_FREE)
        for fs in snap.filesystems:
            labels = [fs.mountpoint, fs.fstype]
            size.add_metric(labels, fs.size_bytes)
            avail.add_metric(labels, fs.avail_bytes)
            if fs.inodes > 0:
                inodes.add_metric(labels, fs.inodes)
                inodes_free.add_metric(labels, fs.inodes_free)
        yield from (size, avail, inodes, inodes_free)
    yield from _io_counters(c.HOST_NET_BYTES, snap.network, ("receive", "transmit"))
    yield from _io_counters(c.HOST_DISK_BYTES, snap.disks, ("read", "write"))
    if snap.services is not None:
        up, procs = _gauge(c.HOST_SERVICE_UP), _gauge(c.HOST_SERVICE_PROCESSES)
        cpu_s, rss = _counter(c.HOST_SERVICE_CPU), _gauge(c.HOST_SERVICE_RSS)
        for svc in snap.services:
            up.add_metric([svc.name], 1.0 if svc.up else 0.0)
            procs.add_metric([svc.name], float(svc.processes))
            cpu_s.add_metric([svc.name], svc.cpu_seconds)
            rss.add_metric([svc.name], svc.rss_bytes)
        yield from (up, procs, cpu_s, rss)
    ok, took = _gauge(c.HOST_COLLECTOR_SUCCESS), _gauge(c.HOST_COLLECTOR_DURATION)
    for status in (*snap.statuses, *extra_statuses):
        ok.add_metric([status.name], 1.0 if status.ok else 0.0)
        took.add_metric([status.name], status.seconds)
    yield from (ok, took)


def _io_counters(metric: c.MetricDef, values: Mapping[str, tuple[float, float]],
                 directions: tuple[str, str]) -> Iterator[Metric]:
    if not values:
        return
    family = _counter(metric)
    for device, pair in sorted(values.items()):
        for direction, value in zip(directions, pair, strict=True):
            family.add_metric([device, direction], value)
    yield family
