"""Reading a response the way the commerce probes need: JSON paths, CSS, schema.org JSON-LD,
item counts, and the error signatures of shop platforms."""

from __future__ import annotations

import bisect
import json
import re
from typing import TYPE_CHECKING, Any

from agent.config.schema import Counter, parse_json_path
from agent.config.secrets import scrubbed_excerpt
from agent.httpclient import FetchResult
from agent.probes.html import parse_html

if TYPE_CHECKING:  # selectolax is imported by parse_html, when a page is parsed
    from selectolax.lexbor import LexborHTMLParser

ERROR_SIGNATURES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("Magento", ("There has been an error processing", "Exception printing is disabled",
                 "Error log record number", "An error has happened during application run"),
     re.compile(r"There has been an error processing your request|"
                r"Exception printing is disabled by default|Error log record number|"
                r"An error has happened during application run")),
    ("Magento", ("main.CRITICAL", "Magento\\Framework\\Exception"),
     re.compile(r"\bmain\.CRITICAL\b|Magento\\Framework\\Exception")),
    ("WordPress", ("There has been a critical error", "Error establishing a database connection"),
     re.compile(r"There has been a critical error on this website|"
                r"Error establishing a database connection")),
    ("WooCommerce", ("WC_Data_Exception", "woocommerce_rest_"),
     re.compile(r"WC_Data_Exception|woocommerce_rest_\w+_error\b")),
    ("Shopify Liquid", ("iquid", "IQUID"), re.compile(r"Liquid (syntax )?error", re.IGNORECASE)),
    ("PHP", (".php", "PHP ", "Fatal error"),
     re.compile(r"(Fatal error|Parse error|Warning|Notice|Deprecated)(</b>)?:\s.*? in "
                r"\S+\.php|PHP (Fatal error|Warning|Parse error):|"
                r"Fatal error</b>: +Uncaught|Fatal error: +Uncaught \w")),
    ("Django", ("DEBUG = True", "TemplateSyntaxError at /", "django.template.exceptions."),
     re.compile(r"You're seeing this error because you have <code>DEBUG = True|"
                r"TemplateSyntaxError at /|django\.template\.exceptions\.")),
    ("Jinja", ("jinja2.exceptions.", "UndefinedError: "),
     re.compile(r"jinja2\.exceptions\.\w+|UndefinedError: '[^']+' is undefined")),
    ("Twig", ("Twig", "An exception has been thrown during the rendering of a template"),
     re.compile(r"Twig\\Error\\\w+|Twig_Error_\w+|An exception has been thrown "
                r"during the rendering of a template")),
    ("Rails", ("We're sorry, but something went wrong.", "ActionView::Template::Error",
               "ActiveRecord::", "ActionController::RoutingError"),
     re.compile(r"We're sorry, but something went wrong\.|ActionView::Template::Error|"
                r"ActiveRecord::\w+Error|ActionController::RoutingError")),
    ("framework debug page", ("Whoops! There was an error", "Traceback (most recent call last)",
                              "Symfony\\Component\\ErrorHandler", "DoesNotExist",
                              "Exception"),
     re.compile(r"Whoops! There was an error|Traceback \(most recent call last\)|"
                r"Symfony\\Component\\ErrorHandler|"
                r"<title>[^<]*(DoesNotExist|Exception)[^<]*</title>")),
)
"""Error pages of shop platforms and web frameworks, as a 200 page may show them: (name, texts
one of which every match contains, pattern). The texts are looked for first (a fast substring
search), so a page pays for a pattern only when it might match."""

_TEMPLATE_BLOCK = re.compile(
    r"\{%-?\s*(if|elsif|elif|else|endif|for|endfor|block|endblock|extends|include|"
    r"render|section|assign|capture|endcapture|schema|set|macro|with|load|url|trans)\b[^%]{0,200}"
    r"-?%\}")
