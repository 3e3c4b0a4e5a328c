"""Process-wide registry of secret values, scrubbed from logs, exceptions and tickets.

Secrets enter through config substitution (``${cred:...}``, ``${file:...}``, secret-looking
environment variables) or ``register_secret``; ``scrub`` and ``SecretScrubbingFilter`` replace
every registered value with ``***``. Attach the filter to *handlers*: a filter on a logger does
not see records propagated from its child loggers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

__all__ = [
    "SecretScrubbingFilter",
    "clear_secrets",
    "read_credential",
    "register_secret",
    "registered_secrets",
    "scrub",
    "scrubbed_excerpt",
]

MASK = "***"
_MIN_LENGTH = 4

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_longest_first: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Remember *value* as a secret; values shorter than 4 characters are ignored."""
    global _secrets, _longest_first
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets = _secrets | {value}
        _longest_first = tuple(sorted(_secrets, key=lambda s: (-len(s), s)))


def registered_secrets() -> frozenset[str]:
    """Return the currently registered secrets."""
    return _secrets


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets, _longest_first
    with _lock:
        _secrets = frozenset()
        _longest_first = ()


def scrub(text: str) -> str:
    """Return *text* with every registered secret replaced by ``***``, longest first."""
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrubbed_excerpt(text: str, start: int = 0, length: int = 300) -> str | None:
    """About ``length`` characters of ``text`` from ``start``, secrets masked *before* cutting
    (cutting first could leave half a secret that ``scrub`` no longer recognises)."""
    longest = len(_longest_first[0]) if _longest_first else 0
    lo = max(0, start - longest)
    window = scrub(text[lo:start + length + longest])
    excerpt = window[start - lo:][:length]
    return excerpt or None


class SecretScrubbingFilter(logging.Filter):
    """Logging filter that formats each record's message and scrubs secrets from it.

    Also scrubs the formatted traceback (``exc_text``) and ``stack_info``; never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub *record* in place and let it through."""
        if not _longest_first:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            try:
                message = f"{record.msg} {record.args!r}"
            except Exception:
                message = "<unformattable log message>"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def read_credential(name: str, env: Mapping[str, str]) -> str:
    """Return systemd credential *name* from ``$CREDENTIALS_DIRECTORY`` and register it.

    One trailing newline is stripped. Raises ValueError with a one-line message.
    """
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or "\n" in name):
        raise ValueError(f"invalid systemd credential name {name!r}: use a plain file name")
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ValueError(
            f"systemd credential '{name}' not found: CREDENTIALS_DIRECTORY is not set")
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ValueError(f"systemd credential '{name}' not found: no file {path}") from None
    except OSError as exc:
        raise ValueError(
            f"cannot read systemd credential '{name}' ({path}): {exc.strerror or exc}") from None
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"systemd credential '{name}' ({path}) is not valid UTF-8 text") from None
    value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    register_secret(value)
    return value
