"""The agent as a systemd service: sd_notify over a real socket, real signals, log format, and
the unit file checked by systemd-analyze."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.demo.storefront import DemoStore
from tests.conftest import ROOT

UNIT = ROOT / "config" / "systemd" / "storewatch.service"


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """The next message that sets ``key`` (messages before it are kept in ``messages``)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; got {self.messages}")


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    short = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))  # sun_path is ~108 bytes
    sock = NotifySocket(short / "notify")
    try:
        yield sock
    finally:
        sock.sock.close()
        shutil.rmtree(short)


def config_text(url: str) -> str:
    return (f"agent: {{listen: '127.0.0.1:0'}}\nsites:\n  - name: shop\n    base_url: {url}\n"
            "    interval: 1s\n    timeout: 0.5s\n    checks: [{name: home}]\n")


def start(config: Path, notify: NotifySocket, *extra: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "agent", *extra, "run", "-c", str(config),
                             "--state-dir", str(config.parent / "state")],
                            stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT)


async def test_notify_reload_and_graceful_stop(store: DemoStore, tmp_path: Path,
                                               notify: NotifySocket) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(store.url))
    proc = start(config, notify, env={"WATCHDOG_USEC": "400000", "JOURNAL_STREAM": "8:1234"})
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert "1 checks on 1 sites" in ready["STATUS"]
        notify.wait_for("WATCHDOG")
        assert notify.wait_for("WATCHDOG")["WATCHDOG"] == "1"  # keeps pinging

        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING")
        assert reloading["RELOADING"] == "1"
        assert re.fullmatch(r"\d+", reloading["MONOTONIC_USEC"])
        assert notify.wait_for("READY")["READY"] == "1"

        config.write_text("sites: [}\n")  # a bad new config keeps the old one running
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING")
        notify.wait_for("READY")
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING")["STOPPING"] == "1"
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    with proc.stderr:
        lines = proc.stderr.read().splitlines()
    failed = [ln for ln in lines if "reload failed" in ln]
    assert len(failed) == 1
    assert failed[0].startswith("<3>agent.service: reload failed, keeping the running config: ")
    assert str(config) in failed[0]
    assert lines, "no log lines"
    for line in lines:  # journald adds the time: no timestamp, a priority prefix
        assert re.match(r"<[0-7]>[\w.]+: ", line), line
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line), line


async def test_without_notify_socket_and_json_logs(store: DemoStore, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(store.url))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--log-format", "json", "run", "-c",
                             str(config), "--state-dir", str(tmp_path / "state")],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "storewatch running ..." once it serves
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    with proc.stderr:
        lines = [first, *proc.stderr.read().splitlines()]
    docs = [json.loads(line) for line in lines if line.strip()]
    assert docs[0]["message"].startswith("storewatch running: 1 checks on 1 sites")
    assert docs[-1]["message"] == "storewatch stopped"
    assert all({"ts", "level", "logger", "message"} <= d.keys() for d in docs)


def test_bad_log_format_from_env_is_a_usage_error() -> None:
    from tests.conftest import storewatch

    proc = storewatch("validate", "-c", "x.yaml", env={"STOREWATCH_LOG_FORMAT": "xml"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("storewatch: STOREWATCH_LOG_FORMAT: 'xml' is not one of "
                                   "text, json")


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd): unit not verified")
    return path


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's storewatch (verify checks it)."""
    exe = Path(sys.executable).parent / "storewatch"
    text = UNIT.read_text().replace("/opt/storewatch/.venv/bin/storewatch", str(exe))
    path = tmp_path / "storewatch.service"
    path.write_text(text)
    return path


def test_unit_verifies_cleanly(unit_copy: Path) -> None:
    proc = subprocess.run([_analyze(), "verify", str(unit_copy)], capture_output=True,
                          text=True, timeout=60, cwd=unit_copy.parent)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_unit_exposure_is_at_most_2(unit_copy: Path) -> None:
    proc = subprocess.run([_analyze(), "security", "--offline=true", str(unit_copy)],
                          capture_output=True, text=True, timeout=60, cwd=unit_copy.parent)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-500:] + proc.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_keeps_process_monitoring_possible() -> None:
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and "WatchdogSec" in settings
    assert settings.get("ProtectProc", "default") == "default"  # other processes visible
    assert settings.get("ProcSubset", "all") == "all"  # /proc/stat, meminfo, loadavg readable
    assert settings["StateDirectory"] == "storewatch"
    assert settings["LoadCredential"].startswith("sw:")
