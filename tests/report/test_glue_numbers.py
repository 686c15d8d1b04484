"""Every number the report prints is the right one: paper values found under the artifact's own names,
and averages that cover one named task set per model."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from robustft.artifacts import ArtifactContext, get_artifact
from robustft.artifacts.smart import TABLE6_COLUMNS
from robustft.data import get_task
from robustft.reference import GLUE_AVG, GLUE_TABLE_ORDER, load_paper_results, paper_task_name
from robustft.report import ReportSpec, load_tables, report_document
from robustft.report.glue import _paper_number, _with_average_tasks
from robustft.tables import average_tasks, compare, full_data_tasks, summarize, write_tables
from robustft.workflow_config import load_config, run_grid
from tests.helpers import REPO

SHIPPED_CONFIGS = sorted((REPO / "config").glob("*.yaml"))
SMART_TABLE1 = "Table 1 (arXiv v5; GLUE dev)"
CLAIM_ARTIFACTS = ("smart/", "noisytune/table2")


def _normalised(name: str) -> str:
    """'MNLI-mm' -> 'mnlimm', 'SST-2' -> 'sst2': how a paper's dataset name relates to our task keys."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _stands_for(paper_method: str, method: str) -> bool:
    """Whether a paper row's method is a row of our `method`, read from the paper's own naming and not
    from any config's mapping: the same name, or the name with a qualifier ("finetune (BERT_ReImp, ...)",
    "finetune (as reported by Liu et al. 2019)" and "finetune (Nie et al. 2019)" are finetune rows)."""
    return paper_method == method or paper_method.startswith(f"{method} (")


def _paper_has_cell(
    paper: str, artifact: str, paper_model: str, task: str, method: str, split: str | None = None
) -> bool:
    """Whether paper_results.csv holds any number for the cell, matched without the report's lookup: a
    row of our method (_stands_for) on a dataset whose normalised name starts with our task key (mnli
    matches MNLI, MNLI-m and MNLI-mm), on `split` (or a qualified form of it) when one is given."""
    frame = load_paper_results()
    rows = frame[
        (frame["paper"] == paper)
        & (frame["artifact"] == artifact)
        & (frame["model"] == paper_model)
        & frame["method"].map(lambda name: _stands_for(name, method))
    ]
    if split is not None:
        rows = rows[(rows["split"] == split) | rows["split"].str.match(rf"{re.escape(split)}[| (]")]
    return any(_normalised(dataset).startswith(task) for dataset in rows["dataset"])


def _report_text(tables_dir: Path, spec: ReportSpec) -> str:
    """The report's document (what the PDF prints) as JSON text."""
    return json.dumps(report_document(tables_dir, spec), ensure_ascii=False)


def _report_spec(config: dict) -> ReportSpec:
    """The spec the workflow hands to `robustft report` (workflow/rules/common.smk: report_spec_json)."""
    return ReportSpec.from_dict({key: value for key, value in config["report"].items() if key != "name"})


def _printed_cells() -> list[tuple[str, ReportSpec, str, str, str]]:
    """(config, spec, model, task, method) for every paper value a shipped config's main table prints:
    each mapped model x full-data task x shown method, and each model's average over the tasks every
    shown method ran (a method the main table does not show never shrinks it)."""
    cells = []
    for path in SHIPPED_CONFIGS:
        config = load_config(path)
        if "glue" not in config["tracks"]:
            continue
        grid = pd.DataFrame(run_grid(config), columns=["model", "task", "method", "seed"])
        grid = grid[~grid["task"].str.contains("@", regex=False)]  # variants: no Table 2 / Table 1 cell
        spec = _report_spec(config)
        methods = [
            spec.baseline,
            *[m for m in (spec.methods or sorted(set(grid["method"]))) if m != spec.baseline],
        ]
        averages = average_tasks(grid, methods)
        spec.average_over = {model: tasks for model, tasks in averages.items() if len(tasks) >= 2}
        for model in sorted(set(grid["model"]) & set(spec.paper_model)):
            tasks = sorted(set(grid.loc[grid["model"] == model, "task"]))
            for task in [*tasks, GLUE_AVG]:
                cells += [(path.name, spec, model, task, method) for method in methods]
    return cells


PRINTED = _printed_cells()


