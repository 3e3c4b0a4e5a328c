"""Evidence files a ticket can carry: the browser check's screenshot of the failing step.

A browser finding's evidence names the PNG saved in the state directory (``screenshot``);
sinks whose tracker takes attachments (e-mail, Jira) attach it to the ticket's first message,
the others show the path in the evidence text (``storewatch incidents show`` prints it too).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from classifier import Evidence

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 4 * 1024 * 1024
"""Screenshots larger than this are not attached (the path stays in the evidence)."""
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file for a ticket: name, MIME type, bytes."""

    filename: str
    mime: str
    data: bytes


def screenshot(evidence: Evidence) -> Attachment | None:
    """The evidence's screenshot, if it names a readable PNG of bounded size."""
    name = evidence.details.get("screenshot")
    if not name:
        return None
    path = Path(name)
    try:
        if os.stat(path).st_size > MAX_ATTACHMENT_BYTES:
            log.warning("screenshot %s is too large to attach", path)
            return None
        data = path.read_bytes()
    except OSError as exc:
        log.warning("screenshot %s cannot be attached: %s", path, exc.strerror or exc)
        return None
    if not data.startswith(_PNG_MAGIC):
        return None
    return Attachment(path.name, "image/png", data)


def multipart(field: str, attachment: Attachment) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file field, and its Content-Type header."""
    boundary = f"storewatch-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{attachment.filename}\"\r\nContent-Type: {attachment.mime}\r\n\r\n")
    body = head.encode() + attachment.data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
