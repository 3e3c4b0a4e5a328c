"""Human durations: ``250ms``, ``30s``, ``5m``, ``1h30m``, ``2d`` or plain seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

from agent.config.loader import describe_kind

__all__ = ["Duration", "PositiveDuration", "format_duration", "parse_duration"]

_HINT = "use e.g. 30s, 5m, 1h30m"
_NUM = r"\d+(?:\.\d+)?"
# Units in decreasing order, each at most once: "1h30m", "2d12h", "1s500ms".
_DURATION_RE = re.compile(
    rf"(?:(?P<d>{_NUM})d)?(?:(?P<h>{_NUM})h)?(?:(?P<m>{_NUM})m)?"
    rf"(?:(?P<s>{_NUM})s)?(?:(?P<ms>{_NUM})ms)?"
)
_PLAIN_RE = re.compile(_NUM)
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
MAX_DURATION_S = 3650 * 86400.0
"""Ten years: beyond it a schedule overflows Python's datetime (and the daemon would crash)."""


def parse_duration(text: str | int | float) -> float:
    """Return the duration *text* in seconds; raise ValueError with a one-line hint."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration, not {describe_kind(text)}; {_HINT}")
    if isinstance(text, int | float):
        try:
            seconds = float(text)
        except OverflowError:
            raise ValueError(f"duration {text} is too large") from None
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(f"'{text}' is not a duration; {_HINT}")
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {text}")
        if seconds > MAX_DURATION_S:
            raise ValueError(f"duration {text} is too large (at most 3650d)")
        return seconds
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"duration is empty; {_HINT}")
    if stripped.startswith("-") and _parse_or_none(stripped[1:]) is not None:
        raise ValueError(f"duration must not be negative, got '{stripped}'")
    seconds_or_none = _parse_or_none(stripped)
    if seconds_or_none is None:
        raise ValueError(f"'{stripped}' is not a duration; {_HINT}")
    if math.isinf(seconds_or_none) or seconds_or_none > MAX_DURATION_S:
        raise ValueError(f"duration '{stripped}' is too large (at most 3650d)")
    return seconds_or_none


def _parse_or_none(text: str) -> float | None:
    """Parse a stripped, sign-less duration string; None when it is not one."""
    if _PLAIN_RE.fullmatch(text):
        return float(text)
    match = _DURATION_RE.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        return None
    return sum(float(value) * _UNIT_SECONDS[unit]
               for unit, value in match.groupdict().items() if value is not None)


def format_duration(seconds: float) -> str:
    """Format *seconds* for display, the inverse of parse_duration: 90 -> '1m30s'."""
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    remaining = round(seconds * 1000)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _validate_duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration, not {describe_kind(value)}; {_HINT}")
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_validate_duration)]
"""A pydantic field type: accepts '30s', '1h30m', 90 ... and holds seconds as float."""


def _validate_positive_duration(value: object) -> float:
    seconds = _validate_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s, got {value!r}; use e.g. 10s, or leave it "
                         "out to inherit")
    return seconds


PositiveDuration = Annotated[float, BeforeValidator(_validate_positive_duration)]
"""A Duration that must be longer than zero (intervals and timeouts: 0 has no meaning)."""
