"""Typed, strict config models. Validation never does I/O; unknown keys are errors.

The loader (agent/config/loader.py) maps every validation error to ``file:line: field: problem``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
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
from agent.config.durations import Duration, PositiveDuration, format_duration
from agent.config.headers import ProbeHeaderMap
from agent.config.loader import ValueErrorAt
from agent.config.secrets import register_secret
from agent.sinks import DEFAULT_SINK, SinkConfig
from agent.sinks.config import SinkModel
from agent.sinks.sqlite import SqliteSinkConfig
from agent.state.database import is_postgres_url, state_location
from classifier import FindingKind, Level, Plan

DEFAULT_CONFIG_PATH = "/etc/storewatch/config.yaml"
DEFAULT_LISTEN = "127.0.0.1:9478"



class Placement(StrEnum):
    """Which agents of a fleet run a check (agent/fleet/placement.py)."""

    EVERY = "every"
    """Each agent runs it (one observation per location)."""
    ONE = "one"
    """Exactly one live agent runs it each interval, holding a lease in the shared store."""


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


def check_url_port(value: str) -> None:
    """Raise ValueError when *value* (an http(s) URL) names a port outside 1-65535."""
    try:
        port = urlsplit(value).port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"'{value}' has an invalid port: use 1-65535")


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not HOST:PORT (e.g. 127.0.0.1:9478)")
    return value


def check_state(value: str | None) -> str | None:
    """``agent.state``: a PostgreSQL URL (its password registered as a secret) or a file path;
    an error never quotes the value (it may hold a password)."""
    if value is None:
        return None
    if is_postgres_url(value):
        from agent.state.postgres import check_url, url_password

        problem = check_url(value)
        if problem is not None:
            raise ValueError(problem)
        password = url_password(value)
        if password:
            register_secret(password)
        return value
    if "://" in value or not value.strip():
        raise ValueError("expected a postgresql:// URL or the path of a SQLite file")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``'127.0.0.1:9478'`` → ``('127.0.0.1', 9478)``; ``'[::1]:9478'`` → ``('::1', 9478)``."""
    host, _, port = _check_listen(value).rpartition(":")
    return host.strip("[]"), int(port)


