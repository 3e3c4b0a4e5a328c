"""Typed, strict config models. Validation never does I/O; unknown keys are errors.

The loader (agent/config/loader.py) maps every validation error to ``file:line: field: problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agent import __version__
from agent.config.durations import Duration, format_duration
from agent.config.loader import ValueErrorAt
from classifier import FindingKind, Level, Plan

DEFAULT_CONFIG_PATH = "/etc/storewatch/config.yaml"
DEFAULT_LISTEN = "127.0.0.1:9478"

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid name: use 1-63 lower-case letters, digits, "
                         "'-', '_' or '.', starting with a letter or digit")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""Site and check names: lower-case slug, also used as metric label values."""


class StrictModel(BaseModel):
    """Frozen model that rejects unknown keys (a typo must never silently disable a check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not HOST:PORT (e.g. 127.0.0.1:9478)")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``'127.0.0.1:9478'`` → ``('127.0.0.1', 9478)``; ``'[::1]:9478'`` → ``('::1', 9478)``."""
    host, _, port = _check_listen(value).rpartition(":")
    return host.strip("[]"), int(port)


class AgentSettings(StrictModel):
    """Settings of the agent process itself."""

    listen: str = DEFAULT_LISTEN
    state_dir: Path = Path("/var/lib/storewatch")
    concurrency: int = Field(default=50, ge=1, le=10_000)
    user_agent: str = f"storewatch/{__version__} (synthetic monitoring; no orders placed)"
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    """Random start offset of each run, as a share of its interval."""

    _listen = field_validator("listen")(_check_listen)


class Defaults(StrictModel):
    """Values a site or check inherits when it does not set its own."""

    interval: Duration = 60.0
    timeout: Duration = 10.0


class TLSSettings(StrictModel):
    """How a site's certificates are verified and when expiry becomes a finding."""

    verify: bool = True
    ca_file: Path | None = None
    warn_days: float = Field(default=21.0, ge=0)


class AvailabilityCheck(StrictModel):
    """One request per run: status, latency, content and certificate of one page."""

    type: Literal["availability"] = "availability"
    name: Name
    path: str = "/"
    role: Literal["home", "page"] = "home"
    """``home``: failure means the site is down (L1); ``page``: part of the site is down (L2)."""
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    max_redirects: int = Field(default=5, ge=0, le=20)
    latency_threshold: Duration | None = None
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    body_matches: list[str] = Field(default_factory=list)
    body_not_matches: list[str] = Field(default_factory=list)
    selector: str | None = None
    max_body_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024), gt=0)
    interval: Duration | None = None
    timeout: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_role(cls, data: object) -> object:
        if isinstance(data, dict) and "role" not in data:
            path = data.get("path", "/")
            data = {**data, "role": "home" if path in ("/", "") else "page"}
        return data

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//"):
            raise ValueError(f"'{value}' must be a path on the site, starting with '/'")
        return value

    @field_validator("expect_status")
    @classmethod
    def _status_codes(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code")
        return value

    @field_validator("body_matches", "body_not_matches")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            from selectolax.lexbor import LexborHTMLParser as HTMLParser

            try:
                HTMLParser("<html></html>").css_first(value)
            except Exception as exc:  # selectolax raises a bare ValueError/SelectolaxError
                raise ValueError(f"invalid CSS selector {value!r}: {exc}") from None
        return value


CheckSpec = AvailabilityCheck
"""Every check type; becomes a discriminated union on ``type`` as check types are added."""


class Site(StrictModel):
    """A storefront to watch."""

    name: Name
    base_url: str
    platform: Literal["generic", "magento2", "woocommerce", "shopify"] = "generic"
    plan: Plan = Plan.ON_DEMAND
    interval: Duration | None = None
    timeout: Duration | None = None
    tls: TLSSettings = Field(default_factory=TLSSettings)
    levels: dict[FindingKind, Level] = Field(default_factory=dict)
    """Per-site level overrides by finding kind, e.g. ``{slow_response: 2}``."""
    checks: list[CheckSpec] = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("credentials in base_url are not allowed; use headers with ${VAR}")
        return value.rstrip("/")

    @field_validator("levels")
    @classmethod
    def _no_agent_offline(cls, value: dict[FindingKind, Level]) -> dict[FindingKind, Level]:
        if FindingKind.AGENT_OFFLINE in value:
            raise ValueError("agent_offline has no level: it is about the agent, not the client")
        return value

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, value: list[CheckSpec]) -> list[CheckSpec]:
        _require_unique([c.name for c in value], "check")
        return value


