"""parse_duration / format_duration / the Duration field type."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from agent.config.durations import Duration, format_duration, parse_duration

HINT = "use e.g. 30s, 5m, 1h30m"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("250ms", 0.25, id="ms"),
        pytest.param("30s", 30.0, id="s"),
        pytest.param("5m", 300.0, id="m"),
        pytest.param("1h", 3600.0, id="h"),
        pytest.param("2d", 172800.0, id="d"),
        pytest.param("1m30s", 90.0, id="m+s"),
        pytest.param("1h30m", 5400.0, id="h+m"),
        pytest.param("1d2h3m4s5ms", 93784.005, id="all-units"),
        pytest.param("1.5h", 5400.0, id="decimal-unit"),
        pytest.param(" 10s ", 10.0, id="surrounding-space"),
        pytest.param("45", 45.0, id="plain-string"),
        pytest.param("0.5", 0.5, id="plain-decimal-string"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param(12, 12.0, id="int"),
        pytest.param(0, 0.0, id="int-zero"),
        pytest.param(1.25, 1.25, id="float"),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("5x", f"'5x' is not a duration; {HINT}", id="unknown-unit"),
        pytest.param("", f"duration is empty; {HINT}", id="empty"),
        pytest.param("   ", f"duration is empty; {HINT}", id="blank"),
        pytest.param("-5s", "duration must not be negative, got '-5s'", id="negative-string"),
        pytest.param("-3", "duration must not be negative, got '-3'", id="negative-plain"),
        pytest.param(-1, "duration must not be negative, got -1", id="negative-int"),
        pytest.param(-0.5, "duration must not be negative, got -0.5", id="negative-float"),
        pytest.param("abc", f"'abc' is not a duration; {HINT}", id="garbage"),
        pytest.param("m", f"'m' is not a duration; {HINT}", id="unit-only"),
        pytest.param("30s1m", f"'30s1m' is not a duration; {HINT}", id="wrong-order"),
        pytest.param("1m1m", f"'1m1m' is not a duration; {HINT}", id="repeated-unit"),
        pytest.param("5 m", f"'5 m' is not a duration; {HINT}", id="inner-space"),
        pytest.param("5M", f"'5M' is not a duration; {HINT}", id="upper-case"),
        pytest.param("1e3", f"'1e3' is not a duration; {HINT}", id="exponent"),
        pytest.param(float("nan"), f"'nan' is not a duration; {HINT}", id="nan"),
        pytest.param(float("inf"), f"'inf' is not a duration; {HINT}", id="inf"),
        pytest.param("9" * 400, f"duration '{'9' * 400}' is too large (at most 3650d)",
                     id="huge"),
        pytest.param("3651d", "duration '3651d' is too large (at most 3650d)", id="over-10y"),
        pytest.param(10**12, "duration 1000000000000 is too large (at most 3650d)",
                     id="over-10y-number"),
        pytest.param(True, f"expected a duration, not true/false; {HINT}", id="bool"),
    ],
)
def test_parse_duration_rejects(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(90, "1m30s", id="m+s"),
        pytest.param(0.25, "250ms", id="ms"),
        pytest.param(0, "0s", id="zero"),
        pytest.param(3600, "1h", id="h"),
        pytest.param(5400, "1h30m", id="h+m"),
        pytest.param(86400 + 1.5, "1d1s500ms", id="d+s+ms"),
        pytest.param(0.0001, "0s", id="below-ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(round(seconds, 3))


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")], ids=["neg", "nan", "inf"])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


class _Model(BaseModel):
    timeout: Duration
    optional: Duration | None = None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [pytest.param("1m30s", 90.0, id="string"), pytest.param(5, 5.0, id="int")],
)
def test_duration_field_accepts(value: object, seconds: float) -> None:
    assert _Model.model_validate({"timeout": value}).timeout == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("5x", f"Value error, '5x' is not a duration; {HINT}", id="garbage"),
        pytest.param([1], f"Value error, expected a duration, not a list; {HINT}", id="list"),
        pytest.param(None, f"Value error, expected a duration, not null; {HINT}", id="null"),
    ],
)
def test_duration_field_rejects(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        _Model.model_validate({"timeout": value})
    assert info.value.errors()[0]["msg"] == message


def test_optional_duration_accepts_null() -> None:
    assert _Model.model_validate({"timeout": 1, "optional": None}).optional is None