"""A server-side template block tag (Jinja/Django/Twig/Liquid) that reached the shopper."""
_TEMPLATE_VARIABLE = re.compile(r"\{\{-?\s*[A-Za-z_][\w.\[\]'\"]*\s*(\|[^{}]{0,80})?-?\}\}")
"""An unrendered ``{{ variable }}`` in the page's visible text."""
_HIDING = re.compile(r"<(/?)(script|style|template|textarea)\b|<!--|-->", re.IGNORECASE)
"""Where text a shopper does not see starts and ends (scripts, styles, templates, comments)."""
_CLIENT_TEMPLATES = re.compile(r"\s(v-[a-z:-]+|:[a-z-]+|ng-[a-z-]+|data-ng-[a-z-]+|data-v-[\w-]*|"
                               r"x-data|x-text|\[\[?[a-z]+\]?\])(?=[\s=>/])", re.IGNORECASE)
"""Attributes of client-side template frameworks (Vue, Angular, Alpine): their pages carry
``{{ }}`` on purpose until the browser renders them."""
_MAX_LEAK_CANDIDATES = 50


def _signature_at(text: str) -> tuple[str, int] | None:
    for name, anchors, pattern in ERROR_SIGNATURES:
        if any(anchor in text for anchor in anchors):
            match = pattern.search(text)
            if match is not None:
                return name, match.start()
    return None


def _hidden_ranges(text: str) -> list[tuple[int, int]]:
    """(start, end) of every script, style, template, textarea and comment, in one pass."""
    ranges: list[tuple[int, int]] = []
    closing: str | None = None
    start = 0
    for match in _HIDING.finditer(text):
        token = match.group(0).lower()
        if closing is None:
            if token == "<!--":
                closing, start = "-->", match.start()
            elif match.group(2) and not match.group(1):
                closing, start = "</" + match.group(2).lower(), match.start()
        elif token == closing or (closing != "-->" and token.startswith(closing)):
            ranges.append((start, match.end()))
            closing = None
    if closing is not None:
        ranges.append((start, len(text)))
    return ranges


def template_leak(text: str) -> str | None:
    """The raw template tag a page shows its shoppers (server-side rendering failed), if any:
    a ``{% block %}`` tag, or a ``{{ variable }}`` on a page without a client-side template
    framework, outside scripts, styles, templates and comments. Linear in the page's size."""
    if "{%" not in text and "{{" not in text:
        return None
    hidden: list[tuple[int, int]] | None = None
    client: bool | None = None
    for pattern in (_TEMPLATE_BLOCK, _TEMPLATE_VARIABLE):
        for n, match in enumerate(pattern.finditer(text)):
            if n >= _MAX_LEAK_CANDIDATES:
                break
            if hidden is None:
                hidden = _hidden_ranges(text)
            i = bisect.bisect_right(hidden, (match.start(), len(text))) - 1
            if i >= 0 and hidden[i][0] <= match.start() < hidden[i][1]:
                continue
            if pattern is _TEMPLATE_VARIABLE:
                if client is None:
                    client = _CLIENT_TEMPLATES.search(text) is not None
                if client:
                    return None
            return match.group(0)[:60]
    return None


