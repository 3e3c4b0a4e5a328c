"""A corpus of broken configs: (id, file content, environment). Each must give one line per
problem on stderr (one, unless EXPECTED_LINES says otherwise) and exit 2 from ``storewatch
validate`` and ``storewatch check``."""

from __future__ import annotations

SITE = "sites:\n  - name: shop\n    base_url: https://shop.example\n    checks: [{name: home}]\n"


def _site(**fields: str) -> str:
    """A one-site config with ``fields`` replacing or adding site keys (YAML values)."""
    base = {"name": "shop", "base_url": "https://shop.example", "checks": "[{name: home}]"}
    base.update(fields)
    return "sites:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in base.items()) + "\n"


def _check(**fields: str) -> str:
    items = ", ".join(f"{k}: {v}" for k, v in {"name": "home", **fields}.items())
    return _site(checks=f"[{{{items}}}]")


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
) + "sites: *i\n"

CORPUS: list[tuple[str, str | bytes, dict[str, str]]] = [
    # YAML syntax
    ("yaml-unclosed-bracket", "sites: [\n  {name: shop\n", {}),
    ("yaml-unclosed-quote", 'sites:\n  - name: "shop\n', {}),
    ("yaml-tab-indent", "sites:\n\t- name: shop\n", {}),
    ("yaml-bad-indent", "sites:\n  - name: shop\n base_url: x\n", {}),
    ("yaml-duplicate-key", SITE + "sites: []\n", {}),
    ("yaml-empty", "", {}),
    ("yaml-only-comment", "# nothing here\n", {}),
    ("yaml-top-level-list", "- a\n- b\n", {}),
    ("yaml-top-level-scalar", "just a string\n", {}),
    ("yaml-invalid-utf8", b"sites:\n  - name: \xff\xfe shop\n", {}),
    ("yaml-nul-byte", "sites:\n  - name: sh\x00op\n", {}),
    ("yaml-recursive-alias", "sites: &s [*s]\n", {}),
    ("yaml-billion-laughs", BILLION_LAUGHS, {}),
    ("yaml-python-tag", "sites: !!python/object/apply:os.system [echo pwned]\n", {}),
    ("yaml-multi-document", SITE + "---\n" + SITE, {}),
    # wrong types
    ("type-sites-string", "sites: shop\n", {}),
    ("type-sites-numbers", "sites: [1, 2]\n", {}),
    ("type-checks-mapping", _site(checks="{name: home}"), {}),
    ("type-timeout-bool", _check(timeout="true"), {}),
    ("type-concurrency-text", "agent: {concurrency: many}\n" + SITE, {}),
    ("type-expect-status-text", _check(expect_status="[ok]"), {}),
    ("type-headers-list", _check(headers="[a, b]"), {}),
    ("type-max-body-text", _check(max_body_bytes="lots"), {}),
    ("type-tls-verify-text", _site(tls="{verify: maybe}"), {}),
    ("type-site-name-number", _site(name="125"), {}),
    ("type-listen-port-range", "agent: {listen: '127.0.0.1:99999'}\n" + SITE, {}),
    ("type-base-url-port-range", _site(base_url="http://127.0.0.1:99999"), {}),
    ("type-int-5000-digits", _check(max_body_bytes="7" * 5000), {}),
    ("type-hex-int-5000-digits", _check(max_redirects="0x" + "f" * 5000), {}),
    ("duration-timeout-zero", _check(timeout="0s"), {}),
    ("duration-site-interval-zero", _site(interval="0"), {}),
    ("three-independent-errors", _site(base_url="ftp://x", interval="5x",
                                       checks="[{name: Home}]"), {}),
    # unknown keys
    ("unknown-top-level", "site:\n  - name: shop\n", {}),
    ("unknown-site-key", _site(url="https://shop.example"), {}),
    ("unknown-check-key", _check(timeout_s="5"), {}),
    ("unknown-agent-key", "agent: {listen_port: 9478}\n" + SITE, {}),
    # durations
    ("duration-unit", _check(timeout="5 parsecs"), {}),
    ("duration-word", _site(interval="soon"), {}),
    ("duration-negative", _check(timeout="-1s"), {}),
    ("duration-huge", _check(interval="99999999999999999999999h"), {}),
    ("duration-timeout-over-interval", _check(timeout="2m", interval="1m"), {}),
    # URLs
    ("url-ftp", _site(base_url="ftp://shop.example"), {}),
    ("url-no-scheme", _site(base_url="shop.example"), {}),
    ("url-no-host", _site(base_url="'http://'"), {}),
    ("url-credentials", _site(base_url="https://user:pw@shop.example"), {}),
    ("url-broken-ipv6", _site(base_url="'http://[::1'"), {}),
    ("url-path-not-relative", _check(path="https://other.example/"), {}),
    # names
    ("duplicate-site", SITE + SITE.removeprefix("sites:\n"), {}),
    ("duplicate-check", _site(checks="[{name: home}, {name: home}]"), {}),
    # secrets and environment
    ("secret-credential-missing", _check(headers="{Authorization: '${cred:shop_token}'}"), {}),
    ("secret-file-missing", _check(headers="{X-Key: '${file:/nonexistent/key}'}"), {}),
    ("secret-file-relative", _check(headers="{X-Key: '${file:key.txt}'}"), {}),
    ("env-absent", _site(base_url="'${SHOP_URL_NOT_SET}'"), {}),
    ("env-malformed", _site(base_url="'${SHOP_URL'"), {}),
    ("env-bad-name", _site(base_url="'${1SHOP}'"), {}),
    ("env-circular", _site(base_url="'${LOOP_A}'"), {"LOOP_A": "${LOOP_B}", "LOOP_B": "${LOOP_A}"}),
    ("env-self-default", _site(base_url="'${LOOP_C:-${LOOP_C}}'"), {}),
    ("env-injects-yaml", _site(name="'${SHOP_NAME}'"), {"SHOP_NAME": "shop\n  evil: true"}),
]
"""Every entry: id, config file content (bytes when it must not be valid UTF-8), extra env."""


EXPECTED_LINES = {"three-independent-errors": 3}
"""Entries with several independent problems: validate lists each one on its own line."""
