"""Checkpoints and resume (docs/running.md): a run stopped at any point and run again ends with the metrics,
loss history and norms of the run that was never stopped, for stateful methods too; failures leave a
run.json that says why and no metrics.json; SIGTERM checkpoints and stops.

Runs are on the tiny random BERT and 48 training rows of the real RTE file: 12 steps per epoch at batch
4, two epochs, a checkpoint every 4 steps (4, 8, and 12 at the end of epoch 1, 16, 20) and a log every
3 steps, so checkpoints fall both between logs and at an epoch's end.

Everything is compared for exact equality: on a CPU, with the same thread count, the same operations on
the same inputs give the same bits, and resuming restores every input (weights, optimizer, scheduler,
RNG states, data order, method state). Only timings, and Trainer's final summary line (train_loss,
runtime and throughput of the last attempt), differ.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from robustft.io import read_jsonl
from robustft.train.checkpoints import (
    RUN_STATE_FILE,
    complete_checkpoints,
    read_run_state,
    truncate_jsonl,
)
from robustft.train.config import RunError, RunPreempted, RunSpec, TrainConfig
from robustft.train.glue import prepare_glue_run_dir as prepare_run_dir
from robustft.train.glue import train_run
from robustft.train.trainer import RobustTrainer

TRAIN_ROWS, DEV_ROWS = 48, 16
SETTINGS = {
    "epochs": 2,
    "batch_size": 4,
    "eval_batch_size": 16,
    "max_seq_length": 32,
    "logging_steps": 3,
    "checkpoint_steps": 4,
}
# Settings that make each component's state matter within 24 steps.
METHODS: dict[str, dict[str, Any] | None] = {
    "finetune": None,
    # The EMA teacher moves fast (β 0.5, then 0.9), so a teacher restarted at θ_0 changes the loss at once.
    "smart": {"smart": {"momentum": 0.5, "momentum_final": 0.9}},
    # θ* lives in the optimizer state; the recall term still weighs at step 8 (λ(8) ≈ 0.9): t0 = 6 steps and
    # a width of 1 step of the 24 planned, so the schedule is also resolved from the restored run length.
    "recadam": {"recadam": {"anneal_t0": 0.25, "anneal_width": 1 / 24}},
    # Targets must be the pretrained weights, not the checkpoint's; masks come from the restored RNG.
    "mixout": None,
    # The perturbation is redone and then overwritten by the checkpoint; the teacher starts perturbed.
    "noisytune+smart": {"noisytune": {}, "smart": {"momentum": 0.5, "momentum_final": 0.9}},
}


@pytest.fixture(scope="session")
def resume_data(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-data")
    for split, rows in (("train", TRAIN_ROWS), ("dev", DEV_ROWS)):
        source = glue_dir / "RTE" / f"{split}.tsv"
        if not source.exists():
            pytest.skip(f"{source} missing")
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: rows + 1]
        target = root / "glue" / "RTE" / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="utf-8")
    return root


def make_spec(model: str, data_dir: Path, method: str = "finetune", **train: Any) -> RunSpec:
    return RunSpec(
        model=model,
        task="rte",
        method=method,
        seed=3,
        train=TrainConfig(**{**SETTINGS, **train}),
        components=METHODS.get(method),
        data_dir=str(data_dir),
    )


_REFERENCES: dict[str, Path] = {}


@pytest.fixture
def reference(tiny_model: str, resume_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run of a method (once per session)."""

    def run(method: str) -> Path:
        if method not in _REFERENCES:
            out = tmp_path_factory.mktemp("reference") / method
            assert train_run(make_spec(tiny_model, resume_data, method), out)["status"] == "ok"
            _REFERENCES[method] = out
        return _REFERENCES[method]

    return run


def _without_timings(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.endswith(("_runtime", "_per_second"))}


def history(out: Path) -> list[dict[str, Any]]:
    """history.jsonl without timings and without Trainer's final summary of the (last) attempt."""
    return [_without_timings(r) for r in read_jsonl(out / "history.jsonl") if "train_runtime" not in r]


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert _json(resumed / "metrics.json")["metrics"] == _json(reference / "metrics.json")["metrics"]
    # One closing summary, at the end: none left over from an attempt that stopped on SIGTERM.
    for out in (resumed, reference):
        summaries = [i for i, r in enumerate(read_jsonl(out / "history.jsonl")) if "train_runtime" in r]
        assert summaries == [len(read_jsonl(out / "history.jsonl")) - 1]
    resumed_history, reference_history = history(resumed), history(reference)
    assert [r["step"] for r in resumed_history] == [r["step"] for r in reference_history]
    assert resumed_history == reference_history
    assert read_jsonl(resumed / "norms.jsonl") == read_jsonl(reference / "norms.jsonl")
    resumed_run, reference_run = _json(resumed / "run.json"), _json(reference / "run.json")
    assert resumed_run["method_log"] == reference_run["method_log"]
    assert resumed_run["status"] == "ok" and "error" not in resumed_run
    assert not (resumed / "checkpoints").exists()  # removed once metrics.json is written


