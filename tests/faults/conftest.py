"""Fixtures of the fault suite: the hostile server with its TLS listeners and certificates."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.faults.certs import HostileCerts, make_certs, server_contexts
from tests.faults.hostile import HostileServer, start_hostile


@pytest.fixture(scope="session")
def hostile_certs(tmp_path_factory: pytest.TempPathFactory) -> HostileCerts:
    """The hostile storefront's certificates, made once per test session."""
    return make_certs(tmp_path_factory.mktemp("hostile-tls"))


@pytest.fixture
async def hostile(hostile_certs: HostileCerts) -> AsyncIterator[HostileServer]:
    """The hostile storefront on loopback: plain HTTP plus a TLS listener per bad cert."""
    server = await start_hostile(server_contexts(hostile_certs))
    try:
        yield server
    finally:
        await server.close()
