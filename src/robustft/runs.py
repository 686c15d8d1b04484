"""A run directory, the same for every track (GLUE, XTREME, instruction tuning): its lifecycle and its path.

Lifecycle (docs/outputs.md):
- `prepare_run_dir` before a run: check the directory is writable, then resume from the last complete
  checkpoint of this configuration (its logs cut back to the checkpoint's step) or clear every file of an
  earlier attempt, so none is mistaken for this one's; a finished run is started over or, where the track
  asks, left alone.
- `finish_run` after it: run.json, then metrics.json, last and atomically, so a run without metrics.json is
  never counted as done; the checkpoints are removed unless kept.
- `record_failure` when something stops it: run.json with the status and the error, and no metrics.json,
  so the workflow reruns it.

The checkpoints on disk are read here too (which are complete, their step, their run state);
train/checkpoints.py decides when Trainer takes them. This module imports neither torch nor transformers:
the tables read run directories without them.

Path: the workflow names a run directory by its track's levels and `seed<S>-<key>`, the key naming the
run's settings (workflow_config builds the paths); `parse_run_dir` reads them back. The model level is
the model's path-safe name (a Hub id's "/" as "--": robustft.models.model_path_name), read back as the
model's name. Directories of older layouts are named `seed<S>` alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustft.errors import RunError, RunPreempted
from robustft.io import utc_timestamp, write_json_atomic, write_text_atomic
from robustft.models import model_from_path_name

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ checkpoints

CHECKPOINT_DIR = "checkpoints"  # inside the run directory
TENSORBOARD_DIR = "tensorboard"  # inside the run directory: TensorBoard event files (train setting report_to)
RUN_STATE_FILE = "run_state.json"  # written last into a checkpoint: marks it complete
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT_NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint directory (checkpoint-<step>)")
    return int(match.group(1))


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under `root` whose run state was written, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if CHECKPOINT_NAME.match(p.name) and (p / RUN_STATE_FILE).is_file()]
    return sorted(found, key=checkpoint_step)


def last_checkpoint(root: Path) -> Path | None:
    checkpoints = complete_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def read_run_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / RUN_STATE_FILE).read_text(encoding="utf-8"))


def truncate_jsonl(path: Path, last_step: int) -> int:
    """Drop the records of `path` logged after `last_step` (what the resumed run will log again), the
    closing summary of an attempt that stopped on SIGTERM (Trainer logs one whenever training ends) and
    a last line cut off by a kill; return how many records were dropped."""
    if not path.exists():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break  # torn by a kill mid-write
            raise ValueError(f"{path}, line {number + 1}: not JSON: {line[:80]!r}") from None
    kept = [
        line
        for line, record in zip(lines, records, strict=False)
        if record["step"] <= last_step and "train_runtime" not in record
    ]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


# ------------------------------------------------------------------------------------------ lifecycle


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prepare_run_dir(
    out_dir: Path,
    run_files: Iterable[str],
    config_hash: str,
    *,
    keep_finished: bool,
    resumed_logs: Iterable[str] = ("history.jsonl",),
    rewritten_on_resume: Iterable[str] = (),
) -> tuple[Path | None, dict[str, Any] | None]:
    """(checkpoint to resume from or None, metrics of the finished run to keep or None).

    `run_files`: the files and folders in `out_dir` that an attempt writes; all are cleared when the run
    starts over. `resumed_logs`: those of them that a resumed run keeps up to the checkpoint's step (the
    resumed run logs the rest again), so they end up as an uninterrupted run writes them.
    `rewritten_on_resume`: those cleared even when resuming, because the run writes them again at its end.

    A run that finished before (metrics.json) starts over, unless `keep_finished` and its metrics.json
    records this `config_hash` and status ok: then the run is left alone and those metrics are returned.
    A checkpoint of another configuration (its run state's checkpoint_tag) is not resumed from either.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise RunError(f"results directory {out_dir} is not writable: {err}") from err
    metrics_path = out_dir / "metrics.json"
    finished = metrics_path.exists()
    if finished and keep_finished:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if metrics.get("config_hash") == config_hash and metrics.get("status") == "ok":
            return None, metrics
        logger.info("run %s finished before with another configuration or status: starting over", out_dir)
    elif finished:
        logger.info("run %s finished before (metrics.json): starting over", out_dir)
    checkpoint = None if finished else last_checkpoint(out_dir / CHECKPOINT_DIR)
    if checkpoint is not None and read_run_state(checkpoint)["checkpoint_tag"] != config_hash:
        logger.warning("checkpoint %s is of another configuration of this run: starting over", checkpoint)
        checkpoint = None
    metrics_path.unlink(missing_ok=True)
    for name in rewritten_on_resume:
        _remove(out_dir / name)
    if checkpoint is None:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
        for name in run_files:
            _remove(out_dir / name)
        return None, None
    step = checkpoint_step(checkpoint)
    for name in resumed_logs:
        truncate_jsonl(out_dir / name, step)
    logger.info("resuming from %s at step %d", checkpoint, step)
    return checkpoint, None


def finish_run(
    out_dir: Path,
    run_record: dict[str, Any],
    result: dict[str, Any],
    *,
    keep_checkpoints: bool,
    started: float,
) -> dict[str, Any]:
    """Stamp `run_record` with the result's status, `wall_time_s` (since `started`, a time.time()) and
    `finished_at`; write run.json, then metrics.json (`result`) last; remove the checkpoints unless kept.
    Returns `result`."""
    run_record.update(status=result["status"], wall_time_s=time.time() - started, finished_at=utc_timestamp())
    write_json_atomic(Path(out_dir) / "run.json", run_record)
    write_json_atomic(Path(out_dir) / "metrics.json", result)  # last: its presence means "done"
    if not keep_checkpoints:
        shutil.rmtree(Path(out_dir) / CHECKPOINT_DIR, ignore_errors=True)
    return result


def failure_status(err: BaseException) -> str:
    """The run.json status of a run stopped by `err`: preempted, interrupted or failed."""
    if isinstance(err, RunPreempted):
        return "preempted"
    if isinstance(err, KeyboardInterrupt | SystemExit):
        return "interrupted"
    return "failed"


def record_failure(out_dir: Path, run_record: dict[str, Any], err: BaseException, started: float) -> None:
    """Leave run.json with the status and the error (and no metrics.json), so the workflow reruns the job."""
    status, error = failure_status(err), f"{type(err).__name__}: {err}"
    logging.getLogger("robustft").error("run %s %s: %s", out_dir, status, error)
    record = {**run_record, "status": status, "error": error, "wall_time_s": time.time() - started}
    write_json_atomic(Path(out_dir) / "run.json", record)


# ------------------------------------------------------------------------------------------ path

# A run's last directory: seed<S>, or seed<S>-<settings key> as the workflow names it (the key, eight
# hex digits, names the run's settings; see workflow_config.settings_key).
SEED_DIR = re.compile(r"seed(\d+)(?:-([0-9a-f]{8}))?")

# track -> (its folder under results/, the levels above the seed directory)
RUN_LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "glue": ("runs", ("model", "task", "method")),
    "xtreme": ("xtreme", ("model", "task", "setting", "method")),
    "instruct": ("instruct", ("model", "dataset", "recipe", "method")),
}


