"""storewatch command line.

Commands::

    storewatch run -c FILE [--listen HOST:PORT] [--state-dir DIR] [--web.config.file FILE]
    storewatch check -c FILE [--site NAME] [--json]                  every check once
    storewatch validate -c FILE                                      check the config only
    storewatch demo [--duration S] [--store-port P] [--listen HOST:PORT]
    storewatch demo-store [--host H] [--port P] [--fault NAME ...] [--js]  the demo shop
    storewatch incidents list|show ID|resolve ID [-c FILE | --state-dir DIR]
    storewatch tickets list [--json]                                 delivery, dead letters
    storewatch silence add|list|remove                               no tickets for a while

Exit codes:

    0  success (``check``: no findings)
    1  ``check``: at least one finding; ``run``: a runtime failure (e.g. cannot bind /metrics)
    2  bad usage or an invalid config (one line naming file:line and field)
  130  interrupted
"""

from __future__ import annotations

import argparse
import asyncio
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
from agent.logs import LOG_FORMATS, setup_logging

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("storewatch")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="storewatch",
                                description="Shopper-style monitoring for online shops.")
    p.add_argument("--version", action="version", version=f"storewatch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   default=os.environ.get("STOREWATCH_LOG_FORMAT", "text"),
                   help="text (default; no timestamps under journald) or json, one event per line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("-c", "--config", default=DEFAULT_CONFIG_PATH,
                         help=f"config file (default {DEFAULT_CONFIG_PATH})")

    run = sub.add_parser("run", help="run the agent (daemon)")
    with_config(run)
    run.add_argument("--listen", help="HOST:PORT for /metrics (overrides agent.listen)")
    run.add_argument("--state-dir", type=Path, help="state directory (overrides agent.state_dir)")
    run.add_argument("--web.config.file", dest="web_config_file", type=Path, metavar="FILE",
                     help="TLS and basic auth for /metrics (Prometheus exporter format)")

    check = sub.add_parser("check", help="run every check once and exit 0 (clean) or 1 (findings)")
    with_config(check)
    check.add_argument("--site", help="only this site")
    check.add_argument("--json", action="store_true", help="one JSON document for scripts")
    check.add_argument("--state-dir", type=Path,
                       help="learn catalog counts and script origins here (default: read "
                            "agent.state_dir's baselines, write none)")

    validate = sub.add_parser("validate", help="validate the config and exit")
    with_config(validate)

    demo = sub.add_parser("demo", help="demo store + agent + a fault schedule")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--store-port", type=int, default=8765, help="demo store port (0: any)")
    demo.add_argument("--listen", default="127.0.0.1:9478", help="HOST:PORT for /metrics")
    demo.add_argument("-c", "--config", help="agent config (default: the bundled demo.yaml)")

    store = sub.add_parser("demo-store", help="serve the bundled demo storefront")
    store.add_argument("--host", default="127.0.0.1")
    store.add_argument("--port", type=int, default=8765)
    store.add_argument("--fault", action="append", default=[], metavar="NAME",
                       help="start with this fault on (repeatable)")
    store.add_argument("--slow-delay", type=float, default=None, metavar="SECONDS",
                       help="delay of the slow fault (default 2.5)")
    store.add_argument("--js", action="store_true",
                       help="JavaScript mode: catalog, cart and checkout rendered client-side")

    from agent.incident_cli import add_parsers

    add_parsers(sub)
    return p


def _error(message: str) -> None:
    print(f"storewatch: {scrub(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``storewatch`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.log_format not in LOG_FORMATS:  # from $STOREWATCH_LOG_FORMAT
        _error(f"STOREWATCH_LOG_FORMAT: '{args.log_format}' is not one of "
               f"{', '.join(LOG_FORMATS)}")
        return EXIT_USAGE
    setup_logging(args.verbose, args.log_format)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        _error(str(exc))
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
            return _check(config, args.site, args.json, args.state_dir)
        case "run":
            overrides = service.Overrides(args.listen, args.state_dir, args.web_config_file)
            config = service.load(args.config, overrides)
            agent = service.Agent(args.config, config, overrides)
            asyncio.run(agent.serve(freeze_heap=True))
            return EXIT_OK
        case "demo":
            from agent.demo.scenario import run_demo

            return run_demo(duration=args.duration, store_port=args.store_port,
                            listen=args.listen, config_path=args.config)
        case "incidents" | "tickets" | "silence":
            from agent.incident_cli import dispatch

            return dispatch(args)
        case "demo-store":
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
    return EXIT_FINDINGS if any(o.result.findings for o in observations) else EXIT_OK
