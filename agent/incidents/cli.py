"""``storewatch incidents|tickets|silence``: read (and, for resolve and silences, write) the store.

Each command finds the incident store from ``--state URL_OR_PATH`` (a ``postgresql://`` URL or
a SQLite file), ``--state-dir DIR`` or the config (``-c FILE``: ``agent.state``, else
``agent.state_dir``), so it works from any host that reaches a shared PostgreSQL store; reads are
safe while agents run (SQLite WAL; PostgreSQL MVCC).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.config.durations import parse_duration
from agent.config.schema import DEFAULT_CONFIG_PATH
from agent.config.secrets import scrub
from agent.errors import ConfigError, StateError
from agent.evidence import evidence_files, evidence_url
from agent.incidents.engine import manual_resolve
from agent.sinks.render import seen_from
from agent.state.database import is_driver_error, is_postgres_url, redacted, state_location
from agent.state.store import IncidentRecord, OutboxState, Store, iso
from classifier import Phase

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_DEAD_LETTERS = 4
"""``tickets list``: at least one ticket action is a dead letter (a tracker refused it)."""


def command_help(description: str, statuses: str, example: str) -> dict[str, Any]:
    """``add_parser`` keyword arguments: the command's paragraph, exit statuses and example."""
    return {"description": description,
            "epilog": f"exit status:\n{statuses}\n\nexample:\n{example}",
            "formatter_class": argparse.RawDescriptionHelpFormatter}


STATE_STATUSES = ("  1  the state directory or database cannot be used\n"
                  "  2  bad usage or an invalid config")


def add_parsers(sub: Any) -> None:
    """Add the ``incidents``, ``tickets`` and ``silence`` commands to the main parser."""

    def state(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("-c", "--config", default=DEFAULT_CONFIG_PATH,
                         help=f"config file whose state to read (default {DEFAULT_CONFIG_PATH})")
        where = cmd.add_mutually_exclusive_group()
        where.add_argument("--state", metavar="URL_OR_PATH",
                           help="incident store: postgresql://USER@HOST/DB (password from "
                           "PGPASSWORD or ~/.pgpass) or a SQLite file (instead of -c)")
        where.add_argument("--state-dir", type=Path, help="state directory (instead of -c)")

    incidents = sub.add_parser("incidents", help="list, show or resolve incidents",
                               description="Incidents in the state directory: list, show, "
                               "resolve by hand. `storewatch incidents ACTION --help` for each.")
    inc = incidents.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = inc.add_parser("list", help="incidents, newest first", **command_help(
        "List incidents, newest first: level, site, check, kind, state and tickets. Safe while "
        "the daemon runs.", "  0  listed\n" + STATE_STATUSES,
        "  storewatch incidents list --open -c /etc/storewatch/config.yaml"))
    state(listing)
    listing.add_argument("--open", action="store_true", help="only open incidents")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    show = inc.add_parser("show", help="one incident with its history and tickets",
                          **command_help(
        "Show one incident: its summary, evidence (a browser check's screenshot and log with "
        "their paths, and URLs when -c sets incidents.evidence.url), history (opened, "
        "escalated, reminded, resolved) and the state of each ticket.",
        "  0  shown\n" + STATE_STATUSES,
        "  storewatch incidents show 17 --json --state-dir /var/lib/storewatch"))
    state(show)
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="one JSON document")
    resolve = inc.add_parser("resolve", help="resolve an incident by hand (tickets too)",
                             **command_help(
        "Resolve an active incident by hand; its tickets get resolved through the outbox by "
        "the running daemon. If the problem persists, a new incident opens.",
        "  0  resolved\n  1  no such active incident, or the state cannot be written\n"
        "  2  bad usage or an invalid config",
        "  storewatch incidents resolve 17 -c /etc/storewatch/config.yaml"))
    state(resolve)
    resolve.add_argument("id", type=int)

    tickets = sub.add_parser("tickets", help="tickets and their delivery state",
                             description="Tickets and their delivery: list (exit 4 on dead "
                             "letters), retry dead letters. `storewatch tickets ACTION --help`.")
    tick = tickets.add_subparsers(dest="action", required=True, metavar="ACTION")
    tlist = tick.add_parser("list", help="tickets, delivery state and dead letters",
                            **command_help(
        "Every ticket the sinks hold, its delivery state, and every dead letter (a ticket "
        "action a tracker refused for good: bad token, deleted project...). Cron or CI can "
        "watch the exit status.",
        "  0  no dead letters\n  4  at least one dead letter (fix the cause, then `storewatch "
        "tickets retry`)\n" + STATE_STATUSES,
        "  storewatch tickets list -c /etc/storewatch/config.yaml || mail-admins"))
    state(tlist)
    tlist.add_argument("--json", action="store_true", help="one JSON document")
    tretry = tick.add_parser(
        "retry", help="deliver dead letters again (after fixing the tracker's cause)",
        **command_help(
            "Queue dead letters for delivery again, in their original order (an open before "
            "its resolve); the running daemon delivers them within a second.",
            "  0  queued (or nothing to queue)\n" + STATE_STATUSES,
            "  storewatch tickets retry -c /etc/storewatch/config.yaml        # all\n"
            "  storewatch tickets retry --state-dir /var/lib/storewatch 17 18  # by id"))
    state(tretry)
    tretry.add_argument("ids", type=int, nargs="*", metavar="ID",
                        help="dead letter ids (`tickets list`); default: all")

    silence = sub.add_parser("silence", help="silence ticketing for a while (deploys)",
                             description="Silences: no tickets for a site or check for a while "
                             "(deploys). `storewatch silence ACTION --help` for each.")
    sil = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sil.add_parser("add", help="record findings without tickets until it expires",
                         **command_help(
        "Silence ticketing for a site (or one check of it, or everything) for a while, e.g. "
        "during a deploy: findings and incidents are still recorded, no ticket is opened.",
        "  0  added (prints its id and end)\n" + STATE_STATUSES,
        "  storewatch silence add --site acme --duration 30m --reason 'PHP upgrade'"))
    state(add)
    add.add_argument("--site", help="only this site (default: every site)")
    add.add_argument("--check", help="only this check of the site")
    add.add_argument("--duration", required=True, help="e.g. 30m, 2h")
    add.add_argument("--reason", default="silenced from the command line")
    slist = sil.add_parser("list", help="active silences", **command_help(
        "List the silences in force (ticketing paused): id, site, check, end and reason.",
        "  0  listed\n" + STATE_STATUSES, "  storewatch silence list --json"))
    state(slist)
    slist.add_argument("--json", action="store_true", help="one JSON document")
    remove = sil.add_parser("remove", help="end a silence now", **command_help(
        "End a silence before its time; tickets are opened again for new incidents.",
        "  0  removed\n  1  no such silence, or the state cannot be written\n"
        "  2  bad usage or an invalid config", "  storewatch silence remove 3"))
    state(remove)
    remove.add_argument("id", type=int)


