"""Which HTTP proxy a request goes through: a site's ``proxy:`` or the standard environment.

``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` (upper or lower case) name the proxy for https
and http targets, ``NO_PROXY`` the hosts reached directly (curl's rules: ``*``, exact names,
domain suffixes with or without a leading dot, IP addresses, CIDR ranges, optional ``:port``).
A site's ``proxy:`` URL wins over the environment and ignores ``NO_PROXY``. Only ``http://``
proxies are supported (CONNECT for https targets, absolute-form requests for http ones).
Credentials in a proxy URL are secrets: registered with the scrubber, sent only to the proxy
in ``Proxy-Authorization``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agent.config.secrets import register_secret

ENV_NAMES = {"https": ("HTTPS_PROXY", "ALL_PROXY"), "http": ("HTTP_PROXY", "ALL_PROXY")}


@dataclass(frozen=True, slots=True)
class Proxy:
    """One HTTP proxy: where it listens and what ``Proxy-Authorization`` to send it."""

    host: str
    port: int
    authorization: bytes | None = None

    @property
    def where(self) -> str:
        """``host:port`` for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy_url(url: str) -> Proxy:
    """A ``http://[user:password@]host[:port]`` proxy URL (ValueError with a one-line reason).

    The credentials are registered as secrets before anything can fail or be logged.
    """
    try:
        parts = urlsplit(url.strip())
        username, password = parts.username, parts.password
        port = parts.port
    except ValueError:
        raise ValueError("is not a proxy URL (http://[user:password@]host[:port])") from None
    authorization = None
    if username is not None or password is not None:
        user, secret = unquote(username or ""), unquote(password or "")
        for value in (secret, f"{user}:{secret}", parts.netloc.rpartition("@")[0]):
            register_secret(value)
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        register_secret(token)
        authorization = b"Basic " + token.encode("ascii")
    if parts.scheme != "http":
        raise ValueError(f"proxy scheme {parts.scheme or '(none)'!r} is not supported "
                         "(use an http:// proxy; it tunnels https targets with CONNECT)")
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("proxy URL must be scheme://host[:port] only")
    host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() \
        else parts.hostname
    return Proxy(host, port or 80, authorization)


@dataclass(frozen=True, slots=True)
class ProxyRules:
    """Proxies by target scheme plus the ``NO_PROXY`` exceptions."""

    https: Proxy | None = None
    http: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyRules:
        """The rules the standard environment variables describe (ValueError naming one)."""
        env = os.environ if env is None else env
        found: dict[str, Proxy | None] = {}
        for scheme, names in ENV_NAMES.items():
            found[scheme] = None
            for name in names:
                value = env.get(name) or env.get(name.lower())
                if value:
                    if "://" not in value:
                        value = "http://" + value
                    try:
                        found[scheme] = parse_proxy_url(value)
                    except ValueError as exc:
                        raise ValueError(f"environment variable {name}: {exc}") from None
                    break
        raw = env.get("NO_PROXY") or env.get("no_proxy") or ""
        no_proxy = tuple(e.strip().lower() for e in raw.split(",") if e.strip())
        return cls(found["https"], found["http"], no_proxy)

    @classmethod
    def only(cls, proxy: Proxy) -> ProxyRules:
        """Every request through ``proxy`` (a site's ``proxy:``)."""
        return cls(proxy, proxy)

    def __bool__(self) -> bool:
        return self.https is not None or self.http is not None

    def for_target(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for ``scheme://host:port`` (host as an A-label), or None to go direct."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or not self.no_proxy:
            return proxy
        return None if bypassed(self.no_proxy, host.lower(), port) else proxy


def bypassed(entries: tuple[str, ...], host: str, port: int) -> bool:
    """Whether ``NO_PROXY``'s ``entries`` exempt ``host:port`` (curl's matching)."""
    address = _address(host)
    for entry in entries:
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None
