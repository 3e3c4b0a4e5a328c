"""Outbound heartbeat against a real loopback server, and sd_notify over an abstract socket."""

from __future__ import annotations

import logging
import os
import socket

import pytest
from aiohttp import web

from agent.config.schema import Heartbeat
from agent.host.heartbeat import HeartbeatSender
from agent.httpclient import HttpClients
from agent.systemd import Notifier
from tests.agent.servers import serve


async def test_heartbeat_success_and_one_warning_per_failure_streak(
        caplog: pytest.LogCaptureFixture) -> None:
    answers = [503, 503, 200]
    hits: list[str] = []

    async def ping(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        return web.Response(status=answers.pop(0), text="ok")

    clients = HttpClients("storewatch-test")
    sender = HeartbeatSender(clients)
    try:
        async with serve({"/ping/abc": ping}) as base:
            settings = Heartbeat(url=base + "/ping/abc", timeout=2)
            with caplog.at_level(logging.INFO, logger="agent.host.heartbeat"):
                assert await sender.ping(settings) is False
                assert await sender.ping(settings) is False
                assert sender.last_success is None
                assert await sender.ping(settings) is True
    finally:
        await clients.aclose()
    assert hits == ["GET", "GET", "GET"]
    assert sender.last_success is not None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["heartbeat ping failed (HTTP 503); the agent looks dead from outside",
                        "heartbeat delivered again"]
    assert all("/ping/abc" not in m for m in messages)  # the URL may carry a secret token


def test_notifier_abstract_socket_and_watchdog_settings() -> None:
    name = f"storewatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert notifier.enabled and notifier.watchdog_s == 3.0
        assert notifier.stopping()
        assert sock.recv(1024).decode().splitlines()[0] == "STOPPING=1"


@pytest.mark.parametrize(("env", "enabled", "watchdog"), [
    ({}, False, None),
    ({"NOTIFY_SOCKET": "relative/path"}, False, None),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}, True, None),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}, True, None),
], ids=["not-under-systemd", "not-a-socket-path", "watchdog-off", "watchdog-for-another-pid"])
def test_notifier_environment(env: dict[str, str], enabled: bool,
                              watchdog: float | None) -> None:
    notifier = Notifier(env)
    assert notifier.enabled is enabled and notifier.watchdog_s == watchdog
    if not enabled:
        assert notifier.ready("x") is False