def _location(args: argparse.Namespace) -> str | Path:
    """The store the command uses: ``--state``, ``--state-dir`` or the config's."""
    if args.state is not None:
        from agent.config.schema import check_state

        try:
            checked = check_state(args.state)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--state") from None
        return state_location(checked, Path("."))
    if args.state_dir is not None:
        return Path(args.state_dir)
    from agent.service import load

    return load(args.config).agent.store_location


def dispatch(args: argparse.Namespace) -> int:
    """Run an ``incidents``/``tickets``/``silence`` command; returns the exit status."""
    location = _location(args)
    where = redacted(str(location)) if is_postgres_url(location) else location
    try:
        return _run(Store.open_existing(location), args)
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        raise StateError(f"cannot use the incident store {where}: "
                         f"{scrub(' '.join(str(exc).split()))}") from None


def _run(store: Store, args: argparse.Namespace) -> int:
    try:
        match args.command, args.action:
            case "incidents", "list":
                return _list(store, args.open, args.json)
            case "incidents", "show":
                return _show(store, args.id, args.json, *_evidence_place(args))
            case "incidents", "resolve":
                if not manual_resolve(store, args.id, datetime.now(UTC)):
                    raise StateError(f"incident #{args.id} does not exist or is not active")
                print(f"incident #{args.id} resolved")
                return EXIT_OK
            case "tickets", "list":
                return _tickets(store, args.json)
            case "tickets", "retry":
                queued = store.retry_dead(datetime.now(UTC), args.ids)
                print(f"{queued} dead letter(s) queued for delivery again")
                return EXIT_OK
            case "silence", _:
                return _silence(store, args)
    finally:
        store.close()
    raise AssertionError(args.command)


