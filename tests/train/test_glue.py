"""`train_run` end to end on a tiny random BERT and 40-row slices of real GLUE files: the run contract."""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from robustft import provenance
from robustft.data.glue import SplitData
from robustft.io import read_jsonl
from robustft.tables import collect_runs
from robustft.train.config import RunError, RunSpec, TrainConfig
from robustft.train.glue import _final_eval, _subsample, train_run
from robustft.train.precision import cpu_has_fast_bf16

ROWS = 40
CONTRACT_KEYS = {
    "status",
    "model",
    "task",
    "method",
    "seed",
    "primary_metric",
    "metrics",
    "epoch",
    "diverged_at_step",
    "n_train",
    "n_eval",
}


@pytest.fixture(scope="session")
def mini_glue(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir whose glue/{RTE,STS-B} files are the header plus the first 40 rows of the real ones."""
    root = tmp_path_factory.mktemp("mini-data")
    for task in ("RTE", "STS-B"):
        for split in ("train", "dev"):
            source = glue_dir / task / f"{split}.tsv"
            if not source.exists():
                pytest.skip(f"{source} missing")
            lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: ROWS + 1]
            target = root / "glue" / task / f"{split}.tsv"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(lines), encoding="utf-8")
    return root


def make_spec(
    model: str, data_dir: Path, task: str = "rte", method: str = "noisytune", seed: int = 1, **train
):
    settings = {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "max_seq_length": 32, "logging_steps": 2}
    return RunSpec(
        model=model,
        task=task,
        method=method,
        seed=seed,
        train=TrainConfig(**{**settings, **train}),
        data_dir=str(data_dir),
    )


def _read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


@pytest.fixture(scope="session")
def rte_run(tiny_model: str, mini_glue: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "rte-noisytune-seed1"
    spec = make_spec(tiny_model, mini_glue)
    return spec, out, train_run(spec, out)


# ------------------------------------------------------------------------------------------ the contract


def test_run_files_and_metrics(rte_run) -> None:
    _, out, result = rte_run
    for name in ("metrics.json", "history.jsonl", "norms.jsonl", "run.json"):
        assert (out / name).is_file(), name
    metrics = _read(out, "metrics.json")
    assert metrics == json.loads(json.dumps(result))  # what the caller got is what was written
    assert set(metrics) >= CONTRACT_KEYS
    assert metrics["status"] == "ok"
    assert (metrics["model"], metrics["task"], metrics["method"], metrics["seed"]) == (
        "tiny-bert",
        "rte",
        "noisytune",
        1,
    )
    assert metrics["primary_metric"] == "accuracy"
    assert set(metrics["metrics"]) == {"accuracy", "eval_loss"}
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
    # accuracy on 40 examples is a multiple of 1/40
    assert metrics["metrics"]["accuracy"] * ROWS == pytest.approx(
        round(metrics["metrics"]["accuracy"] * ROWS)
    )
    assert math.isfinite(metrics["metrics"]["eval_loss"]) and metrics["metrics"]["eval_loss"] > 0
    assert metrics["n_train"] == ROWS and metrics["n_eval"] == ROWS
    assert metrics["epoch"] == pytest.approx(1.0)
    assert metrics["diverged_at_step"] is None
    assert metrics["train_samples_per_second"] > 0
    # no temporary files of the atomic writes are left behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_metrics_record_the_dev_score_of_the_training_majority_class(rte_run) -> None:
    """The line a learning curve must rise above: the training split's most frequent label, scored on dev."""
    from collections import Counter

    from robustft.data.glue import load_split

    spec, out, _ = rte_run
    train = load_split("rte", "train", spec.data_dir).labels
    dev = load_split("rte", "dev", spec.data_dir).labels
    counts = Counter(train)
    majority = min(label for label, count in counts.items() if count == max(counts.values()))
    baseline = _read(out, "metrics.json")["constant_baseline"]
    assert baseline["prediction"] == majority
    assert baseline["metrics"]["accuracy"] == pytest.approx(dev.count(majority) / len(dev))


def test_run_json_provenance(rte_run) -> None:
    spec, out, _ = rte_run
    run = _read(out, "run.json")
    assert run["status"] == "ok"
    assert re.fullmatch(r"([0-9a-f]{40}(-dirty)?|unknown)", run["git_commit"])
    for package in ("python", "torch", "transformers", "datasets", "numpy"):
        assert run["versions"][package] and run["versions"][package] != "not installed", package
    assert {"platform", "cpu_count", "torch_threads", "cuda"} <= set(run["hardware"])
    assert re.fullmatch(r"[0-9a-f]{16}", run["config_hash"])
    assert run["config_hash"] == provenance.config_hash(run["spec"])
    assert run["spec"]["train"]["batch_size"] == 8
    assert run["spec"]["model"] == "tiny-bert" and run["spec"]["seed"] == 1
    assert run["method"]["name"] == "noisytune"
    assert run["method"]["components"][0]["noisytune"]["noise_lambda"] == 0.15
    log = run["method_log"]["noisytune"]
    assert log["tensors_new_head_skipped"] == ["classifier.bias", "classifier.weight"]
    assert log["tensors_perturbed"] > 30
    assert run["data"]["train"] == f"local:{Path(spec.data_dir) / 'glue' / 'RTE' / 'train.tsv'}"
    assert run["data"]["dev"].endswith("dev.tsv")
    assert run["wall_time_s"] > 0
    finished = datetime.fromisoformat(run["finished_at"])  # dates the run, so a grid's span is knowable
    assert finished.tzinfo is not None and abs((datetime.now(UTC) - finished).total_seconds()) < 3600
    assert "train_runtime" in run["train_metrics"]
    # The default `auto`, resolved for this CPU (GPU runs are not tested here).
    used = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert {key: run["precision"][key] for key in ("requested", "used", "device")} == {
        "requested": "auto",
        "used": used,
        "device": "cpu",
    }
    assert run["precision"]["why"].startswith(f"auto: {used}")


def test_bf16_on_a_cpu_trains_and_is_recorded(tiny_model: str, mini_glue: Path, tmp_path: Path) -> None:
    """bf16 autocast on a CPU: transformers refuses it unless the run says it is on the CPU on purpose
    (use_cpu). run.json and the run table record the precision the run used."""
    out = tmp_path / "runs" / tiny_model / "rte" / "finetune" / "seed1"
    spec = make_spec(tiny_model, mini_glue, method="finetune", precision="bf16", max_train_samples=16)
    assert train_run(spec, out)["status"] == "ok"
    recorded = _read(out, "run.json")["precision"]
    assert (recorded["requested"], recorded["used"], recorded["device"]) == ("bf16", "bf16", "cpu")
    runs = collect_runs(tmp_path / "runs")
    assert list(runs["precision"]) == ["bf16"] and list(runs["precision_why"]) == [recorded["why"]]


def test_history_jsonl(rte_run) -> None:
    _, out, result = rte_run
    history = read_jsonl(out / "history.jsonl")
    train_logs = [r for r in history if "loss" in r]
    evals = [r for r in history if "eval_dev_accuracy" in r]
    # 40 rows / batch 8 = 5 steps, logged at step 1 (first step) and every 2 steps
    assert [r["step"] for r in train_logs] == [1, 2, 4]
    assert all(math.isfinite(r["loss"]) and "learning_rate" in r for r in train_logs)
    assert len(evals) == 1
    assert evals[0]["step"] == 5 and evals[0]["epoch"] == pytest.approx(1.0)
    assert evals[0]["eval_dev_accuracy"] == result["metrics"]["accuracy"]
    assert evals[0]["eval_dev_loss"] == result["metrics"]["eval_loss"]
    steps = [r["step"] for r in history]
    assert steps == sorted(steps)


def test_norms_jsonl(rte_run, tiny_model: str) -> None:
    from robustft.models import load_sequence_classifier_with_info

    _, out, _ = rte_run
    norms = read_jsonl(out / "norms.jsonl")
    assert [r["point"] for r in norms] == ["start", "eval"]  # start + one per epoch
    assert norms[0]["step"] == 0 and norms[0]["epoch"] == 0.0
    assert norms[1]["step"] == 5 and norms[1]["epoch"] == pytest.approx(1.0)
    groups = norms[0]["groups"]
    assert set(groups) == {
        "all",
        "query",
        "key",
        "value",
        "attention_output",
        "ffn",
        "dense",
        "layernorm",
        "embeddings",
    }
    # the new classification head is not a pretrained parameter and is excluded
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    total = sum(p.numel() for n, p in model.named_parameters() if n not in new)
    assert groups["all"]["numel"] == total
    # training moved the weights
    assert norms[1]["groups"]["all"]["l1"] != groups["all"]["l1"]


def test_start_norms_are_taken_after_the_perturbation(
    rte_run, tiny_model: str, mini_glue: Path, tmp_path: Path
) -> None:
    from robustft.models import load_sequence_classifier_with_info
    from robustft.train.norms import group_l1_norms

    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    checkpoint = group_l1_norms(model, exclude=frozenset(new))
    finetune = tmp_path / "finetune"
    train_run(make_spec(tiny_model, mini_glue, method="finetune"), finetune)
    assert read_jsonl(finetune / "norms.jsonl")[0]["groups"] == checkpoint
    noisy_start = read_jsonl(rte_run[1] / "norms.jsonl")[0]["groups"]
    assert noisy_start["all"]["l1"] != pytest.approx(checkpoint["all"]["l1"], rel=1e-9)
    assert noisy_start["all"]["numel"] == checkpoint["all"]["numel"]
    assert _read(finetune, "run.json")["method_log"] == {}


def test_same_seed_same_result(rte_run, tmp_path: Path) -> None:
    spec, out, first = rte_run
    again = train_run(spec, tmp_path / "again")
    assert again["metrics"] == first["metrics"]

    def losses(path: Path) -> list:
        return [
            (r["step"], r.get("loss"), r.get("eval_dev_loss")) for r in read_jsonl(path / "history.jsonl")
        ]

    assert losses(tmp_path / "again") == losses(out)
    assert read_jsonl(tmp_path / "again" / "norms.jsonl") == read_jsonl(out / "norms.jsonl")
    assert _read(tmp_path / "again", "run.json")["config_hash"] == _read(out, "run.json")["config_hash"]


def test_stsb_regression_with_subsample(tiny_model: str, mini_glue: Path, tmp_path: Path) -> None:
    result = train_run(make_spec(tiny_model, mini_glue, task="stsb", max_train_samples=24), tmp_path)
    assert result["status"] == "ok"
    assert result["primary_metric"] == "pearson"
    assert set(result["metrics"]) == {"pearson", "spearman", "eval_loss"}
    assert all(-1.0 <= result["metrics"][m] <= 1.0 for m in ("pearson", "spearman"))
    assert result["n_train"] == 24 and result["n_eval"] == ROWS
    data = _read(tmp_path, "run.json")["data"]
    assert data["train"].endswith(f"(random 24 of {ROWS}, data_seed=0)")
    assert "random" not in data["dev"]
    # 24 rows / batch 8 = 3 steps
    assert [r["step"] for r in read_jsonl(tmp_path / "history.jsonl") if "eval_dev_pearson" in r] == [3]


# ------------------------------------------------------------------------------------------- subsampling


def _split(n: int) -> SplitData:
    return SplitData(
        texts=[[f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)]], labels=list(range(n)), source="s"
    )


