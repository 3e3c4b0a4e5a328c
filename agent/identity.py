"""Who is asking: the agent's name on every request it makes to a storefront.

Every HTTP request of the shared client stack (agent/httpclient.py) carries
``X-Storewatch-Agent: <agent.name>`` and a User-Agent that names the agent; a browser check adds
both to the requests its pages make to the monitored site's own origin only (third-party
origins get neither). A shop's access log then tells which agent of a fleet saw what, and the
demo store can fail for one agent only (``POST /_demo/faults {"agents": [...]}``).

``agent.user_agent`` may place the name with ``{agent}``; a User-Agent written without it gets
`` (agent NAME)`` appended, so the name is always there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the HTTP stack imports this module; the config schema is not needed there
    from agent.config.schema import AgentSettings, Config

IDENTITY_KEYS = ("name", "location", "user_agent")
"""The ``agent`` keys that make up who the agent is: fixed for the life of the process."""

AGENT_HEADER = "X-Storewatch-Agent"
"""The request header that names the agent (case-insensitive, as every HTTP header)."""
AGENT_PLACEHOLDER = "{agent}"
"""Where ``agent.user_agent`` wants the agent's name."""


def user_agent(settings: AgentSettings) -> str:
    """The User-Agent the agent sends: ``agent.user_agent`` with the agent's name in it."""
    return with_agent_name(settings.user_agent, settings.name)


def with_agent_name(template: str, name: str) -> str:
    """``template`` with ``{agent}`` replaced by ``name``, or `` (agent NAME)`` appended when the
    template has no ``{agent}``."""
    if AGENT_PLACEHOLDER in template:
        return template.replace(AGENT_PLACEHOLDER, name)
    return f"{template} (agent {name})"


def identified(headers: dict[str, str], agent: str) -> dict[str, str]:
    """A request's own ``headers`` (a check's or a step's) with the agent's identity kept: its
    ``X-Storewatch-Agent`` cannot be replaced, and a User-Agent of its own names the agent as
    ``agent.user_agent`` does (``{agent}``, or `` (agent NAME)`` appended)."""
    out = {k: v for k, v in headers.items() if k.lower() != AGENT_HEADER.lower()}
    for key, value in out.items():
        if key.lower() == "user-agent":
            out[key] = with_agent_name(value, agent)
    out[AGENT_HEADER] = agent
    return out


def keep_identity(new: Config, running: Config) -> tuple[Config, list[str]]:
    """``new`` with the running agent's name, location and User-Agent (a reload cannot change
    who the agent is: its open connections, metrics and observations would disagree), and the
    keys that were changed in ``new``."""
    changed = [k for k in IDENTITY_KEYS
               if getattr(new.agent, k) != getattr(running.agent, k)]
    if not changed:
        return new, []
    kept = new.agent.model_copy(update={k: getattr(running.agent, k) for k in changed})
    return new.model_copy(update={"agent": kept}), changed
