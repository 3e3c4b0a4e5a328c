"""Ticket sinks: one module per tracker, and the registry from config ``type`` to adapter."""

from __future__ import annotations

from pydantic import BaseModel

from agent.sinks import alertmanager, email, github, jira, pagerduty, redmine, webhook, zendesk
from agent.sinks.base import SinkFactory

SINKS: dict[str, tuple[type[BaseModel], SinkFactory]] = {
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
