"""Every metric storewatch exports: name, type, help and labels, in one place.

Labels are bounded by the config (site, check, step) or by closed vocabularies (level, kind,
outcome); never by URLs or error text. Dashboards and rules are tested against this catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One exported metric family."""

    name: str
    type: Literal["gauge", "counter", "histogram", "info"]
    help: str
    labels: tuple[str, ...] = ()


PROBE_SUCCESS = MetricDef("storewatch_probe_success", "gauge",
                          "1 if the last run of the check found nothing, else 0.",
                          ("site", "check"))
PROBE_DURATION = MetricDef("storewatch_probe_duration_seconds", "gauge",
                           "Wall time of the last run of the check.", ("site", "check"))
PROBE_STEP_DURATION = MetricDef("storewatch_probe_step_duration_seconds", "gauge",
                                "Wall time of each step of the last run.",
                                ("site", "check", "step"))
PROBE_HTTP_STATUS = MetricDef("storewatch_probe_http_status_code", "gauge",
                              "HTTP status of the last response (absent when none came).",
                              ("site", "check"))
PROBE_LAST_RUN = MetricDef("storewatch_probe_last_run_timestamp_seconds", "gauge",
                           "When the last run of the check started (Unix time).",
                           ("site", "check"))
TLS_EXPIRY = MetricDef("storewatch_tls_cert_expiry_timestamp_seconds", "gauge",
                       "Expiry of the site's TLS certificate as last seen (Unix time).",
                       ("site", "check"))
PROBE_FINDINGS = MetricDef("storewatch_probe_findings", "gauge",
                           "Findings of the last run of the check, by support level.",
                           ("site", "check", "level"))
CHECKS_CONFIGURED = MetricDef("storewatch_checks_configured", "gauge",
                              "Checks scheduled from the current config.")
PROBE_RUNS = MetricDef("storewatch_probe_runs_total", "counter",
                       "Runs of each check by outcome (success, failure, deadline, skipped).",
                       ("site", "check", "outcome"))
FINDINGS_TOTAL = MetricDef("storewatch_findings_total", "counter",
                           "Findings reported, by site, kind and support level.",
                           ("site", "kind", "level"))
SCHEDULER_LATENESS = MetricDef("storewatch_scheduler_lateness_seconds", "histogram",
                               "How late each run started against its scheduled time.")
CONFIG_RELOAD_OK = MetricDef("storewatch_config_last_reload_successful", "gauge",
                             "1 if the last config (re)load succeeded.")
CONFIG_RELOAD_TS = MetricDef("storewatch_config_last_reload_success_timestamp_seconds", "gauge",
                             "When the config was last loaded successfully (Unix time).")
BUILD_INFO = MetricDef("storewatch_build", "info", "Version of the running agent.",
                       ("version", "python_version"))
INCIDENTS_OPEN = MetricDef("storewatch_incidents_open", "gauge",
                           "Open incidents by site and support level (none: agent offline).",
                           ("site", "level"))
INCIDENTS_OPENED = MetricDef("storewatch_incidents_opened_total", "counter",
                             "Incidents confirmed open, by site and support level.",
                             ("site", "level"))
TICKET_DELIVERIES = MetricDef("storewatch_ticket_deliveries_total", "counter",
                              "Ticket delivery attempts by sink, action (open, update, resolve) "
                              "and outcome (delivered, retry, dead).",
                              ("sink", "action", "outcome"))
OUTBOX_PENDING = MetricDef("storewatch_outbox_pending", "gauge",
                           "Ticket actions waiting for delivery.")
OUTBOX_OLDEST_AGE = MetricDef("storewatch_outbox_oldest_pending_age_seconds", "gauge",
                              "Age of the oldest ticket action waiting for delivery (0: none).")

ALL: tuple[MetricDef, ...] = (
    PROBE_SUCCESS, PROBE_DURATION, PROBE_STEP_DURATION, PROBE_HTTP_STATUS, PROBE_LAST_RUN,
    TLS_EXPIRY, PROBE_FINDINGS, CHECKS_CONFIGURED, PROBE_RUNS, FINDINGS_TOTAL,
    SCHEDULER_LATENESS, CONFIG_RELOAD_OK, CONFIG_RELOAD_TS, BUILD_INFO,
    INCIDENTS_OPEN, INCIDENTS_OPENED, TICKET_DELIVERIES, OUTBOX_PENDING, OUTBOX_OLDEST_AGE,
)

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def exposed_names(metric: MetricDef) -> tuple[str, ...]:
    """The sample names a family shows up as in the text exposition."""
    match metric.type:
        case "counter":
            return (metric.name,)
        case "histogram":
            return tuple(metric.name + s for s in ("_bucket", "_sum", "_count"))
        case "info":
            return (metric.name + "_info",)
        case _:
            return (metric.name,)
