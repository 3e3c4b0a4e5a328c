"""Finding/Evidence caps and redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from classifier import Evidence, Finding, FindingKind
from classifier.finding import MAX_DETAILS, MAX_EXCERPT_CHARS, MAX_SUMMARY_CHARS

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_summary_is_one_capped_line() -> None:
    f = Finding("s", "c", FindingKind.SITE_DOWN, "a\nb " + "x" * 1000, NOW)
    assert "\n" not in f.summary
    assert len(f.summary) == MAX_SUMMARY_CHARS


def test_evidence_is_bounded() -> None:
    ev = Evidence(excerpt="y" * 10_000, details={f"k{i}": "v" * 1000 for i in range(100)})
    assert ev.excerpt is not None and len(ev.excerpt) == MAX_EXCERPT_CHARS
    assert len(ev.details) == MAX_DETAILS
    assert all(len(v) <= 200 for v in ev.details.values())


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        Finding("s", "c", "made_up_kind", "x", NOW)  # type: ignore[arg-type]


def test_kind_given_as_string_becomes_enum() -> None:
    f = Finding("s", "c", "site_down", "x", NOW)  # type: ignore[arg-type]
    assert f.kind is FindingKind.SITE_DOWN


def test_redaction_reaches_every_text_field() -> None:
    ev = Evidence(url="https://x/?t=SECRET", excerpt="tok SECRET", details={"h": "SECRET"})
    f = Finding("s", "c", FindingKind.SITE_DOWN, "failed with SECRET", NOW, ev)
    clean = f.redacted(lambda t: t.replace("SECRET", "***"))
    assert "SECRET" not in repr(clean)
    assert clean.evidence.as_dict() == {"url": "https://x/?t=***", "excerpt": "tok ***",
                                        "details": {"h": "***"}}
