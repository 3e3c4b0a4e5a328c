"""Old browser evidence is pruned: files of incidents resolved longer ago than the retention and
files no incident names once that old, then the oldest over the size cap; never the files of a
pending or open incident, never a fresh file. Real files, a real SQLite store with backdated
incidents, and a running agent that prunes on its own and exports the folder's size."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from agent.evidence import disk_usage, prune
from agent.service import Agent
from agent.state.store import Store, db_path
from classifier import Evidence, FindingKind, Level, Phase

DAY = 86400.0
NOW = time.time()


class State:
    """A state directory: the real store and evidence files with chosen ages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.evidence = root / "evidence"
        self.store = Store(db_path(root))
        self._n = 0

    def file(self, name: str, age_days: float, size: int = 1000, site: str = "acme") -> Path:
        path = self.evidence / site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n".ljust(size, b"\x00"))
        when = NOW - age_days * DAY
        os.utime(path, (when, when))
        return path

    def incident(self, files: list[Path], phase: Phase,
                 resolved_days_ago: float | None = None) -> int:
        """An incident naming ``files`` (screenshot, log), opened 60 days ago."""
        self._n += 1
        details = {key: str(f) for key, f in zip(("screenshot", "browser_log"), files,
                                                 strict=False)}
        opened = datetime.fromtimestamp(NOW - 60 * DAY, UTC)
        with self.store.transaction():
            iid = self.store.create_incident(
                fingerprint=f"storewatch-{self._n:012d}", site="acme", check="journey",
                kind=FindingKind.CHECKOUT_BROKEN, level=Level.L1, now=opened, summary="s",
                rule="r", reason="r", evidence=Evidence(details=details))
            fields: dict[str, object] = {"state": phase}
            if phase is not Phase.PENDING:
                fields["opened_at"] = opened
            if resolved_days_ago is not None:
                fields["resolved_at"] = datetime.fromtimestamp(NOW - resolved_days_ago * DAY,
                                                               UTC)
            self.store.update_incident(iid, **fields)
        return iid

    def sweep(self, retention_days: float = 30, max_bytes: int = 10**9) -> set[str]:
        """Prune as the agent does; the names of the files left."""
        active, recent = self.store.evidence_in_use(
            datetime.fromtimestamp(NOW - retention_days * DAY, UTC))
        prune(self.evidence, active, recent, NOW, retention_days * DAY, max_bytes)
        return {p.name for p in self.evidence.rglob("*") if p.is_file()}


def test_retention_keeps_open_pending_and_recent_incidents(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.incident([s.file("open.png", 59), s.file("open.json", 59)], Phase.OPEN)
    s.incident([s.file("pending.png", 45)], Phase.PENDING)
    s.incident([s.file("old.png", 41), s.file("old.json", 41)], Phase.RESOLVED, 40)
    s.incident([s.file("recent.png", 50)], Phase.RESOLVED, 5)  # a long incident, just over
    s.file("orphan-old.png", 35)  # replaced by newer evidence, or never became an incident
    s.file("orphan-young.png", 2)
    s.file("fresh.png", 0)
    assert s.sweep() == {"open.png", "open.json", "pending.png", "recent.png",
                         "orphan-young.png", "fresh.png"}
    assert s.sweep(retention_days=1) == {"open.png", "open.json", "pending.png", "fresh.png"}


def test_size_cap_deletes_oldest_first_but_never_open_or_fresh(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.incident([s.file("open.png", 20, size=4000)], Phase.OPEN)
    s.incident([s.file("r10.png", 10, size=1000)], Phase.RESOLVED, 9)
    s.incident([s.file("r8.png", 8, size=1000)], Phase.RESOLVED, 7)
    s.file("orphan3.png", 3, size=1000)
    s.file("fresh.png", 0, size=1000)
    assert s.sweep(max_bytes=7000) == {"open.png", "r8.png", "orphan3.png", "fresh.png"}
    assert disk_usage(s.evidence) == (4, 7000)
    # a cap the open incident alone exceeds: everything else that may go goes, it stays
    assert s.sweep(max_bytes=1000) == {"open.png", "fresh.png"}


def test_symlinks_are_neither_followed_nor_counted(tmp_path: Path) -> None:
    s = State(tmp_path / "state")
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"keep me")
    os.utime(outside, (NOW - 90 * DAY, NOW - 90 * DAY))
    (s.evidence / "acme").mkdir(parents=True)
    (s.evidence / "acme" / "link.png").symlink_to(outside)
    (s.evidence / "elsewhere").symlink_to(tmp_path)
    s.file("old.png", 90, site="gone-shop")
    s.sweep(retention_days=1, max_bytes=1)
    assert outside.read_bytes() == b"keep me"
    assert not (s.evidence / "gone-shop").exists()  # emptied site folders go too
    assert disk_usage(s.evidence) == (0, 0)


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("storewatch_evidence")}


async def _until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_the_running_agent_prunes_and_exports_the_folder_size(
        store: DemoStore, tmp_path: Path) -> None:
    state = tmp_path / "state"
    s = State(state)
    keep = s.file("open.png", 50, size=3000)
    s.incident([keep], Phase.OPEN)
    gone = s.file("resolved.png", 12, size=5000)
    s.incident([gone], Phase.RESOLVED, 11)
    s.store.close()
    config = Config.model_validate({
        "agent": {"listen": "127.0.0.1:0", "jitter": 0, "state_dir": str(state)},
        "sites": [{"name": "shop", "base_url": store.url, "interval": "1m",
                   "checks": [{"name": "home", "type": "availability", "path": "/"}]}],
        "incidents": {"evidence": {"retention": "10d"}}})
    agent = Agent("test.yaml", config)
    task = asyncio.create_task(agent.serve())
    try:
        await _until(lambda: not gone.exists())
        assert keep.read_bytes()[:4] == b"\x89PNG"
        async with httpx.AsyncClient() as client:
            metrics = _samples((await client.get(agent.metrics_url)).text)
        assert metrics["storewatch_evidence_bytes"] == 3000
        assert metrics["storewatch_evidence_files"] == 1
        assert metrics["storewatch_evidence_pruned_files_total"] == 1
    finally:
        agent.stop()
        await task


def test_an_open_incident_is_recognised_through_a_relative_or_linked_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident names its files as the config spelled the state directory; pruning walks
    the folder by another spelling: still the same files, still kept."""
    real = tmp_path / "real"
    s = State(real)
    kept = s.file("open.png", 90)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    via_link = Path("link") / "evidence" / "acme" / "open.png"  # relative, through the link
    s.incident([via_link], Phase.OPEN)
    active, recent = s.store.evidence_in_use(datetime.fromtimestamp(NOW - 30 * DAY, UTC))
    result = prune(real / "evidence", active, recent, NOW, 30 * DAY, 1)
    assert result.deleted_files == 0 and kept.exists()
