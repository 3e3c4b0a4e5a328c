"""Fixtures of the fault suite: the hostile server with its TLS listeners and certificates."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TLSMaterial
from tests.faults.hostile import HostileServer, start_hostile


@dataclass(frozen=True)
class HostileCerts:
    """Bad certificates for 127.0.0.1, the good CA that signed two of them."""

    ca_cert: Path
    key: Path
    expired: Path     # signed by the CA, valid Jan 2020 only
    wronghost: Path   # signed by the CA, for shop.example
    selfsigned: Path  # valid, not signed by the CA
    good: Path        # valid, signed by the CA


CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def hostile_certs(tls_material: TLSMaterial) -> HostileCerts:
    """An expired and a wrong-host certificate made with the real openssl CLI (an expired one
    needs a start date in the past: ``openssl ca -startdate/-enddate``, OpenSSL 3.0)."""
    d = tls_material.ca_cert.parent
    (d / "ca.cnf").write_text(CA_CONFIG)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
             "-in", "leaf.csr", "-out", "expired.pem", "-notext", "-extfile", "san.ext",
             "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", cwd=d)
    _openssl("req", "-new", "-key", "leaf.key", "-out", "wrong.csr", "-subj", "/CN=shop.example",
             cwd=d)
    (d / "wrong.ext").write_text("subjectAltName=DNS:shop.example\n")
    _openssl("x509", "-req", "-in", "wrong.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "wronghost.pem", "-days", "30", "-extfile", "wrong.ext",
             cwd=d)
    return HostileCerts(tls_material.ca_cert, tls_material.key, d / "expired.pem",
                        d / "wronghost.pem", tls_material.selfsigned_cert,
                        tls_material.leaf_cert)


def server_contexts(certs: HostileCerts) -> dict[str, ssl.SSLContext]:
    """One server-side SSL context per bad certificate, by the name ``Fault.tls`` uses."""
    contexts = {}
    for name, cert in (("expired", certs.expired), ("wronghost", certs.wronghost),
                       ("selfsigned", certs.selfsigned), ("good", certs.good)):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(certs.key))
        contexts[name] = ctx
    return contexts


@pytest.fixture
async def hostile(hostile_certs: HostileCerts) -> AsyncIterator[HostileServer]:
    """The hostile storefront on loopback: plain HTTP plus a TLS listener per bad cert."""
    server = await start_hostile(server_contexts(hostile_certs))
    try:
        yield server
    finally:
        await server.close()