def test_the_enumeration_covers_the_shipped_paper_configs() -> None:
    configs = {name for name, *_ in PRINTED}
    assert {"smart.yaml", "smart-cpu.yaml", "noisytune.yaml", "noisytune-cpu.yaml"} <= configs
    assert any(task == "mnli" and spec.paper == "SMART" for _, spec, _, task, _ in PRINTED)


def _exists(spec: ReportSpec, model: str, task: str, method: str) -> bool:
    """Whether the paper has the cell, by our method's name (not the config's paper_method mapping, so a
    mapping to a row the paper lacks for this model cannot hide a cell the paper has)."""
    paper_model = spec.paper_model[model]
    if task != GLUE_AVG:
        return _paper_has_cell(spec.paper, spec.artifact, paper_model, task, method)
    averaged = spec.average_over.get(model, [])
    if not averaged or {paper_task_name(t) for t in averaged} == set(GLUE_TABLE_ORDER):
        return _paper_has_cell(spec.paper, spec.artifact, paper_model, "glueavg", method)
    # Recomputed over our tasks: it exists when every one of them does.
    return all(_paper_has_cell(spec.paper, spec.artifact, paper_model, t, method) for t in averaged)


@pytest.mark.parametrize("config", sorted({name for name, *_ in PRINTED}))
def test_a_paper_cell_that_exists_is_never_printed_as_missing(config: str) -> None:
    wrong = []
    for _, spec, model, task, method in (cell for cell in PRINTED if cell[0] == config):
        exists, number = _exists(spec, model, task, method), _paper_number(spec, model, task, method)
        if exists != (number is not None):
            shown = "–" if number is None else number.value
            wrong.append(f"{model}/{task}/{method}: paper has it: {exists}, printed: {shown}")
    assert not wrong, f"{config} ({len(wrong)} cells): " + "; ".join(wrong)


def _synthetic_runs(config: dict) -> pd.DataFrame:
    """runs.csv of a config's whole grid, every run ok: method i scores i points above finetune's level,
    with every metric a run writes (MNLI mismatched, ANLI's rounds and test splits) beside the score."""
    methods = sorted(config["methods"], key=lambda m: (m != "finetune", m))
    extra = {"mnli": ["accuracy_mm"], "anli": list(TABLE6_COLUMNS)}
    rows = []
    for model, task, method, seed in run_grid(config):
        spec = get_task(task.split("@")[0])
        score = 60.0 + methods.index(method) + 0.1 * seed * (1 + methods.index(method))
        metrics = {f"m_{metric}": score for metric in (*spec.metrics, *extra.get(spec.key, []))}
        rows.append(
            {
                "model": model,
                "task": task,
                "method": method,
                "seed": seed,
                "status": "ok",
                "metric": spec.primary_metric,
                "score": score,
                **metrics,
                "n_train": 100,
                "n_eval": 50,
                "wall_time_s": 1.0,
                "git_commit": "abc1234",
                "train_runtime_s": 1.0,
                "run_dir": "",
            }
        )
    return pd.DataFrame(rows)


def _claim_cell(task: str) -> tuple[str, str]:
    """A claim's task as (normalised dataset prefix, split): "snli@0.01" -> ("snli", "dev"), SMART
    Table 6's pseudo-task "ANLI-R1 test" -> ("anlir1", "test")."""
    name, _, split = task.partition(" ")
    return _normalised(name.split("@")[0]), split or "dev"


def _claim_exists(paper: str, artifact: str, paper_model: str, task: str, method: str) -> bool:
    dataset, split = _claim_cell(task)
    return _paper_has_cell(paper, artifact, paper_model, dataset, method, split=split)


