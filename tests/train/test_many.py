"""`robustft train-many`: several runs in one process, each keeping the contract of a run trained alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.cli.glue import packed_run, runs_of_config_pack
from robustft.errors import RunError
from robustft.train.glue import train_run
from robustft.train.many import PackedRun, train_runs
from robustft.workflow_config import expected_run_dirs, validate_config
from tests.train.test_glue import ROWS, make_spec


@pytest.fixture(scope="session")
def rte_rows(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir whose glue/RTE files are the header and the first rows of the real ones."""
    root = tmp_path_factory.mktemp("rte-rows")
    for split in ("train", "dev"):
        source = glue_dir / "RTE" / f"{split}.tsv"
        if not source.exists():
            pytest.skip(f"{source} missing")
        target = root / "glue" / "RTE" / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[: ROWS + 1]))
    return root


def _options(model: str, data_dir: Path, out: Path, **extra) -> dict:
    """One run's `train` options as a runs file holds them: tiny RTE runs (40 examples, one epoch)."""
    settings = {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "max_seq_length": 32, "logging_steps": 2}
    options = {"model": model, "task": "rte", "method": "noisytune", "seed": 1, "out": str(out)}
    return {**options, "data_dir": str(data_dir), "train_config": settings, **extra}


def _train_many(tmp_path: Path, runs: list[dict], capsys) -> tuple[int, list[str], str]:
    """(exit status, the status line of each run, stderr) of `robustft train-many` on `runs`."""
    runs_file = tmp_path / "runs.json"
    runs_file.write_text(json.dumps(runs))
    code = main(["train-many", "--runs", str(runs_file), "--threads", "1"])
    captured = capsys.readouterr()
    # Trainer prints its logs to stdout too; the command's own lines are JSON objects naming a run.
    statuses = [json.loads(line)["status"] for line in captured.out.splitlines() if line.startswith('{"out"')]
    return code, statuses, captured.err


def test_a_run_trained_after_another_in_one_process_ends_as_when_trained_alone(
    tiny_model: str,
    rte_rows: Path,
    tmp_path: Path,
) -> None:
    alone = train_run(make_spec(tiny_model, rte_rows, seed=3), tmp_path / "alone")
    before = PackedRun(make_spec(tiny_model, rte_rows, method="finetune", seed=4), tmp_path / "first")
    packed = PackedRun(make_spec(tiny_model, rte_rows, seed=3), tmp_path / "second")
    outcomes = train_runs([before, packed])
    assert [outcome.status for outcome in outcomes] == ["ok", "ok"]
    second = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert second["metrics"] == alone["metrics"]  # nothing of the first run leaks into the second
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())
    assert (first["method"], first["seed"]) == ("finetune", 4)
    assert json.loads((tmp_path / "second" / "run.json").read_text())["status"] == "ok"


def test_a_failing_run_keeps_the_others_and_the_command_fails_naming_it(
    tiny_model: str,
    rte_rows: Path,
    tmp_path: Path,
    capsys,
) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    failing = _options(tiny_model, empty, tmp_path / "failing")  # no RTE files there
    good = _options(tiny_model, rte_rows, tmp_path / "good", method="finetune")
    code, statuses, err = _train_many(tmp_path, [failing, good], capsys)
    assert code == 1
    assert f"run {tmp_path / 'failing'} error" in err
    assert not (tmp_path / "failing" / "metrics.json").exists()
    assert json.loads((tmp_path / "failing" / "run.json").read_text())["status"] == "failed"
    assert json.loads((tmp_path / "good" / "metrics.json").read_text())["status"] == "ok"
    assert statuses == ["error", "ok"]


def test_a_finished_run_is_skipped_and_one_with_other_settings_trained_again(
    tiny_model: str,
    rte_rows: Path,
    tmp_path: Path,
    capsys,
) -> None:
    run = _options(tiny_model, rte_rows, tmp_path / "run", method="finetune")
    assert _train_many(tmp_path, [run], capsys)[0] == 0
    metrics = tmp_path / "run" / "metrics.json"
    written = metrics.stat().st_mtime_ns
    assert _train_many(tmp_path, [run], capsys)[:2] == (0, ["skipped"])
    assert metrics.stat().st_mtime_ns == written
    changed = {**run, "train_config": {**run["train_config"], "learning_rate": 1e-3}}
    assert _train_many(tmp_path, [changed], capsys)[:2] == (0, ["ok"])
    assert metrics.stat().st_mtime_ns != written
    assert json.loads((tmp_path / "run" / "run.json").read_text())["spec"]["train"]["learning_rate"] == 1e-3


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"out": None}, "--out"),
        ({"thread": 2}, "--thread"),
        ({"threads": 2}, "--threads"),  # one setting of the whole pack
        ({"task": "nosuchtask"}, "nosuchtask"),
        ({"train_config": {"learning_rat": 1}}, "learning_rat"),
    ],
    ids=["missing-out", "unknown-option", "per-run-threads", "unknown-task", "unknown-setting"],
)
def test_a_bad_run_fails_the_pack_before_any_training(
    tmp_path: Path, capsys, change: dict, says: str
) -> None:
    good = {"model": "minilm-l6", "task": "rte", "method": "finetune", "seed": 1, "out": str(tmp_path / "a")}
    bad = {**good, "seed": 2, "out": str(tmp_path / "b"), **change}
    code, _, err = _train_many(tmp_path, [good, bad], capsys)
    assert code == 2
    assert "run 1 of the pack" in err or f"run {tmp_path / 'b'}" in err, err
    assert says in err
    assert not (tmp_path / "a").exists()


def test_a_runs_file_is_a_list_of_runs(tmp_path: Path, capsys) -> None:
    code, _, err = _train_many(tmp_path, {"model": "minilm-l6"}, capsys)
    assert code == 2 and "JSON list" in err


def test_two_runs_of_a_pack_may_not_share_a_directory(tmp_path: Path) -> None:
    run = {"model": "minilm-l6", "task": "rte", "method": "finetune", "seed": 1, "out": str(tmp_path / "x")}
    with pytest.raises(RunError, match="two runs of the pack write"):
        train_runs([packed_run(run), packed_run({**run, "seed": 2})])


def test_the_packs_of_a_config_are_its_runs_as_the_workflow_names_them() -> None:
    config = validate_config(
        {
            "models": ["minilm-l6"],
            "tasks": ["rte", "mrpc"],
            "seeds": [1, 2, 3],
            "methods": {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}},
            "train_by_task": {"mrpc": {"max_train_samples": 300}},
            "pack": {"runs_per_job": 5},
        }
    )
    packs = [runs_of_config_pack(config, index, 5) for index in range(3)]  # 12 runs: 5 + 5 + 2
    assert [len(pack) for pack in packs] == [5, 5, 2]
    directories = [run["out"] for pack in packs for run in pack]
    assert directories == expected_run_dirs(config)["runs"]
    mrpc = packed_run(next(run for run in packs[1] if run["task"] == "mrpc"))
    assert mrpc.spec.train.max_train_samples == 300
    with pytest.raises(RunError, match="make 3 packs of 5"):
        runs_of_config_pack(config, 3, 5)
