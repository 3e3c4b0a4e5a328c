"""Ticket sinks: ``SINKS`` maps a config ``type`` to its config model and factory.

To add a sink: define its config model (subclass ``agent.sinks.config.SinkModel`` with
``type: Literal["<name>"]``) and a factory ``(config, SinkBuildContext) -> TicketSink``, then add
one line below. ``SinkConfig`` (the discriminated union used by the config schema) is built from
this table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from agent.sinks.base import SinkBuildContext, TicketSink
from agent.sinks.config import SinkModel
from agent.sinks.sqlite import SqliteSinkConfig, build_sqlite

SinkFactory = Callable[[Any, SinkBuildContext], TicketSink]

SINKS: dict[str, tuple[type[SinkModel], SinkFactory]] = {
    "sqlite": (SqliteSinkConfig, build_sqlite),
}

DEFAULT_SINK = "sqlite"
"""Name (and type) of the sink used when the config defines none."""

if TYPE_CHECKING:
    SinkConfig = SinkModel
else:
    SinkConfig = Annotated[Union[tuple(model for model, _ in SINKS.values())],  # noqa: UP007
                           Field(discriminator="type")]


def build_sink(config: SinkModel, context: SinkBuildContext) -> TicketSink:
    """The sink ``config`` describes."""
    _, factory = SINKS[config.type]
    return factory(config, context)
