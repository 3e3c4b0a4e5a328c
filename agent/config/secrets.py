"""Process-wide registry of secret values, scrubbed from logs, exceptions and tickets.

Secrets enter through config substitution (``${cred:...}``, ``${file:...}``, secret-looking
environment variables) or ``register_secret``; ``scrub`` and ``SecretScrubbingFilter`` replace
every registered value with ``***``. Attach the filter to *handlers*: a filter on a logger does
not see records propagated from its child loggers.

A shop or tracker may echo a secret back in another encoding (a header URL-encoded into a
redirect's query, a token inside a JSON error), so each secret is masked in its common
encodings too, computed once when it is registered (``encoded_forms``): percent-encoding
(``%20`` and ``+`` for a space, upper- and lower-case hex, with and without ``/`` kept),
JSON string escaping (also PHP's escaped slash), HTML entities (named, decimal and hex
quotes), and base64/base64url of the value. Base64 is also found *inside* a longer base64 text
at any byte alignment (e.g. ``base64(user:secret)`` of HTTP Basic auth, whatever the user),
together with the characters at its edges that still carry bits of the secret.

The classifier's Finding/Evidence cut long texts; ``classifier.finding.set_redaction(scrub)``
(installed on import) makes them scrub *before* cutting, so half a secret is never left.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

from classifier.finding import set_redaction

__all__ = [
    "SecretScrubbingFilter",
    "clear_secrets",
    "encoded_forms",
    "read_credential",
    "register_secret",
    "registered_secrets",
    "scrub",
    "scrubbed_excerpt",
]

MASK = "***"
_MIN_LENGTH = 4
_MIN_CORE = 8
"""A base64 piece found inside longer base64 text is masked only from this length on."""
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
_URL_SAFE_SETS = ("", "/", "-_.!~*'()")
"""Characters left as they are by common URL encoders: none, Python's quote, JavaScript's
encodeURIComponent."""
_HTML_QUOTES = ({'"': "&quot;", "'": "&#x27;"}, {'"': "&#34;", "'": "&#39;"},
                {'"': "&quot;", "'": "&#039;"}, {'"': "&#x22;", "'": "&apos;"})

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_longest_first: tuple[str, ...] = ()
"""Every literal form of every secret, longest first."""
_percent: tuple[re.Pattern[str], ...] = ()
"""Forms with characters a URL encoder may or may not escape, matching any mix of both."""
_cores: tuple[tuple[str, int, int], ...] = ()
"""base64 pieces of secrets that can sit inside longer base64 text, with how many characters
before and after them still carry secret bits (masked too)."""
_longest_form = 0


def _percent_forms(value: str) -> set[str]:
    forms: set[str] = set()
    for safe in _URL_SAFE_SETS:
        for encoded in (quote(value, safe=safe), quote_plus(value, safe=safe)):
            forms.add(encoded)
            forms.add(_lower_hex(encoded))
    return forms


_KEPT_BY_EVERY_ENCODER = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _percent_pattern(form: str) -> re.Pattern[str] | None:
    """A pattern matching *form* with any of its characters percent-encoded (any hex case,
    a space also as ``+``), as URL normalisers leave some escaped and others not; None when
    no encoder would change *form*."""
    if all(c in _KEPT_BY_EVERY_ENCODER for c in form):
        return None
    parts: list[str] = []
    for char in form:
        if char in _KEPT_BY_EVERY_ENCODER:
            parts.append(char)
            continue
        options = [re.escape(char)]
        options += ["%" + "".join(f"[{h.upper()}{h.lower()}]" if h.isalpha() else h
                                  for h in f"{b:02X}") for b in char.encode()]
        if len(options) > 2:  # a multi-byte character: its bytes escaped one after another
            options = [options[0], "".join(options[1:])]
        if char == " ":
            options.append(r"\+")
        parts.append("(?:" + "|".join(options) + ")")
    return re.compile("".join(parts))


def _lower_hex(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def _json_forms(value: str) -> set[str]:
    forms = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return forms | {f.replace("/", "\\/") for f in forms}


def _html_forms(value: str) -> set[str]:
    plain = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    forms = {plain, html.escape(value)}
    for quotes in _HTML_QUOTES:
        forms.add("".join(quotes.get(c, c) for c in plain))
    return forms


def _base64_forms(raw: bytes) -> tuple[set[str], set[tuple[str, int, int]]]:
    """Exact encodings of *raw*, and the pieces that stay the same at any alignment inside
    longer base64 text (with the number of secret-bearing characters before and after)."""
    exact: set[str] = set()
    cores: set[tuple[str, int, int]] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        exact |= {whole, whole.rstrip("=")}
        for shift in range(3):
            # ``shift`` bytes before the secret: the first full 3-byte group of the secret
            # starts at ``skip``; only whole groups of secret bytes encode independently.
            skip = (3 - shift) % 3
            groups = (len(raw) - skip) // 3
            if groups <= 0:
                continue
            core = encode(raw[skip:skip + 3 * groups]).decode()
            rest = len(raw) - skip - 3 * groups
            if len(core) >= _MIN_CORE:
                edges = (skip + 1 if skip else 0, rest + 1 if rest else 0)
                cores.add((core, *edges))
                cores.add((quote(core, safe=""), *edges))
                cores.add((quote(core, safe="/"), *edges))
    return exact, cores


def percent_patterns(value: str) -> list[re.Pattern[str]]:
    """Patterns for *value* and its base64 forms in partly percent-encoded text."""
    exact, _ = _base64_forms(value.encode("utf-8", "surrogatepass"))
    patterns = (_percent_pattern(form) for form in sorted({value} | exact, key=len, reverse=True))
    return [p for p in patterns if p is not None]


def encoded_forms(value: str) -> tuple[frozenset[str], frozenset[tuple[str, int, int]]]:
    """The literal forms of *value* that scrub masks, and its base64 cores (see the module
    docstring); the value itself is among the literal forms."""
    forms = {value} | _percent_forms(value) | _json_forms(value) | _html_forms(value)
    exact, cores = _base64_forms(value.encode("utf-8", "surrogatepass"))
    forms |= exact
    forms |= {f.replace("/", "\\/") for f in exact if "/" in f}  # base64 inside PHP JSON
    forms |= {quote(f, safe="") for f in exact} | {_lower_hex(quote(f, safe="")) for f in exact}
    return (frozenset(f for f in forms if len(f) >= _MIN_LENGTH),
            frozenset(c for c in cores if c[0] not in forms))


def register_secret(value: str) -> None:
    """Remember *value* as a secret; values shorter than 4 characters are ignored."""
    global _secrets, _longest_first, _percent, _cores, _longest_form
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        forms, cores = encoded_forms(value)
        _secrets = _secrets | {value}
        _percent = (*_percent, *percent_patterns(value))
        _longest_first = tuple(sorted(set(_longest_first) | forms, key=lambda s: (-len(s), s)))
        _cores = tuple(sorted(set(_cores) | cores, key=lambda c: (-len(c[0]), c)))
        _longest_form = 3 * len(_longest_first[0]) + 2  # every character percent-encoded


def registered_secrets() -> frozenset[str]:
    """Return the currently registered secrets."""
    return _secrets


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets, _longest_first, _percent, _cores, _longest_form
    with _lock:
        _secrets = frozenset()
        _longest_first = ()
        _percent = ()
        _cores = ()
        _longest_form = 0


def scrub(text: str) -> str:
    """Return *text* with every registered secret, in any of its encodings, replaced by
    ``***``, longest first."""
    for form in _longest_first:
        if form in text:
            text = text.replace(form, MASK)
    if "%" in text or "+" in text:
        for pattern in _percent:
            text = pattern.sub(MASK, text)
    for core, before, after in _cores:
        if core in text:
            text = _mask_core(text, core, before, after)
    return text


def _b64_char_before(text: str, end: int, floor: int) -> int:
    """Start of the (possibly percent-encoded) base64 character ending at *end*, or *end*."""
    if end - 3 >= floor and text[end - 3:end].upper() in ("%2B", "%2F", "%3D"):
        return end - 3
    if end - 1 >= floor and text[end - 1] in _B64_CHARS:
        return end - 1
    return end


def _b64_char_after(text: str, start: int) -> int:
    """End of the (possibly percent-encoded) base64 character at *start*, or *start*."""
    if text[start:start + 3].upper() in ("%2B", "%2F"):
        return start + 3
    if start < len(text) and text[start] in _B64_CHARS:
        return start + 1
    return start


def _mask_core(text: str, core: str, before: int, after: int) -> str:
    """Mask each occurrence of a base64 *core* together with the characters around it that
    still carry bits of the secret, and any padding after them."""
    out: list[str] = []
    pos = 0
    while (at := text.find(core, pos)) >= 0:
        lo, hi = at, at + len(core)
        for _ in range(before):
            lo = _b64_char_before(text, lo, pos)
        for _ in range(after):
            hi = _b64_char_after(text, hi)
        while text.startswith("=", hi) or text[hi:hi + 3].upper() == "%3D":
            hi += 1 if text[hi] == "=" else 3
        out.append(text[pos:lo])
        out.append(MASK)
        pos = hi
    out.append(text[pos:])
    return "".join(out)


def scrubbed_excerpt(text: str, start: int = 0, length: int = 300) -> str | None:
    """About ``length`` characters of ``text`` from ``start``, secrets masked *before* cutting
    (cutting first could leave half a secret that ``scrub`` no longer recognises)."""
    longest = _longest_form
    lo = max(0, start - longest)
    window = scrub(text[lo:start + length + longest])
    excerpt = window[start - lo:][:length]
    return excerpt or None


set_redaction(scrub)


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
