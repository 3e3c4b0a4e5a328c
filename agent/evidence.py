"""Evidence files on the agent: the browser checks' screenshots and console/network logs.

They live under ``STATE_DIR/evidence/<site>/`` and an incident's evidence names them
(``screenshot``, ``browser_log``). This module lists them, builds their URLs on the agent
(``incidents.evidence.url``), reads one for the HTTP server (``GET /evidence/<site>/<file>``:
only regular files inside the folder, only PNG/JSON/text, size-capped) and prunes the folder:
files of incidents resolved more than ``retention`` ago and files no incident names any more
once that old, then, over ``max_size``, the oldest files first — never a file an open or
pending incident names, never a file younger than ``FRESH_GRACE_S`` (its incident may not be
saved yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, unquote

from classifier import Evidence

log = logging.getLogger(__name__)

EVIDENCE_DIR = "evidence"
"""Folder of the evidence files in the state directory."""
EVIDENCE_KEYS: tuple[tuple[str, str], ...] = (("screenshot", "screenshot"),
                                              ("browser_log", "browser log"))
"""Evidence details that name a file, with the label people see."""
URL_PREFIX = "/evidence/"
CONTENT_TYPES = {".png": "image/png", ".json": "application/json",
                 ".txt": "text/plain; charset=utf-8"}
"""The only kinds of file the agent serves."""
MAX_SERVED_BYTES = 16 * 1024 * 1024
"""Larger files are not served (a screenshot is a few hundred KB)."""
FRESH_GRACE_S = 3600.0
"""Files this young are never pruned: the incident that names them may not be saved yet."""
PRUNE_INTERVAL_S = 3600.0
"""How often the running agent prunes the folder (the first time right after start)."""
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """A file an incident's evidence names."""

    key: str
    label: str
    path: Path


def evidence_files(evidence: Evidence) -> list[EvidenceFile]:
    """The files ``evidence`` names (screenshot, browser log), in that order."""
    return [EvidenceFile(key, label, Path(evidence.details[key]))
            for key, label in EVIDENCE_KEYS if evidence.details.get(key)]


def evidence_root(state_dir: Path) -> Path:
    """The evidence folder of a state directory."""
    return state_dir / EVIDENCE_DIR


def evidence_url(base_url: str | None, state_dir: Path, path: Path) -> str | None:
    """The file's URL on the agent (``<base>/evidence/<site>/<file>``), or None when no base
    URL is configured or the file is not inside the state directory's evidence folder."""
    if not base_url:
        return None
    root = os.path.abspath(evidence_root(state_dir))
    full = os.path.abspath(path)
    if os.path.commonpath([root, full]) != root or full == root:
        return None
    parts = Path(os.path.relpath(full, root)).parts
    if not all(_SEGMENT.fullmatch(p) for p in parts):
        return None
    return base_url.rstrip("/") + URL_PREFIX + "/".join(quote(p) for p in parts)


@dataclass(frozen=True, slots=True)
class Served:
    """The answer to ``GET /evidence/...``."""

    status: int
    content_type: str
    body: bytes


def _refused(status: int, text: str) -> Served:
    return Served(status, "text/plain; charset=utf-8", text.encode() + b"\n")


