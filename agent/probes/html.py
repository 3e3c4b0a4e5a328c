"""Guards for parsing untrusted HTML: a storefront can serve a page no parser should be handed.

lexbor (selectolax) builds and walks deep trees in super-linear time: 20,000 unclosed ``<div>``
took 0.5 s, 400,000 (2 MB, under the body cap) took 520 s, all of it blocking the event loop and
every other check. Browsers cap tree depth (Blink at 512); we refuse to parse beyond
``MAX_HTML_DEPTH`` and report the page instead.
"""

from __future__ import annotations

import re

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
    if text.count("<") <= limit:
        return False
    depth = 0
    for match in _TAG.finditer(text):
        closing, name, self_closing = match.groups()
        if closing:
            depth = max(0, depth - 1)
        elif not self_closing and name.lower() not in _NO_NESTING:
            depth += 1
            if depth > limit:
                return True
    return False
