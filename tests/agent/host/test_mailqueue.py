"""Mail queue: recorded real MTA output, and fake commands run as real subprocesses."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config.schema import Config, MailQueue
from agent.host.mailqueue import (
    MailQueueError,
    QueueState,
    assess_queue,
    parse_output,
    read_queue,
)
from agent.pipeline import Classifier
from agent.probes.base import ProbeResult
from classifier import FindingKind, Level

DATA = Path(__file__).parent / "testdata"
RECORDED_AT = 1795665366.0
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("mta", "fixture", "expected"), [
    ("postfix", "postqueue-j-deferred.jsonl", QueueState(4, 7.0)),
    ("postfix", "postqueue-j-empty.jsonl", QueueState(0, None)),
    ("exim", "exim-bpc-two.txt", QueueState(2, None)),
    ("exim", "exim-bpc-empty.txt", QueueState(0, None)),
], ids=["postfix-deferred", "postfix-empty", "exim-two", "exim-empty"])
def test_recorded_output(mta: str, fixture: str, expected: QueueState) -> None:
    assert parse_output(mta, (DATA / fixture).read_text(), RECORDED_AT) == expected


@pytest.mark.parametrize(("mta", "output", "message"), [
    ("postfix", "postqueue: fatal: Queue report unavailable - mail system is down\n",
     "postqueue -j line 1 is not a queue record"),
    ("exim", "exim: permission denied\n", "exim -bpc printed 'exim: permission denied', "
     "not a message count"),
    ("command", "[1, 2]", 'command output is not {"messages": N, "oldest_age_seconds": S}'),
    ("command", '{"messages": -1}', "command reported a negative count or age"),
], ids=["postfix-garbage", "exim-garbage", "command-not-object", "command-negative"])
def test_unparseable_output_is_an_error(mta: str, output: str, message: str) -> None:
    with pytest.raises(MailQueueError) as info:
        parse_output(mta, output, RECORDED_AT)
    assert str(info.value) == message


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-mta"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_postfix_parser_over_a_fake_postqueue(tmp_path: Path) -> None:
    recorded = DATA / "postqueue-j-deferred.jsonl"
    stderr = DATA / "postqueue-j-stopped.stderr"
    cmd = script(tmp_path, f"cat '{stderr}' >&2\ncat '{recorded}'\n")
    state = await read_queue(MailQueue(mta="postfix", command=[cmd]))
    assert state.messages == 4
    assert state.oldest_age_s is not None and state.oldest_age_s > 0


@pytest.mark.parametrize(("body", "timeout", "message"), [
    ("echo 'postqueue: fatal: bad config' >&2\nexit 75\n", 5.0,
     "exited with status 75: postqueue: fatal: bad config"),
    ("exec sleep 30\n", 0.3, "did not finish within 0.3s"),
], ids=["exit-status", "hangs"])
async def test_failing_commands(tmp_path: Path, body: str, timeout: float, message: str) -> None:
    cmd = script(tmp_path, body)
    with pytest.raises(MailQueueError) as info:
        await read_queue(MailQueue(mta="postfix", command=[cmd], timeout=timeout))
    assert str(info.value) == f"{cmd} {message}"


async def test_missing_mta_is_an_error_not_a_crash() -> None:
    with pytest.raises(MailQueueError) as info:
        await read_queue(MailQueue(mta="exim", command=["/nonexistent/exim"]))
    assert str(info.value) == "cannot run /nonexistent/exim: No such file or directory"


@pytest.mark.parametrize(("state", "expected"), [
    (QueueState(3, 60.0), None),
    (QueueState(150, 60.0), "mail is not leaving the server: 150 messages queued (threshold 100)"),
    (QueueState(2, 7200.0), "mail is not leaving the server: oldest queued message is 120 min "
     "old (threshold 30 min)"),
    (QueueState(500, None), "mail is not leaving the server: 500 messages queued (threshold "
     "100)"),
], ids=["fine", "too-many", "too-old", "exim-count-only"])
def test_thresholds_and_level(state: QueueState, expected: str | None) -> None:
    findings = assess_queue(state, MailQueue(), "shop", NOW)
    if expected is None:
        assert findings == []
        return
    (finding,) = findings
    assert finding.summary == expected and finding.kind is FindingKind.EMAIL_NOT_SENT
    config = Config.model_validate({"sites": [{"name": "shop", "base_url": "http://x.test",
                                               "checks": [{"name": "home"}]}]})
    result = ProbeResult("shop", "mail-queue", False, 0.1, NOW, findings=(finding,))
    (item,) = Classifier(config).observe(result).classified
    assert item.decision.level is Level.L2


async def test_command_mta_json(tmp_path: Path) -> None:
    doc = json.dumps({"messages": 12, "oldest_age_seconds": 4000})
    state = await read_queue(MailQueue(mta="command", command=[script(tmp_path,
                                                                     f"echo '{doc}'\n")]))
    assert state == QueueState(12, 4000.0)