class AgentSettings(StrictModel):
    """Settings of the agent process itself."""

    name: str = Field(default_factory=lambda: socket.gethostname() or "storewatch",
                      min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """This agent in a fleet (default: the host name); on its requests, metrics and incidents."""
    location: str | None = Field(default=None, min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Where the agent probes from (e.g. ``fra``), for confirmation across locations."""
    listen: str = DEFAULT_LISTEN
    state_dir: Path = Path("/var/lib/storewatch")
    """Files the agent keeps: baselines, evidence, the SQLite incident store by default."""
    state: str | None = None
    """The incident store: unset, the SQLite file ``<state_dir>/storewatch.db``; a SQLite file
    path; or ``postgresql://USER@HOST[:PORT]/DB`` (a shared store for a fleet of agents; the
    password through ``${cred:…}``/``${VAR}``/``PGPASSFILE``, never in clear)."""
    concurrency: int = Field(default=50, ge=1, le=10_000)
    user_agent: str = (f"storewatch/{__version__} (synthetic monitoring; no orders placed; "
                       "agent {agent})")
    """Sent on every request; ``{agent}`` is replaced by ``name`` (without it, `` (agent NAME)``
    is appended): agent/identity.py."""
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    """Random start offset of each run, as a share of its interval."""
    browser: BrowserSettings = Field(default_factory=lambda: BrowserSettings())
    """The shared Chromium of ``type: browser`` checks."""

    _listen = field_validator("listen")(_check_listen)
    _state = field_validator("state")(check_state)

    @property
    def store_location(self) -> str | Path:
        """Where the incident store is: ``state``, else ``<state_dir>/storewatch.db``."""
        return state_location(self.state, self.state_dir)


DEFAULT_REQUEST_TIMEOUT_S = 30.0
"""A single request (redirects included) that takes longer has failed: a slow shop is slow,
a request that gets no answer in half a minute is broken."""
DEFAULT_CHECK_BUDGET_S = 45.0
"""A whole check run, every request and wait included, when ``timeout`` is not set (and at most
``DEFAULT_BUDGET_SHARE`` of the interval): room for a multi-step checkout on a slow shop, and
15 s of a 60 s interval left before the next run."""
DEFAULT_BUDGET_SHARE = 0.75
DEFAULT_LATENCY_THRESHOLD_S = 5.0
"""A page or step slower than this (its redirects and body included) is ``slow_response``."""
DEFAULT_CHECKOUT_DEGRADED_S = 30.0
"""A checkout whose steps together take longer is ``business_logic_degraded``."""
DEFAULT_MAX_IN_FLIGHT = 2
"""Requests one site may have in flight at once (agent/politeness.py)."""


class Defaults(StrictModel):
    """Values a site or check inherits when it does not set its own."""

    interval: PositiveDuration = 60.0
    timeout: PositiveDuration | None = None
    """A check run's total budget (default: 45s, at most 75 % of the interval)."""
    request_timeout: PositiveDuration = DEFAULT_REQUEST_TIMEOUT_S
    """Each single request's own timeout (capped at the check's budget)."""


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
    headers: ProbeHeaderMap = Field(default_factory=dict)
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    max_redirects: int = Field(default=5, ge=0, le=20)
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """Slower than this, redirects and body included → ``slow_response`` (null: never)."""
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    body_matches: list[str] = Field(default_factory=list)
    body_not_matches: list[str] = Field(default_factory=list)
    selector: str | None = None
    max_body_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

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

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.SITE_DOWN if self.role == "home" else FindingKind.PARTIAL_OUTAGE

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.path


# --------------------------------------------------------------------------------------------
# Commerce checks: step engine (checkout, feature), catalog, search/filter, integrity, security

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_JSON_PATH = re.compile(r"\.([A-Za-z_@][\w@-]*)|\[(\d+|\*)\]|\['([^']+)'\]")
_ORDER_PLACING = (
    re.compile(r"/guest-carts/[^/]+/(order|payment-information)\b"),
    re.compile(r"/carts/mine/(order|payment-information)\b"),
    re.compile(r"/wc/store(/v\d+)?/checkout\b"),
    re.compile(r"placeOrder|place-order|/checkout/onepage/saveOrder", re.IGNORECASE),
)


def parse_json_path(path: str) -> tuple[str | int | None, ...]:
    """``$.items[0].code`` → ``('items', 0, 'code')``; ``[*]`` is ``None`` (every element)."""
    if not path.startswith("$"):
        raise ValueError(f"JSON path {path!r} must start with '$'")
    parts: list[str | int | None] = []
    rest = path[1:]
    while rest:
        match = _JSON_PATH.match(rest)
        if match is None:
            raise ValueError(f"invalid JSON path {path!r} at {rest!r}")
        key, index, quoted = match.groups()
        parts.append(key if key is not None else quoted if quoted is not None
                     else None if index == "*" else int(index))
        rest = rest[match.end():]
    return tuple(parts)


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def _valid_selector(selector: str) -> str:
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    try:
        HTMLParser("<html></html>").css_first(selector)
    except Exception as exc:  # selectolax raises a bare ValueError/SelectolaxError
        raise ValueError(f"invalid CSS selector {selector!r}: {exc}") from None
    return selector


def _valid_json_path(path: str) -> str:
    parse_json_path(path)
    return path


def _site_path(value: str) -> str:
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError(f"'{value}' must be a path on the site, starting with '/'")
    return value


Regex = Annotated[str, AfterValidator(_valid_regex)]
Selector = Annotated[str, AfterValidator(_valid_selector)]
JsonPath = Annotated[str, AfterValidator(_valid_json_path)]
SitePath = Annotated[str, AfterValidator(_site_path)]
"""A path on the site (``/...``); may contain ``{{ variables }}`` in step paths."""
Status = Annotated[int, Field(ge=100, le=599)]


class Extractor(StrictModel):
    """Where a step captures a variable from its response: exactly one source."""

    css: Selector | None = None
    attribute: str | None = None
    """With ``css``: the attribute to read (default: the element's text)."""
    json_path: JsonPath | None = Field(default=None, alias="json")
    regex: Regex | None = None
    """First capture group if the pattern has one, else the whole match."""
    header: str | None = None
    cookie: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Extractor:
        sources = [self.css, self.json_path, self.regex, self.header, self.cookie]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("give exactly one of css, json, regex, header, cookie")
        if self.attribute is not None and self.css is None:
            raise ValueError("attribute is only used with css")
        return self


class Counter(StrictModel):
    """How to count items (products, results, methods) in a response: one way."""

    css: Selector | None = None
    json_path: JsonPath | None = Field(default=None, alias="json")
    """Every value the path selects counts, e.g. ``$.products[*]``."""
    json_ld: bool = False
    """schema.org: ``ItemList.itemListElement`` entries, else distinct ``Product`` objects."""
    header: str | None = None
    """A response header holding the total, e.g. WooCommerce ``X-WP-Total``."""
    regex: Regex | None = None
    """Number of matches."""

    @model_validator(mode="after")
    def _one_way(self) -> Counter:
        ways = [self.css, self.json_path, self.header, self.regex]
        given = sum(w is not None for w in ways) + int(self.json_ld)
        if given != 1:
            raise ValueError("give exactly one of css, json, json_ld, header, regex")
        return self


JSON_LD_COUNTER = Counter(json_ld=True)


class JsonAssertion(StrictModel):
    """A value at a JSON path: present, equal to a value, or at least a number."""

    path: JsonPath
    equals: str | int | float | bool | None = None
    min: float | None = None


class CountAssertion(Counter):
    """At least ``min`` items counted one of the :class:`Counter` ways."""

    min: int = Field(default=1, ge=0)


class Expect(StrictModel):
    """What a step's response must show; any miss fails the step."""

    status: list[Status] | None = None
    """Accepted statuses (default: any 2xx, after redirects)."""
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    matches: list[Regex] = Field(default_factory=list)
    selector: list[Selector] = Field(default_factory=list)
    json_values: list[JsonAssertion] = Field(default_factory=list, alias="json")
    count: list[CountAssertion] = Field(default_factory=list)


class Step(StrictModel):
    """One HTTP request of a step check, run with the check's cookie jar."""

    name: Name
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: SitePath | None = None
    """Relative to the site; ``{{ var }}`` is replaced. Omit with ``submit_form``."""
    submit_form: Selector | None = None
    """Submit this form of the previous response: its action, method and inputs (hidden
    tokens included), with ``form`` values on top."""
    query: dict[str, str] = Field(default_factory=dict)
    form: dict[str, str] | None = None
    body_json: Any = Field(default=None, alias="json")
    headers: ProbeHeaderMap = Field(default_factory=dict)
    extract: dict[str, Extractor] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)
    kind: FindingKind | None = None
    """What this step failing means (default: the check's ``kind``)."""
    continue_on_failure: bool = False
    """Run the later steps even when this one fails (e.g. a shipping estimate)."""
    latency_threshold: Duration | None = None
    """Slower than this → ``slow_response`` (default: the check's ``latency_threshold``)."""

    @model_validator(mode="after")
    def _target(self) -> Step:
        if (self.path is None) == (self.submit_form is None):
            raise ValueError("give exactly one of path, submit_form")
        if self.form is not None and self.body_json is not None:
            raise ValueError("give at most one of form, json")
        if self.path is not None and self.method != "GET":
            for pattern in _ORDER_PLACING:
                if pattern.search(self.path):
                    raise ValueErrorAt(("path",), f"'{self.path}' places an order; storewatch "
                                       "stops at the shipping/payment-method stage")
        for var in self.extract:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise ValueErrorAt(("extract", var), f"'{var}' is not a variable name")
        return self

    def variables_used(self) -> set[str]:
        """Every ``{{ name }}`` this step refers to."""
        texts = [self.path or "", *self.query.values(), *self.headers.values(),
                 *(self.form or {}).values(), json_dumps_for_scan(self.body_json)]
        return {m.group(1) for t in texts for m in _VARIABLE.finditer(t)}


