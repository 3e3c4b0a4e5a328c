"""The hostile-storefront fault table shared by the tests and ``report.py``: which endpoint, which
check, and the finding the agent must produce for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.faults.hostile import MARKER

PROBE_TIMEOUT_S = 1.0
"""Timeout of every hostile check (the deadline the probe must end within, plus grace)."""

MEMORY_BOUND_BYTES = 128 * 1024 * 1024
"""Peak RSS ``storewatch check`` may reach while probing every fault at once (2 MiB body cap)."""


@dataclass(frozen=True)
class Fault:
    """One misbehaviour and what the agent must make of it."""

    id: str
    path: str
    expect: tuple[str, ...]
    """Finding kinds expected (empty: the page must pass)."""
    failure: str | None = None
    """``evidence.details.failure`` expected on the finding, when it is a fetch failure."""
    tls: str | None = None
    """Serve over the TLS listener with this certificate instead of plain HTTP."""
    check: dict[str, Any] = field(default_factory=dict)
    level: int | None = None
    """Support level the classifier must give (checked when set)."""

    def check_spec(self) -> dict[str, Any]:
        """The check config for this fault (the home page, so a total failure is site_down)."""
        spec: dict[str, Any] = {"name": "home", "type": "availability", "path": self.path,
                                "role": "home", "timeout": f"{PROBE_TIMEOUT_S:g}s"}
        return {**spec, **(self.check or {"body_contains": [MARKER]})}


FAULTS: tuple[Fault, ...] = (
    Fault("slowloris-headers", "/drip-headers", ("site_down",), "timeout", level=1),
    Fault("slowloris-body", "/drip-body", ("site_down",), "timeout"),
    Fault("endless-body", "/endless", ("page_corrupted",)),
    Fault("1gb-body", "/gigabyte", ("page_corrupted",)),
    Fault("gzip-bomb", "/gzip-bomb", ("page_corrupted",)),
    Fault("gzip-bomb-nested", "/gzip-bomb-nested", ("page_corrupted",)),
    Fault("broken-gzip", "/bad-gzip", ("site_down",), "protocol"),
    Fault("redirect-loop", "/redirect-loop", ("site_down",), "too_many_redirects"),
    Fault("redirect-other-host", "/redirect-away", ()),
    Fault("redirect-file-scheme", "/redirect-file", ("site_down",), "protocol"),
    Fault("reset-mid-body", "/reset", ("site_down",), "protocol"),
    Fault("tls-expired", "/ok", ("tls_expiring",), "tls_expired", tls="expired", level=1),
    Fault("tls-self-signed", "/ok", ("site_down",), "tls", tls="selfsigned"),
    Fault("tls-wrong-host", "/ok", ("site_down",), "tls", tls="wronghost"),
    Fault("html-deeply-nested", "/nested", ("page_corrupted",),
          check={"selector": "main#maincontent"}),
    Fault("html-invalid-utf8", "/bad-utf8", ()),
    Fault("html-50mb-line", "/long-line", ("page_corrupted",)),
    Fault("json-malformed", "/bad-json", ("page_corrupted",),
          check={"body_matches": [r"\}\s*$"]}),
    Fault("lie-content-type", "/lie-type", ()),
    Fault("lie-charset", "/lie-charset", ("page_corrupted",)),
    Fault("lie-length-longer", "/lie-length-long", ("site_down",), "protocol"),
    Fault("lie-length-shorter", "/lie-length-short", ("page_corrupted",)),
)


def fault_site(fault: Fault, plain_url: str, tls_urls: dict[str, str], ca_file: str,
               **site: Any) -> dict[str, Any]:
    """The config of a site (named after the fault) whose home page is the hostile endpoint."""
    base = tls_urls[fault.tls] if fault.tls else plain_url
    extra: dict[str, Any] = {"tls": {"ca_file": ca_file}} if fault.tls else {}
    return {"name": fault.id, "base_url": base, "checks": [fault.check_spec()], **extra, **site}
