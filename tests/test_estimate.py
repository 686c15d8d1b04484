"""robustft.estimate: job counts as the DAG schedules them, the cost arithmetic, and measured throughput
preferred over the assumed table."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml

from robustft.cli import main
from robustft.errors import DataFormatError
from robustft.estimate import (
    ARCHITECTURES,
    ASSUMED,
    ASSUMED_THROUGHPUT,
    STARTUP_S,
    estimate,
    format_estimate,
    train_priorities,
)
from robustft.workflow_config import instruct_grid, load_config, run_grid, xtreme_grid
from tests.helpers import REPO

FIXTURES = ["tests/fixtures/noisytune-tiny.yaml", "tests/fixtures/neftune-tiny.yaml"]


def rule_jobs(result) -> dict[str, int]:
    return {rule.rule: rule.jobs for rule in result.rules}


def test_job_counts_follow_the_grids():
    glue = load_config(REPO / FIXTURES[0])
    counts = rule_jobs(estimate(glue))
    retrieval = [run for run in xtreme_grid(glue) if run[1] in ("bucc2018", "tatoeba")]
    assert counts["train"] == len(run_grid(glue))
    assert counts["xtreme_train"] == len(xtreme_grid(glue)) - len(retrieval)
    assert counts["xtreme_retrieve"] == len(retrieval)
    assert counts["artifact"] == len(glue["artifacts"])
    instruct = load_config(REPO / FIXTURES[1])
    counts, runs = rule_jobs(estimate(instruct)), len(instruct_grid(instruct))
    # Per run: generations of the AlpacaEval and training prompts, one local judge, two leaderboard tasks.
    assert (counts["sft"], counts["generate"], counts["judge"], counts["lm_eval"]) == (
        runs,
        2 * runs,
        runs,
        2 * runs,
    )
    assert counts["text_stats"] == counts["overlap"] == runs and "train" not in counts
    # Generation variants (NEFTune Tables 5 and 10): three on the plain run, one on NEFTune's, each judged.
    assert counts["generate_variant"] == counts["judge_variant"] == 4


# config/neftune-cpu.yaml: a shipped config whose artifacts read the embedding analyses (NEFTune Figures 6-8).
@pytest.mark.parametrize("configfile", [*FIXTURES, "config/neftune-cpu.yaml"])
def test_job_counts_equal_the_dry_runs(configfile):
    from tests.workflow.test_shipped_configs import dry_run_jobs

    _, counts = dry_run_jobs(configfile)
    # The job-stats table ("<rule> <count>", then "total"), not the "jobid: 3" lines of each job.
    scheduled = {rule: count for rule, count in counts.items() if rule != "total" and not rule.endswith(":")}
    assert rule_jobs(estimate(load_config(REPO / configfile))) == scheduled


def write_config(tmp_path: Path, gpus_per_run: int = 1, **train) -> dict:
    """One model, RTE, 2 seeds, fine-tuning and SMART: the arithmetic below is done by hand. Written to
    config<gpus_per_run>.yaml."""
    config = {
        "gpus_per_run": gpus_per_run,
        "models": ["minilm-l6"],
        "tasks": ["rte"],
        "seeds": [1, 2],
        "methods": {"finetune": {}, "smart": {"smart": {}}},
        "train": {"epochs": 2, "batch_size": 32, "max_seq_length": 256, "precision": "bf16", **train},
        "report": {"name": "costs-test", "paper_model": {"minilm-l6": "bert-base"}},
    }
    path = tmp_path / f"config{gpus_per_run}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


# The reference is MiniLM itself at RTE's length (256 tokens): other models' FLOPs scaling is then 1.
HAND_MADE = [
    replace(
        ASSUMED_THROUGHPUT[0],
        model="minilm-l6",
        architecture=ARCHITECTURES["minilm-l6"],
        sequence_length=256,
        examples_per_s=100.0,
        source="hand-made",
    ),
    replace(
        ASSUMED_THROUGHPUT[2],
        model="minilm-l6",
        architecture=ARCHITECTURES["minilm-l6"],
        sequence_length=256,
        examples_per_s=50.0,
        source="hand-made",
    ),
]


def test_the_arithmetic_on_a_hand_made_throughput_table(tmp_path):
    config = write_config(tmp_path)
    # RTE: 2,490 training pairs x 2 epochs at 100/s; 277 dev pairs scored after each epoch at 300/s (a
    # forward is a third of a training step); 156 steps, no checkpoint (every 500 steps).
    finetune = STARTUP_S + 2490 * 2 / 100 + 277 * 2 / 300
    # SMART in bf16: + the teacher's forward (1/3 pass); R_s's ascent, adversarial and clean-reference
    # passes (3) in fp32 at 50/s.
    smart = finetune + 2490 * 2 * (1 / 3) / 100 + 3 * 2490 * 2 / 50
    result = estimate(config, gpus=2, table=HAND_MADE)
    train = next(rule for rule in result.rules if rule.rule == "train")
    assert train.jobs == 4
    assert train.gpu_hours == pytest.approx(2 * (finetune + smart) / 3600)
    assert train.longest_hours == pytest.approx(smart / 3600)
    assert result.wall_hours == pytest.approx(max(result.gpu_hours / 2, smart / 3600))
    longest = estimate(config, gpus=100, table=HAND_MADE).wall_hours
    assert longest == pytest.approx(smart / 3600)  # the longest job
    # Without GPUs the jobs hold CPU slots: no GPU-hours, the same wall time.
    on_cpus = estimate(write_config(tmp_path, gpus_per_run=0), gpus=2, table=HAND_MADE)
    assert on_cpus.gpu_hours == 0 and on_cpus.wall_hours == pytest.approx(result.wall_hours)


def check_report(examples_per_s: float, status: str = "pass") -> dict:
    """A gpu-check report with one classifier path: MiniLM in bf16 at 256 tokens."""
    path = {
        "name": "minilm-l6 bf16",
        "kind": "classification",
        "model": "minilm-l6",
        "precision": "bf16",
        "status": status,
        "gpus": 1,
        "batch_size": 32,
        "sequence_length": 256,
        "examples_per_s": examples_per_s,
        "architecture": asdict(ARCHITECTURES["minilm-l6"]),
        "weight_gradients": True,
        "note": "",
    }
    return {"mode": "gpu", "device": "NVIDIA H100 80GB HBM3", "paths": [path]}


def test_the_checks_throughput_is_preferred_to_the_table(tmp_path):
    config = write_config(tmp_path)
    check = tmp_path / "gpu-check.json"
    check.write_text(json.dumps(check_report(200.0)))
    table, measured = estimate(config, table=HAND_MADE), estimate(config, check=check, table=HAND_MADE)
    used = {row.precision: row for row in measured.throughputs}
    assert used["bf16"].measured and used["bf16"].examples_per_s == 200.0
    assert "measured by robustft gpu-check" in used["bf16"].source and str(check) in used["bf16"].source
    assert not used["fp32"].measured and used["fp32"].source == "hand-made"  # the check has no fp32 path
    # bf16 passes at the measured 200/s, SMART's fp32 passes still at the table's 50/s.
    finetune = STARTUP_S + 2490 * 2 / 200 + 277 * 2 / 600
    smart = finetune + 2490 * 2 * (1 / 3) / 200 + 3 * 2490 * 2 / 50
    assert measured.gpu_hours == pytest.approx(2 * (finetune + smart) / 3600)
    assert measured.gpu_hours < table.gpu_hours
    check.write_text(json.dumps(check_report(200.0, status="fail")))  # a failed path measures nothing
    rows = estimate(config, check=check, table=HAND_MADE).throughputs
    assert not {row.precision: row for row in rows}["bf16"].measured


def test_assumed_numbers_say_so(tmp_path):
    assert all(not row.measured and ASSUMED in row.source for row in ASSUMED_THROUGHPUT)
    printed = format_estimate(estimate(write_config(tmp_path)))
    assert "assumed, not measured" in printed and "measured by" not in printed


def test_the_command_prints_json_and_rejects_a_bad_check(tmp_path, capsys):
    write_config(tmp_path)
    configfile = str(tmp_path / "config1.yaml")
    assert main(["estimate", "--configfile", configfile, "--gpus", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["gpus"] == 2 and printed["jobs"] == sum(rule["jobs"] for rule in printed["rules"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mode": "gpu"}))
    assert main(["estimate", "--configfile", configfile, "--check", str(bad)]) == 2
    assert "not a robustft gpu-check report" in capsys.readouterr().err
    with pytest.raises(DataFormatError):
        estimate(load_config(Path(configfile)), check=bad)


def test_train_priorities_start_the_longest_runs_first() -> None:
    """The demo's STS-B runs (longer pairs, 3 epochs, a 1,500-pair dev set) outrank its SST-2 runs; SMART
    (several passes per example) outranks fine-tuning on one task; a smaller cap moves a task down."""
    demo = train_priorities(load_config(REPO / "config" / "config.yaml"))
    assert min(demo["stsb", m] for m in ("finetune", "noisytune")) > max(
        demo["sst2", m] for m in ("finetune", "noisytune")
    )
    methods = train_priorities(load_config(REPO / "config" / "methods.yaml"))
    assert methods["sst2", "smart"] > methods["sst2", "freelb"] > methods["sst2", "finetune"]
    assert sorted(methods.values()) == list(range(len(methods)))
    config = load_config(REPO / "config" / "config.yaml")
    config["train_by_task"]["stsb"] = {**config["train_by_task"]["stsb"], "max_train_samples": 10}
    assert train_priorities(config)["stsb", "finetune"] < train_priorities(config)["sst2", "finetune"]