def json_dumps_for_scan(value: Any) -> str:
    """A JSON body as text, for finding the variables it refers to."""
    import json

    return json.dumps(value) if value is not None else ""


class MethodList(StrictModel):
    """Payment or shipping methods listed in one step's response."""

    step: Name | None = None
    """Which step's response lists them (default: the last step)."""
    css: Selector | None = None
    attribute: str | None = None
    """With ``css``: the attribute naming the method (default: its text)."""
    json_path: JsonPath | None = Field(default=None, alias="json")
    expected: list[str] = Field(default_factory=list)
    """Methods that must be offered; missing ones while others remain is a degradation."""

    @model_validator(mode="after")
    def _one_source(self) -> MethodList:
        if (self.css is None) == (self.json_path is None):
            raise ValueError("give exactly one of css, json")
        return self


class Recipe(StrictModel):
    """Parameters of the site platform's ready-made guest checkout (see the README)."""

    sku: str | None = None
    """magento2: a simple product's SKU (a dedicated test SKU)."""
    product_id: int | None = None
    """woocommerce: the product's id."""
    variant_id: int | None = None
    """shopify: the variant id of the test product."""
    product_path: SitePath | None = None
    """generic: the test product's page, holding the add-to-cart form."""
    add_to_cart_form: Selector = "form#product_addtocart_form, form.cart, form[action*='cart']"
    cart_path: SitePath = "/cart"
    cart_item: Selector = ".cart-item, tr.item-info, .woocommerce-cart-form__cart-item"
    checkout_path: SitePath = "/checkout"
    payment_method: Selector = ".payment-method"
    payment_attribute: str | None = "data-code"
    shipping_method: Selector = "input[name='shipping_method']"
    country: str = "US"
    postcode: str = "90001"
    expected_payment: list[str] = Field(default_factory=list)


