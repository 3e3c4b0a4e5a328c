"""Certificates for the hostile storefront, made with the real openssl CLI."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostileCerts:
    """Certificates for 127.0.0.1: a CA, a good leaf and three bad ones (one key for all)."""

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


def make_certs(d: Path) -> HostileCerts:
    """A CA, a good leaf for 127.0.0.1, and bad ones: expired (a start date in the past needs
    ``openssl ca -startdate/-enddate`` on OpenSSL 3.0), wrong host, self-signed."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "30", "-subj", "/CN=storewatch hostile CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "leaf.pem", "-days", "30", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-key", "leaf.key", "-out", "self.pem", "-days", "30",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
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
    return HostileCerts(d / "ca.pem", d / "leaf.key", d / "expired.pem", d / "wronghost.pem",
                        d / "self.pem", d / "leaf.pem")


def server_contexts(certs: HostileCerts) -> dict[str, ssl.SSLContext]:
    """One server-side SSL context per bad certificate, by the name ``Fault.tls`` uses."""
    contexts = {}
    for name, cert in (("expired", certs.expired), ("wronghost", certs.wronghost),
                       ("selfsigned", certs.selfsigned), ("good", certs.good)):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(certs.key))
        contexts[name] = ctx
    return contexts
