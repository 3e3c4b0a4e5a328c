"""The /metrics web config (``--web.config.file``), in the format Prometheus exporters use::

    tls_server_config:
      cert_file: /etc/storewatch/metrics.crt
      key_file: /etc/storewatch/metrics.key
    basic_auth_users:
      prometheus: $2b$12$...   # bcrypt hash (htpasswd -nBC 12 prometheus)

Validation of the file is strict and I/O-free (file:line errors through the config loader);
the certificate and key are read when the server starts (errors name the file and field too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from agent.config.loader import load_config
from agent.config.schema import StrictModel
from agent.errors import ConfigError

_BCRYPT_RE = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_CACHE_LIMIT = 256


def _check_bcrypt(value: str) -> str:
    if not _BCRYPT_RE.fullmatch(value):
        raise ValueError("not a bcrypt hash ($2b$...); make one with: htpasswd -nBC 12 USER")
    return value


BcryptHash = Annotated[str, AfterValidator(_check_bcrypt)]


class TLSServerConfig(StrictModel):
    """Serve /metrics over HTTPS with this certificate chain and key (PEM files)."""

    cert_file: Path
    key_file: Path


class WebConfig(StrictModel):
    """The whole web config file."""

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the web config at ``path``; ConfigError (one line) when invalid."""
    return load_config(path, WebConfig)


def server_ssl_context(tls: TLSServerConfig, path: str | Path) -> ssl.SSLContext:
    """The server-side SSL context of ``tls``; ConfigError naming the web config when the
    certificate or key cannot be used."""
    for field, file in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if not file.is_file():
            raise ConfigError(f"cannot read {file}: no such file", file=str(path),
                              field=f"tls_server_config.{field}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(f"cannot use certificate {tls.cert_file} with key {tls.key_file}: "
                          f"{reason}", file=str(path), field="tls_server_config") from None
    return ctx


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes (thread-safe; successful
    checks are cached by a SHA-256 of the credentials, as bcrypt costs ~100 ms a check)."""

    def __init__(self, users: dict[str, str]) -> None:
        import bcrypt  # imported only by an agent whose web config has users

        self._checkpw = bcrypt.checkpw
        self._dummy_hash = bcrypt.hashpw(b"storewatch-no-such-user", bcrypt.gensalt(rounds=4))
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        """Whether the ``Authorization`` header carries a known user with the right password."""
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True) \
                .decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            if key in self._ok:
                return True
        hashed = self._users.get(user)
        # Unknown users cost a bcrypt check too, so timing does not tell which users exist.
        try:
            ok = self._checkpw(password.encode(), hashed or self._dummy_hash) and hashed is not None
        except ValueError:  # bcrypt refuses passwords over 72 bytes: none of ours is
            ok = False
        if ok:
            with self._lock:
                if len(self._ok) >= _CACHE_LIMIT:
                    self._ok.clear()
                self._ok.add(key)
        return ok
