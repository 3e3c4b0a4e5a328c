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
                          "1 if the last run of the check passed (transport, HTTP status, "
                          "assertions), as blackbox_exporter's probe_success; findings about a "
                          "working check (slow, certificate expiring, resource pressure) keep "
                          "it 1: see storewatch_probe_worst_level.",
                          ("site", "check"))
PROBE_WORST_LEVEL = MetricDef("storewatch_probe_worst_level", "gauge",
                              "Most urgent support level among the last run's findings: 1 (L1) "
                              "... 4 (L4); 0 when it found nothing.", ("site", "check"))
PROBE_INTERVAL = MetricDef("storewatch_probe_interval_seconds", "gauge",
                           "Configured interval of the check: how often it should run.",
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
AGENT_INFO = MetricDef("storewatch_agent", "info",
                       "This agent: its agent.name, agent.location (empty: none) and version; "
                       "join it onto other series with group_left on instance and job.",
                       ("agent", "location", "version"))
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
OUTBOX_CLAIMS = MetricDef("storewatch_outbox_claims_total", "counter",
                          "Fleet: ticket actions this agent claimed for delivery, by outcome "
                          "(taken; taken_over: another agent's claim had run out, it died or "
                          "hung mid-delivery; lost: this agent's claim ran out before it "
                          "finished).", ("outcome",))
INCIDENTS_UNCONFIRMED = MetricDef("storewatch_incidents_unconfirmed", "gauge",
                                  "Fleet: failures confirmed from fewer locations than "
                                  "incidents.min_locations (no ticket), by site and level.",
                                  ("site", "level"))
OUTBOX_PENDING = MetricDef("storewatch_outbox_pending", "gauge",
                           "Ticket actions waiting for delivery.")
OUTBOX_OLDEST_AGE = MetricDef("storewatch_outbox_oldest_pending_age_seconds", "gauge",
                              "Age of the oldest ticket action waiting for delivery (0: none).")
OUTBOX_DEAD = MetricDef("storewatch_outbox_dead_letters", "gauge",
                        "Ticket actions given up as dead letters (a tracker refused them for "
                        "good); they stay until `storewatch tickets retry`.")
STATE_WRITABLE = MetricDef("storewatch_state_writable", "gauge",
                           "1 while incidents and the outbox are being saved to the incident "
                           "store, 0 while they cannot be (unwritable, disk full, database "
                           "unreachable).")
INCIDENT_ERRORS = MetricDef("storewatch_incident_errors_total", "counter",
                            "Agent-side errors of the incident consumer (a bug, a sink that "
                            "cannot be built); each is retried with backoff.")
INCIDENT_QUEUE_DROPPED = MetricDef("storewatch_incident_queue_dropped_total", "counter",
                                   "Non-L1 observations dropped because the incident queue was "
                                   "full (L1 ones are never dropped).")
INCIDENT_QUEUE_LENGTH = MetricDef("storewatch_incident_queue_length", "gauge",
                                  "Observations waiting for the incident engine; it grows while "
                                  "the state cannot be saved (database unreachable, disk full) "
                                  "and shrinks while the agent catches up.")
INCIDENT_COLLECTOR_SUCCESS = MetricDef("storewatch_incident_collector_success", "gauge",
                                       "1 if this scrape could read incidents and outbox from "
                                       "the store, 0 if the query failed.")
SCHEDULER_LAST_FIRED = MetricDef("storewatch_scheduler_last_fired_timestamp_seconds", "gauge",
                                 "When the scheduler last started a check (Unix time).")
SCHEDULER_STALLED = MetricDef("storewatch_scheduler_stalled", "gauge",
                              "1 when no check has started for 3 x the shortest interval: "
                              "checks have stopped (the watchdog is no longer pinged and "
                              "/healthz answers 503).")
SITE_WAIT_SECONDS = MetricDef("storewatch_site_wait_seconds_total", "counter",
                              "Seconds requests waited for one of the site's request slots "
                              "(per-site politeness limit).", ("site",))
SITE_IN_FLIGHT = MetricDef("storewatch_site_requests_in_flight", "gauge",
                           "Requests to the site in flight now (at most its max_in_flight).",
                           ("site",))
EVIDENCE_BYTES = MetricDef("storewatch_evidence_bytes", "gauge",
                           "Bytes of browser evidence files (screenshots, logs) in the state "
                           "directory's evidence folder (read at most once a minute).")
EVIDENCE_FILES = MetricDef("storewatch_evidence_files", "gauge",
                           "Browser evidence files in the state directory's evidence folder.")
EVIDENCE_PRUNED = MetricDef("storewatch_evidence_pruned_files_total", "counter",
                            "Evidence files deleted by pruning (incident resolved longer ago "
                            "than the retention, or the folder over its size cap).")

# --- fleet: agents sharing one store, placement of checks (agent/fleet/placement.py) ---

FLEET_AGENT_UP = MetricDef("storewatch_fleet_agent_up", "gauge",
                           "1 for each agent of the fleet whose heartbeat in the shared store is "
                           "recent (within 3 heartbeats), 0 for one gone silent in the last day; "
                           "every agent reports every agent it sees.", ("agent", "location"))
FLEET_AGENT_HEARTBEAT_AGE = MetricDef("storewatch_fleet_agent_heartbeat_age_seconds", "gauge",
                                      "Seconds since each agent's last heartbeat in the shared "
                                      "store, as this agent last read it.",
                                      ("agent", "location"))
FLEET_CHECK_RUNS = MetricDef("storewatch_fleet_check_runs_total", "counter",
                             "Runs this agent started, by check and placement (every, one): "
                             "which agent ran what.", ("agent", "site", "check", "placement"))
FLEET_LEASES_HELD = MetricDef("storewatch_fleet_leases_held", "gauge",
                              "placement: one checks whose lease this agent holds (it runs "
                              "them; the other agents stand by).", ("agent",))
FLEET_LEASE_LOSSES = MetricDef("storewatch_fleet_lease_losses_total", "counter",
                               "Leases of placement: one checks this agent held and found taken "
                               "by another agent (it had not renewed in time); it stops running "
                               "those checks.", ("agent",))
FLEET_UNCLAIMED_RUNS = MetricDef("storewatch_fleet_unclaimed_runs_total", "counter",
                                 "Runs of placement: one checks made without a lease because "
                                 "the shared store could not be reached (run anyway, so an L1 "
                                 "is not lost; other agents may run them too).", ("agent",))
FLEET_STORE_REACHABLE = MetricDef("storewatch_fleet_store_reachable", "gauge",
                                  "1 while this agent's heartbeats and lease claims reach the "
                                  "shared store, 0 while they fail.", ("agent",))
FLEET_NAME_CONFLICT = MetricDef("storewatch_fleet_name_conflict", "gauge",
                                "1 while another live process writes heartbeats under this "
                                "agent's name (agent.name, default the host name): give each "
                                "agent its own name.", ("agent",))

FLEET_METRICS: tuple[MetricDef, ...] = (
    FLEET_AGENT_UP, FLEET_AGENT_HEARTBEAT_AGE, FLEET_CHECK_RUNS, FLEET_LEASES_HELD,
    FLEET_LEASE_LOSSES, FLEET_UNCLAIMED_RUNS, FLEET_STORE_REACHABLE, FLEET_NAME_CONFLICT,
)

ALL: tuple[MetricDef, ...] = (
    PROBE_SUCCESS, PROBE_WORST_LEVEL, PROBE_INTERVAL, PROBE_DURATION, PROBE_STEP_DURATION,
    PROBE_HTTP_STATUS, PROBE_LAST_RUN, TLS_EXPIRY, PROBE_FINDINGS, CHECKS_CONFIGURED, PROBE_RUNS,
    FINDINGS_TOTAL, SCHEDULER_LATENESS, CONFIG_RELOAD_OK, CONFIG_RELOAD_TS, BUILD_INFO,
    AGENT_INFO, INCIDENTS_OPEN, INCIDENTS_OPENED, TICKET_DELIVERIES, OUTBOX_PENDING,
    OUTBOX_OLDEST_AGE, OUTBOX_CLAIMS, INCIDENTS_UNCONFIRMED, OUTBOX_DEAD, STATE_WRITABLE,
    INCIDENT_ERRORS, INCIDENT_QUEUE_DROPPED, INCIDENT_QUEUE_LENGTH,
    INCIDENT_COLLECTOR_SUCCESS, SCHEDULER_LAST_FIRED, SCHEDULER_STALLED, SITE_WAIT_SECONDS,
    SITE_IN_FLIGHT, EVIDENCE_BYTES, EVIDENCE_FILES, EVIDENCE_PRUNED,
)

# --- host: the server the agent runs on (agent/host/), read at scrape time ---

HOST_INFO = MetricDef("storewatch_host_info", "gauge",
                      "1 for the server this agent runs on, with the site it serves.",
                      ("site", "hostname"))
HOST_CPUS = MetricDef("storewatch_host_cpus", "gauge", "Logical CPUs of the server.")
HOST_CPU_SECONDS = MetricDef("storewatch_host_cpu_seconds_total", "counter",
                             "CPU time of the whole server by mode, summed over CPUs.",
                             ("mode",))
HOST_LOAD = MetricDef("storewatch_host_load_average", "gauge",
                      "System load average over 1, 5 and 15 minutes.", ("period",))
HOST_MEM_TOTAL = MetricDef("storewatch_host_memory_total_bytes", "gauge", "Physical memory.")
HOST_MEM_AVAILABLE = MetricDef("storewatch_host_memory_available_bytes", "gauge",
                               "Memory available to new work without swapping.")
HOST_SWAP_TOTAL = MetricDef("storewatch_host_swap_total_bytes", "gauge", "Swap space.")
HOST_SWAP_USED = MetricDef("storewatch_host_swap_used_bytes", "gauge", "Swap space in use.")
HOST_SWAP_IO = MetricDef("storewatch_host_swap_io_bytes_total", "counter",
                         "Bytes swapped in and out since boot.", ("direction",))
HOST_FS_SIZE = MetricDef("storewatch_host_filesystem_size_bytes", "gauge",
                         "Size of each measured filesystem.", ("mountpoint", "fstype"))
HOST_FS_AVAIL = MetricDef("storewatch_host_filesystem_avail_bytes", "gauge",
                          "Space available to unprivileged users.", ("mountpoint", "fstype"))
HOST_FS_INODES = MetricDef("storewatch_host_filesystem_inodes", "gauge",
                           "Inodes of each measured filesystem (absent when it has no limit).",
                           ("mountpoint", "fstype"))
HOST_FS_INODES_FREE = MetricDef("storewatch_host_filesystem_inodes_free", "gauge",
                                "Free inodes of each measured filesystem.",
                                ("mountpoint", "fstype"))
HOST_NET_BYTES = MetricDef("storewatch_host_network_bytes_total", "counter",
                           "Bytes through each network interface.", ("device", "direction"))
HOST_DISK_BYTES = MetricDef("storewatch_host_disk_bytes_total", "counter",
                            "Bytes read from and written to each disk.", ("device", "direction"))
HOST_SERVICE_UP = MetricDef("storewatch_host_service_up", "gauge",
                            "1 if the service group has at least its minimum of processes.",
                            ("service",))
HOST_SERVICE_PROCESSES = MetricDef("storewatch_host_service_processes", "gauge",
                                   "Processes matched by the service group.", ("service",))
HOST_SERVICE_CPU = MetricDef("storewatch_host_service_cpu_seconds_total", "counter",
                             "CPU time (user + system) of the group's current processes.",
                             ("service",))
HOST_SERVICE_RSS = MetricDef("storewatch_host_service_resident_memory_bytes", "gauge",
                             "Resident memory of the group's processes.", ("service",))
HOST_COLLECTOR_SUCCESS = MetricDef("storewatch_host_collector_success", "gauge",
                                   "1 if the host reading finished within its deadline.",
                                   ("collector",))
HOST_COLLECTOR_DURATION = MetricDef("storewatch_host_collector_duration_seconds", "gauge",
                                    "How long the host reading took in this scrape.",
                                    ("collector",))
MAIL_QUEUE_MESSAGES = MetricDef("storewatch_mail_queue_messages", "gauge",
                                "Messages in the local MTA's queue at the last check.")
MAIL_QUEUE_OLDEST = MetricDef("storewatch_mail_queue_oldest_age_seconds", "gauge",
                              "Age of the oldest queued message (absent when unknown or empty).")
HEARTBEAT_LAST_SUCCESS = MetricDef("storewatch_heartbeat_last_success_timestamp_seconds",
                                   "gauge", "When the outbound heartbeat last got a 2xx.")

HOST_METRICS: tuple[MetricDef, ...] = (
    HOST_INFO, HOST_CPUS, HOST_CPU_SECONDS, HOST_LOAD, HOST_MEM_TOTAL, HOST_MEM_AVAILABLE,
    HOST_SWAP_TOTAL, HOST_SWAP_USED, HOST_SWAP_IO, HOST_FS_SIZE, HOST_FS_AVAIL, HOST_FS_INODES,
    HOST_FS_INODES_FREE, HOST_NET_BYTES, HOST_DISK_BYTES, HOST_SERVICE_UP,
    HOST_SERVICE_PROCESSES, HOST_SERVICE_CPU, HOST_SERVICE_RSS, HOST_COLLECTOR_SUCCESS,
    HOST_COLLECTOR_DURATION, MAIL_QUEUE_MESSAGES, MAIL_QUEUE_OLDEST, HEARTBEAT_LAST_SUCCESS,
)
ALL = (*ALL, *FLEET_METRICS, *HOST_METRICS)


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
