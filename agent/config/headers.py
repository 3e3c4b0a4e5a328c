"""Configured HTTP headers: names are tokens, values carry no CR, LF or NUL.

A line break in a header value would let the config (or a ``${VAR}`` it pulls in) inject
headers or a second request into the agent's traffic; ``validate`` names the key instead.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from agent.config.loader import ValueErrorAt

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN = re.compile(r"[\r\n\0]")


def _valid_headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _TOKEN.fullmatch(name):
            raise ValueErrorAt((name,), f"{name!r} is not a valid HTTP header name")
        if _FORBIDDEN.search(text):
            raise ValueErrorAt((name,), "header value contains a line break (CR/LF) or NUL, "
                               "which would inject headers into the request")
    return value


HeaderMap = Annotated[dict[str, str], AfterValidator(_valid_headers)]
"""Request headers from the config, checked for header injection."""


def _agent_header_is_the_agents(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if name.lower() == "x-storewatch-agent":
            raise ValueErrorAt((name,), "X-Storewatch-Agent is sent by the agent itself "
                               "(agent.name): remove it here")
    return value


ProbeHeaderMap = Annotated[HeaderMap, AfterValidator(_agent_header_is_the_agents)]
"""Headers of a check's own requests: as ``HeaderMap``, and ``X-Storewatch-Agent`` is the agent's
(a check cannot replace or drop it; agent/identity.py)."""
