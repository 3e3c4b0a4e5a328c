"""The /metrics web config (``--web.config.file``): the Prometheus exporter-toolkit format, so
the file that secures a node_exporter secures storewatch too::

    tls_server_config:
      cert_file: /etc/storewatch/metrics.crt      # or cert: <PEM text>
      key_file: /etc/storewatch/metrics.key       # or key: <PEM text>
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: /etc/storewatch/prometheus-ca.crt   # or client_ca: <PEM text>
      client_allowed_sans: [prometheus.example.net]
      min_version: TLS12                          # TLS10 | TLS11 | TLS12 | TLS13
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go names; TLS <= 1.2
      prefer_server_cipher_suites: true
      curve_preferences: [X25519, CurveP256]
    http_server_config:
      http2: true                                 # accepted; /metrics speaks HTTP/1.1
      headers:
        Strict-Transport-Security: max-age=31536000
        X-Content-Type-Options: nosniff
        X-Frame-Options: deny
    basic_auth_users:
      prometheus: $2b$12$...   # bcrypt hash (htpasswd -nBC 12 prometheus)
    rate_limit:
      interval: 100ms          # one request per interval on average (0: no limit)
      burst: 10

Relative file names are relative to the web config's directory (as in exporter-toolkit).
Differences forced by Python's ``ssl`` module (documented in docs/metrics.md): a client
certificate is always verified against the client CA, so ``RequestClientCert`` and
``RequireAnyClientCert`` need ``client_ca_file`` and then behave like
``VerifyClientCertIfGiven`` and ``RequireAndVerifyClientCert``; of ``curve_preferences``
only the first curve is used; TLS 1.3 cipher suites cannot be chosen (as in Go).

Validation of the file is strict and I/O-free (file:line errors through the config loader);
certificates and keys are read when the server starts (errors name the file and field too).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from agent.config.durations import Duration
from agent.config.loader import ValueErrorAt, load_config
from agent.config.schema import StrictModel
from agent.errors import ConfigError

_BCRYPT_RE = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_CACHE_LIMIT = 256

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
"""exporter-toolkit's version names → Python's."""

CIPHER_SUITES = {
    # TLS 1.0-1.2 suites of Go's tls.CipherSuites() → OpenSSL names
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"})
"""Accepted (Go lists them) but not configurable, in Go as in OpenSSL: always on with TLS 1.3."""

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}
"""Go's curve names → OpenSSL's."""

HEADERS = {
    "Strict-Transport-Security": None,
    "Content-Security-Policy": None,
    "X-XSS-Protection": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
}
"""The response headers exporter-toolkit lets a web config set, and their allowed values."""

ClientAuthType = Literal["NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                         "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]


def _check_bcrypt(value: str) -> str:
    if not _BCRYPT_RE.fullmatch(value):
        raise ValueError("not a bcrypt hash ($2b$...); make one with: htpasswd -nBC 12 USER")
    return value


BcryptHash = Annotated[str, AfterValidator(_check_bcrypt)]


def _one_of(value: str, allowed: Collection[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} '{value}'; use one of {', '.join(allowed)}")
    return value


class TLSServerConfig(StrictModel):
    """Serve /metrics over HTTPS (``tls_server_config`` of the exporter-toolkit format)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None
    """The certificate chain as PEM text, instead of ``cert_file``."""
    key: SecretStr | None = None
    """The key as PEM text, instead of ``key_file``."""
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    client_ca: str | None = None
    """The client CA as PEM text, instead of ``client_ca_file``."""
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return _one_of(value, TLS_VERSIONS, "TLS version")

    @field_validator("cipher_suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            if name not in CIPHER_SUITES and name not in TLS13_SUITES:
                raise ValueErrorAt((i,), f"unknown or insecure cipher suite '{name}'; use Go "
                                   "names of tls.CipherSuites(), e.g. "
                                   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            if name not in CURVES:
                raise ValueErrorAt((i,), f"unknown curve '{name}'; use one of "
                                   f"{', '.join(CURVES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        for name, file_name in (("cert", "cert_file"), ("key", "key_file"),
                                ("client_ca", "client_ca_file")):
            if getattr(self, name) is not None and getattr(self, file_name) is not None:
                raise ValueErrorAt((name,), f"give either {name} or {file_name}, not both")
        if self.cert is None and self.cert_file is None:
            raise ValueError("required key 'cert_file' is missing")
        if self.key is None and self.key_file is None:
            raise ValueError("required key 'key_file' is missing")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueErrorAt(("min_version",), f"min_version {self.min_version} is above "
                               f"max_version {self.max_version}")
        has_ca = self.client_ca is not None or self.client_ca_file is not None
        if has_ca and self.client_auth_type == "NoClientCert":
            raise ValueErrorAt(("client_ca_file",), "a client CA is configured but "
                               "client_auth_type is NoClientCert; use "
                               "RequireAndVerifyClientCert")
        if not has_ca and self.client_auth_type != "NoClientCert":
            raise ValueErrorAt(("client_auth_type",), f"{self.client_auth_type} needs "
                               "client_ca_file (client certificates are verified against it)")
        if self.client_allowed_sans and self.client_auth_type not in (
                "RequireAnyClientCert", "RequireAndVerifyClientCert"):
            raise ValueErrorAt(("client_allowed_sans",), "needs client_auth_type "
                               "RequireAndVerifyClientCert (or RequireAnyClientCert)")
        return self

    def requires_client_cert(self) -> bool:
        """Whether a client without a certificate is refused."""
        return self.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert")


class HTTPServerConfig(StrictModel):
    """``http_server_config``: extra response headers (and ``http2``, accepted)."""

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name not in HEADERS:
                raise ValueErrorAt((name,), f"HTTP header '{name}' can not be configured; "
                                   f"use {', '.join(HEADERS)}")
            allowed = HEADERS[name]
            if allowed is not None and text and text.lower() not in allowed:
                raise ValueErrorAt((name,), f"invalid value '{text}'; use {' or '.join(allowed)}")
            if "\r" in text or "\n" in text:
                raise ValueErrorAt((name,), "a header value must be one line")
        return value


class RateLimit(StrictModel):
    """``rate_limit``: a token bucket over all requests; beyond it the answer is 429."""

    interval: Duration = 0.0
    """Time between two requests on average; 0 turns the limit off."""
    burst: int = Field(default=0, ge=0, le=1_000_000)


class WebConfig(StrictModel):
    """The whole web config file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the web config at ``path``; ConfigError (one line) when invalid.
    Relative file names in it are made relative to the file's directory."""
    config = load_config(path, WebConfig)
    tls = config.tls_server_config
    if tls is None:
        return config
    base = Path(path).parent
    update = {name: base / getattr(tls, name) for name in ("cert_file", "key_file",
                                                           "client_ca_file")
              if getattr(tls, name) is not None and not getattr(tls, name).is_absolute()}
    if not update:
        return config
    return config.model_copy(update={"tls_server_config": tls.model_copy(update=update)})


def server_ssl_context(tls: TLSServerConfig, path: str | Path) -> ssl.SSLContext:
    """The server-side SSL context of ``tls``; ConfigError naming the web config when a
    certificate, key or setting cannot be used."""
    for field, file in (("cert_file", tls.cert_file), ("key_file", tls.key_file),
                        ("client_ca_file", tls.client_ca_file)):
        if file is not None and not file.is_file():
            raise ConfigError(f"cannot read {file}: no such file", file=str(path),
                              field=f"tls_server_config.{field}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    except (ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"this OpenSSL cannot serve {tls.min_version}..{tls.max_version}: "
                          f"{exc}", file=str(path), field="tls_server_config") from None
    _load_chain(ctx, tls, path)
    _apply_ciphers_and_curves(ctx, tls, path)
    if tls.client_auth_type != "NoClientCert":
        try:
            if tls.client_ca_file is not None:
                ctx.load_verify_locations(cafile=str(tls.client_ca_file))
            else:
                ctx.load_verify_locations(cadata=tls.client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot use the client CA: {reason}", file=str(path),
                              field="tls_server_config.client_ca_file") from None
        ctx.verify_mode = (ssl.CERT_REQUIRED if tls.requires_client_cert()
                           else ssl.CERT_OPTIONAL)
    return ctx


def _load_chain(ctx: ssl.SSLContext, tls: TLSServerConfig, path: str | Path) -> None:
    described = f"certificate {tls.cert_file or '(cert)'} with key {tls.key_file or '(key)'}"
    with contextlib.ExitStack() as stack:
        cert, key = tls.cert_file, tls.key_file
        if tls.cert is not None or tls.key is not None:
            # ssl loads chains from files only: inline PEM goes to a private temporary
            # directory, deleted as soon as it is loaded
            private = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="storewatch-web-")))
            if tls.cert is not None:
                cert = _private_file(private / "cert.pem", tls.cert)
            if tls.key is not None:
                key = _private_file(private / "key.pem", tls.key.get_secret_value())
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ConfigError(f"cannot use {described}: {reason}", file=str(path),
                              field="tls_server_config") from None


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _apply_ciphers_and_curves(ctx: ssl.SSLContext, tls: TLSServerConfig,
                              path: str | Path) -> None:
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    names = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
    if names:
        try:
            ctx.set_ciphers(":".join(dict.fromkeys(names)))
        except ssl.SSLError:
            raise ConfigError("none of cipher_suites is available in this OpenSSL",
                              file=str(path), field="tls_server_config.cipher_suites") from None
    if tls.curve_preferences:
        try:
            ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
        except (ValueError, ssl.SSLError):
            raise ConfigError(f"curve {tls.curve_preferences[0]} is not available in this "
                              "OpenSSL", file=str(path),
                              field="tls_server_config.curve_preferences") from None


def peer_sans(cert: Mapping[str, Any] | None) -> set[str]:
    """Every Subject Alternative Name (DNS, IP, e-mail, URI) of a verified peer certificate."""
    if not cert:
        return set()
    entries = cert.get("subjectAltName", ())
    if not isinstance(entries, tuple):
        return set()
    return {str(value).strip() for _, value in entries}


class RateLimiter:
    """Token bucket: ``burst`` requests at once, refilled one per ``interval`` (thread-safe)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = limit.interval
        self._burst = max(1, limit.burst)
        self._tokens = float(self._burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if there is one."""
        if self._interval <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


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
