"""Log setup: one event per line, journald-friendly, optionally JSON; secrets scrubbed.

Under systemd (``$JOURNAL_STREAM`` set) lines carry no timestamp (journald adds its own) and
start with a ``<N>`` syslog priority prefix so ``journalctl -p`` filters work. ``json`` prints
one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from agent.config.secrets import SecretScrubbingFilter

LOG_FORMATS = ("text", "json")

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", " | ")


class JournalFormatter(logging.Formatter):
    """``<6>storewatch.x: message``: no timestamp, the syslog priority as sd-daemon prefix."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {_one_line(super().format(record))}"


class LineFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO name: message`` on exactly one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (omitted under journald), level, logger, message."""

    def __init__(self, with_time: bool) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {}
        if self.with_time:
            doc["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds")
        doc.update(level=record.levelname.lower(), logger=record.name,
                   message=record.getMessage())
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(verbose: bool = False, fmt: str = "text",
                  env: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for the CLI."""
    env = os.environ if env is None else env
    journald = bool(env.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(with_time=not journald)
    elif journald:
        formatter = JournalFormatter()
    else:
        formatter = LineFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(SecretScrubbingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