class StepsCheck(StrictModel):
    """A transaction: HTTP steps with one cookie jar per run, variables flowing between them."""

    type: Literal["checkout"]
    name: Name
    kind: FindingKind = FindingKind.CHECKOUT_BROKEN
    """What a failing step means unless the step says otherwise."""
    vars: dict[str, str] = Field(default_factory=dict)
    """Constants usable as ``{{ name }}`` (e.g. the test SKU)."""
    steps: list[Step] = Field(default_factory=list)
    recipe: Recipe | None = None
    """Instead of ``steps``: the site platform's guest flow from a few parameters."""
    payment: MethodList | None = None
    """Payment methods the checkout page or API lists (omitted: payment is not checked)."""
    shipping: MethodList | None = None
    """Shipping methods listed (omitted: shipping is not checked)."""
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """A step slower than this → ``slow_response`` (a step can set its own; null: never)."""
    degraded_after: Duration | None = DEFAULT_CHECKOUT_DEGRADED_S
    """A ``checkout`` whose steps together take longer → ``business_logic_degraded`` (null:
    never); customers can order, but struggle."""
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_body_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

    @model_validator(mode="after")
    def _steps_or_recipe(self) -> StepsCheck:
        if bool(self.steps) == (self.recipe is not None):
            raise ValueError("give either steps or recipe")
        _check_step_names_and_variables(self.steps, set(self.vars))
        for field_name in ("payment", "shipping"):
            methods = getattr(self, field_name)
            if methods is not None and methods.step is not None and self.steps and \
                    methods.step not in {s.name for s in self.steps}:
                raise ValueErrorAt((field_name, "step"), f"no step named '{methods.step}'")
        return self

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return self.kind

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        first = self.steps[0].path if self.steps else None
        return first or "/"


class FeatureCheck(StepsCheck):
    """A small feature (reviews, wishlist, newsletter) as steps: ``minor_feature_broken``."""

    type: Literal["feature"]  # type: ignore[assignment]
    kind: FindingKind = FindingKind.MINOR_FEATURE_BROKEN


