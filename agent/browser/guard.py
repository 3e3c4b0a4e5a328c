"""Refusal rules that keep a browser journey from ever placing an order.

The same rules as the step checks (``agent.config.schema._ORDER_PLACING``) plus what a page can
do on its own: every non-GET request the page makes whose URL places an order or takes a payment
is aborted before it leaves the browser, and a click on a button or link whose label, name or
form says "place order" (or a submit button of such a form) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent.config.schema import _ORDER_PLACING

_BROWSER_ORDER_PLACING = (
    *_ORDER_PLACING,
    re.compile(r"/(api/)?orders?(/|$|\?)", re.IGNORECASE),
    re.compile(r"/checkout/(submit|place|complete|confirm)", re.IGNORECASE),
    re.compile(r"payment[-_]?intents?|/(capture|confirm)[-_]?payment|/payments?/(capture|confirm"
               r"|submit|authori[sz]e)", re.IGNORECASE),
)
ORDER_URL_FILTER = re.compile("|".join(f"(?:{p.pattern})" for p in _BROWSER_ORDER_PLACING),
                              re.IGNORECASE)
"""URLs worth intercepting at all (a superset of :func:`places_order`'s, any method): every
other request goes on without a round trip through the agent."""
_ORDER_LABEL = re.compile(
    r"place\s*(my\s*)?order|complete\s*(my\s*)?(order|purchase)|submit\s*order|confirm\s*order"
    r"|order\s*now|buy\s*now|pay\s*now|purchase\s*now|pay\s*\$|zahlungspflichtig|jetzt\s*kaufen"
    r"|commander|placeorder|place-order|place_order",
    re.IGNORECASE)

DESCRIBE_ELEMENT_JS = """el => {
  const form = el.form || el.closest('form');
  return {
    tag: el.tagName.toLowerCase(),
    type: (el.getAttribute('type') || '').toLowerCase(),
    label: [el.innerText, el.value, el.getAttribute('aria-label'), el.getAttribute('title'),
            el.id, el.getAttribute('name'), el.className,
            el.getAttribute('data-action')].filter(Boolean).join(' ').slice(0, 500),
    href: el.getAttribute('href') || '',
    form_action: form ? (form.getAttribute('action') || '') : '',
    form_label: form ? [form.id, form.getAttribute('name'), form.className]
                         .filter(Boolean).join(' ') : '',
  };
}"""
"""Page-side description of an element about to be clicked (for :func:`click_refusal`)."""


def places_order(method: str, url: str) -> bool:
    """Whether a request the page makes would place an order or take a payment."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return False
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    return any(p.search(target) for p in _BROWSER_ORDER_PLACING)


def click_refusal(element: Mapping[str, str]) -> str | None:
    """Why clicking this element (as ``DESCRIBE_ELEMENT_JS`` saw it) is refused, or None."""
    label = element.get("label", "")
    if _ORDER_LABEL.search(label):
        return f"its label {label.strip()[:60]!r} places an order"
    href = element.get("href", "")
    if href and _ORDER_LABEL.search(href):
        return f"it links to {href[:80]!r}, which places an order"
    submits = element.get("tag") in ("button", "input") and element.get("type") in ("", "submit")
    if submits and element.get("form_action", "") and places_order(
            "POST", element["form_action"]):
        return f"it submits a form to {element['form_action'][:80]!r}, which places an order"
    if submits and _ORDER_LABEL.search(element.get("form_label", "")):
        return f"it submits the form {element['form_label'][:60]!r}, which places an order"
    return None