def crash_during_step(monkeypatch: pytest.MonkeyPatch, step: int, error: BaseException) -> None:
    """Make training raise `error` in the middle of optimizer step `step` (after its forward)."""
    original = RobustTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        result = original(self, model, inputs, *args, **kwargs)
        if model.training and self.state.global_step + 1 == step:
            raise error
        return result

    monkeypatch.setattr(RobustTrainer, "compute_loss", compute_loss)


# ------------------------------------------------------------------------------- resume equals no stop


# finetune and smart alone are resumed in the epoch-end and SIGTERM tests below.
@pytest.mark.parametrize("method", ["recadam", "mixout", "noisytune+smart"])
def test_resumed_run_equals_uninterrupted(
    method: str, reference, tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    spec = make_spec(tiny_model, resume_data, method)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_during_step(patch, 10, RuntimeError("worker lost"))
        with pytest.raises(RuntimeError, match="worker lost"):
            train_run(spec, out)
    run = _json(out / "run.json")
    assert run["status"] == "failed" and run["error"] == "RuntimeError: worker lost"
    assert not (out / "metrics.json").exists()
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["checkpoint-8"]
    assert max(r["step"] for r in read_jsonl(out / "history.jsonl")) == 9  # logged after the checkpoint

    result = train_run(spec, out)
    assert result["status"] == "ok"
    assert _json(out / "run.json")["resumed_from_step"] == 8
    assert_same_run(out, reference(method))


def test_smart_teacher_is_what_makes_the_resumed_run_equal(
    reference, tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """Resuming SMART without its teacher (θ̃ restarts at θ_0) gives another run: the state hook matters."""
    from robustft.methods.smart import SMART

    spec = make_spec(tiny_model, resume_data, "smart")
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_during_step(patch, 10, RuntimeError("worker lost"))
        with pytest.raises(RuntimeError):
            train_run(spec, out)
    state = torch.load(out / "checkpoints" / "checkpoint-8" / "method_state.pt", weights_only=True)
    assert set(state) == {"smart"} and state["smart"]["teacher"]
    monkeypatch.setattr(SMART, "load_state_dict", lambda self, state: None)
    train_run(spec, out)
    resumed = [r["loss"] for r in history(out) if "loss" in r]
    uninterrupted = [r["loss"] for r in history(reference("smart")) if "loss" in r]
    assert resumed[:3] == uninterrupted[:3]  # steps 1, 3, 6: before the checkpoint
    assert resumed[3:] != uninterrupted[3:]


def test_resume_after_epoch_end_checkpoint_keeps_that_epochs_evaluation(
    reference, tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """The checkpoint due at step 12 (end of epoch 1) is taken after the evaluation, so the resumed run
    does not lose it (Trainer skips the evaluation of an epoch it resumes after)."""
    spec = make_spec(tiny_model, resume_data, "finetune")
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_during_step(patch, 14, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            train_run(spec, out)
    assert _json(out / "run.json")["status"] == "interrupted"
    (checkpoint,) = complete_checkpoints(out / "checkpoints")
    assert checkpoint.name == "checkpoint-12"
    trainer_state = _json(checkpoint / "trainer_state.json")
    assert any("eval_dev_accuracy" in entry for entry in trainer_state["log_history"])
    train_run(spec, out)
    assert [r["step"] for r in history(out) if "eval_dev_accuracy" in r] == [12, 24]
    assert_same_run(out, reference("finetune"))


# ---------------------------------------------------------------------------------------------- SIGTERM


def sigterm_during_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """SIGTERM this process in the middle of optimizer step `step`, as SLURM does to a preempted job."""
    original = RobustTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and self.state.global_step + 1 == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(RobustTrainer, "compute_loss", compute_loss)


@pytest.mark.parametrize("step", [6, 12])
def test_sigterm_saves_a_checkpoint_and_stops(
    step: int, reference, tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    spec = make_spec(tiny_model, resume_data, "smart")
    out = tmp_path / "run"
    previous_handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        sigterm_during_step(patch, step)
        with pytest.raises(RunPreempted, match=f"checkpoint at step {step}"):
            train_run(spec, out)
    assert signal.getsignal(signal.SIGTERM) is previous_handler  # the handler is training-only
    run = _json(out / "run.json")
    assert run["status"] == "preempted" and "run the same command again to resume" in run["error"]
    assert not (out / "metrics.json").exists()
    # The step's checkpoint, not a periodic one (6 is not a multiple of 4), and no other.
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"checkpoint-{step}"]
    steps = [r["step"] for r in read_jsonl(out / "history.jsonl")]
    assert max(steps) == step
    evaluated = [r["step"] for r in read_jsonl(out / "history.jsonl") if "eval_dev_loss" in r]
    # Stopping mid-epoch skips the epoch's evaluation (the resumed run does it); at the epoch's end it runs.
    assert evaluated == ([] if step == 6 else [12])
    train_run(spec, out)
    assert_same_run(out, reference("smart"))


def test_cli_reports_preemption_with_a_nonzero_exit(
    tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from robustft.cli import main

    argv = ["train", "--model", tiny_model, "--task", "rte", "--method", "finetune", "--seed", "3"]
    argv += ["--out", str(tmp_path / "run"), "--data-dir", str(resume_data)]
    # No periodic checkpoints: SIGTERM still saves one.
    argv += ["--train-config", json.dumps({**SETTINGS, "checkpoint_steps": 0})]
    sigterm_during_step(monkeypatch, 5)
    assert main(argv) != 0
    assert "stopped on SIGTERM with a checkpoint at step 5" in capsys.readouterr().err
    assert _json(tmp_path / "run" / "run.json")["status"] == "preempted"
    assert [p.name for p in complete_checkpoints(tmp_path / "run" / "checkpoints")] == ["checkpoint-5"]


# ---------------------------------------------------------------------------------- what is resumed from


def test_a_finished_run_run_again_starts_over(
    reference, tiny_model: str, resume_data: Path, tmp_path: Path
) -> None:
    spec = make_spec(tiny_model, resume_data, "finetune", keep_checkpoints=True)
    out = tmp_path / "run"
    train_run(spec, out)
    # Kept: the last periodic checkpoint (none at the last step, which only the final evaluation follows).
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["checkpoint-20"]
    train_run(spec, out)
    assert _json(out / "run.json")["resumed_from_step"] is None
    assert history(out) == history(reference("finetune"))


def test_a_changed_configuration_starts_over(
    tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_during_step(patch, 10, RuntimeError("worker lost"))
        with pytest.raises(RuntimeError):
            train_run(make_spec(tiny_model, resume_data, "finetune"), out)
    train_run(make_spec(tiny_model, resume_data, "finetune", learning_rate=1e-4), out)
    assert _json(out / "run.json")["resumed_from_step"] is None
    steps = [r["step"] for r in read_jsonl(out / "history.jsonl") if "loss" in r]
    assert steps == [1, 3, 6, 9, 12, 15, 18, 21, 24]  # one run's logs, none left from the first attempt


def test_diverged_state_is_never_checkpointed(
    tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    original = RobustTrainer.compute_loss

    def nan_loss(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if model.training else loss

    monkeypatch.setattr(RobustTrainer, "compute_loss", nan_loss)
    out = tmp_path / "run"
    spec = make_spec(tiny_model, resume_data, logging_steps=1, checkpoint_steps=1, keep_checkpoints=True)
    result = train_run(spec, out)
    assert result["status"] == "diverged" and result["diverged_at_step"] == 1
    assert complete_checkpoints(out / "checkpoints") == []


def _write_checkpoint(root: Path, step: int, tag: str, complete: bool = True) -> Path:
    checkpoint = root / "checkpoints" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"")
    if complete:
        (checkpoint / RUN_STATE_FILE).write_text(json.dumps({"checkpoint_tag": tag, "step": step}))
    return checkpoint


def _write_history(out: Path, steps: list[int], torn: bool = False) -> None:
    lines = [json.dumps({"step": step, "loss": 0.5}) for step in steps]
    text = "\n".join(lines) + "\n" + ('{"step": 9, "lo' if torn else "")
    (out / "history.jsonl").write_text(text)
    (out / "norms.jsonl").write_text(json.dumps({"point": "start", "step": 0}) + "\n")


def test_resume_point_skips_an_incomplete_checkpoint_and_truncates_the_logs(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, 8, "abc")
    _write_checkpoint(tmp_path, 12, "abc", complete=False)  # killed while saving
    _write_history(tmp_path, [1, 3, 6, 8, 9], torn=True)
    (tmp_path / "run.json").write_text("{}")
    checkpoint = prepare_run_dir(tmp_path, "abc")
    assert checkpoint == tmp_path / "checkpoints" / "checkpoint-8"
    assert [r["step"] for r in read_jsonl(tmp_path / "history.jsonl")] == [1, 3, 6, 8]
    assert read_jsonl(tmp_path / "norms.jsonl") == [{"point": "start", "step": 0}]
    assert (tmp_path / "run.json").exists()


@pytest.mark.parametrize("reason", ["other configuration", "finished"])
def test_resume_point_starts_over(tmp_path: Path, reason: str) -> None:
    _write_checkpoint(tmp_path, 8, "abc" if reason == "finished" else "xyz")
    _write_history(tmp_path, [1, 3, 6, 8, 9])
    if reason == "finished":
        (tmp_path / "metrics.json").write_text("{}")
    assert prepare_run_dir(tmp_path, "abc") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_truncate_refuses_a_corrupt_line_before_the_end(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        truncate_jsonl(path, 5)


def test_run_state_keeps_a_nan_loss_window(tmp_path: Path) -> None:
    from robustft.train.checkpoints import write_run_state

    write_run_state(tmp_path, {"loss_window": {"loss_sum": math.nan, "last_logged_step": 3}}, {})
    assert math.isnan(read_run_state(tmp_path)["loss_window"]["loss_sum"])


# --------------------------------------------------------------------------------------------- failures


def test_a_failure_before_training_is_recorded(tiny_model: str, tmp_path: Path) -> None:
    from robustft.data import DataNotFoundError

    out = tmp_path / "run"
    with pytest.raises(DataNotFoundError) as err:
        train_run(make_spec(tiny_model, tmp_path / "no-data"), out)
    run = _json(out / "run.json")
    assert run["status"] == "failed" and run["error"] == f"DataNotFoundError: {err.value}"
    assert run["spec"]["model"] == tiny_model and run["config_hash"]
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


@pytest.mark.parametrize("phase", ["training", "evaluation"])
def test_out_of_memory_names_the_run_and_the_batch_size(
    phase: str, tiny_model: str, resume_data: Path, tmp_path: Path, monkeypatch
) -> None:
    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = "compute_loss" if phase == "training" else "prediction_step"
    monkeypatch.setattr(RobustTrainer, hook, out_of_memory)
    out = tmp_path / "run"
    with pytest.raises(RunError) as err:
        train_run(make_spec(tiny_model, resume_data), out)
    expected = "at batch size 4" if phase == "training" else "at eval batch size 16"
    assert f"in run {out} during {phase} {expected}" in str(err.value)
    run = _json(out / "run.json")
    assert run["status"] == "failed" and str(err.value) in run["error"]
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------------------ a real process, killed

# `robustft train` (cli.main, what `python -m robustft` runs) in a fresh interpreter, with the tiny model
# registered as this test session registers it, and a signal the process sends itself during a chosen
# optimizer step. SIGKILL cannot be caught: the process dies on the spot, mid-step, as on a node failure
# or at the end of SLURM's grace time. A signal from outside would land at a random step, or after the
# run, on a machine as loaded as CI's.
_PROCESS = """
import os, signal, sys
from robustft.models import ModelSpec, register_model
from robustft.train.trainer import RobustTrainer

model_dir, kill = sys.argv[1], sys.argv[2]
register_model(ModelSpec(name="tiny-bert", source=model_dir))
if kill != "none":
    name, step = kill.split("@")
    compute_loss = RobustTrainer.compute_loss

    def killing_compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and self.state.global_step + 1 == int(step):
            os.kill(os.getpid(), getattr(signal, name))
        return compute_loss(self, model, inputs, *args, **kwargs)

    RobustTrainer.compute_loss = killing_compute_loss
from robustft.cli import main

sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.integration
def test_killed_process_resumes_to_the_uninterrupted_result(
    reference, tiny_model: str, resume_data: Path, tmp_path: Path
) -> None:
    """Two processes (their imports take most of the time). The uninterrupted run is the one of this
    session: same code, and the same single torch thread (conftest sets OMP_NUM_THREADS before
    torch loads, and the child inherits it), so it computes bit for bit what a child process computes."""
    from robustft.models import get_model_spec

    model_dir = get_model_spec(tiny_model).location()
    out = tmp_path / "run"

    def robustft_train(kill: str) -> subprocess.CompletedProcess:
        argv = ["train", "--model", tiny_model, "--task", "rte", "--method", "smart", "--seed", "3"]
        argv += ["--out", str(out), "--data-dir", str(resume_data), "--train-config", json.dumps(SETTINGS)]
        argv += ["--method-components", json.dumps(METHODS["smart"])]
        command = [sys.executable, "-c", _PROCESS, model_dir, kill, *argv]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    killed = robustft_train("SIGKILL@16")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _json(out / "run.json")["status"] == "running"  # nothing ran to record the kill
    assert not (out / "metrics.json").exists()
    # Checkpoints 4 and 8 were replaced by 12 (saved after epoch 1's evaluation); 13-15 were logged since.
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["checkpoint-12"]
    assert max(r["step"] for r in read_jsonl(out / "history.jsonl")) == 15

    resumed = robustft_train("none")  # the same command, as a requeued job runs it
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {out / 'checkpoints' / 'checkpoint-12'} at step 12" in resumed.stderr
    assert _json(out / "run.json")["resumed_from_step"] == 12
    assert_same_run(out, reference("smart"))
