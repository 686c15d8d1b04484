"""Atomic writes: a reader sees the old file or the new one, never a partial one, and no temp files remain."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from robustft import io as rio
from robustft.io import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic


def test_write_json_atomic_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"  # missing parents are created
    write_json_atomic(path, {"b": 1, "a": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": [1.5, None], "b": 1}
    assert path.read_text().endswith("\n")
    assert path.read_text().index('"a"') < path.read_text().index('"b"')  # sorted keys: stable diffs
    inode = path.stat().st_ino
    write_json_atomic(path, {"status": "ok"})
    assert json.loads(path.read_text()) == {"status": "ok"}
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not an in-place rewrite
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_non_json_values_are_stringified_and_non_finite_become_null(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"path": tmp_path, "nan": math.nan, "nested": [{"inf": math.inf}, 1.5]})
    loaded = json.loads(path.read_text())  # strict JSON: no bare NaN for jq and friends
    assert loaded == {"path": str(tmp_path), "nan": None, "nested": [{"inf": None}, 1.5]}


def test_failure_before_writing_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"old": True})

    def broken(*args, **kwargs):
        raise ValueError("cannot serialise")

    monkeypatch.setattr(json, "dumps", broken)
    with pytest.raises(ValueError, match="cannot serialise"):
        write_json_atomic(path, {"new": True})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_failure_during_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage) -> None:
    path = tmp_path / "metrics.json"
    write_text_atomic(path, "old\n")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rio.os, stage, broken)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, "new and much longer content\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # temp file removed


def test_keyboard_interrupt_during_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rio.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"status": "ok"})
    assert list(tmp_path.iterdir()) == []  # neither a result nor a temp file


def test_atomic_write_respects_umask(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = tmp_path / "metrics.json"
        write_json_atomic(path, {"status": "ok"})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(umask)


def test_append_and_read_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "history.jsonl"
    assert read_jsonl(path) == []  # a run that has not logged yet
    append_jsonl(path, {"step": 1, "loss": 0.5})
    append_jsonl(path, {"step": 2, "loss": math.inf})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = read_jsonl(path)
    assert records[0] == {"loss": 0.5, "step": 1}
    assert records[1]["step"] == 2 and math.isinf(records[1]["loss"])
    with path.open("a") as handle:
        handle.write("\n")  # blank lines are skipped
    assert len(read_jsonl(path)) == 2


def _append_entries(path: str, writer: int, count: int, piece_bytes: int) -> None:
    """One writer process: `count` lines of ~3 kB, each written in pieces of `piece_bytes`, as a network
    filesystem (NFS, Lustre) may split a write, so that without a lock another writer's bytes can land
    between the pieces of a line."""
    write = os.write

    def write_a_piece(descriptor: int, data: bytes | memoryview) -> int:
        written = write(descriptor, bytes(data[:piece_bytes]))
        time.sleep(0.0001)  # let the other writers in between the pieces
        return written

    os.write = write_a_piece  # this child process only
    for index in range(count):
        append_jsonl(path, {"writer": writer, "index": index, "payload": f"{writer}:{index}:" + "x" * 3000})


def test_concurrent_appends_lose_and_tear_no_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    writers, entries = 4, 200
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_append_entries, args=(str(path), writer, entries, 512))
        for writer in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line is finished
    records = [json.loads(line) for line in lines[:-1]]  # raises on a torn or interleaved line
    assert len(records) == writers * entries
    assert {(r["writer"], r["index"]) for r in records} == {
        (w, i) for w in range(writers) for i in range(entries)
    }
    assert all(r["payload"] == f"{r['writer']}:{r['index']}:" + "x" * 3000 for r in records)
    # Each writer's own lines stay in the order it wrote them.
    for writer in range(writers):
        assert [r["index"] for r in records if r["writer"] == writer] == list(range(entries))


def test_a_line_cut_short_by_a_kill_is_skipped_and_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, {"key": "a"})
    cut = json.dumps({"key": "b", "text": "é" * 10}).encode("utf-8")[:-6]  # ends inside a 2-byte character
    with path.open("ab") as handle:  # a writer killed mid-line
        handle.write(cut)
    with caplog.at_level(logging.WARNING, logger="robustft.io"):
        assert read_jsonl(path) == [{"key": "a"}]
    assert "unfinished last line 2" in caplog.text
    # The next writer closes the fragment first, so its record is a line of its own.
    append_jsonl(path, {"key": "c"})
    assert path.read_bytes().split(b"\n")[1:] == [cut, b'{"key": "c"}', b""]
    # The fragment is now a malformed line in the middle: an error naming it, unless the reader skips those.
    with pytest.raises(ValueError, match=r"cache\.jsonl line 2 is not JSON"):
        read_jsonl(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustft.io"):
        assert read_jsonl(path, skip_malformed=True) == [{"key": "a"}, {"key": "c"}]
    assert "skipping line 2" in caplog.text