def _printed_claim_cells() -> list[tuple[str, str, str, str, float, bool]]:
    """(config, artifact key, claim, side, printed value, paper has it) for the paper side of every claim
    the artifacts of a shipped GLUE config print: `paper_value` (the claim's method) and `paper_baseline`
    (its baseline), each looked up in paper_results.csv by our method name (_stands_for)."""
    cells = []
    for path in SHIPPED_CONFIGS:
        config = load_config(path)
        if "glue" not in config["tracks"]:
            continue
        runs = _synthetic_runs(config)
        context = ArtifactContext(paper_model=dict(config["report"]["paper_model"]), n_boot=50)
        for key in config.get("artifacts", []):
            artifact = get_artifact(key)
            # Tables built from runs.csv alone (NoisyTune's figures also read files in each run's directory).
            if not key.startswith(CLAIM_ARTIFACTS):
                continue
            claims = artifact.build(runs, context).claims
            if claims is None or claims.empty or "paper_model" not in claims:
                continue
            for claim in claims[claims["paper_model"].astype(str) != ""].itertuples(index=False):
                same_model = claims[(claims["model"] == claim.model) & (claims["task"] != GLUE_AVG)]
                for side, method, printed in (
                    ("paper_value", claim.method, claim.paper_value),
                    ("paper_baseline", claim.baseline, claim.paper_baseline),
                ):
                    # An average exists where every task the model's claims cover does.
                    tasks = sorted(set(same_model["task"])) if claim.task == GLUE_AVG else [claim.task]
                    exists = bool(tasks) and all(
                        _claim_exists(artifact.paper, artifact.artifact, claim.paper_model, task, method)
                        for task in tasks
                    )
                    label = f"{claim.model}/{claim.task}/{claim.method} vs {claim.baseline}"
                    cells.append((path.name, key, label, side, printed, exists))
    return cells


PRINTED_CLAIMS = _printed_claim_cells()


def test_the_claim_enumeration_covers_smarts_roberta_large_block() -> None:
    smart = {(key, label.split("/")[0]) for name, key, label, *_ in PRINTED_CLAIMS if name == "smart.yaml"}
    assert {
        ("smart/table1", "bert-base"),
        ("smart/table1", "roberta-large"),
        ("smart/table6", "roberta-large"),
    } <= smart
    assert any(name == "noisytune.yaml" for name, *_ in PRINTED_CLAIMS)


@pytest.mark.parametrize("config", sorted({name for name, *_ in PRINTED_CLAIMS}))
def test_an_artifact_claim_prints_every_paper_value_that_exists(config: str) -> None:
    """Whenever paper_results.csv has a row of the claim's method (or baseline) for its paper model and
    dataset, the claim prints a number there: a baseline named after another model's row cannot hide it."""
    wrong = [
        f"{key} {label}: {side} missing"
        for name, key, label, side, printed, exists in PRINTED_CLAIMS
        if name == config and exists and pd.isna(printed)
    ]
    assert not wrong, f"{config} ({len(wrong)} cells): " + "; ".join(wrong)


@pytest.mark.parametrize("config", sorted({name for name, *_ in PRINTED}))
def test_a_shipped_main_tables_average_covers_every_task_its_baseline_ran(config: str) -> None:
    """No preset run only for another table (SMART's ablations, NoisyTune's figures) shrinks the main Avg."""
    loaded = load_config(REPO / "config" / config)
    grid = pd.DataFrame(run_grid(loaded), columns=["model", "task", "method", "seed"])
    spec = _report_spec(loaded)
    shown = average_tasks(grid, spec.methods or None)  # what the main table prints (report._methods)
    shrunk = []
    for model, runs in grid[grid["method"] == spec.baseline].groupby("model"):
        ran = full_data_tasks(runs["task"])
        if len(ran) >= 2 and shown.get(model) != ran:
            shrunk.append(f"{model}: {shown.get(model)} instead of {ran}")
    assert not shrunk, f"{config}: " + "; ".join(shrunk)


def test_smart_table1_finds_mnli_under_its_matched_column() -> None:
    spec = ReportSpec.from_dict(
        {
            "title": "t",
            "paper": "SMART",
            "artifact": SMART_TABLE1,
            "paper_model": {"bert-base": "bert-base"},
            "paper_method": {"finetune": "finetune (BERT_ReImp, SMART authors' reimplementation)"},
        }
    )
    assert _paper_number(spec, "bert-base", "mnli", "finetune").value == 84.5  # MNLI-m, not MNLI-mm 84.4
    assert _paper_number(spec, "bert-base", "mnli", "smart").value == 85.6
    spec.average_over = {"bert-base": ["mnli", "rte"]}
    assert _paper_number(spec, "bert-base", GLUE_AVG, "smart").value == pytest.approx((85.6 + 71.2) / 2)


# ------------------------------------------------------------------------------------------ averages