class ClassifierSettings(StrictModel):
    """Agency-wide level overrides by finding kind (sites can override again)."""

    levels: dict[FindingKind, Level] = Field(default_factory=dict)

    @field_validator("levels")
    @classmethod
    def _no_agent_offline(cls, value: dict[FindingKind, Level]) -> dict[FindingKind, Level]:
        return Site._no_agent_offline(value)


# --- host: the shop server this agent runs on (resources, services, mail queue, heartbeat) ---

NETWORK_FS_TYPES: tuple[str, ...] = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "ceph", "fuse.ceph",
    "glusterfs", "fuse.glusterfs", "9p", "afs", "lustre", "davfs", "fuse.s3fs", "fuse.rclone",
    "gpfs", "ocfs2", "gfs2",
)
"""Filesystem types skipped unless ``host.filesystems.include_network`` is on."""


class HostFilesystems(StrictModel):
    """Which mounts are measured: real local ones by default, network mounts only on request."""

    mountpoints: list[str] = Field(default_factory=list)
    """Only these mount points (empty: every real local mount)."""
    exclude_mountpoints: list[str] = Field(default_factory=list)
    include_network: bool = False


class HostThresholds(StrictModel):
    """Readings that turn into ``resource_pressure`` findings (ratios are 0-1)."""

    cpu_usage: float = Field(default=0.95, gt=0, le=1)
    load_per_cpu: float = Field(default=2.0, gt=0)
    memory_used: float = Field(default=0.92, gt=0, le=1)
    swap_used: float = Field(default=0.8, gt=0, le=1)
    swap_io_bytes_per_second: float = Field(default=10 * 1024 * 1024, gt=0)
    """Pages in + out per second above this is thrashing: critical (L2)."""
    filesystem_used: float = Field(default=0.9, gt=0, le=1)
    filesystem_used_critical: float = Field(default=0.95, gt=0, le=1)
    inodes_used: float = Field(default=0.9, gt=0, le=1)
    inodes_used_critical: float = Field(default=0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _critical_above_warning(self) -> HostThresholds:
        for name in ("filesystem_used", "inodes_used"):
            if getattr(self, f"{name}_critical") < getattr(self, name):
                raise ValueErrorAt((f"{name}_critical",),
                                   f"must be at least {name} ({getattr(self, name):g})")
        return self


class ServiceGroup(StrictModel):
    """A named group of processes the shop needs, matched by process name or command line."""

    name: Name
    process_names: list[str] = Field(default_factory=list)
    """Exact process names (e.g. ``nginx``, ``php-fpm8.2``, ``mariadbd``)."""
    cmdline: list[str] = Field(default_factory=list)
    """Regular expressions searched in the full command line."""
    min_processes: int = Field(default=1, ge=1)

    @field_validator("cmdline")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        return AvailabilityCheck._regexes(value)

    @model_validator(mode="after")
    def _has_matcher(self) -> ServiceGroup:
        if not self.process_names and not self.cmdline:
            raise ValueError("set process_names or cmdline (or both)")
        return self


class MailQueue(StrictModel):
    """The local MTA's queue: size and oldest message age → ``email_not_sent``."""

    mta: Literal["postfix", "exim", "command"] = "postfix"
    command: list[str] = Field(default_factory=list)
    """argv to run instead of the MTA's own (``mta: command`` prints JSON
    ``{"messages": N, "oldest_age_seconds": S}``)."""
    max_messages: int = Field(default=100, ge=0)
    max_age: Duration = 1800.0
    interval: Duration = 300.0
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _command_for_command(self) -> MailQueue:
        if self.mta == "command" and not self.command:
            raise ValueErrorAt(("command",), "mta 'command' needs a command (argv list)")
        return self


class Heartbeat(StrictModel):
    """An outbound ping every interval, so a dead agent is noticed from outside."""

    url: str
    interval: Duration = 60.0
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value


class HostSettings(StrictModel):
    """The server the agent runs on; its findings are filed under ``site``."""

    site: Name
    """The site this server serves (a configured site name)."""
    interval: Duration = 30.0
    reading_timeout: Duration = 2.0
    """Deadline of each single reading (one filesystem, the process table, ...)."""
    filesystems: HostFilesystems = Field(default_factory=HostFilesystems)
    thresholds: HostThresholds = Field(default_factory=HostThresholds)
    services: list[ServiceGroup] = Field(default_factory=list)
    mail_queue: MailQueue | None = None
    heartbeat: Heartbeat | None = None

    @field_validator("services")
    @classmethod
    def _unique_services(cls, value: list[ServiceGroup]) -> list[ServiceGroup]:
        _require_unique([s.name for s in value], "service")
        return value

    @model_validator(mode="after")
    def _timeout_fits_interval(self) -> HostSettings:
        if self.reading_timeout >= self.interval:
            raise ValueErrorAt(("reading_timeout",),
                               f"reading_timeout {format_duration(self.reading_timeout)} must be "
                               "shorter than "
                               f"interval {format_duration(self.interval)}")
        return self


class Config(StrictModel):
    """The whole config file."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    sites: list[Site] = Field(min_length=1)
    host: HostSettings | None = None

    @field_validator("sites")
    @classmethod
    def _unique_site_names(cls, value: list[Site]) -> list[Site]:
        _require_unique([s.name for s in value], "site")
        return value

    @model_validator(mode="after")
    def _timeouts_fit_intervals(self) -> Config:
        for i, site in enumerate(self.sites):
            for j, check in enumerate(site.checks):
                planned = plan_check(self, site, check)
                if planned.timeout >= planned.interval:
                    raise ValueErrorAt(
                        ("sites", i, "checks", j),
                        f"timeout {format_duration(planned.timeout)} must be shorter than "
                        f"interval {format_duration(planned.interval)}")
        return self

    @model_validator(mode="after")
    def _host_site_is_configured(self) -> Config:
        if self.host is not None and self.site(self.host.site) is None:
            names = ", ".join(s.name for s in self.sites)
            raise ValueErrorAt(("host", "site"),
                               f"no site named '{self.host.site}' (configured: {names})")
        return self

    def planned_checks(self) -> list[PlannedCheck]:
        """Every (site, check) with its effective interval and timeout."""
        return [plan_check(self, site, check) for site in self.sites for check in site.checks]

    def site(self, name: str) -> Site | None:
        """The site called ``name``, if any."""
        return next((s for s in self.sites if s.name == name), None)


@dataclass(frozen=True, slots=True)
class PlannedCheck:
    """A check of a site with the interval and timeout it runs with."""

    site: Site
    check: CheckSpec
    interval: float
    timeout: float

    @property
    def key(self) -> str:
        """``site/check``: unique within a config."""
        return f"{self.site.name}/{self.check.name}"


def plan_check(config: Config, site: Site, check: CheckSpec) -> PlannedCheck:
    """Resolve a check's interval and timeout: check, then site, then defaults."""
    interval = check.interval or site.interval or config.defaults.interval
    timeout = check.timeout or site.timeout or config.defaults.timeout
    return PlannedCheck(site, check, interval, timeout)


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueErrorAt((i, "name"), f"duplicate {what} name '{name}'")
        seen.add(name)
