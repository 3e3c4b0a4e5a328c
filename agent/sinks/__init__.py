"""Ticket sinks: ``SINKS`` maps a config ``type`` to the module that implements it.

A sink module defines its config model as ``CONFIG`` (a subclass of
``agent.sinks.settings.SinkSettings`` with ``type: Literal["<name>"]``) and a factory
``build(config, SinkBuildContext) -> TicketSink``. To add a sink, write that module and add one
line below. Modules are imported only when a config uses their type: an agent with the default
``sqlite`` sink never loads the HTTP, SMTP and tracker adapters (start-up time and memory,
issue 6's footprint goal).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, cast

from agent.config.tagged import TaggedModels
from agent.sinks.base import SinkBuildContext, SinkFactory, TicketSink
from agent.sinks.config import SinkModel

SINKS: dict[str, str] = {
    "sqlite": "agent.sinks.sqlite",
    "webhook": "agent.sinks.webhook",
    "email": "agent.sinks.email",
    "jira": "agent.sinks.jira",
    "redmine": "agent.sinks.redmine",
    "zendesk": "agent.sinks.zendesk",
    "github": "agent.sinks.github",
    "pagerduty": "agent.sinks.pagerduty",
    "alertmanager": "agent.sinks.alertmanager",
}
"""Config ``type`` → the module defining ``CONFIG`` and ``build`` for it."""

DEFAULT_SINK = "sqlite"
"""Name (and type) of the sink used when the config defines none."""

SINK_MODELS = TaggedModels("type", {name: f"{module}:CONFIG" for name, module in SINKS.items()})
"""Validates one ``sinks:`` entry with the model its ``type`` names (imported on first use)."""

if TYPE_CHECKING:
    SinkConfig = SinkModel
else:
    SinkConfig = Annotated[SinkModel, SINK_MODELS]


def sink_model(sink_type: str) -> type[SinkModel]:
    """The config model of ``sink_type`` (KeyError when there is no such sink)."""
    return cast("type[SinkModel]", SINK_MODELS.model(sink_type))


def sink_factory(sink_type: str) -> SinkFactory:
    """The ``build`` factory of ``sink_type`` (KeyError when there is no such sink)."""
    factory: SinkFactory = importlib.import_module(SINKS[sink_type]).build
    return factory


def build_sink(config: SinkModel, context: SinkBuildContext) -> TicketSink:
    """The sink ``config`` describes."""
    return sink_factory(config.type)(config, context)