def _runs(cells: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """runs.csv rows for one model: (task, method) -> scores of seeds 1, 2, ..."""
    rows = []
    for (task, method), scores in cells.items():
        for seed, score in enumerate(scores, start=1):
            rows.append(
                {
                    "model": "minilm-l6",
                    "task": task,
                    "method": method,
                    "seed": seed,
                    "status": "ok",
                    "metric": "accuracy",
                    "score": score,
                    "n_train": 100,
                    "n_eval": 50,
                    "wall_time_s": 1.0,
                    "git_commit": "abc1234",
                }
            )
    return pd.DataFrame(rows)


def test_the_report_names_the_one_task_set_of_every_average(tmp_path: Path) -> None:
    # noisytune ran RTE and MRPC only; finetune also ran CoLA: both averages cover RTE and MRPC.
    runs = _runs(
        {
            ("rte", "finetune"): [60.0, 61.0, 62.0],
            ("rte", "noisytune"): [61.0, 62.0, 63.5],
            ("mrpc", "finetune"): [80.0, 81.0, 82.0],
            ("mrpc", "noisytune"): [81.0, 82.5, 83.0],
            ("cola", "finetune"): [30.0, 31.0, 32.0],
        }
    )
    summary, comparisons = summarize(runs), compare(runs, n_boot=200)
    write_tables(runs, summary, comparisons, tmp_path)
    spec = ReportSpec.from_dict(
        {"title": "t", "paper": "NoisyTune", "artifact": "Table 2", "paper_model": {"minilm-l6": "bert-base"}}
    )
    source = _report_text(tmp_path, spec)
    assert "Avg of minilm-l6: average over MRPC, RTE" in source
    assert f"{GLUE_AVG} of minilm-l6: average over MRPC, RTE" in source
    # The paper's side is recomputed over the same two tasks (NoisyTune Table 2, BERT-base).
    spec.average_over = {"minilm-l6": ["mrpc", "rte"]}
    assert _paper_number(spec, "minilm-l6", GLUE_AVG, "finetune").value == pytest.approx((87.1 + 67.7) / 2)


def test_csv_average_rows_over_another_set_are_recomputed_for_the_table(tmp_path: Path) -> None:
    """summary.csv averages each method over its own tasks (x also ran CoLA); the main table, which shows
    both methods, prints both over MRPC and RTE, recomputed from runs.csv, never x's 3-task average."""
    runs = _runs(
        {(task, method): [50.0, 51.0] for task in ("rte", "mrpc") for method in ("finetune", "x")}
        | {("cola", "x"): [10.0, 12.0]}
    )
    summary, comparisons = summarize(runs), compare(runs, n_boot=200)
    x_average = (summary["task"] == GLUE_AVG) & (summary["method"] == "x")
    assert summary.loc[x_average, "average_over"].item() == "cola;mrpc;rte"
    write_tables(runs, summary, comparisons, tmp_path)
    spec = ReportSpec.from_dict({"title": "t", "paper": "NoisyTune", "artifact": "Table 2"})
    shown_spec, shown = _with_average_tasks(spec, load_tables(tmp_path))
    assert shown_spec.average_over == {"minilm-l6": ["mrpc", "rte"]}
    averages = shown.summary[shown.summary["task"] == GLUE_AVG].set_index("method")
    assert set(averages["average_over"]) == {"mrpc;rte"}
    assert averages.loc["x", "mean"] == pytest.approx(50.5)
    assert "Avg of minilm-l6: average over MRPC, RTE" in _report_text(tmp_path, spec)


# SMART's shipped grid (config/smart.yaml): Table 1's finetune and smart on 8 GLUE tasks, Table 3's
# ablation smart_no_rs on 5 of them. Per-task levels differ, so a 5-task and an 8-task average differ.
SMART_TASKS = {"mnli": 84.0, "qqp": 91.0, "rte": 63.0, "qnli": 91.0, "mrpc": 84.0, "cola": 55.0}
SMART_TASKS |= {"sst2": 92.0, "stsb": 88.0}
ABLATION_TASKS = ["mnli", "rte", "qnli", "sst2", "mrpc"]  # the `table3` grid
SHIFT = {"finetune": 0.0, "smart": 2.0, "smart_no_rs": 1.0}


def _smart_runs() -> pd.DataFrame:
    rows = []
    for task, level in SMART_TASKS.items():
        metric = get_task(task).primary_metric
        for method, shift in SHIFT.items():
            if method == "smart_no_rs" and task not in ABLATION_TASKS:
                continue
            for seed, noise in ((1, -0.4), (2, 0.1), (3, 0.5)):
                score = level + shift + noise
                more = {"m_f1": score + 5.0} if task == "mrpc" else {}  # Table 3 compares MRPC on F1
                rows.append(
                    {
                        "model": "bert-base",
                        "task": task,
                        "method": method,
                        "seed": seed,
                        "status": "ok",
                        "metric": metric,
                        "score": score,
                        f"m_{metric}": score,
                        **more,
                        "n_train": 100,
                        "n_eval": 50,
                        "wall_time_s": 1.0,
                        "git_commit": "abc1234",
                    }
                )
    return pd.DataFrame(rows)


def _mean_over(tasks: list[str], method: str) -> float:
    return sum(SMART_TASKS[t] for t in tasks) / len(tasks) + SHIFT[method] + (-0.4 + 0.1 + 0.5) / 3


def test_smart_ablations_never_shrink_the_main_tables_average(tmp_path: Path) -> None:
    runs = _smart_runs()
    write_tables(runs, summarize(runs), compare(runs, n_boot=200), tmp_path)
    config = load_config(REPO / "config" / "smart.yaml")
    spec = _report_spec(config)
    assert spec.methods == ["finetune", "smart"]  # the shipped main table is Table 1's comparison
    all_tasks = sorted(SMART_TASKS)

    shown_spec, shown = _with_average_tasks(spec, load_tables(tmp_path))
    assert shown_spec.average_over == {"bert-base": all_tasks}
    averages = shown.summary[shown.summary["task"] == GLUE_AVG].set_index("method")
    for method in ("finetune", "smart"):
        assert averages.loc[method, "average_over"] == ";".join(all_tasks)
        assert averages.loc[method, "mean"] == pytest.approx(_mean_over(all_tasks, method))
    smart_average = shown.comparisons[shown.comparisons["task"] == GLUE_AVG].set_index("method").loc["smart"]
    assert smart_average["average_over"] == ";".join(all_tasks)
    assert smart_average["delta"] == pytest.approx(2.0)
    source = _report_text(tmp_path, spec)
    named = ", ".join(paper_task_name(t) for t in all_tasks)
    assert f"Avg of bert-base: average over {named}, the tasks every method in this table ran" in source
    assert f"{GLUE_AVG} of bert-base: average over {named}, for every method." in source

    # A main table showing every method (no report.methods) averages the 5 tasks all four ran, and says so.
    everything = replace(spec, methods=[])
    shown_spec, shown = _with_average_tasks(everything, load_tables(tmp_path))
    assert shown_spec.average_over == {"bert-base": sorted(ABLATION_TASKS)}
    averages = shown.summary[shown.summary["task"] == GLUE_AVG].set_index("method")
    assert averages.loc["finetune", "mean"] == pytest.approx(_mean_over(ABLATION_TASKS, "finetune"))
    named = ", ".join(paper_task_name(t) for t in sorted(ABLATION_TASKS))
    assert f"Avg of bert-base: average over {named}," in _report_text(tmp_path, everything)

    # The artifacts: Table 1 (finetune, smart) averages the 8 tasks; Table 3 (with the ablation) the 5,
    # for each of its comparisons (smart and smart_no_rs against finetune, smart against smart_no_rs).
    context = ArtifactContext(paper_model={"bert-base": "bert-base"}, n_boot=200)
    table1 = get_artifact("smart/table1").build(runs, context).claims
    assert table1.loc[table1["task"] == GLUE_AVG, "mean_method"].item() == pytest.approx(
        _mean_over(all_tasks, "smart")
    )
    table3 = get_artifact("smart/table3").build(runs, context)
    averaged = table3.claims[table3.claims["task"] == GLUE_AVG]
    assert len(averaged) == 3
    # Table 3 reads MRPC's F1 (accuracy + 5 here): 1 point more on a 5-task average.
    on_finetune = averaged[averaged["baseline"] == "finetune"]
    assert on_finetune["mean_baseline"].tolist() == pytest.approx(
        [_mean_over(ABLATION_TASKS, "finetune") + 1] * 2
    )
    ablation = averaged[averaged["baseline"] == "smart_no_rs"]
    assert ablation["mean_method"].item() == pytest.approx(_mean_over(ABLATION_TASKS, "smart") + 1)
    names = ", ".join(paper_task_name(t) for t in sorted(ABLATION_TASKS))
    assert f"bert-base: {GLUE_AVG} is the average over {names}, for every method alike." in table3.notes
