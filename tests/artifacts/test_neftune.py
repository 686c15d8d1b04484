"""The instruction-tuning track after its runs: instruct.csv, the NEFTune artifacts and the PDF.

Run directories are written by hand here (the files each stage produces, in the contract's formats), so
every number an artifact reports can be checked against a hand computation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustft.artifacts import ArtifactContext, get_artifact, write_result
from robustft.artifacts.neftune import paper_histogram_mean
from robustft.report.instruct import InstructReportSpec, build_instruct_report
from robustft.tables.instruct import collect_instruct, run_dir_key
from tests.helpers import FIXTURES, REPO

N_PROMPTS = 40


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def make_run(root: Path, method: str, wins: list[float], words: int, train_loss: float, arc: float) -> Path:
    """One finished run: SFT metrics/history/losses, generations, a judge, text stats, overlap, ARC."""
    run = root / "smollm2-135m" / "alpaca_seed" / "default" / method / "seed0"
    _json(
        run / "sft" / "metrics.json",
        {"status": "ok", "final_train_loss": train_loss, "final_heldout_loss": 2.0, "train_runtime": 10.0},
    )
    _jsonl(
        run / "sft" / "history.jsonl",
        [
            {"step": 1, "train_loss": 3.0},
            {"step": 2, "eval_train_loss": train_loss + 0.5, "eval_heldout_loss": 2.5},
            {"step": 4, "eval_train_loss": train_loss, "eval_heldout_loss": 2.0},
        ],
    )
    _jsonl(
        run / "sft" / "losses.jsonl",
        [{"split": "train", "index": i, "loss": train_loss + 0.01 * i, "tokens": 5} for i in range(10)]
        + [{"split": "heldout", "index": i, "loss": 2.0 + 0.01 * i, "tokens": 5} for i in range(10)],
    )
    outputs = [" ".join(f"w{(i + k) % 7}" for k in range(words)) for i in range(N_PROMPTS)]
    _jsonl(
        run / "generations" / "alpaca_eval.jsonl",
        [{"id": i, "instruction": f"q{i}", "output": outputs[i]} for i in range(N_PROMPTS)],
    )
    _json(run / "generations" / "alpaca_eval.summary.json", {"n": N_PROMPTS})
    _jsonl(
        run / "judge" / "local.annotations.jsonl",
        [{"id": i, "preference": 1 + w, "model_first": i % 2 == 0} for i, w in enumerate(wins)],
    )
    shifted = np.asarray(wins) * 100
    _json(
        run / "judge" / "local.json",
        {
            "judge": {"name": "local", "kind": "local_hf", "model": "smollm2-135m"},
            "n": len(wins),
            "win_rate": float(shifted.mean()),
            "ci_low": float(shifted.mean() - 5),
            "ci_high": float(shifted.mean() + 5),
            "reference_generator": "text_davinci_003",
        },
    )
    _json(run / "text_stats.json", {"n": N_PROMPTS, "char_length": float(np.mean([len(o) for o in outputs]))})
    _json(
        run / "overlap.json",
        {
            "per_example": [
                {"id": i, "rouge_l": 0.5 - (0.2 if "neftune" in method else 0), "bleu": 0.1} for i in range(8)
            ]
        },
    )
    _json(
        run / "leaderboard" / "arc_challenge.json",
        {
            "task": "arc_challenge",
            "metric": "acc_norm",
            "value": arc,
            "stderr": 1.0,
            "n": 100,
            "status": "ok",
            "num_fewshot": 25,
            "limit": None,
        },
    )
    _json(
        run / "leaderboard" / "hellaswag.json",
        {"task": "hellaswag", "status": "not run", "reason": "no local data and the Hub is unreachable"},
    )
    return run


@pytest.fixture()
def instruct_table(tmp_path: Path) -> tuple[pd.DataFrame, list[Path]]:
    rng = np.random.default_rng(0)
    base_wins = list(rng.choice([0.0, 0.5, 1.0], size=N_PROMPTS, p=[0.7, 0.1, 0.2]))
    neft_wins = [min(1.0, w + 0.5) if i % 2 == 0 else w for i, w in enumerate(base_wins)]
    runs = [
        make_run(tmp_path / "instruct", "finetune", base_wins, words=60, train_loss=1.0, arc=30.0),
        make_run(tmp_path / "instruct", "neftune", neft_wins, words=80, train_loss=1.2, arc=31.0),
    ]
    return collect_instruct(runs), runs


def test_run_dir_key_reads_the_five_levels():
    path = Path("results/instruct/m/d/r/neftune_a5/seed3")
    assert run_dir_key(path) == ("m", "d", "r", "neftune_a5", 3)


def test_collect_keeps_every_number_with_its_run(instruct_table):
    table, runs = instruct_table
    win = table[(table["source"] == "judge:local") & (table["method"] == "neftune")]
    assert len(win) == 1 and win["run_dir"].iloc[0] == str(runs[1])
    hellaswag = table[table["source"] == "leaderboard:hellaswag"]
    assert set(hellaswag["status"]) == {"not run"} and hellaswag["value"].isna().all()
    arc = table[table["source"] == "leaderboard:arc_challenge"].set_index("method")
    assert arc.loc["neftune", "value"] == 31.0
    assert arc.loc["neftune", "ci_low"] == pytest.approx(31.0 - 1.96)


def test_collect_lists_a_run_without_sft_metrics_as_missing(tmp_path: Path):
    run = tmp_path / "m" / "d" / "default" / "finetune" / "seed0"
    run.mkdir(parents=True)
    table = collect_instruct([run])
    assert list(table["status"]) == ["missing"] and table["value"].isna().all()


def test_table1_pairs_win_rates_over_prompts(instruct_table):
    table, runs = instruct_table
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=2000)
    result = get_artifact("neftune/table1").build(table, context)
    assert result.status == "regenerated"
    claim = result.claims.iloc[0]
    base = [json.loads(line)["preference"] - 1 for line in (runs[0] / "judge/local.annotations.jsonl").open()]
    neft = [json.loads(line)["preference"] - 1 for line in (runs[1] / "judge/local.annotations.jsonl").open()]
    assert claim["delta"] == pytest.approx(100 * (np.mean(neft) - np.mean(base)))
    assert claim["n_pairs"] == N_PROMPTS
    assert claim["ci_low"] < claim["delta"] < claim["ci_high"]
    # The paper's Alpaca numbers (Table 1, GPT-4 judge): 29.79 -> 64.69.
    assert (claim["paper_baseline"], claim["paper_value"]) == (29.79, 64.69)
    # One seed per method: the prompts are many, but the floor counts seeds (report.min_seeds, default 3).
    assert claim["n_seeds"] == 1 and claim["verdict"] == "too few seeds"
    assert claim["magnitude"] == "ours smaller"  # a tiny judge on a few prompts: far short of +34.9
    assert any("local (local_hf, smollm2-135m)" in note for note in result.notes)
    lenient = ArtifactContext(paper_model=context.paper_model, n_boot=2000, min_seeds=1)
    assert get_artifact("neftune/table1").build(table, lenient).claims.iloc[0]["verdict"] == "direction only"


def test_table1_is_not_run_without_a_judge(instruct_table):
    table, _ = instruct_table
    table = table[~table["source"].str.startswith("judge:")]
    result = get_artifact("neftune/table1").build(table, ArtifactContext())
    assert result.status == "not run" and "judge" in result.reason


def test_table4_lengths_and_repetition(instruct_table):
    table, _ = instruct_table
    result = get_artifact("neftune/table4").build(
        table, ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"})
    )
    claims = result.claims.set_index("task")
    words = claims.loc["whitespace length (Alpaca)"]
    assert (words["mean_baseline"], words["mean_method"]) == (60.0, 80.0)
    assert words["paper_baseline"] == 60.5 and words["paper_value"] == 169.36
    # 7 distinct words cycling: every 2-gram after the first 7 repeats one already seen.
    repetition = claims.loc["2-gram repetition % (Alpaca)"]
    assert repetition["mean_baseline"] == pytest.approx(
        100 * (1 - 7 / 48)
    )  # released: 48 2-grams in 50 words


def test_figure3_reports_limits_and_missing_tasks(instruct_table):
    table, _ = instruct_table
    result = get_artifact("neftune/figure3").build(
        table, ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"})
    )
    claim = result.claims.iloc[0]
    assert claim["delta"] == pytest.approx(1.0)
    assert claim["ci_high"] - claim["delta"] == pytest.approx(1.96 * math.sqrt(2))
    # Figure 3's panel for LLaMA-2-7B trained on Alpaca, ARC (paper_results.csv).
    assert (claim["paper_baseline"], claim["paper_value"]) == (56.4, 56.1)
    assert any("hellaswag" in note for note in result.notes)


def test_paper_histogram_means_come_from_the_bins():
    train_finetune = paper_histogram_mean("Figure 4 (left)", "finetune")
    train_neftune = paper_histogram_mean("Figure 4 (left)", "neftune")
    assert train_finetune is not None and train_neftune is not None
    assert train_neftune > train_finetune  # the paper's claim: NEFTune has a higher training loss


def test_figure4_figure5_and_curves_regenerate(instruct_table, tmp_path: Path):
    table, _ = instruct_table
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500)
    figure4 = get_artifact("neftune/figure4").build(table, context)
    train = figure4.claims[figure4.claims["task"].str.startswith("train loss")].iloc[0]
    assert train["delta"] == pytest.approx(0.2)
    figure5 = get_artifact("neftune/figure5").build(table, context)
    rouge = figure5.claims[figure5.claims["task"].str.startswith("ROUGE-L")].iloc[0]
    assert rouge["delta"] == pytest.approx(-0.2)
    curves = get_artifact("neftune/loss_curves").build(table, context)
    assert curves.status == "regenerated" and curves.figure is not None
    for result in (figure4, figure5, curves):
        write_result(result, tmp_path / result.key)


def _diverged_sft(root: Path, method: str, seed: int) -> Path:
    """A run whose SFT diverged: metrics.json with status "diverged" and nothing downstream."""
    run = root / "smollm2-135m" / "alpaca_seed" / "default" / method / f"seed{seed}"
    _json(run / "sft" / "metrics.json", {"status": "diverged", "train_loss": 80.0, "diverged_at_step": 7})
    return run


def test_neftune_claims_count_diverged_sft_runs_and_they_count_against_the_method(instruct_table, tmp_path):
    """Table 1 pairs seed 0; NEFTune's SFT diverged on seeds 1 and 2, the baseline's on seed 1. The claim
    says so beside the Δ, and the method lost more seeds: the direction-only claim is unstable."""
    _, runs = instruct_table
    root = runs[0].parents[4]
    diverged = [_diverged_sft(root, "neftune", 1), _diverged_sft(root, "neftune", 2)]
    table = collect_instruct([*runs, *diverged, _diverged_sft(root, "finetune", 1)])
    lenient = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500, min_seeds=1)
    claim = get_artifact("neftune/table1").build(table, lenient).claims.iloc[0]
    assert (claim["n_diverged_method"], claim["n_diverged_baseline"]) == (2, 1)
    assert claim["n_seeds"] == 1 and claim["verdict"] == "unstable"
    # Every NEFTune claim gets the counts, not only the win rates.
    table4 = get_artifact("neftune/table4").build(table, lenient).claims
    assert set(table4["n_diverged_method"]) == {2} and set(table4["n_diverged_baseline"]) == {1}
    # The baseline lost as many seeds: the claim stands on its pairs again.
    even = collect_instruct(
        [*runs, *diverged, _diverged_sft(root, "finetune", 1), _diverged_sft(root, "finetune", 2)]
    )
    assert get_artifact("neftune/table1").build(even, lenient).claims.iloc[0]["verdict"] == "direction only"


def test_neftune_losses_and_history_survive_a_torn_line(instruct_table):
    """A killed-and-resumed SFT may leave a torn line inside losses.jsonl/history.jsonl: skipped."""
    table, runs = instruct_table
    for name in ("losses.jsonl", "history.jsonl"):
        path = runs[1] / "sft" / name
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(lines[0] + '{"split": "tra\n' + "".join(lines[1:]))
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500)
    figure4 = get_artifact("neftune/figure4").build(table, context)
    assert figure4.status == "regenerated" and not figure4.claims.empty
    assert get_artifact("neftune/loss_curves").build(table, context).status == "regenerated"


def test_instruct_report_renders(instruct_table, tmp_path: Path):
    table, _ = instruct_table
    table_path = tmp_path / "tables" / "instruct.csv"
    table_path.parent.mkdir()
    table.to_csv(table_path, index=False)
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500)
    dirs = []
    for key in ("neftune/table1", "neftune/table3"):
        out = tmp_path / "artifacts" / key
        write_result(get_artifact(key).build(table, context), out)
        dirs.append(out)
    spec = InstructReportSpec(
        title="NEFTune test report",
        paper_model={"smollm2-135m": "llama-2-7b"},
        settings={"judges": {"local": {"kind": "local_hf", "model": "smollm2-135m"}}},
    )
    pdf = tmp_path / "neftune.pdf"
    build_instruct_report(table_path, pdf, spec, tmp_path / "figures", dirs)
    assert pdf.read_bytes().startswith(b"%PDF")


# ------------------------------------------------------------------------------------------ configs


def test_paper_config_grid_covers_every_artifact():
    from robustft.workflow_config import instruct_grid, load_config

    config = load_config(REPO / "config" / "neftune.yaml")
    grid = instruct_grid(config)
    assert len(grid) == len(set(grid)) == 89
    cells = {(model, dataset, recipe, method) for model, dataset, recipe, method, _ in grid}
    for dataset in ("alpaca", "evol_instruct", "sharegpt", "open_platypus"):  # Table 1, all alphas
        assert {
            ("llama-2-7b", dataset, "default", m) for m in ("finetune", "neftune_a5", "neftune_a15")
        } <= cells
    assert ("llama-2-7b", "alpaca", "epochs9", "neftune_a5") in cells  # Table 14
    assert ("llama-2-13b", "evol_instruct", "qlora", "neftune_a10") in cells  # Table 3
    assert ("opt-6.7b", "sharegpt", "default", "finetune") in cells  # Figure 2
    assert ("llama-2-7b", "open_platypus", "default", "neftune_gauss_a5") in cells  # Table 6
    for part in ("embeddings", "lm_head", "attention"):  # Table 11, beside Table 1's Alpaca runs
        assert ("llama-2-7b", "alpaca", f"freeze_{part}", "neftune_a5") in cells
    assert {("llama-2-7b", "sharegpt", "sharegpt_chunk1024", m) for m in ("finetune", "neftune_a10")} <= cells
    assert ("llama-1-7b", "evol_instruct", "default", "freelb") in cells  # Table 12, beside Figure 2's


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"datasets": ["no_such_set"]}, "no_such_set"),
        ({"judges": {"j": {"kind": "no_such_kind"}}}, "no_such_kind"),
        ({"recipes": {"default": {"adapter": "int3"}}}, "adapter"),
        ({"recipes": {"default": {"freeze": ["embedding"]}}}, r"recipes.default.freeze.*'embedding'"),
        ({"recipes": {"default": {"freeze": ["lm_head"], "adapter": "lora"}}}, "applies to full fine-tuning"),
        ({"sft": {"sharegpt_chunk_tokens": 0}}, "sharegpt_chunk_tokens"),
        ({"leaderboard": {"tasks": ["no_such_task"]}}, "no_such_task"),
        ({"report": {"judge_for": {"win_rate_gpt4": "gpt5"}}}, "gpt5"),
    ],
)
def test_bad_instruct_config_names_the_key(tmp_path: Path, change: dict, named: str):
    import yaml

    from robustft.workflow_config import ConfigError, load_config

    config = yaml.safe_load((FIXTURES / "neftune-tiny.yaml").read_text())
    for key, value in change.items():
        config["instruct"][key] = {**config["instruct"].get(key, {}), **value} if key == "report" else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=named):
        load_config(path)


def test_review_fixes_paper_lookups_and_recipe_filters(instruct_table):
    """Table 3 finds Evol-Instruct-70k; Table 14's default recipe is the paper's 3-epoch point; leaderboard
    and histogram claims only use the default recipe; Figures 4/5 have paper values only for LLaMA-2-7B on
    Alpaca."""
    from robustft.artifacts.neftune import _paper

    assert (
        _paper("Table 3", "llama-2-7b", "Evol-Instruct-70k", "finetune (qlora)", "win_rate_chatgpt", None)
        == 52.8
    )
    table, _ = instruct_table
    context = ArtifactContext(
        paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=200, extra={"recipe_epochs": {"default": 3}}
    )
    table14 = get_artifact("neftune/table14").build(table, context).claims.iloc[0]
    assert (table14["paper_baseline"], table14["paper_value"]) == (48.26, 62.55)
    # the same runs under another recipe add no leaderboard claims
    other = table.assign(recipe="epochs1")
    assert len(get_artifact("neftune/figure3").build(pd.concat([table, other]), context).claims) == 1
    figure4 = get_artifact("neftune/figure4").build(
        table, ArtifactContext(paper_model={"smollm2-135m": "opt-6.7b"})
    )
    assert figure4.claims["paper_value"].isna().all()


# ------------------------------------------------------------------------------------------ Figures 6-8


def _flips_table(rows: list[dict]) -> pd.DataFrame:
    from robustft.evals.embedding_analysis import FLIP_COLUMNS

    common = {"vocab_size": 100, "dim": 8, "seed": 0, "distance": "euclidean"}
    return pd.DataFrame([{**common, **row} for row in rows], columns=FLIP_COLUMNS)


def _spectrum_rows(checkpoint: str, arm: str, values: list[float], **run) -> list[dict]:
    return [
        {"model": "smollm2-135m", "checkpoint": checkpoint, "arm": arm, "dataset": "alpaca_seed", **run}
        | {"status": "ok", "rank": rank, "singular_value": value, "sft_status": "ok" if run else None}
        for rank, value in enumerate(values, start=1)
    ]


@pytest.mark.parametrize(
    ("key", "table"),
    [("neftune/figure6", "flips"), ("neftune/figure8", "flips"), ("neftune/figure7", "spectra")],
)
def test_embedding_figures_are_not_run_without_measurements(key: str, table: str):
    from robustft.evals.embedding_analysis import FLIP_COLUMNS, SPECTRUM_COLUMNS

    empty = pd.DataFrame(columns=FLIP_COLUMNS if table == "flips" else SPECTRUM_COLUMNS)
    result = get_artifact(key).build(empty, ArtifactContext(n_boot=200))
    assert result.status == "not run" and "instruct.embeddings" in result.reason
    # Figure 8 measurements alone leave Figure 6 not run, and the other way round.
    if key != "neftune/figure7":
        other = "figure8" if key == "neftune/figure6" else "figure6"
        lone = _flips_table([{"figure": other, "model": "m", "alpha": 5.0, "length": 8, "n_tokens": 8}])
        assert get_artifact(key).build(lone.assign(n_flipped=0), ArtifactContext()).status == "not run"


def test_figure6_compares_flips_with_no_noise_and_the_papers_statement(tmp_path: Path):
    rows = []
    for item in range(6):
        rows.append(
            {"figure": "figure6", "model": "smollm2-135m", "alpha": 5.0, "item": item, "n_flipped": 0}
        )
        rows.append(
            {"figure": "figure6", "model": "smollm2-135m", "alpha": 25.0, "item": item, "n_flipped": item}
        )
    table = _flips_table(
        [r | {"length": 20, "n_tokens": 20, "dataset": "alpaca_seed", "source": "x"} for r in rows]
    )
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500)
    result = get_artifact("neftune/figure6").build(table, context)
    claims = result.claims.set_index("method")
    assert list(claims.index) == ["neftune α=5", "neftune α=25"]
    quiet, noisy = claims.loc["neftune α=5"], claims.loc["neftune α=25"]
    assert (quiet["delta"], quiet["ci_low"], quiet["ci_high"], quiet["verdict"]) == (0, 0, 0, "within noise")
    assert noisy["delta"] == pytest.approx(100 * np.mean([i / 20 for i in range(6)]))
    assert noisy["ci_low"] > 0 and noisy["verdict"] == "no paper value"
    assert (claims["baseline"] == "no noise (α = 0)").all() and claims["paper_value"].isna().all()
    assert claims["task"].iloc[0] == "% tokens flipped per Alpaca sample"
    assert "none at α ∈ {5}" in result.notes[0] and "Ours agrees." in result.notes[0]
    # Flips already at α = 5: the paper says none.
    early = table.assign(n_flipped=table["n_flipped"].where(table["alpha"] == 25.0, 1))
    assert "Ours differs." in get_artifact("neftune/figure6").build(early, context).notes[0]
    write_result(result, tmp_path / "figure6")
    assert (tmp_path / "figure6" / "figure.svg").is_file()


def test_figure8_reports_each_cell_with_a_wilson_interval(tmp_path: Path):
    cells = [
        {"figure": "figure8", "model": "minilm-l6", "alpha": alpha, "length": length, "n_tokens": 50}
        | {"n_flipped": flipped, "max_vocab": 50}
        for alpha, length, flipped in [(2.0, 32, 0), (2.0, 512, 0), (32.0, 32, 1), (32.0, 512, 5)]
    ]
    result = get_artifact("neftune/figure8").build(_flips_table(cells), ArtifactContext())
    claims = result.claims
    assert len(claims) == 4 and list(claims["mean_method"]) == [0, 0, 2, 10]
    assert list(claims["verdict"]) == ["within noise", "within noise", "no paper value", "no paper value"]
    assert claims["ci_low"].iloc[0] == 0 and claims["ci_high"].iloc[0] > 0
    assert claims["ci_low"].iloc[3] < 10 < claims["ci_high"].iloc[3]
    note = result.notes[0]
    assert (
        "at most 10% of 50 rows" in note and "Ours exceeds it." in note and "sample of 50 of the 100" in note
    )
    write_result(result, tmp_path / "figure8")


def test_figure7_without_runs_shows_the_base_spectrum_and_says_why():
    table = pd.DataFrame(
        _spectrum_rows("base", "base", [9.0, 4.0, 1.0])
        + [
            {
                "model": "smollm2-135m",
                "checkpoint": arm,
                "arm": arm,
                "status": "not run",
                "reason": f"no {arm} run",
            }
            for arm in ("baseline", "neftune")
        ]
    )
    result = get_artifact("neftune/figure7").build(
        table, ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"})
    )
    assert result.status == "regenerated" and result.figure is not None
    claim = result.claims.iloc[0]
    assert claim["verdict"] == "not run" and claim["n_pairs"] == 0
    assert "no baseline run" in result.notes[0] and "no neftune run" in result.notes[0]


def test_figure7_pairs_the_runs_changes_from_the_base_spectrum_over_ranks(tmp_path: Path):
    base = [10.0, 5.0, 2.0, 1.0]
    plain = [11.0, 5.0, 2.0, 1.1]  # +10%, 0, 0, +10%
    noisy = [10.0, 5.5, 2.0, 1.0]  # 0, +10%, 0, 0
    run = {"dataset": "alpaca_seed", "recipe": "default", "seed": 0}
    table = pd.DataFrame(
        _spectrum_rows("base", "base", base)
        + _spectrum_rows("finetune", "baseline", plain, method="finetune", run_dir="r/finetune", **run)
        + _spectrum_rows("neftune_a5", "neftune", noisy, method="neftune_a5", run_dir="r/neftune_a5", **run)
    )
    context = ArtifactContext(n_boot=500, min_seeds=1)
    result = get_artifact("neftune/figure7").build(table, context)
    claim = result.claims.iloc[0]
    assert (claim["method"], claim["baseline"], claim["n_pairs"]) == ("neftune_a5", "finetune", 4)
    assert claim["mean_method"] == pytest.approx(2.5) and claim["mean_baseline"] == pytest.approx(5.0)
    assert claim["delta"] == pytest.approx(-2.5)
    assert "plain SFT: 10%" in result.notes[0] and "NEFTune: 10%" in result.notes[0]
    # A diverged NEFTune run is left out: no pair remains.
    diverged = table.assign(sft_status=table["sft_status"].where(table["arm"] != "neftune", "diverged"))
    left = get_artifact("neftune/figure7").build(diverged, context)
    assert left.claims.iloc[0]["verdict"] == "not run" and any("diverged" in n for n in left.notes)
    write_result(result, tmp_path / "figure7")
    assert (tmp_path / "figure7" / "figure.svg").is_file()


def test_instruct_report_renders_the_embedding_figures(instruct_table, tmp_path: Path):
    table, _ = instruct_table
    table_path = tmp_path / "tables" / "instruct.csv"
    table_path.parent.mkdir()
    table.to_csv(table_path, index=False)
    flips = _flips_table(
        [
            {"figure": "figure6", "model": "smollm2-135m", "alpha": alpha, "item": item, "length": 10}
            | {"n_tokens": 10, "n_flipped": int(alpha > 20) * item, "dataset": "alpaca_seed", "source": "x"}
            for alpha in (5.0, 25.0)
            for item in range(4)
        ]
        + [
            {"figure": "figure8", "model": "smollm2-135m", "alpha": 2.0, "length": length, "n_tokens": 40}
            | {"n_flipped": 1, "max_vocab": 40}
            for length in (32, 64)
        ]
    )
    not_run_arm = {"model": "smollm2-135m", "checkpoint": "neftune", "arm": "neftune", "status": "not run"}
    spectra = pd.DataFrame([*_spectrum_rows("base", "base", [4.0, 2.0]), not_run_arm])
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=200)
    dirs = []
    for key, frame in (("neftune/figure6", flips), ("neftune/figure7", spectra), ("neftune/figure8", flips)):
        out = tmp_path / "artifacts" / key
        write_result(get_artifact(key).build(frame, context), out)
        dirs.append(out)
    spec = InstructReportSpec(title="NEFTune embeddings", paper_model={"smollm2-135m": "llama-2-7b"})
    pdf = tmp_path / "neftune.pdf"
    build_instruct_report(table_path, pdf, spec, tmp_path / "figures", dirs)
    assert pdf.read_bytes().startswith(b"%PDF")


# ------------------------------------------------------------------------------------------ Tables 5, 10

VARIANT_KEY = "0123abcd"  # a variant folder is <name>-<8 hex digits of its settings>


def make_variant(run: Path, name: str, wins: list[float], words: int, settings: dict) -> Path:
    """One generation variant of a run, as generate_variant and judge_variant write it."""
    folder = run / "variants" / f"{name}-{VARIANT_KEY}"
    outputs = [" ".join(f"v{(i + k) % 5}" for k in range(words)) for i in range(len(wins))]
    _jsonl(
        folder / "generations" / "alpaca_eval.jsonl",
        [{"id": i, "instruction": f"q{i}", "output": output} for i, output in enumerate(outputs)],
    )
    summary = {"n": len(wins), "mean_output_tokens": float(words), "n_hit_max_new_tokens": 0}
    _json(folder / "generations" / "alpaca_eval.summary.json", {**summary, "settings": settings})
    _jsonl(
        folder / "judge" / "local.annotations.jsonl",
        [{"id": i, "preference": 1 + w, "model_first": True} for i, w in enumerate(wins)],
    )
    judge = {"name": "local", "kind": "local_hf", "model": "smollm2-135m"}
    _json(folder / "judge" / "local.json", {"judge": judge, "n": len(wins), "win_rate": 100 * np.mean(wins)})
    return folder


VARIANT_SETTINGS = {
    "long": {"system_prompt": "Write a long response."},
    "min_new_tokens": {"min_new_tokens": 8},
    "llama2": {"do_sample": True, "top_p": 0.9, "temperature": 0.6, "sampling_seed": 0},
}


@pytest.fixture()
def variant_table(instruct_table):
    """The two runs of instruct_table with Table 5's variants on the plain run (30 of its 40 prompts) and a
    sampled decoding (Table 10's LLaMA-2 row) on both."""
    _, runs = instruct_table
    rng = np.random.default_rng(1)
    wins = {
        "long": list(rng.choice([0.0, 1.0], size=30, p=[0.5, 0.5])),
        "min_new_tokens": list(rng.choice([0.0, 1.0], size=30, p=[0.8, 0.2])),
        "llama2": list(rng.choice([0.0, 1.0], size=N_PROMPTS, p=[0.6, 0.4])),
    }
    make_variant(runs[0], "long", wins["long"], 120, VARIANT_SETTINGS["long"])
    make_variant(runs[0], "min_new_tokens", wins["min_new_tokens"], 200, VARIANT_SETTINGS["min_new_tokens"])
    make_variant(runs[0], "llama2", wins["llama2"], 70, VARIANT_SETTINGS["llama2"])
    neft_llama2 = [1.0 if i % 3 == 0 else w for i, w in enumerate(wins["llama2"])]
    make_variant(runs[1], "llama2", neft_llama2, 90, VARIANT_SETTINGS["llama2"])
    folders = [f"{name}-{VARIANT_KEY}" for name in VARIANT_SETTINGS]
    return collect_instruct(runs, variants=folders), runs, {**wins, "neftune llama2": neft_llama2}


def _preferences(run: Path, folder: str = "") -> np.ndarray:
    path = run / folder / "judge" / "local.annotations.jsonl"
    return np.array([json.loads(line)["preference"] - 1 for line in path.open()])


def test_collect_reads_only_the_named_variant_folders(variant_table):
    table, runs, wins = variant_table
    long_rows = table[table["source"] == "variant:long"].set_index("metric")
    assert long_rows.loc["mean_char_length", "value"] == pytest.approx(len(" ".join(["v0"] * 120)))
    assert json.loads(long_rows.loc["mean_char_length", "detail"])["settings"] == VARIANT_SETTINGS["long"]
    judged = table[(table["source"] == "variant:long:judge:local") & (table["metric"] == "win_rate")]
    assert judged["value"].iloc[0] == pytest.approx(100 * np.mean(wins["long"])) and judged["n"].iloc[0] == 30
    assert table["source"].str.startswith("judge:").sum() == 2  # the runs' own judgements stay as they were
    # A folder the config does not name (another config's settings) is left out.
    assert not collect_instruct(runs)["source"].str.startswith("variant:").any()


def test_table5_pairs_each_variant_and_neftune_with_plain_sft(variant_table):
    table, runs, _ = variant_table
    context = ArtifactContext(paper_model={"smollm2-135m": "llama-2-7b"}, n_boot=500)
    result = get_artifact("neftune/table5").build(table, context)
    assert result.status == "regenerated"
    claims = result.claims.set_index(["task", "method", "baseline"])
    base, neft = _preferences(runs[0]), _preferences(runs[1])
    long_wins = _preferences(runs[0], f"variants/long-{VARIANT_KEY}")
    # The long prompt against plain SFT, paired over the 30 prompts both answered.
    helped = claims.loc[("win rate (Alpaca)", "finetune + long", "finetune")]
    assert helped["n_pairs"] == 30 and helped["delta"] == pytest.approx(100 * (long_wins - base[:30]).mean())
    assert (helped["paper_value"], helped["paper_baseline"]) == (44.84, 32.36)
    assert helped["paper_model"] == "llama-1-7b"  # the paper's only Table 5 cell, a stand-in for ours
    length = claims.loc[("character length (Alpaca)", "finetune + min_new_tokens", "finetune")]
    assert length["mean_method"] == pytest.approx(len(" ".join(["v0"] * 200)))
    assert (length["paper_value"], length["paper_baseline"]) == (1110.97, 375.22)
    # NEFTune against the length-forced plain model, and against plain SFT.
    gap = claims.loc[("win rate (Alpaca)", "neftune", "finetune + long")]
    assert gap["delta"] == pytest.approx(100 * (neft[:30] - long_wins).mean())
    assert (gap["paper_value"], gap["paper_baseline"]) == (61.99, 44.84)
    neft_length = claims.loc[("character length (Alpaca)", "neftune", "finetune")]
    assert (neft_length["paper_value"], neft_length["paper_baseline"]) == (1058.46, 375.22)
    assert len(result.claims) == 2 + 2 * 2 + 2  # NEFTune row, two variants x 2 metrics, two gaps
    assert any("stand-in" in note for note in result.notes)
    assert any("system_prompt = 'Write a long response.'" in choice for choice in result.choices)


def test_table10_pairs_the_arms_decoded_the_same_way(variant_table, tmp_path: Path):
    table, runs, wins = variant_table
    context = ArtifactContext(
        paper_model={"smollm2-135m": "llama-2-7b"},
        n_boot=500,
        extra={"paper_dataset": {"alpaca_seed": "Evol-Instruct"}},  # the paper's own Table 10 cell
    )
    result = get_artifact("neftune/table10").build(table, context)
    claims = result.claims.set_index("task")
    greedy = claims.loc["greedy (base): Evol-Instruct, judge local"]
    assert greedy["delta"] == pytest.approx(100 * (_preferences(runs[1]) - _preferences(runs[0])).mean())
    assert (greedy["paper_value"], greedy["paper_baseline"]) == (67.58, 62.55)
    sampled = claims.loc["LLaMA-2 (top_p=0.9, temp=0.6): Evol-Instruct, judge local"]
    assert (sampled["method"], sampled["baseline"]) == ("neftune + llama2", "finetune + llama2")
    expected = 100 * (np.mean(wins["neftune llama2"]) - np.mean(wins["llama2"]))
    assert sampled["delta"] == pytest.approx(expected) and sampled["n_pairs"] == N_PROMPTS
    assert (sampled["paper_value"], sampled["paper_baseline"]) == (65.47, 63.73)
    assert len(result.claims) == 2  # greedy and the one sampled decoding that ran
    assert not any("stand-in" in note for note in result.notes)
    assert any("top_p = 0.9" in choice and "sampling_seed = 0" in choice for choice in result.choices)
    write_result(result, tmp_path / "table10")
    assert (tmp_path / "table10" / "result.json").exists()


def test_tables_5_and_10_are_not_run_without_their_variants(instruct_table):
    table, _ = instruct_table
    for key in ("neftune/table5", "neftune/table10"):
        result = get_artifact(key).build(table, ArtifactContext(n_boot=200))
        assert result.status == "not run" and "instruct.generation.variants" in result.reason
    no_judge = table[~table["source"].str.startswith("judge:")]
    assert "judge" in get_artifact("neftune/table5").build(no_judge, ArtifactContext()).reason


# ------------------------------------------------------------------------------------------ Tables 11, 13

PAPER_CONTEXT = {"paper_model": {"smollm2-135m": "llama-2-7b"}}


def make_judged_run(
    root: Path, dataset: str, recipe: str, method: str, wins: list[float], settings: dict, seed: int = 0
) -> Path:
    """A finished, judged run whose sft/metrics.json records its SFT settings (as sft_run writes them) and
    how many parameters trained: 1,000, less 100 per frozen part."""
    run = root / "smollm2-135m" / dataset / recipe / method / f"seed{seed}"
    trainable = 1000 - 100 * len(settings.get("freeze", []))
    metrics = {
        "status": "ok",
        "settings": settings,
        "trainable_parameters": trainable,
        "total_parameters": 1000,
    }
    _json(run / "sft" / "metrics.json", {**metrics, "train_loss": 1.0})
    _jsonl(
        run / "judge" / "local.annotations.jsonl",
        [{"id": i, "preference": 1 + w, "model_first": True} for i, w in enumerate(wins)],
    )
    judge = {"name": "local", "kind": "local_hf", "model": "smollm2-135m"}
    _json(run / "judge" / "local.json", {"judge": judge, "n": len(wins), "win_rate": 100 * np.mean(wins)})
    return run


def _wins(seed: int, p_win: float) -> list[float]:
    return list(
        np.random.default_rng(seed).choice([0.0, 0.5, 1.0], size=N_PROMPTS, p=[1 - p_win - 0.1, 0.1, p_win])
    )


def _delta(method: list[float], baseline: list[float]) -> float:
    return 100 * (np.mean(method) - np.mean(baseline))


@pytest.fixture()
def table11_runs(tmp_path: Path) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Plain SFT and NEFTune made before `freeze` existed (their settings lack it), NEFTune with the
    attention and with the LM head frozen, a frozen run that diverged, and a run of another recipe."""
    root = tmp_path / "instruct"
    wins = {
        name: _wins(seed, p)
        for seed, (name, p) in enumerate(
            [("finetune", 0.3), ("neftune", 0.6), ("attention", 0.2), ("lm_head", 0.55), ("epochs1", 0.4)]
        )
    }
    old = {"epochs": 3.0}
    later = {"sharegpt_chunk_tokens": 512}
    runs = [
        make_judged_run(root, "alpaca_seed", "default", "finetune", wins["finetune"], old),
        make_judged_run(root, "alpaca_seed", "default", "neftune_a5", wins["neftune"], old),
        make_judged_run(
            root,
            "alpaca_seed",
            "freeze_attention",
            "neftune_a5",
            wins["attention"],
            {**old, **later, "freeze": ["attention"]},
        ),
        make_judged_run(
            root,
            "alpaca_seed",
            "freeze_lm_head",
            "neftune_a5",
            wins["lm_head"],
            {**old, **later, "freeze": ["lm_head"]},
        ),
        make_judged_run(root, "alpaca_seed", "epochs1", "finetune", wins["epochs1"], {"epochs": 1.0}),
    ]
    diverged = root / "smollm2-135m" / "alpaca_seed" / "freeze_attention" / "neftune_a5" / "seed1"
    _json(diverged / "sft" / "metrics.json", {"status": "diverged", "train_loss": 80.0})
    return collect_instruct([*runs, diverged]), wins


def test_table11_sets_each_frozen_arm_beside_plain_sft_and_unfrozen_neftune(table11_runs, tmp_path: Path):
    table, wins = table11_runs
    context = ArtifactContext(**PAPER_CONTEXT, n_boot=1000)
    result = get_artifact("neftune/table11").build(table, context)
    assert result.status == "regenerated"
    claims = result.claims.set_index(["method", "baseline"])
    assert len(claims) == 5  # NEFTune vs SFT; each frozen arm vs SFT and vs NEFTune; epochs1 pairs with none
    attention = claims.loc[("neftune_a5 + attention frozen", "finetune")]
    assert attention["delta"] == pytest.approx(_delta(wins["attention"], wins["finetune"]))
    assert (
        attention["n_pairs"] == N_PROMPTS and attention["ci_low"] < attention["delta"] < attention["ci_high"]
    )
    assert (attention["paper_value"], attention["paper_baseline"]) == (22.17, 48.26)
    assert attention["n_diverged_method"] == 1 and attention["n_diverged_baseline"] == 0
    cost = claims.loc[("neftune_a5 + lm_head frozen", "neftune_a5")]
    assert cost["delta"] == pytest.approx(_delta(wins["lm_head"], wins["neftune"]))
    assert (cost["paper_value"], cost["paper_baseline"]) == (61.12, 62.55)
    assert cost["paper_delta"] == pytest.approx(61.12 - 62.55)
    neftune = claims.loc[("neftune_a5", "finetune")]
    assert (neftune["paper_value"], neftune["paper_baseline"]) == (62.55, 48.26)
    # One seed per arm: the prompts are many, but the verdict's floor counts seeds.
    assert set(result.claims["verdict"]) == {"too few seeds"}
    lenient = get_artifact("neftune/table11").build(
        table, ArtifactContext(**PAPER_CONTEXT, n_boot=1000, min_seeds=1)
    )
    assert "too few seeds" not in set(lenient.claims["verdict"])
    assert any("neftune_a5 + attention frozen: 900 of 1,000 parameters trained" in n for n in result.notes)
    assert any("get_input_embeddings" in choice for choice in result.choices)
    write_result(result, tmp_path / "table11")
    assert json.loads((tmp_path / "table11" / "result.json").read_text())["status"] == "regenerated"


def test_table11_is_not_run_without_frozen_runs(instruct_table, table11_runs):
    table, _ = instruct_table
    result = get_artifact("neftune/table11").build(table, ArtifactContext(n_boot=200))
    assert result.status == "not run" and "freeze" in result.reason and "table11" in result.reason
    frozen, _ = table11_runs
    no_judge = frozen[~frozen["source"].str.startswith("judge:")]
    assert "judge" in get_artifact("neftune/table11").build(no_judge, ArtifactContext()).reason


@pytest.fixture()
def table13_runs(tmp_path: Path) -> tuple[list[Path], dict[str, list[float]]]:
    """ShareGPT at the default 512 tokens (settings recorded before the setting existed) and at 1,024,
    plain SFT and NEFTune α 10 at both, NEFTune α 5 at 512 only."""
    root = tmp_path / "instruct"
    names = [
        ("finetune 512", 0.45),
        ("neftune 512", 0.5),
        ("finetune 1024", 0.35),
        ("neftune 1024", 0.6),
        ("a5", 0.5),
    ]
    wins = {name: _wins(10 + seed, p) for seed, (name, p) in enumerate(names)}
    # The longer chunks train at a longer max length: still one cell with the 512-token runs.
    long = {"sharegpt_chunk_tokens": 1024, "max_seq_length": 1024, "freeze": []}
    runs = [
        make_judged_run(root, "sharegpt", "default", "finetune", wins["finetune 512"], {}),
        make_judged_run(root, "sharegpt", "default", "neftune_a10", wins["neftune 512"], {}),
        make_judged_run(root, "sharegpt", "default", "neftune_a5", wins["a5"], {}),
        make_judged_run(root, "sharegpt", "sharegpt1024", "finetune", wins["finetune 1024"], long),
        make_judged_run(root, "sharegpt", "sharegpt1024", "neftune_a10", wins["neftune 1024"], long),
    ]
    return runs, wins


def test_table13_pairs_neftune_at_each_chunk_length_and_each_length_with_512(table13_runs):
    runs, wins = table13_runs
    result = get_artifact("neftune/table13").build(
        collect_instruct(runs), ArtifactContext(**PAPER_CONTEXT, n_boot=1000)
    )
    assert result.status == "regenerated"
    claims = result.claims.set_index(["method", "baseline"])
    assert len(claims) == 4  # the paper's 2 x 2: NEFTune at 512 and 1,024, and 1,024 against 512 per method
    at_1024 = claims.loc[("neftune_a10 @ 1024", "finetune @ 1024")]
    assert at_1024["delta"] == pytest.approx(_delta(wins["neftune 1024"], wins["finetune 1024"]))
    assert (at_1024["paper_value"], at_1024["paper_baseline"]) == (64.35, 61.68)
    assert (
        at_1024["ci_low"] < at_1024["delta"] < at_1024["ci_high"]
        and at_1024["task"] == "ShareGPT, 1024-token chunks"
    )
    at_512 = claims.loc[("neftune_a10 @ 512", "finetune @ 512")]
    assert (at_512["paper_value"], at_512["paper_baseline"]) == (64.22, 63.48)
    longer = claims.loc[("finetune @ 1024", "finetune @ 512")]
    assert longer["delta"] == pytest.approx(_delta(wins["finetune 1024"], wins["finetune 512"]))
    assert (longer["paper_value"], longer["paper_baseline"]) == (61.68, 63.48)
    assert claims.loc[("neftune_a10 @ 1024", "neftune_a10 @ 512"), "paper_delta"] == pytest.approx(
        64.35 - 64.22
    )
    assert set(result.claims["verdict"]) == {"too few seeds"}
    assert not any("neftune_a5" in method for method in result.claims["method"])  # at one length only


def test_table13_is_not_run_without_a_second_chunk_length(table13_runs):
    runs, _ = table13_runs
    result = get_artifact("neftune/table13").build(collect_instruct(runs[:3]), ArtifactContext(n_boot=200))
    assert result.status == "not run" and "sharegpt_chunk_tokens" in result.reason
