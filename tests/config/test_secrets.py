"""The secret registry, scrubbing, the logging filter and systemd credentials."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.secrets import (
    SecretScrubbingFilter,
    clear_secrets,
    read_credential,
    register_secret,
    registered_secrets,
    scrub,
    scrubbed_excerpt,
)


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


def test_register_and_scrub() -> None:
    register_secret("hunter22")
    assert registered_secrets() == frozenset({"hunter22"})
    assert scrub("password=hunter22; again hunter22") == "password=***; again ***"


def test_short_values_are_ignored() -> None:
    register_secret("abc")
    register_secret("")
    assert registered_secrets() == frozenset()
    assert scrub("abc") == "abc"


def test_longest_secret_is_replaced_first() -> None:
    register_secret("token")
    register_secret("token-extended")
    assert scrub("a token-extended b token") == "a *** b ***"


def test_clear_secrets() -> None:
    register_secret("s3cr3t")
    clear_secrets()
    assert registered_secrets() == frozenset()
    assert scrub("s3cr3t") == "s3cr3t"


def test_scrub_without_secrets_returns_text() -> None:
    assert scrub("nothing to hide") == "nothing to hide"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(SecretScrubbingFilter())
    logger = logging.getLogger("tests.config.scrub")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        pytest.param("token is %s", ("tok-1234",), "INFO token is ***", id="in-args"),
        pytest.param("literal tok-1234 here", (), "INFO literal *** here", id="in-msg"),
        pytest.param("%s=%d", ("tok-1234", 5), "INFO ***=5", id="mixed-args"),
        pytest.param("joined %s%s", ("tok-", "1234"), "INFO joined ***", id="split-across-args"),
        pytest.param("no secret %d", (7,), "INFO no secret 7", id="untouched"),
    ],
)
def test_filter_scrubs_formatted_message(
    captured: tuple[logging.Logger, io.StringIO], msg: str, args: tuple[object, ...],
    expected: str,
) -> None:
    logger, stream = captured
    register_secret("tok-1234")
    logger.info(msg, *args)
    assert stream.getvalue() == expected + "\n"


def test_filter_scrubs_traceback(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    register_secret("tok-1234")
    try:
        raise RuntimeError("auth failed for tok-1234")
    except RuntimeError:
        logger.exception("delivery failed")
    output = stream.getvalue()
    assert "tok-1234" not in output
    assert "RuntimeError: auth failed for ***" in output
    assert output.startswith("ERROR delivery failed\n")


def test_filter_survives_bad_format_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    register_secret("tok-1234")
    logger.info("%d items", "tok-1234")
    assert stream.getvalue() == "INFO %d items ('***',)\n"


def test_read_credential(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text("s3cr3t-value\n")
    value = read_credential("api-token", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert value == "s3cr3t-value"
    assert "s3cr3t-value" in registered_secrets()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("v4lue\n\n", "v4lue\n", id="strips-one-newline"),
        pytest.param("v4lue", "v4lue", id="no-newline"),
        pytest.param("v4lue\r\n", "v4lue", id="crlf"),
    ],
)
def test_read_credential_newlines(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "c").write_bytes(content.encode())
    assert read_credential("c", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == expected


def test_read_credential_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        read_credential("x", {})
    assert str(info.value) == (
        "systemd credential 'x' not found: CREDENTIALS_DIRECTORY is not set")
    with pytest.raises(ValueError) as info:
        read_credential("x", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert str(info.value) == f"systemd credential 'x' not found: no file {tmp_path}/x"


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/etc/passwd"])
def test_read_credential_rejects_non_plain_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError) as info:
        read_credential(name, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert str(info.value) == (
        f"invalid systemd credential name {name!r}: use a plain file name")


def test_excerpt_masks_a_secret_that_straddles_the_cut() -> None:
    from agent.config.secrets import clear_secrets, register_secret, scrubbed_excerpt

    clear_secrets()
    try:
        register_secret("CANARY-0123456789")
        page = "x" * 290 + "CANARY-0123456789" + "y" * 50
        excerpt = scrubbed_excerpt(page, 0, 300)
        assert excerpt is not None
        assert "CANARY" not in excerpt and "CANARY-0123"[:5] not in excerpt
        assert excerpt.startswith("x" * 290) and excerpt[290:] == "***" + "y" * 7
        middle = scrubbed_excerpt("a" * 100 + "CANARY-0123456789" + "b" * 100, 95, 20)
        assert middle == "aaaaa***" + "b" * 12
        assert scrubbed_excerpt("") is None
    finally:
        clear_secrets()


# --- encoded forms: a shop or tracker echoing a secret in another encoding ---------------------

ODD_SECRET = "cnry s3cr/t+=\"<&'x9Z"
"""Characters that every encoding treats differently: space, / + = " < & '."""


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def _b64url(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).decode()


