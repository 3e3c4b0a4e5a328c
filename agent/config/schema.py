"""Typed, strict config models. Validation never does I/O; unknown keys are errors.

The loader (agent/config/loader.py) maps every validation error to ``file:line: field: problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
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
from agent.sinks import DEFAULT_SINK, SinkConfig
from agent.sinks.config import SinkModel
from agent.sinks.sqlite import SqliteSinkConfig
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
    account_manager: str | None = None
    """Named in the site's tickets."""
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


class CheckPolicy(StrictModel):
    """Confirmation/recovery of one check, overriding ``incidents``."""

    site: Name
    check: Name
    confirm: int | None = Field(default=None, ge=1, le=100)
    recover: int | None = Field(default=None, ge=1, le=100)


class MaintenanceWindow(StrictModel):
    """A planned window: findings are recorded, not ticketed. Times need a UTC offset."""

    start: datetime
    end: datetime
    sites: list[Name] = Field(default_factory=list)
    """Empty: every site."""
    checks: list[Name] = Field(default_factory=list)
    """Empty: every check of those sites."""
    reason: str = "maintenance window"

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-03-01T02:00:00+01:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueErrorAt(("end",), "must be after start")
        return self


class IncidentSettings(StrictModel):
    """When findings become incidents, and how tickets look (see README, "Incidents")."""

    confirm_l1: int = Field(default=2, ge=1, le=100)
    """Consecutive failing runs that open an L1 incident."""
    confirm: int = Field(default=3, ge=1, le=100)
    """Consecutive failing runs that open an L2-L4 incident."""
    recover: int = Field(default=2, ge=1, le=100)
    flap_window: Duration = 3600.0
    flap_changes: int = Field(default=4, ge=2, le=1000)
    reminder: Duration | None = None
    checks: list[CheckPolicy] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    reference_targets: list[str] = Field(default_factory=list)
    """URLs the agent also probes when storefronts fail: all unreachable = the agent is offline."""
    dashboard_url: str | None = None
    """Template of a ticket's dashboard link; placeholders {site} {check} {kind} {incident}
    {fingerprint}."""

    @field_validator("reference_targets")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueErrorAt((i,), f"'{url}' is not an http(s) URL")
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from agent.sinks.render import DASHBOARD_FIELDS, template_fields

        try:
            fields = template_fields(value)
        except ValueError as exc:
            raise ValueError(f"invalid template: {exc}") from None
        unknown = sorted(fields - DASHBOARD_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use "
                             + ", ".join(f"{{{f}}}" for f in sorted(DASHBOARD_FIELDS)))
        return value


class Route(StrictModel):
    """Which sinks get the tickets of some sites and levels (the first matching route wins)."""

    sites: list[Name] = Field(default_factory=list)
    """Empty: every site."""
    levels: list[Level] = Field(default_factory=list)
    """Empty: every level."""
    sinks: list[Name] = Field(min_length=1)

    def matches(self, site: str, level: Level | None) -> bool:
        """Whether an incident of ``site`` at ``level`` takes this route."""
        return ((not self.sites or site in self.sites)
                and (not self.levels or (level is not None and level in self.levels)))


class Config(StrictModel):
    """The whole config file."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    sites: list[Site] = Field(min_length=1)
    sinks: dict[Name, SinkConfig] = Field(default_factory=dict)
    """Ticket sinks by name; none configured: the built-in ``sqlite`` sink."""
    routing: list[Route] = Field(default_factory=list)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)

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
    def _incident_references(self) -> Config:
        sinks = self.ticket_sinks()
        checks = {s.name: {c.name for c in s.checks} for s in self.sites}
        for i, route in enumerate(self.routing):
            for j, name in enumerate(route.sinks):
                if name not in sinks:
                    raise ValueErrorAt(("routing", i, "sinks", j),
                                       f"no sink named '{name}' (sinks: {', '.join(sinks)})")
            for j, site in enumerate(route.sites):
                if site not in checks:
                    raise ValueErrorAt(("routing", i, "sites", j), f"no site named '{site}'")
        for i, policy in enumerate(self.incidents.checks):
            if policy.site not in checks:
                raise ValueErrorAt(("incidents", "checks", i, "site"),
                                   f"no site named '{policy.site}'")
            if policy.check not in checks[policy.site]:
                raise ValueErrorAt(("incidents", "checks", i, "check"),
                                   f"site '{policy.site}' has no check '{policy.check}'")
        for i, window in enumerate(self.incidents.maintenance):
            for j, site in enumerate(window.sites):
                if site not in checks:
                    raise ValueErrorAt(("incidents", "maintenance", i, "sites", j),
                                       f"no site named '{site}'")
        return self

    def ticket_sinks(self) -> dict[str, SinkModel]:
        """The configured sinks, or the built-in ``sqlite`` sink when none is."""
        if self.sinks:
            return dict(self.sinks)
        return {DEFAULT_SINK: SqliteSinkConfig()}

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
