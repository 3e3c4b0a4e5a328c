"""The nesting guard in front of the HTML parser (agent/probes/html.py)."""

from __future__ import annotations

import pytest

from agent.probes.html import MAX_HTML_DEPTH, html_depth_exceeds

DEEP = MAX_HTML_DEPTH + 1


@pytest.mark.parametrize(
    ("page", "too_deep"),
    [
        ("<html><body>" + "<div>" * DEEP, True),
        ("<html><body>" + "<div>" * (MAX_HTML_DEPTH - 5), False),
        ("<section><span>" * DEEP, True),
        ("<div>x</div>" * 50_000, False),
        ("<ul>" + "<li>item" * 50_000 + "</ul>", False),
        ("<table>" + "<tr><td>cell" * 20_000 + "</table>", False),
        ("<p>" + "<br><img src='a.png'><input/>" * 20_000, False),
        ("<div/>" * 50_000, False),
        ("<" * 50_000, False),
        ("<DIV class='a'>" * DEEP, True),
    ],
    ids=["unclosed-divs", "just-under", "mixed-unclosed", "closed-siblings", "unclosed-li",
         "unclosed-cells", "void-elements", "self-closing", "bare-angles", "upper-case"],
)
def test_depth_estimate(page: str, too_deep: bool) -> None:
    assert html_depth_exceeds(page) is too_deep