class CatalogCheck(StrictModel):
    """Products are there: expected SKUs/handles/URLs, a minimum count, and no sudden drop."""

    type: Literal["catalog"]
    name: Name
    pages: list[SitePath] = Field(default_factory=list)
    """Listing pages (or JSON API paths) whose products are counted and summed."""
    category: str | None = None
    """Instead of ``pages``: the platform preset for this category (path, handle or id)."""
    count: Counter = JSON_LD_COUNTER
    min_count: int = Field(default=1, ge=0)
    expected: list[str] = Field(default_factory=list)
    """SKUs, handles or URLs that must appear on the pages (or on ``expected_in``)."""
    expected_in: list[SitePath] = Field(default_factory=list)
    """Extra pages searched for ``expected`` but not counted, e.g. ``/sitemap.xml``."""
    max_drop: float = Field(default=0.3, gt=0, lt=1)
    """A count more than this share below the recent median is a finding."""
    baseline_runs: int = Field(default=10, ge=1, le=1000)
    """How many recent counts the median is taken over."""
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """A page slower than this → ``slow_response`` (null: never)."""
    max_body_bytes: ByteSize = Field(default=ByteSize(4 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

    @model_validator(mode="after")
    def _pages_or_category(self) -> CatalogCheck:
        if bool(self.pages) == (self.category is not None):
            raise ValueError("give either pages or category")
        return self

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.CATALOG_MISSING

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.pages[0] if self.pages else "/"


class Query(StrictModel):
    """One known search or filter URL and what it must return."""

    path: SitePath | None = None
    term: str | None = None
    """Instead of ``path``: the platform preset's search for this term."""
    min_results: int = Field(default=1, ge=0)
    expected: str | None = None
    """A SKU/handle/URL that must appear among the results."""

    @model_validator(mode="after")
    def _path_or_term(self) -> Query:
        if (self.path is None) == (self.term is None):
            raise ValueError("give exactly one of path, term")
        return self


class SearchCheck(StrictModel):
    """Known queries return at least N results; zero results is ``search_broken``."""

    type: Literal["search"]
    name: Name
    queries: list[Query] = Field(min_length=1)
    count: Counter | None = None
    """Default: the platform preset's way (generic: schema.org JSON-LD)."""
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """A page slower than this → ``slow_response`` (null: never)."""
    max_body_bytes: ByteSize = Field(default=ByteSize(4 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.SEARCH_BROKEN

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.queries[0].path or "/"


class FilterCheck(SearchCheck):
    """Known filter URLs (layered navigation) return at least N results: ``filter_broken``."""

    type: Literal["filter"]  # type: ignore[assignment]

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.FILTER_BROKEN


class IntegrityCheck(StrictModel):
    """200-but-broken pages: platform error text, empty main content, unreachable assets."""

    type: Literal["integrity"]
    name: Name
    pages: list[SitePath] = Field(default_factory=lambda: ["/"], min_length=1)
    main_selector: Selector | None = None
    """An element that must be present and non-empty (e.g. ``main#maincontent``)."""
    error_markers: list[str] = Field(default_factory=list)
    """Extra text that means an error page, besides the built-in platform signatures."""
    check_assets: bool = True
    max_assets: int = Field(default=20, ge=0, le=200)
    """Stylesheets and scripts on the site's own host checked per run (each once)."""
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """A page slower than this → ``slow_response`` (null: never; assets are not timed)."""
    max_body_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.PAGE_CORRUPTED

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.pages[0]


DEFAULT_DEFACEMENT_MARKERS = ("hacked by", "defaced by", "h4ck3d", "owned by hacker",
                              "your site has been hacked")


class SecurityCheck(StrictModel):
    """Script origins on sensitive pages against an allowlist and a learned baseline."""

    type: Literal["security"]
    name: Name
    pages: list[SitePath] = Field(default_factory=lambda: ["/"], min_length=1)
    allow: list[str] = Field(default_factory=list)
    """Allowed script origins (``https://cdn.example.com``, ``*.example.com``); the site's own
    origin is always allowed."""
    learn_runs: int = Field(default=3, ge=0, le=1000)
    """The first runs learn every origin they see; later unknown origins are findings."""
    defacement_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_DEFACEMENT_MARKERS))
    latency_threshold: Duration | None = DEFAULT_LATENCY_THRESHOLD_S
    """A page slower than this → ``slow_response`` (null: never)."""
    max_body_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024), gt=0)
    interval: PositiveDuration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: PositiveDuration | None = None
    """The check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""

    @field_validator("allow")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            host = origin.split("://", 1)[-1]
            if not host or "/" in host.rstrip("/"):
                raise ValueError(f"'{origin}' is not an origin (scheme://host or *.domain)")
        return value

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return FindingKind.PARTIAL_OUTAGE

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.pages[0]


_PLAYWRIGHT_CSS = re.compile(r":(has-text|text|text-is|text-matches|visible|nth-match)\(|"
                             r":visible\b|\s>>\s")


def _valid_browser_selector(selector: str) -> str:
    """CSS, or CSS with Playwright's extensions (``:has-text("Add to cart")``, ``:visible``,
    ``>>``), which the browser checks at run time."""
    if _PLAYWRIGHT_CSS.search(selector) and selector.strip():
        return selector
    return _valid_selector(selector)


BrowserSelector = Annotated[str, AfterValidator(_valid_browser_selector)]


class BrowserSettings(StrictModel):
    """The one Chromium all browser checks share (see docs/checks.md, "Browser checks")."""

    executable_path: Path = Path("/usr/bin/chromium")
    """The system Chromium (Debian ``chromium``); storewatch never downloads a browser."""
    max_pages: int = Field(default=2, ge=1, le=8)
    """Browser journeys running at once (each one page in its own fresh context)."""
    memory_limit: ByteSize = Field(default=ByteSize(1536 * 1024 * 1024), gt=0)
    """Proportional memory (PSS) of the browser's process tree after which it is restarted."""
    launch_timeout: Duration = 30.0


class BrowserTarget(StrictModel):
    """An element and a value: ``fill``, ``select``, ``press``."""

    selector: BrowserSelector
    value: str = ""
    """``fill``/``select``: the value (``{{ var }}`` allowed); ``press``: the key, e.g. Enter."""


class BrowserWait(StrictModel):
    """What a browser step waits for after its action: exactly one condition."""

    selector: BrowserSelector | None = None
    """An element matching this CSS selector becomes visible."""
    text: str | None = None
    """This text shows on the page."""
    url: Regex | None = None
    """The page's URL matches this pattern."""
    network_idle: bool = False
    """No network traffic for 500 ms."""
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _one(self) -> BrowserWait:
        given = [self.selector, self.text, self.url]
        if sum(g is not None for g in given) + int(self.network_idle) != 1:
            raise ValueError("give exactly one of selector, text, url, network_idle")
        return self


