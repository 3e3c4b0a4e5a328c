"""The CLI end to end in real subprocesses: check, validate, run, demo-store, demo."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, storewatch

DEMO_CONFIG = ROOT / "config" / "demo.yaml"


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """demo.yaml's state_dir defaults to ./state: every subprocess here gets its own instead, so
    the suite leaves the checkout as it found it (no ./state/baselines.db for the demo)."""
    monkeypatch.setenv("STOREWATCH_STATE_DIR", str(tmp_path / "private-state"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def wait_http(url: str, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


@pytest.fixture
def demo_store() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`storewatch demo-store` in a subprocess, on a free port."""
    port = free_port()
    proc = start("demo-store", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_demo/faults")
        yield url, proc
    finally:
        if proc.poll() is None:
            stop(proc)


def set_faults(url: str, *faults: str) -> None:
    httpx.post(url + "/_demo/faults", json={"faults": list(faults)}).raise_for_status()


def test_check_json_healthy_store_exits_0(demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    proc = storewatch("check", "-c", str(DEMO_CONFIG), "--json",
                      env={"STOREWATCH_DEMO_URL": url})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["results"]
    for result in doc["results"]:
        assert result["success"] is True
        assert result["findings"] == []
        assert {"site", "check", "success", "duration_seconds", "findings"} <= set(result)


def test_check_json_down_store_exits_1_with_site_down_l1(
        demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    set_faults(url, "down")
    proc = storewatch("check", "-c", str(DEMO_CONFIG), "--json", "--site", "demo",
                      env={"STOREWATCH_DEMO_URL": url})
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    home = next(r for r in doc["results"] if r["check"] == "home")
    assert home["success"] is False
    (finding,) = home["findings"]
    assert finding["kind"] == "site_down"
    assert finding["level"] == 1
    assert finding["summary"].startswith("home page unreachable")
    assert set(finding) >= {"kind", "level", "summary", "evidence"}


def test_check_table_for_people(demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    set_faults(url, "server_error")
    proc = storewatch("check", "-c", str(DEMO_CONFIG), env={"STOREWATCH_DEMO_URL": url})
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].split() == ["SITE", "CHECK", "RESULT", "TIME", "FINDINGS"]
    assert "L1 site_down" in proc.stdout
    assert "home page answered HTTP 503 (expected 200)" in proc.stdout


def test_check_unknown_site_exits_2() -> None:
    proc = storewatch("check", "-c", str(DEMO_CONFIG), "--site", "nope")
    assert proc.returncode == 2
    assert proc.stderr == f"storewatch: {DEMO_CONFIG}: --site: no site named 'nope'\n"


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = storewatch("validate", "-c", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "absent.yaml: cannot read config: No such file or directory" in proc.stderr


def test_check_leaves_the_checkout_alone(demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    before = (ROOT / "state").exists()
    storewatch("check", "-c", str(DEMO_CONFIG), "--site", "demo", env={"STOREWATCH_DEMO_URL": url})
    assert (ROOT / "state").exists() == before
    # check writes baselines only into a --state-dir given on its command line
    assert not (Path(os.environ["STOREWATCH_STATE_DIR"]) / "baselines.db").exists()


def test_validate_ok() -> None:
    proc = storewatch("validate", "-c", str(DEMO_CONFIG))
    assert proc.returncode == 0
    assert proc.stdout == f"{DEMO_CONFIG}: ok (1 sites, 11 checks)\n"


def test_demo_store_rejects_unknown_fault() -> None:
    proc = storewatch("demo-store", "--port", "0", "--fault", "meteor")
    assert proc.returncode == 2
    assert "meteor" in proc.stderr and proc.stderr.count("\n") == 1


def test_demo_store_starts_with_a_fault(tmp_path: Path) -> None:
    port = free_port()
    proc = start("demo-store", "--port", str(port), "--fault", "server_error")
    try:
        response = wait_http(f"http://127.0.0.1:{port}/")
        assert response.status_code == 503
    finally:
        code, out, _ = stop(proc)
    assert code == 0
    assert "faults: server_error" in out


def run_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        "agent:\n  jitter: 0\n"
        "sites:\n"
        f"  - name: shop\n    base_url: {url}\n    interval: 1s\n    timeout: 0.8s\n"
        "    checks:\n      - name: home\n")
    return path


def test_run_serves_metrics_reloads_and_stops_cleanly(
        tmp_path: Path, demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    config = run_config(tmp_path, url)
    port = free_port()
    proc = start("run", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                 "--state-dir", str(tmp_path / "state"))
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(metrics)
        for _ in range(50):
            text = httpx.get(metrics).text
            if 'storewatch_probe_success{check="home",site="shop"} 1.0' in text:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no successful probe exported:\n" + text)
        assert (tmp_path / "state").is_dir()
        # a broken config on SIGHUP keeps the agent running on the old one
        config.write_text(config.read_text().replace("interval: 1s", "interval: 1x"))
        proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            if "storewatch_config_last_reload_successful 0.0" in httpx.get(metrics).text:
                break
            time.sleep(0.1)
        else:
            pytest.fail("failed reload not visible in /metrics")
        assert proc.poll() is None
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "reload failed, keeping the running config" in err
    assert "storewatch stopped" in err


def test_run_exits_1_when_the_metrics_port_is_taken(tmp_path: Path) -> None:
    config = run_config(tmp_path, "http://127.0.0.1:9")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = storewatch("run", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                          "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"storewatch: cannot listen on 127.0.0.1:{port} for /metrics: Address already in use")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_demo_shows_site_down_appear_and_clear(tmp_path: Path) -> None:
    """The README's demo: site_down at L1 appears while `down` is on and clears after."""
    proc = storewatch("demo", "--duration", "45", "--store-port", "0",
                      "--listen", f"127.0.0.1:{free_port()}", timeout=90,
                      env={"STOREWATCH_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    on = next(i for i, line in enumerate(lines) if "fault on: down" in line)
    appear = next(i for i, line in enumerate(lines) if "+ L1 site_down" in line)
    off = next(i for i, line in enumerate(lines) if i > on and "store healthy" in line)
    clear = next(i for i, line in enumerate(lines) if "- cleared site_down demo/home" in line)
    assert on < appear < off < clear
    assert "agent metrics at http://127.0.0.1:" in proc.stdout
    # the daemon's incident engine: one ticketed incident, the rest suppressed by it
    opened = re.findall(r"incident #\d+ opened: (.*)", proc.stderr)
    assert [line.split(":")[0] for line in opened] == ["[L1] demo — home"]


SUBCOMMANDS = [("run",), ("check",), ("validate",), ("demo",), ("demo-store",),
               ("install-files",), ("incidents", "list"), ("incidents", "show"),
               ("incidents", "resolve"), ("tickets", "list"), ("tickets", "retry"),
               ("silence", "add"), ("silence", "list"), ("silence", "remove")]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_help_has_a_paragraph_statuses_and_an_example(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith("usage: storewatch " + " ".join(command))
    assert len(description.split()) >= 12, description
    statuses = out.split("exit status:\n")[1].split("\n\nexample:\n")[0]
    assert re.match(r"  0  ", statuses), statuses
    example = out.split("example:\n")[1]
    assert example.startswith("  storewatch " + command[0])


def test_demo_store_help_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main
    from agent.demo.storefront import FAULTS

    with pytest.raises(SystemExit):
        main(["demo-store", "--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^  (\w+) +\S", out.split("faults:\n")[1].split("\n\n")[0], re.M)
    assert sorted(listed) == sorted(FAULTS)


def test_web_config_flag_has_both_spellings(tmp_path: Path) -> None:
    from agent.cli import _parser

    for flag in ("--web-config-file", "--web.config.file"):
        args = _parser().parse_args(["run", flag, str(tmp_path / "web.yml")])
        assert args.web_config_file == tmp_path / "web.yml"


def test_check_exits_3_when_the_agents_own_network_is_down(
        tmp_path: Path, demo_store: tuple[str, object]) -> None:
    url, _ = demo_store
    set_faults(url, "server_error")
    closed = f"http://127.0.0.1:{free_port()}/"
    config = tmp_path / "offline.yaml"
    config.write_text(f"sites:\n  - name: shop\n    base_url: {url}\n    checks: [{{name: home}}]\n"
                      f"incidents:\n  reference_targets: ['{closed}']\n")
    proc = storewatch("check", "-c", str(config))
    assert proc.returncode == 3, proc.stderr
    assert "L1 site_down" in proc.stdout
    assert proc.stderr.splitlines()[-1] == (
        "storewatch: could not run: no reference target answers, the agent's "
        "own network is down; the findings say nothing about the shops")
    # the same findings with a reference target that answers: exit 1, findings
    config.write_text(config.read_text().replace(closed, url + "/_demo/faults"))
    assert storewatch("check", "-c", str(config)).returncode == 1


def test_install_files_writes_what_a_server_needs(tmp_path: Path) -> None:
    proc = storewatch("install-files", str(tmp_path / "files"))
    assert proc.returncode == 0, proc.stderr
    written = {Path(line).relative_to(tmp_path / "files").as_posix()
               for line in proc.stdout.splitlines()}
    assert {"config/systemd/storewatch.service", "config/storewatch.example.yaml",
            "config/examples/generic.yaml", "config/demo.yaml", "dashboards/fleet-overview.json",
            "dashboards/rules/alerts.yml", "dashboards/rules/recording.yml"} <= written
    assert (tmp_path / "files" / "dashboards" / "rules" / "alerts.yml").read_text() == (
        ROOT / "dashboards" / "rules" / "alerts.yml").read_text()
    unit = tmp_path / "files" / "config" / "systemd" / "storewatch.service"
    unit.write_text("# edited\n")
    again = storewatch("install-files", str(tmp_path / "files"))
    assert f"{unit} (exists, kept; --force overwrites)" in again.stdout
    assert unit.read_text() == "# edited\n"
    storewatch("install-files", "--force", str(tmp_path / "files"))
    assert unit.read_text() != "# edited\n"
