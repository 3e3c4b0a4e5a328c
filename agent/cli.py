"""storewatch command line.

Commands::

    storewatch run -c FILE [--listen HOST:PORT] [--state-dir DIR] [--web-config-file FILE]
    storewatch check -c FILE [--site NAME] [--json]                  every check once
    storewatch validate -c FILE                                      check the config only
    storewatch demo [--duration S] [--store-port P] [--listen HOST:PORT]
    storewatch demo-store [--host H] [--port P] [--fault NAME ...] [--js]  the demo shop
    storewatch install-files DIR [--force]                           unit, configs, dashboards
    storewatch incidents list|show ID|resolve ID [-c FILE | --state-dir DIR]
    storewatch tickets list|retry [--json]                           delivery, dead letters
    storewatch silence add|list|remove                               no tickets for a while

Exit statuses:

    0  success (``check``: no findings; ``tickets list``: no dead letters)
    1  ``check``: at least one finding; other commands: a runtime failure (e.g. cannot bind
       /metrics, state directory unusable)
    2  bad usage or an invalid config (one line per problem, naming file:line and field)
    3  ``check``: could not run (the agent's own network is down, a probe crashed, another
       runtime error): its findings say nothing about the shops
    4  ``tickets list``: at least one dead letter
  130  interrupted

Flag names are lower-case words joined by hyphens (``--state-dir``, ``--web-config-file``).
``--web.config.file``, the spelling of Prometheus exporters, is accepted as well.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config.schema import DEFAULT_CONFIG_PATH, Config
from agent.config.secrets import scrub
from agent.errors import ConfigError, StorewatchError
from agent.incidents.cli import add_parsers, command_help
from agent.logs import LOG_FORMATS, setup_logging

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3
EXIT_INTERRUPTED = 130

FAULT_MEANINGS = {
    "down": "no answer at all (requests hang while it is on)",
    "slow": "every storefront response is delayed",
    "server_error": "every storefront page answers HTTP 503",
    "checkout": "add to cart fails",
    "payment": "checkout offers no payment method",
    "catalog": "some products vanish from listings",
    "search": "search returns no results",
    "corrupt": "pages answer 200 with platform error text",
    "skimmer": "an unknown third-party script on cart and checkout",
    "reviews": "the review endpoint fails",
    "fragile": "more than 2 requests at once get HTTP 500 'database is locked'",
    "js_bundle": "(--js) the shop's JavaScript bundle is broken; the HTML stays 200",
    "js_error": "(--js) add to cart throws in the browser before its request",
    "skimmer_dynamic": "(--js) a tag script injects a foreign script on cart and checkout",
    "slow_render": "(--js) the home page's client-side catalog paints late",
}
"""What each demo store fault does (the names come from the store itself)."""

log = logging.getLogger("storewatch")


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="storewatch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Shopper-style monitoring for online shops: probes storefronts, classifies "
                    "problems on support levels L1-L4, opens one ticket per incident, exports "
                    "Prometheus metrics. `storewatch COMMAND --help` explains each command.",
        epilog="exit status: 0 ok, 1 findings (check) or a runtime failure, 2 bad usage or "
               "config, 3 check could not run, 4 dead letters (tickets list), 130 interrupted."
               "\nflags: lower-case words joined by hyphens; --web.config.file (the "
               "Prometheus exporters' spelling) works too.")
    p.add_argument("--version", action="version", version=f"storewatch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   default=os.environ.get("STOREWATCH_LOG_FORMAT", "text"),
                   help="text (default; no timestamps under journald) or json, one event per line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("-c", "--config", default=DEFAULT_CONFIG_PATH,
                         help=f"config file (default {DEFAULT_CONFIG_PATH})")

    run = sub.add_parser("run", help="run the agent (daemon)", **command_help(
        "Run the agent until SIGTERM: schedule every check, open and resolve incidents, deliver "
        "tickets, serve /metrics. Under systemd (Type=notify) it reports readiness and pings "
        "the watchdog; SIGHUP reloads the config (a bad one keeps the running config).",
        "  0  stopped by SIGTERM/SIGINT after finishing in-flight checks\n"
        "  1  a runtime failure (e.g. cannot bind /metrics)\n"
        "  2  bad usage or an invalid config or web config (one line naming file:line)",
        "  storewatch run -c /etc/storewatch/config.yaml --state-dir /var/lib/storewatch"))
    with_config(run)
    run.add_argument("--listen", help="HOST:PORT for /metrics (overrides agent.listen)")
    run.add_argument("--state-dir", type=Path, help="state directory (overrides agent.state_dir)")
    run.add_argument("--web-config-file", "--web.config.file", dest="web_config_file",
                     type=Path, metavar="FILE",
                     help="TLS and basic auth for /metrics (Prometheus exporter web config "
                          "format)")

    check = sub.add_parser(
        "check", help="run every check once; exit 0 clean, 1 findings, 3 could not run",
        **command_help(
            "Run every configured check (of one site with --site) once, print a table or JSON, "
            "and exit with a status a script or CI can use. Nothing is ticketed; baselines in "
            "the state directory are read and updated.",
            "  0  every check passed and found nothing\n"
            "  1  at least one finding (the JSON/table says which, with its level)\n"
            "  2  bad usage or an invalid config\n"
            "  3  could not run: the agent's own network is down (no reference target "
            "answers),\n     a probe crashed (a storewatch bug), or another runtime error",
            "  storewatch check -c /etc/storewatch/config.yaml --site acme --json | jq ."))
    with_config(check)
    check.add_argument("--site", help="only this site")
    check.add_argument("--json", action="store_true", help="one JSON document for scripts")
    check.add_argument("--state-dir", type=Path,
                       help="learn catalog counts and script origins here (default: read "
                            "agent.state_dir's baselines, write none)")

    validate = sub.add_parser("validate", help="validate the config and exit", **command_help(
        "Load and validate the config (includes, environment variables, credentials) without "
        "running anything, like promtool check config.",
        "  0  valid (prints the number of sites and checks)\n"
        "  2  invalid: one line per problem naming file:line and field",
        "  storewatch validate -c /etc/storewatch/config.yaml && systemctl reload storewatch"))
    with_config(validate)

    demo = sub.add_parser("demo", help="demo store + agent + a fault schedule", **command_help(
        "Start the bundled demo storefront and an agent probing it, then switch faults on and "
        "off on a schedule, so incidents open, escalate and resolve within a minute. Needs the "
        "demo extra (pip install 'storewatch[demo]').",
        "  0  finished (--duration) or interrupted\n"
        "  1  the demo extra is missing or a port is taken\n"
        "  2  bad usage or an invalid --config",
        "  storewatch demo --duration 90 --store-port 0"))
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--store-port", type=int, default=8765, help="demo store port (0: any)")
    demo.add_argument("--listen", default="127.0.0.1:9478", help="HOST:PORT for /metrics")
    demo.add_argument("-c", "--config", help="agent config (default: the bundled demo.yaml)")

    faults = _fault_help() if "demo-store" in argv else ""
    store = sub.add_parser("demo-store", help="serve the bundled demo storefront", **command_help(
        "Serve the bundled demo storefront on loopback, with faults switched on at start "
        "(--fault) or at run time (POST /_demo/faults {\"faults\": [...]}; add "
        "\"agents\": [names...] to fault only the requests whose X-Storewatch-Agent header names "
        "one of them, on top of the global faults; GET shows both). Needs the demo "
        f"extra.\n\nfaults:\n{faults}",
        "  0  stopped by SIGTERM/SIGINT\n"
        "  1  the demo extra is missing or the address cannot be bound\n"
        "  2  an unknown fault name",
        "  storewatch demo-store --port 8765 --fault slow --fault search"))
    store.add_argument("--host", default="127.0.0.1")
    store.add_argument("--port", type=int, default=8765)
    store.add_argument("--fault", action="append", default=[], metavar="NAME",
                       help="start with this fault on (repeatable; names above)")
    store.add_argument("--slow-delay", type=float, default=None, metavar="SECONDS",
                       help="delay of the slow fault (default 2.5)")
    store.add_argument("--js", action="store_true",
                       help="JavaScript mode: catalog, cart and checkout rendered client-side")

    files = sub.add_parser(
        "install-files", help="write the unit, example configs, dashboards and rules to DIR",
        **command_help(
            "Write what a server install needs besides the code to DIR, in the checkout's "
            "layout: config/systemd/storewatch.service, config/storewatch.example.yaml, "
            "config/examples/, config/demo.yaml, dashboards/*.json and dashboards/rules/*.yml. "
            "Existing files are kept unless --force.",
            "  0  written (kept files are listed as such)\n"
            "  1  DIR cannot be written",
            "  storewatch install-files /tmp/storewatch-files && \\\n"
            "    install -m 0644 /tmp/storewatch-files/config/systemd/storewatch.service "
            "/etc/systemd/system/"))
    files.add_argument("dir", type=Path, metavar="DIR")
    files.add_argument("--force", action="store_true", help="overwrite existing files")

    add_parsers(sub)
    return p


def _fault_help() -> str:
    """One line per demo store fault, from the store's own list (empty without aiohttp)."""
    try:
        from agent.demo.storefront import FAULTS
    except ModuleNotFoundError:
        return "  (install the demo extra to list them)"
    return "\n".join(f"  {name:<13} {FAULT_MEANINGS.get(name, '')}".rstrip()
                     for name in sorted(FAULTS))


