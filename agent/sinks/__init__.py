"""Ticket sinks: ``SINKS`` maps a config ``type`` to its config model and factory.

To add a sink: define its config model (subclass ``agent.sinks.settings.SinkSettings`` with
``type: Literal["<name>"]``) and a factory ``(config, SinkBuildContext) -> TicketSink``, then add
one line below. ``SinkConfig`` (the discriminated union used by the config schema) is built from
this table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from agent.sinks import alertmanager, email, github, jira, pagerduty, redmine, webhook, zendesk
from agent.sinks.base import SinkBuildContext, SinkFactory, TicketSink
from agent.sinks.config import SinkModel
from agent.sinks.sqlite import SqliteSinkConfig, build_sqlite

SINKS: dict[str, tuple[type[SinkModel], SinkFactory]] = {
    "sqlite": (SqliteSinkConfig, build_sqlite),
    "webhook": (webhook.WebhookConfig, webhook.build),
    "email": (email.EmailConfig, email.build),
    "jira": (jira.JiraConfig, jira.build),
    "redmine": (redmine.RedmineConfig, redmine.build),
    "zendesk": (zendesk.ZendeskConfig, zendesk.build),
    "github": (github.GitHubConfig, github.build),
    "pagerduty": (pagerduty.PagerDutyConfig, pagerduty.build),
    "alertmanager": (alertmanager.AlertmanagerConfig, alertmanager.build),
}
"""Config ``type`` → (config model, factory)."""

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
