"""Evidence files a ticket can carry: the browser check's screenshot and console/network log.

A browser finding's evidence names the PNG (``screenshot``) and the JSON log (``browser_log``)
saved under the state directory's ``evidence/`` folder. Sinks whose tracker takes attachments
attach both (e-mail, Jira; Redmine and Zendesk through their upload APIs); GitHub has no
attachment API and links to the files the agent serves (``incidents.evidence.url``). A file
that cannot be attached is named in the ticket text: its URL on the agent, or its path on the
agent host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent.errors import SinkError
from agent.evidence import evidence_files, evidence_url
from classifier import Evidence

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTACHMENT_BYTES = 4 * 1024 * 1024
"""Files larger than this are not attached (trackers refuse large uploads; the path or URL
stays in the ticket text)."""
UPLOAD_BUDGET_S = 20.0
"""All uploads of one ticket together: the create that follows keeps most of the delivery
attempt's 60 s (a tracker slow to take files must not hold an L1 ticket back)."""
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MIME = {".png": "image/png", ".json": "application/json", ".txt": "text/plain"}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file for a ticket: name, MIME type, bytes, and where it lies on the agent."""

    filename: str
    mime: str
    data: bytes
    path: Path | None = None


def _read(path: Path, what: str) -> Attachment | None:
    """The file as an attachment, if it is readable, of bounded size and of a known type."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        return None
    try:
        if os.stat(path).st_size > MAX_ATTACHMENT_BYTES:
            log.warning("%s %s is too large to attach", what, path)
            return None
        data = path.read_bytes()
    except OSError as exc:
        log.warning("%s %s cannot be attached: %s", what, path, exc.strerror or exc)
        return None
    if mime == "image/png" and not data.startswith(_PNG_MAGIC):
        return None
    return Attachment(path.name, mime, data, path)


def screenshot(evidence: Evidence) -> Attachment | None:
    """The evidence's screenshot, if it names a readable PNG of bounded size."""
    name = evidence.details.get("screenshot")
    if not name:
        return None
    shot = _read(Path(name), "screenshot")
    return shot if shot is not None and shot.mime == "image/png" else None


def evidence_attachments(evidence: Evidence) -> list[Attachment]:
    """Every evidence file (screenshot, browser log) that can be attached."""
    out = []
    for item in evidence_files(evidence):
        attachment = _read(item.path, item.label)
        if attachment is not None and (item.key != "screenshot"
                                       or attachment.mime == "image/png"):
            out.append(attachment)
    return out


def evidence_location(path: Path, state_dir: Path, base_url: str | None) -> str:
    """Where a person finds an evidence file: its URL on the agent, else its path there."""
    url = evidence_url(base_url, state_dir, path)
    return url if url is not None else f"{path} (on the agent host)"


def evidence_links(evidence: Evidence, state_dir: Path, base_url: str | None) -> str:
    """Markdown section linking the evidence files the agent serves ("" when there are none);
    without a base URL it names their paths on the agent host."""
    files = evidence_files(evidence)
    if not files:
        return ""
    lines = ["", "**Evidence files** (kept on the storewatch agent):"]
    for f in files:
        url = evidence_url(base_url, state_dir, f.path)
        lines.append(f"- {f.label}: [{f.path.name}]({url})" if url is not None
                     else f"- {f.label}: `{f.path}` on the agent host (set "
                     "`incidents.evidence.url` to link it)")
    return "\n".join(lines)


def not_attached_note(evidence: Evidence, reason: str, state_dir: Path,
                      base_url: str | None, attached: Collection[Path] = ()) -> str:
    """Ticket text naming the evidence files not in ``attached`` ("" when there are none)."""
    files = [f for f in evidence_files(evidence) if f.path not in attached]
    if not files:
        return ""
    lines = ["", f"**Evidence not attached** ({reason}); it is kept on the storewatch agent:"]
    lines += [f"- {f.label}: {evidence_location(f.path, state_dir, base_url)}" for f in files]
    return "\n".join(lines)


async def upload_evidence(evidence: Evidence, upload: Callable[[Attachment], Awaitable[T]],
                          tracker: str, state_dir: Path, base_url: str | None
                          ) -> tuple[list[T], str]:
    """Upload each evidence file with ``upload`` (which answers the tracker's token).

    Returns the tokens of the files uploaded and the ticket text naming the others (too large,
    unreadable, or their upload failed: a failure ends the uploads, never the ticket).
    """
    tokens: list[T] = []
    attached: list[Path] = []
    reason = f"too large (over {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB) or unreadable"
    try:
        async with asyncio.timeout(UPLOAD_BUDGET_S):
            for file in evidence_attachments(evidence):
                try:
                    token = await upload(file)
                except SinkError as exc:
                    log.warning("%s; the ticket goes without this evidence file", exc)
                    reason = f"the upload to {tracker} failed"
                    break
                tokens.append(token)
                if file.path is not None:
                    attached.append(file.path)
    except TimeoutError:
        log.warning("uploads to %s took over %gs; the ticket goes without the rest of its "
                    "evidence files", tracker, UPLOAD_BUDGET_S)
        reason = f"the upload to {tracker} took too long"
    return tokens, not_attached_note(evidence, reason, state_dir, base_url, attached)


def multipart(field: str, attachment: Attachment) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file field, and its Content-Type header."""
    boundary = f"storewatch-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{attachment.filename}\"\r\nContent-Type: {attachment.mime}\r\n\r\n")
    body = head.encode() + attachment.data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