def _need_demo_extra() -> None:
    if importlib.util.find_spec("aiohttp") is None:
        raise StorewatchError("the demo needs the 'demo' extra: pip install 'storewatch[demo]'")


def _error(message: str) -> None:
    print(f"storewatch: {scrub(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``storewatch`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_args(argv)
    if args.log_format not in LOG_FORMATS:  # from $STOREWATCH_LOG_FORMAT
        _error(f"STOREWATCH_LOG_FORMAT: '{args.log_format}' is not one of "
               f"{', '.join(LOG_FORMATS)}")
        return EXIT_USAGE
    setup_logging(args.verbose, args.log_format)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for line in exc.lines():
            _error(line)
        return EXIT_USAGE
    except StorewatchError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    from agent import service

    match args.command:
        case "validate":
            config = service.load(args.config)
            checks = len(config.planned_checks())
            print(f"{args.config}: ok ({len(config.sites)} sites, {checks} checks)")
            return EXIT_OK
        case "check":
            config = service.load(args.config)
            if args.site is not None and config.site(args.site) is None:
                raise ConfigError(f"no site named '{args.site}'", file=str(args.config),
                                  field="--site")
            try:
                return _check(config, args.site, args.json, args.state_dir)
            except ConfigError:
                raise
            except StorewatchError as exc:
                _error(f"could not run the checks: {exc}")
                return EXIT_COULD_NOT_RUN
        case "run":
            overrides = service.Overrides(args.listen, args.state_dir, args.web_config_file)
            config = service.load(args.config, overrides)
            agent = service.Agent(args.config, config, overrides)
            asyncio.run(agent.serve(freeze_heap=True))
            return EXIT_OK
        case "install-files":
            from agent.share import install_files

            for written in install_files(args.dir, force=args.force):
                print(f"{written.path}" + (" (exists, kept; --force overwrites)"
                                           if written.kept else ""))
            return EXIT_OK
        case "demo":
            _need_demo_extra()
            from agent.demo.scenario import run_demo

            return run_demo(duration=args.duration, store_port=args.store_port,
                            listen=args.listen, config_path=args.config)
        case "incidents" | "tickets" | "silence":
            from agent.incidents.cli import dispatch

            return dispatch(args)
        case "demo-store":
            _need_demo_extra()
            from agent.demo.storefront import UnknownFaultError, run_demo_store, validate_faults

            try:
                validate_faults(args.fault)
            except UnknownFaultError as exc:
                raise ConfigError(str(exc), field="--fault") from None
            if args.slow_delay is None:
                return run_demo_store(args.host, args.port, args.fault, js=args.js)
            return run_demo_store(args.host, args.port, args.fault, args.slow_delay, js=args.js)
    raise AssertionError(args.command)  # argparse only allows the commands above


def _check(config: Config, site: str | None, as_json: bool, state_dir: Path | None) -> int:
    from agent.report import observation_json, results_table
    from agent.service import check_once

    observations = asyncio.run(check_once(config, site, state_dir))
    if as_json:
        doc = {"version": __version__, "results": [observation_json(o) for o in observations]}
        print(json.dumps(doc, indent=2))
    else:
        print(results_table(observations))
    if not any(o.result.findings for o in observations):
        return EXIT_OK
    crashed = sorted({f"{o.result.site}/{o.result.check}" for o in observations
                      for f in o.result.findings if f.evidence.details.get("failure") ==
                      "probe_error"})
    if crashed:
        _error(f"could not run: the probe of {', '.join(crashed)} crashed (a storewatch bug; "
               "see the log above)")
        return EXIT_COULD_NOT_RUN
    if config.incidents.reference_targets and not asyncio.run(_online(config)):
        _error("could not run: no reference target answers, the agent's own network is down; "
               "the findings say nothing about the shops")
        return EXIT_COULD_NOT_RUN
    return EXIT_FINDINGS


async def _online(config: Config) -> bool:
    """Whether any reference target answers (the connectivity guard of the daemon)."""
    from agent.connectivity import ConnectivityGuard
    from agent.httpclient import HttpClients

    clients = HttpClients.for_agent(config.agent)
    try:
        return await ConnectivityGuard(clients, config.incidents.reference_targets,
                                       timeout=min(5.0, config.defaults.timeout
                                                   or config.defaults.request_timeout)).online()
    finally:
        await clients.aclose()
