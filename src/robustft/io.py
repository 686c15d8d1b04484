"""Atomic file writes: a reader never sees a half-written file, and a killed run leaves no result.
JSON-lines logs that concurrent writers can share, and readers that survive a line cut short by a kill."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # POSIX record locks (Linux, macOS; NFS through its lock manager); Windows has none
    import fcntl
except ImportError:  # pragma: no cover - no cluster runs Windows
    fcntl = None

logger = logging.getLogger(__name__)


def utc_timestamp() -> str:
    """Now, as an ISO 8601 UTC timestamp to the second (run.json's `finished_at`)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory and an atomic rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); results are shared, so honour the umask like open() does.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite_or_null(value: Any) -> Any:
    """NaN/inf are not JSON; a diverged run's metrics are written as null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(item) for item in value]
    return value


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    text = json.dumps(_finite_or_null(payload), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_text_atomic(path, text + "\n")


# POSIX record locks belong to a process, so they do not keep two threads of one process apart: this does.
_APPEND_THREADS = threading.Lock()


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON record as one whole line; safe for concurrent writers (processes and threads).

    Each append holds an exclusive lock on the file (fcntl.lockf, which NFS honours too), so the lines of
    concurrent writers never interleave, however long. A last line left unfinished by a writer that was
    killed mid-write is closed with a newline first, so the new record never continues it (readers skip
    the fragment). A crash loses at most the line being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    with _APPEND_THREADS:
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.lockf(descriptor, fcntl.LOCK_EX)  # the whole file; released by close()
            size = os.fstat(descriptor).st_size
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                line = b"\n" + line
            remaining = memoryview(line)
            while remaining:  # os.write may write less than asked (signals, huge lines)
                remaining = remaining[os.write(descriptor, remaining) :]
        finally:
            os.close(descriptor)


def read_jsonl(path: str | os.PathLike[str], *, skip_malformed: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none if it does not exist); blank lines are skipped.

    A last line without its newline that is not JSON is a write cut short (a killed writer, or one still
    writing): it is skipped with a warning. Any other line that is not JSON stops with an error naming the
    file and line, unless `skip_malformed` (for files that concurrent jobs append to, such as the judge
    cache, where a killed writer's fragment can be followed by other writers' lines): then it is skipped
    with a warning too.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open("rb") as handle:  # bytes: a cut line may end inside a multi-byte UTF-8 character
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:  # JSONDecodeError or UnicodeDecodeError
                unfinished = not line.endswith(b"\n")  # only the last line can lack it
                if not (unfinished or skip_malformed):
                    raise ValueError(f"{path} line {number} is not JSON ({err}): {line[:80]!r}") from None
                what = "unfinished last line" if unfinished else "line"
                logger.warning("%s: skipping %s %d, which is not JSON (%s)", path, what, number, err)
    return records
