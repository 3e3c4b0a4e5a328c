"""Finding and Evidence value types: what a probe saw, bounded in size."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from classifier.kinds import FindingKind

MAX_SUMMARY_CHARS = 300
MAX_EXCERPT_CHARS = 500
MAX_DETAIL_CHARS = 200
MAX_DETAILS = 20


def _unchanged(text: str) -> str:
    return text


_redact: Callable[[str], str] = _unchanged


def set_redaction(redact: Callable[[str], str] | None) -> None:
    """Install the function every text of a Finding/Evidence passes through *before* it is cut
    to size (the agent installs its secret scrubber: cutting first could leave half a secret
    that no longer matches). ``None`` restores the identity."""
    global _redact
    _redact = redact if redact is not None else _unchanged


def _clip(text: str, limit: int) -> str:
    text = _redact(text)
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What supports a finding: URL, status, a short excerpt, timings and details (all capped)."""

    url: str | None = None
    status: int | None = None
    excerpt: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.url is not None:
            object.__setattr__(self, "url", _redact(self.url))
        if self.excerpt is not None:
            object.__setattr__(self, "excerpt", _clip(self.excerpt, MAX_EXCERPT_CHARS))
        details = {
            _clip(str(k), 60): _clip(str(v), MAX_DETAIL_CHARS)
            for k, v in list(self.details.items())[:MAX_DETAILS]
        }
        object.__setattr__(self, "details", MappingProxyType(details))
        object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))

    def redacted(self, scrub: Callable[[str], str]) -> Evidence:
        """A copy with every text field passed through ``scrub`` (e.g. secret removal)."""
        return Evidence(
            url=scrub(self.url) if self.url is not None else None,
            status=self.status,
            excerpt=scrub(self.excerpt) if self.excerpt is not None else None,
            timings=self.timings,
            details={k: scrub(v) for k, v in self.details.items()},
        )

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready form (absent fields left out)."""
        out: dict[str, object] = {}
        if self.url is not None:
            out["url"] = self.url
        if self.status is not None:
            out["status"] = self.status
        if self.excerpt is not None:
            out["excerpt"] = self.excerpt
        if self.timings:
            out["timings"] = {k: round(v, 6) for k, v in self.timings.items()}
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem one check of one site saw at one time.

    ``facts`` carries the numbers a rule may look at (e.g. ``days_left`` for a certificate,
    ``critical`` 1.0/0.0 for resource pressure); they never contain free text.
    """

    site: str
    check: str
    kind: FindingKind
    summary: str
    observed_at: datetime
    evidence: Evidence = field(default_factory=Evidence)
    facts: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", _clip(self.summary, MAX_SUMMARY_CHARS))
        object.__setattr__(self, "kind", FindingKind(self.kind))
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def redacted(self, scrub: Callable[[str], str]) -> Finding:
        """A copy with summary and evidence passed through ``scrub``."""
        return replace(self, summary=scrub(self.summary), evidence=self.evidence.redacted(scrub))
