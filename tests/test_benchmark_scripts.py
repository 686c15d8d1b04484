"""The arithmetic and bookkeeping of benchmarks/throughput.py, step_breakdown.py, precision_agreement.py,
packing.py and dag_scale.py.

The scripts train models, which tests do not; what they compute from the runs (token counts, FLOPs,
pairing, verdicts, the run plan, the runs both packing modes train) is checked here on small inputs whose
answers are known by hand.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


throughput = _load("throughput")
agreement = _load("precision_agreement")
packing = _load("packing")
dag_scale = _load("dag_scale")
step_breakdown = _load("step_breakdown")  # after throughput, whose helpers it imports by name


def test_padded_tokens_count_each_batch_at_its_longest_example():
    # One batch: every example is padded to the longest (5), whatever the order.
    counts = throughput.batch_token_counts(np.array([1, 2, 3, 4, 5]), batch_size=8)
    assert (counts.examples, counts.real, counts.padded, counts.padded_squared) == (5, 15, 25, 125)
    # Equal lengths (run_glue.py's pad to max_length): padding adds nothing, the last batch is partial.
    counts = throughput.batch_token_counts(np.full(10, 128), batch_size=4)
    assert counts.padded == counts.real == 1280
    assert counts.padded_squared == 10 * 128**2


def test_padded_tokens_lie_between_the_real_tokens_and_padding_everything_to_the_longest():
    lengths = np.random.default_rng(1).integers(5, 60, size=101)
    counts = throughput.batch_token_counts(lengths, batch_size=16)
    assert lengths.sum() < counts.padded < lengths.size * lengths.max()


def test_training_flops_are_six_n_t_plus_the_attention_term():
    counts = throughput.TokenCounts(examples=2, real=8, padded=10, padded_squared=100)
    shape = throughput.EncoderShape(layer_parameters=1000, layers=2, hidden_size=4)
    assert throughput.training_flops(counts, shape) == 6 * 1000 * 10 + 12 * 2 * 4 * 100


def test_a_bare_batch_costs_the_throughput_formula_for_one_unpadded_batch():
    shape = throughput.EncoderShape(layer_parameters=1000, layers=2, hidden_size=4)
    assert step_breakdown.batch_flops(2, 3, shape) == 6 * 1000 * (2 * 3) + 12 * 2 * 4 * (2 * 3**2)


def test_without_dropout_zeroes_every_dropout_and_leaves_the_rest():
    import torch

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Dropout(0.1), torch.nn.Sequential(torch.nn.Dropout(0.2))
    )
    weight = model[0].weight.clone()
    step_breakdown.without_dropout(model)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]
    assert torch.equal(model[0].weight, weight)


def test_rounds_alternate_the_order_of_the_configurations():
    names = ["a", "b", "c"]
    assert throughput.interleaved(names, 0) == names
    assert throughput.interleaved(names, 1) == ["c", "b", "a"]


def _result(seed, precision, score, status="ok", train_s=10.0):
    return {
        "seed": seed,
        "precision": precision,
        "status": status,
        "metric": "accuracy",
        "score": score,
        "degenerate": False,
        "train_s": train_s,
    }


def test_a_failed_run_drops_its_pair_and_the_difference_is_bf16_minus_fp32():
    results = [
        _result(1, "fp32", 80.0, train_s=20.0),
        _result(1, "bf16", 81.0, train_s=10.0),
        _result(2, "fp32", 70.0, train_s=20.0),
        _result(2, "bf16", 70.5, train_s=10.0),
        _result(3, "fp32", 75.0, train_s=20.0),
        _result(3, "bf16", None, status="diverged", train_s=10.0),
    ]
    cell = agreement.summarize_cell("minilm-l6", "sst2", results, n_boot=200)
    assert cell["n_pairs"] == 2
    assert [pair["diff"] for pair in cell["pairs"]] == [1.0, 0.5, None]
    assert cell["mean_diff"] == pytest.approx(0.75)
    assert cell["fp32_seed_std"] == pytest.approx(math.sqrt(50))  # stdev of 80 and 70
    assert cell["verdict"] == agreement.TOO_FEW  # 2 pairs: no claim
    assert cell["bf16_speedup"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("n_pairs", "ci", "mean_diff", "seed_std", "expected"),
    [
        (3, (-0.4, 0.6), 0.1, 1.0, agreement.SAME),
        (3, (0.2, 0.6), 0.4, 1.0, agreement.DIFFERS),
        (3, (-0.6, -0.1), -0.3, 1.0, agreement.DIFFERS),
        (3, (-0.5, 3.0), 1.2, 1.0, agreement.NOT_SHOWN),  # CI has 0, but |Δ| is as large as seed noise
        (2, (-0.4, 0.6), 0.1, 1.0, agreement.TOO_FEW),
        (3, (math.nan, math.nan), 0.0, 0.0, agreement.TOO_FEW),
    ],
)
def test_agreement_verdict(n_pairs, ci, mean_diff, seed_std, expected):
    assert agreement.agreement_verdict(n_pairs, ci, mean_diff, seed_std) == expected


def _config():
    return {
        "data_dir": "resources/data",
        "cache_dir": "resources/hf",
        "models": ["minilm-l6"],
        "tasks": ["sst2", "mrpc"],
        "seeds": [1, 2, 3],
        "methods": {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}},
        "grids": {},
        "train": {"learning_rate": 1e-4, "precision": "fp32"},
        "train_by_task": {"mrpc": {"max_train_samples": 300}},
    }


def test_the_plan_takes_the_configs_settings_per_task_and_sets_only_the_precision(tmp_path):
    jobs = agreement.plan_jobs(_config(), "finetune", [1, 2], None, threads=1, out=tmp_path)
    assert len(jobs) == 2 * 2 * 2  # seeds x tasks x precisions
    # The two precisions of a pair run next to each other, their order alternating from seed to seed.
    assert [(j.seed, j.task, j.precision) for j in jobs[:4]] == [
        (1, "sst2", "fp32"),
        (1, "sst2", "bf16"),
        (1, "mrpc", "fp32"),
        (1, "mrpc", "bf16"),
    ]
    assert [j.precision for j in jobs[4:6]] == ["bf16", "fp32"]
    mrpc = [j for j in jobs if j.task == "mrpc"]
    assert all(j.train["max_train_samples"] == 300 and j.train["learning_rate"] == 1e-4 for j in mrpc)
    assert {j.precision for j in jobs} == {j.train["precision"] for j in jobs} == {"fp32", "bf16"}
    assert len({j.run_dir for j in jobs}) == len(jobs)  # no two runs share a directory


def test_the_plan_refuses_a_task_the_config_does_not_train(tmp_path):
    with pytest.raises(SystemExit, match="'cola'"):
        agreement.plan_jobs(_config(), "finetune", [1], ["cola"], threads=1, out=tmp_path)


def test_a_run_with_metrics_is_read_and_one_without_is_reported_not_run(tmp_path):
    (job,) = agreement.plan_jobs(_config(), "finetune", [1], ["sst2"], threads=1, out=tmp_path)[:1]
    assert agreement.read_result(job)["status"] == "not run"
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(
        '{"status": "ok", "primary_metric": "accuracy", "metrics": {"accuracy": 0.8}, '
        '"degenerate": false, "train_runtime_s": 12.0}'
    )
    (run_dir / "history.jsonl").write_text(
        '{"step": 5, "loss": 0.6}\n{"step": 10, "eval_dev_runtime": 2.0}\n'
    )
    result = agreement.read_result(job)
    assert result["score"] == pytest.approx(80.0)
    assert result["train_s"] == pytest.approx(10.0)  # the dev evaluation is not training time


def test_importing_a_benchmark_leaves_the_environment_alone():
    """A test that imports a benchmark must not set TQDM_DISABLE for the rest of the session: every later
    subprocess (Snakemake, SLURM jobs) would lose its progress bars."""
    import json
    import subprocess

    probe = (
        "import importlib.util, json, os, sys\n"
        "for name in ('throughput', 'precision_agreement', 'packing'):\n"
        f"    spec = importlib.util.spec_from_file_location(name, {str(BENCHMARKS)!r} + f'/{{name}}.py')\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    sys.modules[name] = module\n"
        "    spec.loader.exec_module(module)\n"
        "print(json.dumps({k: os.environ.get(k) for k in ('TQDM_DISABLE', 'TRANSFORMERS_VERBOSITY')}))\n"
    )
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in ("TQDM_DISABLE", "TRANSFORMERS_VERBOSITY")
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "TQDM_DISABLE": None,
        "TRANSFORMERS_VERBOSITY": None,
    }


def _packing_settings(tmp_path: Path):
    import argparse

    return argparse.Namespace(
        model="minilm-l6",
        task="rte",
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "hf"),
        train_samples=16,
    )


def test_packing_trains_the_same_runs_as_separate_processes_and_as_one_pack(tmp_path):
    """Each run the benchmark starts on its own (`robustft train` arguments) is the run its pack trains
    (the runs file of `robustft train-many`): same spec, same directory."""
    from robustft.cli import build_parser
    from robustft.cli.glue import packed_run, run_spec

    runs = packing.run_options(3, _packing_settings(tmp_path), tmp_path / "runs")
    assert [run["method"] for run in runs] == ["finetune", "noisytune", "finetune"]
    assert len({run["seed"] for run in runs}) == len({run["out"] for run in runs}) == 3
    for run in runs:
        alone = build_parser().parse_args(["train", *packing.train_arguments(run)])
        packed = packed_run(run)
        assert run_spec(alone) == packed.spec
        assert alone.out == packed.out_dir


def test_packing_summary_is_the_ratio_of_the_medians_and_the_saving_per_run():
    startup = {"process_s": 9.0, "import_s": 7.0, "first_load_s": 1.5, "later_load_s": 0.5}
    summary = packing.summarize(4, {"separate": [40.0, 44.0, 80.0], "packed": [20.0, 21.0, 30.0]}, startup)
    assert summary["separate_s"] == 44.0 and summary["packed_s"] == 21.0
    assert summary["ratio"] == pytest.approx(44 / 21)
    assert summary["saved_per_run_s"] == pytest.approx((44 - 21) / 4)
    assert summary["startup_saved_s"] == pytest.approx(8.5)
    assert packing.interleaved(packing.MODES, 1) == ["packed", "separate"]


def test_packing_slurm_config_packs_its_runs_into_one_job(tmp_path):
    from robustft.workflow_config import pack_group_components, run_grid, validate_config

    for runs in (2, 3):
        config = validate_config(packing.slurm_config(runs, _packing_settings(tmp_path), runs))
        assert len(run_grid(config)) >= runs
        assert pack_group_components(config) == {"train": runs}
    alone = validate_config(packing.slurm_config(2, _packing_settings(tmp_path), 1))
    assert pack_group_components(alone) == {}


@pytest.mark.parametrize("directive", [name for name in dag_scale.TWIN_DIRECTIVES])
def test_the_twin_without_a_directive_drops_it_and_its_fields_in_the_shell(directive):
    full = dag_scale.twin_snakefile(dag_scale.SMALL_GRID)
    ablated = dag_scale.twin_snakefile(dag_scale.SMALL_GRID, without=directive)
    assert f"    {directive}:\n" in full
    assert f"    {directive}:\n" not in ablated
    # Every other directive stays, and no shell field names the one left out.
    others = [name for name in dag_scale.TWIN_DIRECTIVES if name != directive]
    assert all(f"    {name}:\n" in ablated for name in others)
    assert "{" + directive not in ablated.split("    shell:")[1]


def test_the_whole_twin_runs_the_train_rules_whole_shell_command():
    # Every piece of the command, each once: the twin, and every ablation measured against it, must pay
    # for the same fields as the workflow's train rule.
    full = dag_scale.twin_snakefile(dag_scale.SMALL_GRID)
    shell = full.split("    shell:")[1]
    assert all(shell.count(repr(piece)) == 1 for _, piece in dag_scale.TWIN_SHELL)
    for field in ("{wildcards.model}", "{output.metrics}", "{params.method_args}", "{log}", "{threads}"):
        assert field in shell
    # An ablation drops only its own pieces.
    without_log = dag_scale.twin_snakefile(dag_scale.SMALL_GRID, without="log").split("    shell:")[1]
    assert [p for o, p in dag_scale.TWIN_SHELL if repr(p) not in without_log] == [" > {log} 2>&1"]
    assert "wildcard_constraints:" in full
    unconstrained = dag_scale.twin_snakefile(dag_scale.SMALL_GRID, without="wildcard_constraints")
    assert "wildcard_constraints:" not in unconstrained


def test_an_unknown_ablation_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown directive 'input'.*wildcard_constraints"):
        dag_scale.twin_snakefile(dag_scale.SMALL_GRID, without="input")


@pytest.mark.parametrize("without", ["params", "log", "profile"])
def test_the_twin_and_its_ablations_dry_run_every_job_of_the_grid(tmp_path, monkeypatch, without):
    # The real Snakemake parses each file: an ablation that broke the rule would fail here, not mid-benchmark.
    monkeypatch.setattr(dag_scale, "LARGE_GRID", dag_scale.SMALL_GRID)
    setup = dag_scale.twin_setup(tmp_path, without=without)
    assert (setup[2] / "profiles" / "default").exists() == (without != "profile")
    _, output = dag_scale.dry_run(*setup)
    assert dag_scale.job_counts(output) == (8, 9)


def test_ablation_shares_are_each_directives_saving_against_the_whole_twin():
    median = {"bare": 10.0, "twin": 13.0, "twin-no-log": 12.0, "twin-no-params": 13.5}
    shares = dag_scale.ablation_shares(median, ("log", "params"))
    assert shares == {"log": {"ratio": 1.2, "saved_s": 1.0}, "params": {"ratio": 1.35, "saved_s": -0.5}}
    assert dag_scale.ablation_shares({"twin": 13.0}, ("log",)) == {}