def _encodings(secret: str) -> dict[str, str]:
    import html
    import json
    import re
    from urllib.parse import quote, quote_plus

    raw = secret.encode()
    return {
        "percent-%20": quote(secret, safe=""),
        "percent-plus": quote_plus(secret, safe=""),
        "percent-keep-slash": quote(secret),
        "percent-lower-hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(),
                                    quote(secret, safe="")),
        "encodeURIComponent": quote(secret, safe="-_.!~*'()"),
        "json": json.dumps(secret),
        "json-php-slash": json.dumps(secret).replace("/", "\\/"),
        "html-python": html.escape(secret),
        "html-markupsafe": secret.replace("&", "&amp;").replace("<", "&lt;")
        .replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;"),
        "html-php": secret.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        .replace("'", "&#039;"),
        "base64": _b64(raw),
        "base64-unpadded": _b64(raw).rstrip("="),
        "base64url": _b64url(raw),
        "basic-auth": "Basic " + _b64(b"ops@acme.example:" + raw),
        "basic-auth-short-user": "Basic " + _b64(b"u:" + raw),
        "basic-auth-url-safe": _b64url(b"ab:" + raw + b"tail"),
        "basic-in-query": "auth=" + quote_plus("Basic " + _b64(b"mon:" + raw)),
    }


def _secret_bits_left(text: str, secret: str) -> list[str]:
    """Any 6-character piece of an encoding of ``secret`` that also appears in ``text`` and
    would not be there for another secret of the same shape."""
    other = "x" * len(secret)
    pieces: set[str] = set()
    for name, form in _encodings(secret).items():
        twin = _encodings(other)[name]
        windows = {form[i:i + 6] for i in range(len(form) - 5)}
        pieces |= windows - {twin[i:i + 6] for i in range(len(twin) - 5)}
    return sorted(p for p in pieces if p in text)


@pytest.mark.parametrize("name", list(_encodings(ODD_SECRET)))
def test_every_encoding_of_a_secret_is_masked(name: str) -> None:
    register_secret(ODD_SECRET)
    form = _encodings(ODD_SECRET)[name]
    text = f"GET /login?next={form}&x=1 echoed: <pre>{form}</pre>"
    scrubbed = scrub(text)
    assert "***" in scrubbed
    assert _secret_bits_left(scrubbed, ODD_SECRET) == [], scrubbed


def test_encoded_secret_is_masked_before_an_excerpt_is_cut() -> None:
    register_secret(ODD_SECRET)
    form = _encodings(ODD_SECRET)["percent-plus"]
    text = "x" * 290 + form + "y" * 100
    excerpt = scrubbed_excerpt(text, 0, 300)
    assert excerpt is not None and _secret_bits_left(excerpt, ODD_SECRET) == []


def test_findings_scrub_before_cutting_their_texts() -> None:
    from datetime import UTC, datetime

    from classifier import Finding, FindingKind
    from classifier.finding import MAX_SUMMARY_CHARS, Evidence

    register_secret(ODD_SECRET)
    form = _encodings(ODD_SECRET)["base64"]
    cut_inside = "s" * (MAX_SUMMARY_CHARS - 10) + form
    finding = Finding("shop", "home", FindingKind.SITE_DOWN, cut_inside, datetime.now(UTC),
                      Evidence(url="https://shop.example/login?auth=" + form,
                               details={"echo": "d" * 190 + form}))
    for text in (finding.summary, finding.evidence.url or "",
                 *finding.evidence.details.values()):
        assert _secret_bits_left(text, ODD_SECRET) == [], text


def test_plain_text_is_left_alone() -> None:
    register_secret(ODD_SECRET)
    text = "Y25yeQ== is base64 of 'cnry' alone; 'cnry s3cr' is a prefix; x9Z too"
    assert scrub(text) == text