class BrowserCount(StrictModel):
    """At least ``min`` (and at most ``max``) elements match ``selector``."""

    selector: BrowserSelector
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)


class BrowserExpect(StrictModel):
    """What the page must show once the step's action and wait are done."""

    text: list[str] = Field(default_factory=list)
    not_text: list[str] = Field(default_factory=list)
    selector: list[BrowserSelector] = Field(default_factory=list)
    count: list[BrowserCount] = Field(default_factory=list)
    url: Regex | None = None
    no_js_errors: bool = True
    """Uncaught page errors and failed same-origin scripts/stylesheets fail the step."""


class BrowserExtract(StrictModel):
    """A variable read from the page: an element's text, or one of its attributes."""

    selector: BrowserSelector
    attribute: str | None = None


class BrowserStep(StrictModel):
    """One step of a browser journey: one action, then an optional wait, checks, extracts."""

    name: Name
    goto: SitePath | None = None
    click: BrowserSelector | None = None
    fill: BrowserTarget | None = None
    select: BrowserTarget | None = None
    press: BrowserTarget | None = None
    wait_for: BrowserWait | None = None
    expect: BrowserExpect = Field(default_factory=BrowserExpect)
    extract: dict[str, BrowserExtract] = Field(default_factory=dict)
    kind: FindingKind | None = None
    """What this step failing means (default: the check's ``kind``); ``page_corrupted`` for
    a page that is only looked at, ``checkout_broken`` for a shopper's step."""
    max_seconds: Duration | None = None
    """Slower than this (action + wait) is ``slow_response`` (default: the check's)."""
    continue_on_failure: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> BrowserStep:
        actions = [self.goto, self.click, self.fill, self.select, self.press]
        if sum(a is not None for a in actions) > 1:
            raise ValueError("give at most one of goto, click, fill, select, press")
        if all(a is None for a in actions) and self.wait_for is None:
            raise ValueError("give an action (goto, click, fill, select, press) or wait_for")
        for var in self.extract:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise ValueErrorAt(("extract", var), f"'{var}' is not a variable name")
        return self

    def variables_used(self) -> set[str]:
        """Every ``{{ name }}`` this step refers to."""
        texts = [self.goto or "", *(t.value for t in (self.fill, self.select) if t is not None)]
        return {m.group(1) for t in texts for m in _VARIABLE.finditer(t)}


class BrowserThresholds(StrictModel):
    """Web vitals and step times past which a journey is ``slow_response``."""

    lcp: Duration = 4.0
    """Largest Contentful Paint of any page of the journey (defaults: web.dev's "poor")."""
    cls: float = Field(default=0.25, ge=0)
    """Cumulative Layout Shift of any page."""
    inp: Duration = 1.0
    """Interaction to Next Paint (the slowest interaction), where the browser measured one;
    twice web.dev's "poor" bound, since a synthetic journey's interactions share the
    monitoring host's CPU (measured 0.53 s on a healthy EverShop on a loaded 2-core host)."""
    step: Duration = 10.0
    """A step's action plus its wait (a step's own ``max_seconds`` wins)."""


class BrowserCheck(StrictModel):
    """A shopper's journey in headless Chromium (JavaScript storefronts)."""

    type: Literal["browser"]
    name: Name
    kind: FindingKind = FindingKind.CHECKOUT_BROKEN
    """What a failing step means unless the step says otherwise."""
    vars: dict[str, str] = Field(default_factory=dict)
    steps: list[BrowserStep] = Field(min_length=1)
    allow: list[str] = Field(default_factory=list)
    """Script origins the journey may load besides the site's own (as in ``security``)."""
    learn_runs: int = Field(default=3, ge=0, le=1000)
    """The first runs learn every script origin they see; later unknown ones are findings."""
    thresholds: BrowserThresholds = Field(default_factory=BrowserThresholds)
    interval: Duration | None = None
    placement: Placement | None = None
    """``every`` or ``one`` agent of a fleet runs this check (default: the site's)."""
    timeout: Duration | None = None
    """The journey's budget (every step; waits for the site's politeness slot excluded)."""
    request_timeout: Duration | None = None
    """Each step's action and wait are also cut at this (and at their own ``timeout``)."""

    @field_validator("allow")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return SecurityCheck._origins(value)

    @model_validator(mode="after")
    def _variables(self) -> BrowserCheck:
        _check_step_names_and_variables(self.steps, set(self.vars))
        if self.steps[0].goto is None:
            raise ValueErrorAt(("steps", 0), "the first step must be a goto")
        return self

    def failure_kind(self) -> FindingKind:
        """What a total failure of this check (deadline, probe crash) means."""
        return self.kind

    def first_path(self) -> str:
        """The path a total failure is reported against."""
        return self.steps[0].goto or "/"