def error_markers(*lists: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The extra error markers of a site and a check, together, without repeats."""
    return tuple(dict.fromkeys(m for markers in lists for m in markers if m))


def error_signature(text: str, extra: tuple[str, ...] | list[str] = ()) -> str | None:
    """What error page ``text`` shows, as a phrase: ``a Magento error``, ``a raw template tag
    '{{ product.name }}'``, ``the error marker 'Oops'`` (an ``extra`` marker); else None."""
    found = _signature_at(text)
    if found is not None:
        return f"a {found[0]} error"
    for marker in extra:
        if marker in text:
            return f"the error marker {marker!r}"
    leak = template_leak(text)
    if leak is not None:
        return f"a raw template tag {leak!r}"
    return None


def signature_excerpt(text: str, extra: tuple[str, ...] | list[str] = (),
                      chars: int = 300) -> str | None:
    """A scrubbed excerpt of ``text`` around the error it shows (from the top when none)."""
    found = _signature_at(text)
    at = found[1] if found is not None else -1
    for marker in extra if at < 0 else ():
        at = text.find(marker)
        if at >= 0:
            break
    if at < 0:
        leak = template_leak(text)
        at = text.find(leak) if leak is not None else -1
    return scrubbed_excerpt(text, max(0, at - 80), chars)


def parse_json(res: FetchResult) -> Any:
    """The body as JSON (``None`` when it is not JSON)."""
    try:
        return json.loads(res.body)
    except (ValueError, UnicodeDecodeError):
        return None


_UNREAD = object()


class Page:
    """One response read at most once each way: its text, HTML tree and JSON document are
    built on first use and shared by every assertion, extractor and method list that reads it
    (a checkout page judged by a selector, payment and shipping methods is parsed once)."""

    __slots__ = ("_doc", "_text", "_tree", "res")

    def __init__(self, res: FetchResult) -> None:
        self.res = res
        self._text: str | None = None
        self._tree: LexborHTMLParser | None = None
        self._doc: Any = _UNREAD

    def text(self) -> str:
        """The decoded body (``FetchResult.text``)."""
        if self._text is None:
            self._text = self.res.text()
        return self._text

    def tree(self) -> LexborHTMLParser:
        """The body parsed as HTML (``parse_html``: depth-guarded); callers must not modify it."""
        if self._tree is None:
            self._tree = parse_html(self.text())
        return self._tree

    def json(self) -> Any:
        """The body as JSON (``None`` when it is not JSON)."""
        if self._doc is _UNREAD:
            self._doc = parse_json(self.res)
        return self._doc


_MISSING = object()


def json_path_values(doc: Any, path: str) -> list[Any]:
    """Every value ``path`` selects in ``doc`` (``[*]`` fans out over lists)."""
    current: list[Any] = [doc]
    for part in parse_json_path(path):
        following: list[Any] = []
        for value in current:
            if part is None:
                if isinstance(value, list):
                    following.extend(value)
                elif isinstance(value, dict):
                    following.extend(value.values())
            elif isinstance(part, int):
                if isinstance(value, list) and -len(value) <= part < len(value):
                    following.append(value[part])
            elif isinstance(value, dict) and part in value:
                following.append(value[part])
        current = following
    return current


def scalar_text(value: Any) -> str:
    """A JSON value as a template variable: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def json_ld_objects(tree: LexborHTMLParser) -> list[dict[str, Any]]:
    """Every JSON object in the page's ``application/ld+json`` blocks (``@graph`` flattened)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            found.append(value)
            if "@graph" in value:
                walk(value["@graph"])

    for node in tree.css('script[type="application/ld+json"]'):
        try:
            walk(json.loads(node.text() or ""))
        except ValueError:
            continue
    return found


def _is_type(obj: dict[str, Any], name: str) -> bool:
    kind = obj.get("@type")
    return kind == name or (isinstance(kind, list) and name in kind)


def json_ld_count(tree: LexborHTMLParser) -> int:
    """Products on a page by schema.org: ItemList entries, else distinct Product objects."""
    objects = json_ld_objects(tree)
    lists = [o for o in objects if _is_type(o, "ItemList")]
    if lists:
        return sum(len(o.get("itemListElement") or []) for o in lists)
    keys = {str(o.get("@id") or o.get("url") or o.get("sku") or id(o))
            for o in objects if _is_type(o, "Product")}
    return len(keys)


def count_items(page: Page, counter: Counter) -> int | None:
    """Items in ``res`` counted ``counter``'s way (None: the response cannot be counted)."""
    if counter.header is not None:
        raw = page.res.headers.get(counter.header, "").strip()
        return int(raw) if raw.isdigit() else None
    if counter.json_path is not None:
        doc = page.json()
        return None if doc is None else len(json_path_values(doc, counter.json_path))
    if counter.regex is not None:
        return len(re.findall(counter.regex, page.text()))
    tree = page.tree()
    if counter.css is not None:
        return len(tree.css(counter.css))
    return json_ld_count(tree)


def css_values(tree: LexborHTMLParser, selector: str, attribute: str | None) -> list[str]:
    """Text (or ``attribute``) of every element ``selector`` matches in a parsed page."""
    values = []
    for node in tree.css(selector):
        value = node.attributes.get(attribute) if attribute else node.text(strip=True)
        if value is not None:
            values.append(value)
    return values