def seed_dir_name(seed: int, key: str) -> str:
    """A run's last directory, as `parse_run_dir` reads it back."""
    return f"seed{seed}-{key}"


@dataclass(frozen=True)
class RunPath:
    """What a run directory's path names. Fields a track's layout lacks are None."""

    track: str  # a key of RUN_LAYOUTS
    model: str  # the model's name (a Hub id with its "/"), not its path-safe level
    method: str
    seed: int
    key: str | None  # None: an older directory named seed<S> alone
    task: str | None = None  # GLUE, XTREME
    setting: str | None = None  # XTREME: zero-shot, translate-train, ...
    dataset: str | None = None  # instruction tuning
    recipe: str | None = None  # instruction tuning


def _layout(track: str) -> str:
    folder, levels = RUN_LAYOUTS[track]
    return f"results/{folder}/" + "/".join(f"<{level}>" for level in levels) + "/seed<S>-<key>"


def _track_of(path: Path) -> str:
    found = [
        track
        for track, (folder, levels) in RUN_LAYOUTS.items()
        if len(path.parts) >= len(levels) + 2 and path.parts[-len(levels) - 2] == folder
    ]
    if len(found) != 1:
        layouts = "; ".join(_layout(track) for track in RUN_LAYOUTS)
        raise ValueError(f"{path}: not under the results folder of one track ({layouts}); pass its track")
    return found[0]


def parse_run_dir(path: str | os.PathLike[str], track: str | None = None) -> RunPath:
    """What a run directory's path names (results/xtreme/m/xnli/zero-shot/finetune/seed3-1a2b3c4d ->
    RunPath("xtreme", model="m", task="xnli", setting="zero-shot", method="finetune", seed=3, ...));
    a model level results/runs/acme--tiny-bert/... reads as model "acme/tiny-bert".

    `track` says which layout the path has (the levels are read from its end, so any root works);
    without it, the path must hold its track's results folder (runs, xtreme or instruct) in its place.
    """
    path = Path(path)
    name = path.name
    match = SEED_DIR.fullmatch(name)
    if match is None:
        raise ValueError(f"{path}: run directory {name!r} is not named seed<integer>[-<8 hex digits>]")
    if track is None:
        track = _track_of(path)
    elif track not in RUN_LAYOUTS:
        raise ValueError(f"unknown track {track!r}; known: {list(RUN_LAYOUTS)}")
    levels = RUN_LAYOUTS[track][1]
    above = path.parts[:-1]
    if len(above) < len(levels):
        raise ValueError(
            f"{path}: a run directory of track {track} has {len(levels)} levels above it ({_layout(track)})"
        )
    values = dict(zip(levels, above[-len(levels) :], strict=True))
    values["model"] = model_from_path_name(values["model"])
    return RunPath(track=track, seed=int(match.group(1)), key=match.group(2), **values)