def ticket_rows(store: Store, incident_id: int | None = None) -> list[dict[str, Any]]:
    """One row per (incident, sink) a ticket was asked of: tracker id, state and delivery."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for entry in store.outbox():
        if incident_id is not None and entry.incident_id != incident_id:
            continue
        key = (entry.incident_id, entry.sink)
        row = rows.setdefault(key, {"incident": entry.incident_id, "sink": entry.sink,
                                    "external_id": None, "url": None, "state": "pending",
                                    "delivery": "delivered", "pending_actions": 0,
                                    "dead_letters": 0, "last_error": None})
        if entry.state is OutboxState.PENDING:
            row["pending_actions"] += 1
            row["delivery"] = "pending" if row["delivery"] != "dead" else "dead"
        elif entry.state is OutboxState.DEAD:
            row["dead_letters"] += 1
            row["delivery"] = "dead"
        if entry.last_error:
            row["last_error"] = entry.last_error
    for (incident, sink), row in rows.items():
        ticket = store.ticket(incident, sink)
        if ticket is not None:
            row.update(external_id=ticket.external_id, url=ticket.url, state=ticket.state)
        elif row["dead_letters"]:
            row["state"] = "dead"
    return sorted(rows.values(), key=lambda r: (r["incident"], r["sink"]))


def shown_state(record: IncidentRecord) -> str:
    """pending, unconfirmed (fleet: confirmed from too few locations), open, resolved, or
    ``discarded``: passed before it was confirmed (never open)."""
    if record.state is Phase.RESOLVED and record.opened_at is None:
        return "discarded"
    return record.status


def incident_json(store: Store, record: IncidentRecord) -> dict[str, Any]:
    """An incident as ``incidents list --json`` shows it."""
    return {
        "id": record.id, "site": record.site, "check": record.check, "kind": record.kind.value,
        "level": int(record.level) if record.level is not None else None,
        "state": shown_state(record), "flapping": record.flapping,
        "opened_at": iso(record.opened_at), "resolved_at": iso(record.resolved_at),
        "first_seen": iso(record.first_seen), "last_seen": iso(record.last_seen),
        "occurrences": record.occurrences, "summary": scrub(record.summary),
        "fingerprint": record.fingerprint, "silenced": record.silenced,
        "tickets": [{"sink": t["sink"], "external_id": t["external_id"], "state": t["state"]}
                    for t in ticket_rows(store, record.id)],
    }


def _list(store: Store, open_only: bool, as_json: bool) -> int:
    records = store.incidents(open_only=open_only)
    if as_json:
        print(json.dumps({"incidents": [incident_json(store, r) for r in records]}, indent=2))
        return EXIT_OK
    rows = [("ID", "STATE", "LEVEL", "SITE", "CHECK", "KIND", "OPENED", "TICKETS")]
    for r in records:
        tickets = ", ".join(f"{t['sink']}:{t['external_id'] or t['state']}"
                            for t in ticket_rows(store, r.id))
        state = shown_state(r) + (" (flapping)" if r.flapping else "")
        if r.silenced and not tickets:
            tickets = "not ticketed: " + r.silenced
        rows.append((str(r.id), state, str(r.level) if r.level else "--", r.site, r.check,
                     r.kind.value, iso(r.opened_at) or "-", tickets or "-"))
    print(_table(rows))
    return EXIT_OK


def _evidence_place(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """``incidents.evidence.url`` and the state directory of the config; with ``--state-dir``
    or ``--state`` no config is read (no URL; a SQLite file's folder is its state directory)."""
    if args.state_dir is not None:
        return None, Path(args.state_dir)
    if args.state is not None:
        location = _location(args)
        return None, location.parent if isinstance(location, Path) else None
    from agent.service import load

    config = load(args.config)
    return config.incidents.evidence.url, config.agent.state_dir


def evidence_rows(record: IncidentRecord, state_dir: Path | None,
                  base_url: str | None) -> list[dict[str, Any]]:
    """The incident's evidence files: label, path on the agent host, URL, still on disk."""
    return [{"label": f.label, "path": str(f.path), "exists": f.path.is_file(),
             "url": evidence_url(base_url, state_dir, f.path) if state_dir else None}
            for f in evidence_files(record.evidence)]


def _show(store: Store, incident_id: int, as_json: bool, base_url: str | None = None,
          state_dir: Path | None = None) -> int:
    record = store.incident(incident_id)
    if record is None:
        raise StateError(f"no incident #{incident_id}")
    doc = incident_json(store, record)
    doc.update(rule=record.rule, reason=record.reason, evidence=record.evidence.as_dict(),
               evidence_files=evidence_rows(record, state_dir, base_url),
               suppressed=list(record.suppressed), causes=list(record.causes),
               history=[{"at": iso(at), "type": t, "text": scrub(text)}
                        for at, t, text in store.events(incident_id)],
               tickets=ticket_rows(store, incident_id), seen_from=list(record.seen_from),
               not_from=list(record.not_from))
    if as_json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    level = str(record.level) if record.level else "--"
    print(scrub(f"#{record.id} [{level}] {record.site} — {record.check}: {record.summary}"))
    for key in ("state", "kind", "flapping", "silenced", "first_seen", "opened_at", "last_seen",
                "resolved_at", "occurrences", "rule", "reason", "fingerprint"):
        value = doc[key]
        if value is not None and value is not False:
            print(f"  {key}: {value}")
    for f in doc["evidence_files"]:  # a browser check's screenshot and log
        print(f"  {f['label']}: {f['path']}" + ("" if f["exists"] else " (no longer on disk)"))
        if f["url"] and f["exists"]:
            print(f"    {f['url']}")
    where = seen_from(record)
    if where:
        print(f"  locations: {where}")
    for key in ("suppressed", "causes"):
        for item in doc[key]:
            print(f"  {key}: {item}")
    for t in doc["tickets"]:
        print(f"  ticket {t['sink']}: {t['external_id'] or '-'} ({t['state']}, delivery "
              f"{t['delivery']})" + (f": {t['last_error']}" if t["last_error"] else ""))
    for h in doc["history"]:
        print(f"  {h['at']} {h['type']}: {h['text']}")
    return EXIT_OK


def _tickets(store: Store, as_json: bool) -> int:
    rows = ticket_rows(store)
    dead = [{"id": e.id, "incident": e.incident_id, "sink": e.sink, "action": e.action,
             "attempts": e.attempts, "error": e.last_error}
            for e in store.outbox(OutboxState.DEAD)]
    status = EXIT_DEAD_LETTERS if dead else EXIT_OK
    if as_json:
        print(json.dumps({"tickets": rows, "dead_letters": dead}, indent=2))
        return status
    table = [("INCIDENT", "SINK", "TICKET", "STATE", "DELIVERY", "LAST ERROR")]
    table += [(str(r["incident"]), r["sink"], r["external_id"] or "-", r["state"],
               r["delivery"], r["last_error"] or "") for r in rows]
    print(_table(table))
    for d in dead:
        print(f"dead letter #{d['id']}: {d['action']} of incident #{d['incident']} via "
              f"{d['sink']} after {d['attempts']} attempt(s): {d['error']}")
    if dead:
        print(f"{len(dead)} dead letter(s): fix the cause, then `storewatch tickets retry`")
    return status


def _silence(store: Store, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    match args.action:
        case "add":
            if args.check is not None and args.site is None:
                raise ConfigError("--check needs --site", field="--check")
            try:
                seconds = parse_duration(args.duration)
            except ValueError as exc:
                raise ConfigError(str(exc), field="--duration") from None
            if seconds <= 0:
                raise ConfigError("must be longer than 0s", field="--duration")
            sid = store.add_silence(args.site, args.check, args.reason, now,
                                    timedelta(seconds=seconds))
            print(f"silence #{sid} until {iso(now + timedelta(seconds=seconds))}")
        case "list":
            silences = store.silences(now)
            if args.json:
                print(json.dumps({"silences": [
                    {"id": s.id, "site": s.site, "check": s.check, "reason": s.reason,
                     "created_at": iso(s.created_at), "expires_at": iso(s.expires_at)}
                    for s in silences]}, indent=2))
            else:
                table = [("ID", "SITE", "CHECK", "UNTIL", "REASON")]
                table += [(str(s.id), s.site or "*", s.check or "*", iso(s.expires_at) or "",
                           s.reason) for s in silences]
                print(_table(table))
        case "remove":
            if not store.remove_silence(args.id):
                raise StateError(f"no silence #{args.id}")
            print(f"silence #{args.id} removed")
    return EXIT_OK


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
