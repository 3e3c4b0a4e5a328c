"""The local MTA's queue: Postfix ``postqueue -j``, Exim ``exim -bpc`` or a configured command.

The command runs with a deadline and a capped output; a missing MTA, a non-zero exit or output
that cannot be parsed is a failed reading (reported in the result), never a crash. Size or the
oldest message's age past the thresholds is an ``email_not_sent`` finding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime

from agent.config.schema import MailQueue
from classifier import Evidence, Finding, FindingKind

MAIL_CHECK = "mail-queue"
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
"""A queue of ~50k messages in ``postqueue -j`` form; more is cut and counted as unparseable."""

DEFAULT_COMMANDS: dict[str, list[str]] = {
    "postfix": ["postqueue", "-j"],
    "exim": ["exim", "-bpc"],
}


class MailQueueError(Exception):
    """The queue could not be read (no MTA, exit status, unparseable output)."""


@dataclass(frozen=True, slots=True)
class QueueState:
    """How many messages wait, and how old the oldest is (None when the MTA does not say)."""

    messages: int
    oldest_age_s: float | None


def parse_postqueue_json(output: str, now: float) -> QueueState:
    """``postqueue -j``: one JSON object per queued message, with ``arrival_time`` (Unix)."""
    count, oldest = 0, None
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            arrival = float(record["arrival_time"])
        except (ValueError, KeyError, TypeError):
            raise MailQueueError(f"postqueue -j line {number} is not a queue record") from None
        count += 1
        oldest = arrival if oldest is None else min(oldest, arrival)
    return QueueState(count, max(0.0, now - oldest) if oldest is not None else None)


def parse_exim_count(output: str) -> QueueState:
    """``exim -bpc``: the number of messages on one line (Exim does not report ages here)."""
    text = output.strip()
    if not text.isdigit():
        raise MailQueueError(f"exim -bpc printed {text[:40]!r}, not a message count")
    return QueueState(int(text), None)


def parse_command_json(output: str) -> QueueState:
    """A configured command: ``{"messages": N, "oldest_age_seconds": S}`` (S optional)."""
    try:
        doc = json.loads(output)
        messages = int(doc["messages"])
        age = doc.get("oldest_age_seconds")
        oldest = float(age) if age is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise MailQueueError('command output is not {"messages": N, "oldest_age_seconds": S}'
                             ) from None
    if messages < 0 or (oldest is not None and oldest < 0):
        raise MailQueueError("command reported a negative count or age")
    return QueueState(messages, oldest)


def parse_output(mta: str, output: str, now: float) -> QueueState:
    """Parse the output of the MTA's queue command."""
    match mta:
        case "postfix":
            return parse_postqueue_json(output, now)
        case "exim":
            return parse_exim_count(output)
        case _:
            return parse_command_json(output)


async def read_queue(settings: MailQueue) -> QueueState:
    """Run the queue command within ``settings.timeout`` and parse what it prints."""
    argv = settings.command or DEFAULT_COMMANDS[settings.mta]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise MailQueueError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(settings.timeout):
            assert proc.stdout is not None and proc.stderr is not None
            out = await proc.stdout.read(MAX_OUTPUT_BYTES + 1)
            err = await proc.stderr.read(4096)
            status = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise MailQueueError(f"{argv[0]} did not finish within {settings.timeout:g}s") from None
    if len(out) > MAX_OUTPUT_BYTES:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise MailQueueError(f"{argv[0]} printed more than {MAX_OUTPUT_BYTES} bytes")
    if status != 0:
        reason = err.decode(errors="replace").strip().splitlines()
        raise MailQueueError(f"{argv[0]} exited with status {status}"
                             + (f": {reason[0][:160]}" if reason else ""))
    return parse_output(settings.mta, out.decode(errors="replace"), time.time())


def assess_queue(state: QueueState, settings: MailQueue, site: str,
                 now: datetime) -> list[Finding]:
    """``email_not_sent`` when the queue is longer or older than allowed."""
    problems = []
    if state.messages > settings.max_messages:
        problems.append(f"{state.messages} messages queued (threshold {settings.max_messages})")
    if state.oldest_age_s is not None and state.oldest_age_s > settings.max_age:
        problems.append(f"oldest queued message is {state.oldest_age_s / 60:.0f} min old "
                        f"(threshold {settings.max_age / 60:.0f} min)")
    if not problems:
        return []
    facts = {"messages": float(state.messages)}
    if state.oldest_age_s is not None:
        facts["oldest_age_seconds"] = state.oldest_age_s
    return [Finding(site=site, check=MAIL_CHECK, kind=FindingKind.EMAIL_NOT_SENT,
                    summary="mail is not leaving the server: " + "; ".join(problems),
                    observed_at=now,
                    evidence=Evidence(details={"mta": settings.mta,
                                               "messages": str(state.messages)}),
                    facts=facts)]
