"""Guards for parsing untrusted HTML: a storefront can serve a page no parser should be handed.

lexbor (selectolax) builds and walks deep trees in super-linear time: 20,000 unclosed ``<div>``
took 0.5 s, 400,000 (2 MB, under the body cap) took 520 s, all of it blocking the event loop and
every other check. Browsers cap tree depth (Blink at 512); we refuse to parse beyond
``MAX_HTML_DEPTH`` and report the page instead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser

MAX_HTML_DEPTH = 2048
"""Deepest element nesting a page may have before it is judged without parsing (lexbor: ~3 ms)."""

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
_NO_NESTING = frozenset({
    # void elements: never have children
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
    # end tag optional: the parser closes them implicitly, so unclosed ones do not nest
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
    "colgroup", "caption", "rb", "rt", "rp",
})


def html_depth_exceeds(text: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """Whether the page's tag nesting (open minus closed tags) goes deeper than ``limit``; an
    estimate that errs on the deep side, linear in the page size."""
    return _too_deep_at(text, limit) is not None


def _too_deep_at(text: str, limit: int) -> int | None:
    """Offset of the tag that first nests deeper than ``limit``, or None."""
    if text.count("<") <= limit:
        return None
    depth = 0
    for match in _TAG.finditer(text):
        closing, name, self_closing = match.groups()
        if closing:
            depth = max(0, depth - 1)
        elif not self_closing and name.lower() not in _NO_NESTING:
            depth += 1
            if depth > limit:
                return match.start()
    return None


def parse_html(text: str) -> LexborHTMLParser:
    """Parse an untrusted page; past ``MAX_HTML_DEPTH`` only the part before the too-deep tag
    is parsed, so no page can block the event loop (what is cut off cannot match a selector)."""
    # Imported on first use: 1.7 MiB of RSS an agent without HTML checks never needs.
    from selectolax.lexbor import LexborHTMLParser

    cut = _too_deep_at(text, MAX_HTML_DEPTH)
    return LexborHTMLParser(text if cut is None else text[:cut])
