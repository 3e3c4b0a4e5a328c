"""The bench's loopback world: nginx target, blackbox_exporter, TLS material, CPU pinning.

Everything listens on 127.0.0.1 and is started as a child process, stopped by its PID. The
measured process gets CPU 0; nginx and load drivers get CPU 1 (perf-anchors.md, "pinned").
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = ("<!doctype html><html><head><title>storewatch bench</title></head><body>"
        "<main id=\"maincontent\"><h1>storewatch bench target</h1>"
        + "<p>" + "static page of a loopback target. " * 14 + "</p></main></body></html>\n")
MEASURED_CPU = 0
HELPER_CPU = 1 if (os.cpu_count() or 1) > 1 else 0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def pin(cpu: int) -> list[str]:
    """Command prefix that runs a child on ``cpu``."""
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


def ensure_packages() -> None:
    """Install Debian nginx-light and prometheus-blackbox-exporter when missing (root only)."""
    missing = [pkg for pkg, binary in (("nginx-light", "nginx"),
                                       ("prometheus-blackbox-exporter",
                                        "prometheus-blackbox-exporter"))
               if not (shutil.which(binary) or Path(f"/usr/sbin/{binary}").exists())]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"bench: please install {' '.join(missing)} (apt-get install -y ...)")
    print(f"bench: installing {' '.join(missing)}", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ,
                                                   "DEBIAN_FRONTEND": "noninteractive"})


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not open 127.0.0.1:{port}")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate ``proc`` (kill it after 5 s) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class TLS:
    """A CA and a leaf certificate for 127.0.0.1 made with the openssl CLI."""

    ca: Path
    cert: Path
    key: Path


def make_tls(d: Path) -> TLS:
    """RSA-2048 CA and leaf (SAN IP:127.0.0.1), like a typical shop certificate."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "30", "-subj", "/CN=storewatch bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "60", "-extfile", "san.ext")
    return TLS(d / "ca.pem", d / "leaf.pem", d / "leaf.key")


SCALE_PORTS = 16
"""Extra plain-HTTP ports for the scale ramp: one destination can only take ~28k new
connections per TIME_WAIT period (the ephemeral port range); real probes go to many hosts."""


@dataclass(frozen=True)
class Target:
    """The nginx target: plain and TLS URLs of the same static page."""

    http_url: str
    https_url: str
    pid: int
    scale_urls: tuple[str, ...] = ()


@contextmanager
def nginx(d: Path, tls: TLS) -> Iterator[Target]:
    """nginx (1 worker, no access log) on CPU 1 serving PAGE over HTTP and HTTPS."""
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text(PAGE)
    for path in (d, d / "www"):  # nginx workers run as an unprivileged user
        path.chmod(0o755)
    (d / "www" / "index.html").chmod(0o644)
    http_port, https_port, *scale_ports = free_ports(2 + SCALE_PORTS)
    extra = "".join(f"        listen 127.0.0.1:{p} backlog=4096;\n" for p in scale_ports)
    (d / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    default_type text/html;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        listen 127.0.0.1:{https_port} ssl backlog=4096;
{extra}        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        root {d}/www;
    }}
}}
""")
    (d / "tmp").mkdir()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([*pin(HELPER_CPU), binary, "-c", str(d / "nginx.conf"), "-p", str(d)],
                            stdout=subprocess.DEVNULL, stderr=(d / "nginx-start.log").open("wb"))
    try:
        try:
            _wait_port(http_port, proc, "nginx")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {(d / 'nginx-start.log').read_text().strip()}") from None
        _wait_port(https_port, proc, "nginx")
        yield Target(f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}",
                     proc.pid, tuple(f"http://127.0.0.1:{p}" for p in scale_ports))
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class Blackbox:
    """A running blackbox_exporter on CPU 0 (GOMAXPROCS=1)."""

    url: str
    pid: int


@contextmanager
def blackbox(d: Path, tls: TLS) -> Iterator[Blackbox]:
    """blackbox_exporter with ``http_2xx`` (ip4, 5 s) and the same for our CA's HTTPS."""
    (d / "blackbox.yml").write_text(f"""
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  https_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {tls.ca}
""")
    port = free_port()
    binary = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
    proc = subprocess.Popen([*pin(MEASURED_CPU), binary, f"--config.file={d}/blackbox.yml",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            env={**os.environ, "GOMAXPROCS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "blackbox_exporter")
        yield Blackbox(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        stop_process(proc)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    """VmRSS of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> str:
    """One-paragraph description of the host the figures come from."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = "?"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    from importlib.metadata import version

    import httptools
    import httpx
    import prometheus_client  # noqa: F401
    nginx_v = _version([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]).split("/")[-1]
    bb_v = _version(["prometheus-blackbox-exporter", "--version"]).split()[2]
    return (f"{os.cpu_count()} vCPU ({cpu}), {mem_kib / 1024 / 1024:.0f} GiB RAM, {os_name}, "
            f"kernel {platform.release()}; CPython {platform.python_version()}, httpx "
            f"{httpx.__version__}, httptools {httptools.__version__}, prometheus-client "
            f"{version('prometheus-client')}, APScheduler {version('apscheduler')}; nginx "
            f"{nginx_v} (1 worker, CPU 1), blackbox_exporter {bb_v} (GOMAXPROCS=1, CPU 0). "
            "Measured processes are pinned to CPU 0; targets and load drivers to CPU 1.")


@dataclass(frozen=True)
class DemoStoreProcess:
    """The bundled demo store (``python -m agent demo-store``) running as a child process."""

    url: str
    pid: int


@contextmanager
def demo_store(js: bool = False) -> Iterator[DemoStoreProcess]:
    """Start the demo store on a free loopback port, pinned to the helper CPU (``js``: in
    JavaScript mode)."""
    port = free_port()
    proc = subprocess.Popen([*pin(HELPER_CPU), sys.executable, "-m", "agent", "demo-store",
                             "--host", "127.0.0.1", "--port", str(port),
                             *(["--js"] if js else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "demo store")
        yield DemoStoreProcess(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        stop_process(proc)