def serve(root: Path, rel: str, max_bytes: int = MAX_SERVED_BYTES) -> Served:
    """Read ``rel`` (the URL path after ``/evidence/``) from ``root`` for the HTTP server.

    Only names of safe segments after percent-decoding (no ``..``, no leading dot, no
    absolute path), only a regular file whose real path (symlinks resolved) is inside ``root``, only
    ``.png``, ``.json`` and ``.txt``, at most ``max_bytes``; anything else is 404 (403 for a
    file over the cap).
    """
    parts = unquote(rel).split("/")
    if not all(_SEGMENT.fullmatch(p) for p in parts):
        return _refused(404, "not found")
    content_type = CONTENT_TYPES.get(Path(parts[-1]).suffix.lower())
    if content_type is None:
        return _refused(404, "not found")
    try:
        real_root = root.resolve(strict=True)
        real = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return _refused(404, "not found")
    if not real.is_relative_to(real_root) or real == real_root:
        log.warning("evidence request for %s refused: it leads outside %s", rel, root)
        return _refused(404, "not found")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return _refused(404, "not found")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _refused(404, "not found")
        if st.st_size > max_bytes:
            return _refused(403, f"file is larger than the {max_bytes} bytes the agent serves")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, min(1 << 20, max_bytes + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        body = b"".join(chunks)
    except OSError:
        return _refused(404, "not found")
    finally:
        os.close(fd)
    if len(body) > max_bytes:  # grew while being read
        return _refused(403, f"file is larger than the {max_bytes} bytes the agent serves")
    return Served(200, content_type, body)


# -- disk usage and pruning -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _File:
    path: str
    size: int
    mtime: float


def _walk(root: Path) -> Iterator[_File]:
    """Regular files under ``root`` (symlinks are not followed, nor counted)."""
    for folder, _, names in os.walk(root, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield _File(path, st.st_size, st.st_mtime)


def disk_usage(root: Path) -> tuple[int, int]:
    """(files, bytes) of the evidence folder."""
    files = size = 0
    for f in _walk(root):
        files += 1
        size += f.size
    return files, size


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one sweep deleted and what is left."""

    deleted_files: int
    deleted_bytes: int
    kept_files: int
    kept_bytes: int


def _paths(evidences: Iterable[Evidence]) -> set[str]:
    """Real paths (a relative or symlinked state directory names the same file)."""
    return {os.path.realpath(f.path) for ev in evidences for f in evidence_files(ev)}


def prune(root: Path, active: Iterable[Evidence], recent: Iterable[Evidence], now: float,
          retention: float, max_bytes: int, grace: float = FRESH_GRACE_S) -> PruneResult:
    """Delete old evidence files under ``root``.

    ``active``: evidence of pending and open incidents (their files are never deleted);
    ``recent``: evidence of incidents resolved within ``retention`` (kept, unless the folder is
    over ``max_bytes``). Every other file older than ``retention`` is deleted; then, while the
    folder is over ``max_bytes``, the oldest deletable files. Files younger than ``grace`` stay.
    """
    protected = _paths(active)
    kept_recent = _paths(recent)
    files = [replace(f, path=os.path.realpath(f.path)) for f in _walk(root)]
    deleted_files = deleted_bytes = 0

    def delete(f: _File) -> bool:
        nonlocal deleted_files, deleted_bytes
        try:
            os.unlink(f.path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("cannot delete evidence file %s: %s", f.path, exc.strerror or exc)
            return False
        deleted_files += 1
        deleted_bytes += f.size
        return True

    kept_files = 0
    total = 0
    over_cap: list[_File] = []  # deletable if the folder is over max_bytes, oldest first
    for f in files:
        if f.path in protected or f.mtime >= now - grace:
            pass
        elif f.path not in kept_recent and f.mtime < now - retention:
            if delete(f):
                continue
        else:
            over_cap.append(f)
        kept_files += 1
        total += f.size
    for f in sorted(over_cap, key=lambda f: f.mtime):
        if total <= max_bytes:
            break
        if delete(f):
            total -= f.size
            kept_files -= 1
    _remove_empty_folders(root)
    if deleted_files:
        log.info("evidence: deleted %d old file(s), %d bytes; %d bytes kept", deleted_files,
                 deleted_bytes, total)
    return PruneResult(deleted_files, deleted_bytes, kept_files, total)


def _remove_empty_folders(root: Path) -> None:
    for folder, dirs, files in os.walk(root, topdown=False, followlinks=False):
        if folder != str(root) and not dirs and not files:
            with contextlib.suppress(OSError):
                os.rmdir(folder)


InUse = tuple[list[Evidence], list[Evidence]]
"""(evidence of active incidents, evidence of incidents resolved since the cut-off)."""


async def prune_forever(root: Path, in_use: Callable[[float], Awaitable[InUse | None]],
                        settings: Callable[[], tuple[float, int]], stop: asyncio.Event,
                        interval: float = PRUNE_INTERVAL_S,
                        swept: Callable[[PruneResult], None] | None = None) -> None:
    """Prune ``root`` now and every ``interval`` until ``stop`` is set.

    ``in_use(cutoff)`` reads the incidents from the store (None while it cannot: that sweep is
    skipped, nothing is deleted blindly); ``settings()`` gives (retention, max_bytes) of the
    current config; ``swept`` gets each sweep's result.
    """
    while not stop.is_set():
        try:
            retention, max_bytes = settings()
            now = time.time()
            found = await in_use(now - retention)
            if found is not None and root.is_dir():
                result = await asyncio.to_thread(prune, root, found[0], found[1], now,
                                                 retention, max_bytes)
                if swept is not None:
                    swept(result)
        except Exception as exc:  # the sweep is housekeeping: never stop the agent for it
            log.warning("evidence pruning failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


class DiskUsageCache:
    """``disk_usage`` of a folder, walked at most once per ``ttl`` seconds (for scrapes)."""

    def __init__(self, root: Path, ttl: float = 60.0) -> None:
        self.root = root
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._value = (0, 0)

    def invalidate(self) -> None:
        """Walk the folder again on the next ``get``."""
        with self._lock:
            self._at = -float("inf")

    def get(self) -> tuple[int, int]:
        """(files, bytes), at most ``ttl`` seconds old."""
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.ttl:
                self._value = disk_usage(self.root) if self.root.is_dir() else (0, 0)
                self._at = now
            return self._value