def test_subsample_is_deterministic_and_keeps_rows_aligned() -> None:
    split = _split(100)
    first, again, other = _subsample(split, 10, 0), _subsample(split, 10, 0), _subsample(split, 10, 1)
    assert first.labels == again.labels
    assert first.labels != other.labels
    assert first.labels == sorted(first.labels)  # file order is kept
    assert len(set(first.labels)) == 10
    assert first.texts == [[f"a{i}" for i in first.labels], [f"b{i}" for i in first.labels]]
    assert first.source == "s (random 10 of 100, data_seed=0)"
    assert _subsample(split, None, 0) is split
    assert _subsample(split, 100, 0) is split
    assert _subsample(split, 500, 0) is split


# ---------------------------------------------------------------------------------------------- failures


def test_interrupted_run_leaves_no_metrics(
    tiny_model: str, mini_glue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustft.train.callbacks import HistoryCallback

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"status": "ok", "stale": True}))
    (out / "history.jsonl").write_text('{"stale": true}\n')
    original = HistoryCallback.on_log

    def interrupt(self, args, state, control, logs=None, **kwargs):
        original(self, args, state, control, logs=logs, **kwargs)
        if state.global_step >= 2:
            raise KeyboardInterrupt  # Ctrl-C or SIGINT from the scheduler, mid-epoch

    monkeypatch.setattr(HistoryCallback, "on_log", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_run(make_spec(tiny_model, mini_glue, logging_steps=1), out)
    assert not (out / "metrics.json").exists()  # the stale one is gone and no new one was written
    history = read_jsonl(out / "history.jsonl")
    assert history and all("stale" not in r for r in history)
    assert max(r["step"] for r in history) == 2
    run = _read(out, "run.json")
    assert run["status"] == "interrupted" and run["error"].startswith("KeyboardInterrupt")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_results_directory(tiny_model: str, mini_glue: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "run"
    with pytest.raises(RunError) as err:
        train_run(make_spec(tiny_model, mini_glue), out)
    assert str(out) in str(err.value)
    assert "not writable" in str(err.value)


def test_bad_spec_fails_before_touching_the_run_dir(tiny_model: str, mini_glue: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no-such-model"):
        train_run(make_spec("no-such-model", mini_glue), tmp_path / "a")
    with pytest.raises(RunError, match="seed must be an integer"):
        train_run(make_spec(tiny_model, mini_glue, seed="1"), tmp_path / "b")
    with pytest.raises(RunError, match="report_epoch"):
        train_run(make_spec(tiny_model, mini_glue, report_epoch="first"), tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


@pytest.fixture
def nan_run(tiny_model: str, mini_glue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A run whose training loss is NaN from the first step on (e.g. an exploding learning rate)."""
    patch_nan_training_loss(monkeypatch)
    out = tmp_path / "nan"
    return out, train_run(make_spec(tiny_model, mini_glue, method="finetune", logging_steps=1), out)


def patch_nan_training_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the tiny BERT's training loss NaN (its evaluation losses stay finite)."""
    from transformers import BertForSequenceClassification

    original = BertForSequenceClassification.forward

    @functools.wraps(original)
    def nan_loss(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if self.training and output.loss is not None:
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(BertForSequenceClassification, "forward", nan_loss)


def test_nan_loss_is_reported_diverged(nan_run) -> None:
    out, result = nan_run
    metrics = _read(out, "metrics.json")
    assert metrics["status"] == "diverged" == result["status"]
    assert _read(out, "run.json")["status"] == "diverged"


def test_nan_loss_stops_training_at_first_step(nan_run) -> None:
    out, result = nan_run
    assert result["diverged_at_step"] == 1
    losses = [r["loss"] for r in read_jsonl(out / "history.jsonl") if "loss" in r]
    assert losses and not math.isfinite(losses[-1])
    assert max(r["step"] for r in read_jsonl(out / "history.jsonl")) < 5


def test_second_eval_split_is_reported(tiny_model: str, tmp_path: Path) -> None:
    labels = ("entailment", "neutral", "contradiction")
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        rows = [f"{i}\tpremise number {i}\thypothesis {i % 5}\t{labels[i % 3]}" for i in range(16)]
        path = tmp_path / "data" / "glue" / "MNLI" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("index\tsentence1\tsentence2\tgold_label\n" + "\n".join(rows) + "\n")
    result = train_run(
        make_spec(tiny_model, tmp_path / "data", task="mnli", method="finetune"), tmp_path / "run"
    )
    assert result["status"] == "ok"
    assert {"accuracy", "eval_loss", "accuracy_mm", "eval_loss_mm"} <= set(result["metrics"])


def test_final_eval_last_and_best() -> None:
    history = [
        {"loss": 0.7, "step": 1},
        {"eval_dev_accuracy": 0.6, "eval_dev_loss": 0.5, "epoch": 1.0, "step": 2},
        {"eval_dev_accuracy": 0.8, "eval_dev_loss": 0.4, "epoch": 2.0, "step": 4},
        {"eval_dev_accuracy": math.nan, "eval_dev_loss": math.nan, "epoch": 3.0, "step": 6},
        {"eval_dev_accuracy": 0.7, "eval_dev_loss": 0.45, "epoch": 4.0, "step": 8},
    ]
    assert _final_eval(history, "eval_dev_accuracy", "last")["epoch"] == 4.0
    assert _final_eval(history, "eval_dev_accuracy", "best")["epoch"] == 2.0
    assert _final_eval(history[:1], "eval_dev_accuracy", "last") == {}


# ------------------------------------------------------------------------------------------ blow-ups


def test_exploding_loss_is_reported_diverged(tiny_model: str, mini_glue: Path, tmp_path: Path) -> None:
    """lr 1000: the loss stays finite but ends orders of magnitude above its start. That used to be
    `status: ok`, its majority-class accuracy averaged in; the divergence_factor rule calls it diverged."""
    out = tmp_path / "lr1000"
    result = train_run(
        make_spec(tiny_model, mini_glue, method="finetune", learning_rate=1000.0, logging_steps=1), out
    )
    metrics = _read(out, "metrics.json")
    assert metrics["status"] == "diverged" == result["status"], metrics
    assert "divergence_factor 10" in metrics["diverged_because"]
    assert metrics["diverged_at_step"] is not None
    assert all(math.isfinite(v) for v in metrics["metrics"].values())  # finite: the NaN check missed it
    assert _read(out, "run.json")["status"] == "diverged"


def test_divergence_factor_null_keeps_only_the_nan_rule(
    tiny_model: str, mini_glue: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lr1000-null"
    spec = make_spec(
        tiny_model,
        mini_glue,
        method="finetune",
        learning_rate=1000.0,
        logging_steps=1,
        divergence_factor=None,
    )
    assert train_run(spec, out)["status"] == "ok"


@pytest.fixture
def constant_run(tiny_model: str, mini_glue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A run whose model gives the same logits for every example at evaluation (training is untouched)."""
    from transformers import BertForSequenceClassification

    original = BertForSequenceClassification.forward

    @functools.wraps(original)
    def constant_logits(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if not self.training:
            output.logits = output.logits * 0.0 + 1.0
        return output

    monkeypatch.setattr(BertForSequenceClassification, "forward", constant_logits)
    return tmp_path / "constant", monkeypatch


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_constant_predictor_is_marked_degenerate(
    constant_run, tiny_model: str, mini_glue: Path, task: str
) -> None:
    out, _ = constant_run
    result = train_run(make_spec(tiny_model, mini_glue, task=task, method="finetune"), out)
    assert result["status"] == "ok" and result["degenerate"] is True
    assert _read(out, "metrics.json")["degenerate"] is True
    if task == "stsb":
        assert result["metrics"]["pearson"] == 0.0  # the score it used to pass off as a result


def test_a_run_that_discriminates_is_not_degenerate(rte_run) -> None:
    _, out, result = rte_run
    history = [r for r in read_jsonl(out / "history.jsonl") if "eval_dev_degenerate" in r]
    assert history, "every evaluation records whether its predictions were constant"
    assert result["degenerate"] is bool(history[-1]["eval_dev_degenerate"])


@pytest.mark.parametrize("group_by_length", [False, True])
def test_group_by_length_batches_similar_lengths(
    group_by_length: bool, tiny_model: str, mini_glue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.group_by_length hands Trainer's LengthGroupedSampler the training set; off, plain shuffling."""
    import transformers.trainer

    built: list[int] = []
    original = transformers.trainer.LengthGroupedSampler

    def recording_sampler(*args, **kwargs):
        sampler = original(*args, **kwargs)
        built.append(len(sampler.lengths))
        return sampler

    monkeypatch.setattr(transformers.trainer, "LengthGroupedSampler", recording_sampler)
    spec = make_spec(tiny_model, mini_glue, method="finetune", group_by_length=group_by_length)
    result = train_run(spec, tmp_path / "run")
    assert result["status"] == "ok"
    # Trainer may build the train sampler more than once; each time over the whole training set.
    assert (set(built) == {result["n_train"]}) if group_by_length else (built == [])


def test_report_to_tensorboard_writes_event_files_into_the_run_directory(
    tiny_model: str, mini_glue: Path, tmp_path: Path
) -> None:
    """train.report_to: [tensorboard] logs the run offline into <run>/tensorboard, the losses included."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip extra tracking)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    spec = make_spec(tiny_model, mini_glue, method="finetune", report_to=["tensorboard"])
    assert train_run(spec, out)["status"] == "ok"
    events = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {out / 'tensorboard'}: {sorted(out.rglob('*'))}"
    tracker = EventAccumulator(str(out / "tensorboard")).Reload()
    assert {"train/loss", "eval/dev_loss"} <= set(tracker.Tags()["scalars"])
    logged = [r["step"] for r in read_jsonl(out / "history.jsonl") if "loss" in r]
    tracked = [event.step for event in tracker.Scalars("train/loss")]
    assert tracked == logged  # the same training losses as history.jsonl, at the same steps


# ----------------------------------------------------------------------------- curve evaluations on a subset


def test_curve_eval_samples_score_a_subset_before_the_last_epoch_only(
    tiny_model: str, mini_glue: Path, tmp_path: Path
) -> None:
    """The earlier epochs' dev evaluations score `curve_eval_samples` examples, the last one the whole
    split; training and the reported scores are those of the same run without the setting."""
    settings = {"task": "stsb", "method": "finetune", "epochs": 3}
    whole = train_run(make_spec(tiny_model, mini_glue, **settings), tmp_path / "whole")
    curve = train_run(make_spec(tiny_model, mini_glue, curve_eval_samples=12, **settings), tmp_path / "curve")

    def evaluations(out: Path) -> list[tuple[float, float, float]]:
        rows = read_jsonl(out / "history.jsonl")
        return [
            (r["epoch"], r["eval_dev_examples"], r["eval_dev_pearson"]) for r in rows if "eval_dev_loss" in r
        ]

    assert [(epoch, n) for epoch, n, _ in evaluations(tmp_path / "curve")] == [(1, 12), (2, 12), (3, ROWS)]
    assert [n for _, n, _ in evaluations(tmp_path / "whole")] == [ROWS] * 3
    assert curve["metrics"] == whole["metrics"]
    # The subset's scores differ from the whole split's at the same (identically trained) epoch.
    assert evaluations(tmp_path / "curve")[0][2] != evaluations(tmp_path / "whole")[0][2]


def test_curve_eval_samples_cannot_go_with_the_best_epoch(
    tiny_model: str, mini_glue: Path, tmp_path: Path
) -> None:
    spec = make_spec(tiny_model, mini_glue, curve_eval_samples=12, report_epoch="best")
    with pytest.raises(RunError, match=r"curve_eval_samples.*report_epoch 'best'"):
        train_run(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_default_spec_keeps_the_config_hash_runs_recorded_before_curve_eval_samples() -> None:
    """A setting added later stays out of the hash at its default: finished runs and checkpoints made
    before it keep being recognised (train-many's skip, resuming). The hash is the one recorded then."""
    from robustft.train.glue import _new_run_record

    spec = RunSpec(model="minilm-l6", task="rte", method="finetune", seed=1)
    assert _new_run_record(spec)["config_hash"] == "4ca8c77be4609bba"
    spec.train.curve_eval_samples = 300
    assert _new_run_record(spec)["config_hash"] != "4ca8c77be4609bba"


def test_a_divergence_stop_reports_an_evaluation_of_the_whole_dev_split(
    tiny_model: str, mini_glue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training stopped early (a non-finite loss) still ends on an evaluation of the whole split, the one
    reported, never on the learning curve's subset."""
    patch_nan_training_loss(monkeypatch)
    spec = make_spec(tiny_model, mini_glue, method="finetune", epochs=3, curve_eval_samples=12)
    result = train_run(spec, tmp_path)
    evaluations = [r for r in read_jsonl(tmp_path / "history.jsonl") if "eval_dev_loss" in r]
    assert result["status"] == "diverged" and evaluations
    assert evaluations[-1]["eval_dev_examples"] == ROWS
