"""The instruction-tuning track through Snakemake at toy size, on the real SmolLM2-135M and real data:
SFT -> generate -> judge -> lm-eval on one local task -> text statistics -> artifacts -> PDF."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import FIXTURES
from tests.workflow.test_glue import SHARED_DATA, snakemake

pytestmark = pytest.mark.integration

CONFIG = FIXTURES / "neftune-tiny.yaml"


def test_instruct_dag_end_to_end(tmp_path: Path) -> None:
    if not (SHARED_DATA / "alpaca_eval" / "alpaca_eval.jsonl").exists():
        pytest.skip(f"real AlpacaEval prompts not found at {SHARED_DATA}")
    args = ("--cores", "2", "--configfile", str(CONFIG), "--config", f"data_dir={SHARED_DATA}")
    result = snakemake(tmp_path, *args, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]

    from robustft.workflow_config import artifacts_dir, instruct_run_dir, load_config, tables_dir

    config = load_config(CONFIG)
    table = pd.read_csv(tmp_path / tables_dir(config) / "instruct.csv")
    sft = table[table["source"] == "sft"]
    assert set(sft["status"]) == {"ok"} and set(sft["method"]) == {"finetune", "neftune_a5"}
    wins = table[(table["source"] == "judge:local") & (table["metric"] == "win_rate")]
    assert len(wins) == 2 and wins["value"].between(0, 100).all() and (wins["n"] == 6).all()
    truthfulqa = table[table["source"] == "leaderboard:truthfulqa_mc2"]
    assert set(truthfulqa["status"]) == {"ok"} and truthfulqa["value"].between(0, 100).all()
    assert set(table.loc[table["source"] == "leaderboard:hellaswag", "status"]) == {"not run"}

    run = tmp_path / instruct_run_dir(config, "smollm2-135m", "alpaca_seed", "default", "neftune_a5", 0)
    generations = [json.loads(line) for line in (run / "generations/alpaca_eval.jsonl").open()]
    assert len(generations) == 6 and all(isinstance(g["output"], str) for g in generations)
    history = [json.loads(line) for line in (run / "sft/history.jsonl").open()]
    assert any(h.get("eval_heldout_loss") is not None for h in history)

    records = {
        key: json.loads((tmp_path / artifacts_dir(config) / key / "result.json").read_text())
        for key in (
            "neftune/table1",
            "neftune/table4",
            "neftune/figure3",
            "neftune/figure4",
            "neftune/table3",
        )
    }
    for key in ("neftune/table1", "neftune/table4", "neftune/figure3", "neftune/figure4"):
        assert records[key]["status"] == "regenerated", (key, records[key]["reason"])
    assert records["neftune/table3"]["status"] == "not run"  # no QLoRA recipe in this grid
    assert (tmp_path / "results/reports/neftune.pdf").read_bytes().startswith(b"%PDF")
    # A rerun has nothing to do: every output is in place (the judge cache makes judging free anyway).
    rerun = snakemake(tmp_path, "-n", *args)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