def _check_type(value: object) -> object:
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "availability"}
    return value


CheckSpec = Annotated[
    AvailabilityCheck | StepsCheck | FeatureCheck | CatalogCheck | SearchCheck | FilterCheck
    | IntegrityCheck | SecurityCheck | BrowserCheck,
    Field(discriminator="type"),
]
"""Every check type, told apart by ``type`` (``availability`` when absent)."""


class Site(StrictModel):
    """A storefront to watch."""

    name: Name
    base_url: str
    platform: Literal["generic", "magento2", "woocommerce", "shopify"] = "generic"
    plan: Plan = Plan.ON_DEMAND
    interval: PositiveDuration | None = None
    placement: Placement = Placement.EVERY
    """Which agents of a fleet run this site's checks: ``every`` (each agent, the default)
    or ``one`` (one live agent at a time, with failover); a check can override it."""
    timeout: PositiveDuration | None = None
    """Each check run's total budget (all its requests and waits)."""
    request_timeout: PositiveDuration | None = None
    """Each single request's own timeout."""
    max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=1, le=100)
    """Requests to this site in flight at once, over all its checks (politeness)."""
    error_markers: list[str] = Field(default_factory=list)
    """Text that means an error page on this site, for every check that reads a page
    (besides the built-in platform signatures)."""
    tls: TLSSettings = Field(default_factory=TLSSettings)
    proxy: str | None = None
    """HTTP proxy for this site's requests, ``http://[user:password@]host:port`` (CONNECT for
    https); overrides ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``. Credentials are secrets."""
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
        check_url_port(value)
        return value.rstrip("/")

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None:
            from agent.proxy import parse_proxy_url

            parse_proxy_url(value)  # registers its credentials as secrets; ValueError names why
        return value

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

    @field_validator("checks", mode="before")
    @classmethod
    def _default_check_type(cls, value: object) -> object:
        return [_check_type(c) for c in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _presets_fit_platform(self) -> Site:
        from agent.probes.recipes import recipe_problem

        for i, check in enumerate(self.checks):
            problem = recipe_problem(self.platform, check)
            if problem is not None:
                raise ValueErrorAt(("checks", i, *problem[0]), problem[1])
        return self


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


GroupKey = Literal["site", "kind", "check"]
DEFAULT_GROUP_BY: tuple[GroupKey, ...] = ("site", "kind")


class EvidenceSettings(StrictModel):
    """Browser checks' screenshots and logs under ``STATE_DIR/evidence/`` (agent/evidence.py)."""

    url: str | None = None
    """Public base URL of this agent's HTTP server (``https://agent1.example.net:9478``):
    tickets and ``incidents show`` link to ``<url>/evidence/<site>/<file>``; none: they name
    the file's path on the agent host."""
    retention: Duration = Field(default=30 * 86400.0, gt=0)
    """Files of incidents resolved longer ago than this (and files no incident names, once
    that old) are deleted."""
    max_size: ByteSize = Field(default=ByteSize(500 * 1024 * 1024), gt=0)
    """Beyond this total, the oldest files not named by an open incident are deleted."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"'{value}' must be a plain base URL (no credentials, query or "
                             "fragment)")
        check_url_port(value)
        return value.rstrip("/")


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
    group_by: list[GroupKey] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    """Keys of one incident for the business-impact kinds (checkout, payment, catalog, search,
    filter, corruption, business logic): default one incident per site and kind, every check
    that sees it listed as evidence; add ``check`` for one incident per check."""
    checks: list[CheckPolicy] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    reference_targets: list[str] = Field(default_factory=list)
    """URLs the agent also probes when storefronts fail: all unreachable = the agent is offline."""
    dashboard_url: str | None = None
    """Template of a ticket's dashboard link; placeholders {site} {check} {kind} {incident}
    {fingerprint}."""
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    """Where the agent serves browser evidence from, and how long it keeps it."""
    min_locations: int = Field(default=1, ge=1, le=100)
    """Fleet: distinct locations (``agent.location``, else ``agent.name``) that must each confirm
    a failure before its incident opens and is ticketed; confirmed from fewer, it is recorded
    as ``unconfirmed`` (see docs/incidents.md, "Fleet")."""
    delivery_timeout: PositiveDuration = 60.0
    """Deadline of one ticket delivery attempt; an agent's claim on the ticket action lasts
    this plus half of it (at least 2 s) before another agent may take it over."""

    @field_validator("group_by")
    @classmethod
    def _group_keys(cls, value: list[str]) -> list[str]:
        missing = [key for key in ("site", "kind") if key not in value]
        if missing:
            raise ValueError(f"must include {' and '.join(missing)} (an incident is always one "
                             "kind of problem of one site); add 'check' to split it per check")
        if len(set(value)) != len(value):
            raise ValueError("lists a key twice")
        return value

    @field_validator("reference_targets")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueErrorAt((i,), f"'{url}' is not an http(s) URL")
            try:
                check_url_port(url)
            except ValueError as exc:
                raise ValueErrorAt((i,), str(exc)) from None
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
    interval: PositiveDuration = 300.0
    timeout: PositiveDuration = 10.0

    @model_validator(mode="after")
    def _command_for_command(self) -> MailQueue:
        if self.mta == "command" and not self.command:
            raise ValueErrorAt(("command",), "mta 'command' needs a command (argv list)")
        return self


class Heartbeat(StrictModel):
    """An outbound ping every interval, so a dead agent is noticed from outside."""

    url: str
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL")
        check_url_port(value)
        return value


class HostSettings(StrictModel):
    """The server the agent runs on; its findings are filed under ``site``."""

    site: Name
    """The site this server serves (a configured site name)."""
    interval: PositiveDuration = 30.0
    reading_timeout: PositiveDuration = 2.0
    """Deadline of each single reading (one filesystem, the process table, ...)."""
    filesystems: HostFilesystems = Field(default_factory=HostFilesystems)
    thresholds: HostThresholds = Field(default_factory=HostThresholds)
    services: list[ServiceGroup] = Field(default_factory=list)
    mail_queue: MailQueue | None = None
    heartbeat: Heartbeat | None = None
    node_metrics: bool = True
    """Export the node_exporter-like series (CPU, load, memory, swap, filesystems, network,
    disks, service groups, readings). ``false`` on servers that already run node_exporter: the
    thresholds still become findings, /metrics keeps only ``storewatch_host_info`` and the mail
    queue and heartbeat gauges, and a scrape reads nothing from the server."""

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
    sinks: dict[Name, SinkConfig] = Field(default_factory=dict)
    """Ticket sinks by name; none configured: the built-in ``sqlite`` sink."""
    routing: list[Route] = Field(default_factory=list)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
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
    """The run's total budget."""
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    """Each request's own timeout (never more than ``timeout``)."""
    placement: Placement = Placement.EVERY
    """Which agents of a fleet run it: the check's ``placement``, else the site's."""

    @property
    def key(self) -> str:
        """``site/check``: unique within a config."""
        return f"{self.site.name}/{self.check.name}"


def plan_check(config: Config, site: Site, check: CheckSpec) -> PlannedCheck:
    """Resolve a check's interval, budget, request timeout and placement: check, then site, then
    defaults.

    An unset budget is ``DEFAULT_CHECK_BUDGET_S``, at most ``DEFAULT_BUDGET_SHARE`` of the
    interval; the request timeout never exceeds the budget."""
    interval = _first_set(check.interval, site.interval, config.defaults.interval)
    timeout = next((t for t in (check.timeout, site.timeout, config.defaults.timeout)
                    if t is not None), None)
    if timeout is None:
        timeout = min(DEFAULT_CHECK_BUDGET_S, interval * DEFAULT_BUDGET_SHARE)
    request_timeout = _first_set(check.request_timeout, site.request_timeout,
                                 config.defaults.request_timeout)
    placement = check.placement if check.placement is not None else site.placement
    return PlannedCheck(site, check, interval, timeout, min(request_timeout, timeout), placement)


def _check_step_names_and_variables(steps: Sequence[Step | BrowserStep], known: set[str]) -> None:
    """Step names are unique and every ``{{ variable }}`` a step uses is set by ``vars``
    (``known``) or by an earlier step's ``extract`` (checkout and browser journeys alike)."""
    names: set[str] = set()
    for i, step in enumerate(steps):
        if step.name in names:
            raise ValueErrorAt(("steps", i, "name"), f"duplicate step name '{step.name}'")
        names.add(step.name)
        missing = sorted(step.variables_used() - known)
        if missing:
            raise ValueErrorAt(("steps", i), f"variable '{missing[0]}' is not set by vars "
                               "or by an earlier step's extract")
        known |= set(step.extract)


def _first_set(*values: float | None) -> float:
    """The first value that is set (0 would be set, unlike with ``or``)."""
    return next(v for v in values if v is not None)


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueErrorAt((i, "name"), f"duplicate {what} name '{name}'")
        seen.add(name)
