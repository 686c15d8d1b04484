"""NEFTune Table 12 (neftune/table12): NEFTune against FreeLB, from hand-written run directories (the
formats of test_neftune.py), so every Δ is checked against a hand computation from the judgements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustft.artifacts import ArtifactContext, get_artifact, write_result
from robustft.tables.instruct import collect_instruct
from tests.artifacts.test_neftune import N_PROMPTS, _diverged_sft, make_run

# Table 12's numbers (LLaMA-1-7B, Evol-Instruct, ChatGPT judge)
PAPER = {"finetune": 62.3, "neftune": 67.45, "freelb": 63.48}


@pytest.fixture()
def table12_runs(tmp_path: Path) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Plain SFT, NEFTune (α 10) and FreeLB runs of one cell, seed 0: FreeLB wins a few more prompts than
    plain SFT, NEFTune more still."""
    rng = np.random.default_rng(2)
    base = list(rng.choice([0.0, 0.5, 1.0], size=N_PROMPTS, p=[0.6, 0.1, 0.3]))
    wins = {
        "finetune": base,
        "freelb": [1.0 if i % 5 == 0 else w for i, w in enumerate(base)],
        "neftune_a10": [min(1.0, w + 0.5) if i % 2 == 0 else w for i, w in enumerate(base)],
    }
    root = tmp_path / "instruct"
    runs = {
        method: make_run(root, method, values, words=60, train_loss=1.0, arc=30.0)
        for method, values in wins.items()
    }
    return collect_instruct(list(runs.values())), runs


def _preferences(run: Path) -> np.ndarray:
    lines = (run / "judge" / "local.annotations.jsonl").read_text().splitlines()
    return np.array([json.loads(line)["preference"] - 1 for line in lines])


def _context(**kwargs) -> ArtifactContext:
    # The paper's own cell: our tiny model and set stand for LLaMA-1-7B on Evol-Instruct.
    return ArtifactContext(
        paper_model={"smollm2-135m": "llama-1-7b"},
        n_boot=500,
        extra={"paper_dataset": {"alpaca_seed": "Evol-Instruct"}},
        **kwargs,
    )


def test_table12_pairs_neftune_freelb_and_plain_sft_beside_the_paper(table12_runs, tmp_path: Path) -> None:
    table, runs = table12_runs
    result = get_artifact("neftune/table12").build(table, _context())
    assert result.status == "regenerated"
    claims = result.claims.set_index(["method", "baseline"])
    assert set(claims.index) == {
        ("neftune_a10", "finetune"),
        ("freelb", "finetune"),
        ("neftune_a10", "freelb"),
    }
    wins = {method: _preferences(run) for method, run in runs.items()}
    rows = {
        ("neftune_a10", "finetune"): ("neftune", "finetune"),
        ("freelb", "finetune"): ("freelb", "finetune"),
        ("neftune_a10", "freelb"): ("neftune", "freelb"),
    }
    for (method, baseline), (paper_method, paper_baseline) in rows.items():
        claim = claims.loc[(method, baseline)]
        assert claim["delta"] == pytest.approx(100 * (wins[method] - wins[baseline]).mean())
        assert claim["n_pairs"] == N_PROMPTS and claim["ci_low"] < claim["delta"] < claim["ci_high"]
        assert (claim["paper_value"], claim["paper_baseline"]) == (PAPER[paper_method], PAPER[paper_baseline])
        assert claim["paper_delta"] == pytest.approx(PAPER[paper_method] - PAPER[paper_baseline])
        assert claim["paper_model"] == "llama-1-7b" and claim["verdict"] == "too few seeds"  # one seed
    assert claims.loc[("neftune_a10", "freelb"), "paper_method"] == "neftune"
    assert not any("stand-in" in note for note in result.notes)
    assert any("local (local_hf, smollm2-135m)" in note for note in result.notes)
    assert any("δ on every real token" in choice for choice in result.choices)
    # With the seed floor at one seed the verdicts follow the intervals.
    lenient = get_artifact("neftune/table12").build(table, _context(min_seeds=1)).claims
    assert "too few seeds" not in set(lenient["verdict"]) and "not run" not in set(lenient["verdict"])
    write_result(result, tmp_path / "table12")
    assert (tmp_path / "table12" / "result.json").exists()


def test_table12_compares_another_cell_as_a_stand_in(table12_runs) -> None:
    table, _ = table12_runs
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=200)
    result = get_artifact("neftune/table12").build(table, context)
    assert set(result.claims["paper_model"]) == {"llama-1-7b"}  # the paper's only Table 12 cell
    assert result.claims["paper_value"].notna().all()
    assert any("stand-in" in note for note in result.notes)


def test_table12_is_not_run_without_its_runs_and_says_why(table12_runs) -> None:
    table, runs = table12_runs
    artifact = get_artifact("neftune/table12")
    without = collect_instruct([runs["finetune"], runs["neftune_a10"]])
    result = artifact.build(without, _context())
    assert result.status == "not run" and "table12" in result.reason
    no_judge = table[~table["source"].str.startswith("judge:")]
    assert "judge" in artifact.build(no_judge, _context()).reason
    # FreeLB diverged: nothing to pair, and the reason names the run's status
    root = runs["finetune"].parents[4]
    diverged = collect_instruct([runs["finetune"], runs["neftune_a10"], _diverged_sft(root, "freelb", 0)])
    result = artifact.build(diverged, _context())
    assert result.status == "not run" and "freelb/seed0: diverged" in result.reason
