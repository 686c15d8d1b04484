"""The instruction-tuning track through Snakemake at toy size, on the real SmolLM2-135M and real data:
SFT -> generate (and its variants) -> judge -> lm-eval on one local task -> text statistics -> artifacts
-> PDF."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

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
    check_generation_variants(tmp_path, config, table)

    records = {
        key: json.loads((tmp_path / artifacts_dir(config) / key / "result.json").read_text())
        for key in (
            "neftune/table1",
            "neftune/table4",
            "neftune/figure3",
            "neftune/figure4",
            "neftune/table3",
            "neftune/table5",
            "neftune/table10",
        )
    }
    for key in set(records) - {"neftune/table3"}:
        assert records[key]["status"] == "regenerated", (key, records[key]["reason"])
    assert records["neftune/table3"]["status"] == "not run"  # no QLoRA recipe in this grid
    assert (tmp_path / "results/reports/neftune.pdf").read_bytes().startswith(b"%PDF")
    # A rerun has nothing to do: every output is in place (the judge cache makes judging free anyway).
    rerun = snakemake(tmp_path, "-n", *args)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    # A new variant, and one changed, rerun only those variants: no plain generation, no other variant.
    changed = yaml.safe_load(CONFIG.read_text())
    variants = changed["instruct"]["generation"]["variants"]
    variants["comprehensive"] = {"system_prompt": "Write a comprehensive response.", "max_prompts": 4}
    variants["llama2"]["temperature"] = 0.7
    changed["instruct"]["grids"]["table5"]["variants"].append("comprehensive")
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))  # same key order
    dry = snakemake(tmp_path, "-n", *args[:2], "--configfile", str(tmp_path / "changed.yaml"), *args[4:])
    counts = dict(
        line.split() for line in (dry.stdout + dry.stderr).splitlines() if re.fullmatch(r"\w+\s+\d+", line)
    )
    assert (counts.get("generate_variant"), counts.get("judge_variant")) == ("3", "3"), counts
    assert not {"sft", "generate", "judge", "lm_eval"} & set(counts), counts


def check_generation_variants(root: Path, config: dict, table: pd.DataFrame) -> None:
    """NEFTune Tables 5 and 10 at toy size: the plain run's length prompt and min_new_tokens variants, and a
    sampled decoding on both runs, each on 4 prompts and judged; the plain generations untouched."""
    from robustft.workflow_config import instruct_variant_dir

    finetune = ("smollm2-135m", "alpaca_seed", "default", "finetune", 0)
    forced = root / instruct_variant_dir(config, *finetune, "min_new_tokens")
    records = [json.loads(line) for line in (forced / "generations/alpaca_eval.jsonl").open()]
    assert len(records) == 4 and all(r["output_tokens"] >= 8 for r in records)  # EOS blocked until 8
    sampled = root / instruct_variant_dir(config, *finetune, "llama2")
    settings = json.loads((sampled / "generations/alpaca_eval.summary.json").read_text())["settings"]
    assert (settings["do_sample"], settings["top_p"], settings["sampling_seed"]) == (True, 0.9, 0)
    wins = table[table["source"].str.endswith(":judge:local") & (table["metric"] == "win_rate")]
    assert sorted(wins["source"]) == sorted(
        ["variant:llama2:judge:local"] * 2
        + ["variant:long:judge:local", "variant:min_new_tokens:judge:local"]
    )
    assert (wins["n"] == 4).all() and wins["value"].between(0, 100).all()
