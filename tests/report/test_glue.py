"""Report assembly: verdicts, proxy wording, text printed verbatim, and a reproducible, valid PDF.

The report is a document (data) that templates/report.typ lays out: tests read that document, and the
PDF's text through pdftotext where poppler is installed."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from robustft.report import (
    CONTRADICTED,
    DIRECTION_ONLY,
    NO_PAPER_VALUE,
    NOT_RUN,
    REPRODUCED,
    TOO_FEW_SEEDS,
    WITHIN_NOISE,
    ReportSpec,
    build_report,
    fmt_p,
    fmt_points,
    fmt_signed,
    load_curves,
    precision_choice,
    report_document,
    verdict,
)
from tests.helpers import REPO

NASTY = 'a_b#c$*"x"\\ [y] <z> @w //c /*d*/ `e` ~f = - +'
# Text that typst markup would read as code, maths, emphasis, a reference or a label, and escapes.
VERBATIM = [NASTY, "ünïcode Δ ±", "\\u{41} \\\\ \\#"]
SEEDS = [1, 2, 3, 4, 5]
TASK_METRIC = {"rte": "accuracy", "mrpc": "accuracy", "cola": "mcc", "stsb": "pearson"}
# Per task: (baseline mean, method shift, CI) chosen to hit each verdict for the default model.
TASK_EFFECT = {
    "rte": (62.0, 1.5, (0.6, 2.4)),  # paper Δ > 0, CI > 0: reproduced
    "mrpc": (80.0, 0.2, (-0.5, 0.9)),  # CI includes 0: within noise
    "cola": (30.0, -2.0, (-3.1, -0.9)),  # paper Δ > 0, CI < 0: contradicted
    "stsb": (85.0, 0.0, (math.nan, math.nan)),  # no comparison row: not run
}


def _write_tables(tables_dir: Path, models: list[str]) -> None:
    """runs/summary/comparisons as tables/glue.py would write them, for a tiny fake experiment."""
    runs = []
    for model in models:
        for task, (base, shift, _) in TASK_EFFECT.items():
            for method in ("finetune", "noisytune"):
                for seed in SEEDS:
                    score = base + (shift if method == "noisytune" else 0.0) + 0.3 * (seed - 3)
                    status = "diverged" if (task, method, seed) == ("rte", "noisytune", 5) else "ok"
                    runs.append(
                        {
                            "model": model,
                            "task": task,
                            "method": method,
                            "seed": seed,
                            "status": status,
                            "metric": TASK_METRIC[task],
                            "score": score if status == "ok" else math.nan,
                            f"m_{TASK_METRIC[task]}": score,
                            "n_train": 1000 if task != "rte" else 2490,
                            "n_eval": 277 if task == "rte" else 200,
                            "train_runtime_s": 100.0,
                            "train_samples_per_second": 10.0,
                            "wall_time_s": 120.0,
                            "git_commit": "abc1234",
                            "config_hash": "cfg_9f",
                            "slurm_job_id": 42,
                            "run_dir": f"results/runs/{model}/{task}/{method}/{seed}",
                        }
                    )
    runs_df = pd.DataFrame(runs)
    ok = runs_df[runs_df["status"] == "ok"]
    summary = (
        ok.groupby(["model", "task", "method", "metric"])["score"]
        .agg(n="count", mean="mean", std="std")
        .reset_index()
    )
    per_seed_avg = ok.groupby(["model", "method", "seed"])["score"].mean().reset_index()
    avg = (
        per_seed_avg.groupby(["model", "method"])["score"]
        .agg(n="count", mean="mean", std="std")
        .reset_index()
    )
    avg["task"], avg["metric"] = "GLUE-avg", "average"
    avg["average_over"] = ";".join(sorted(TASK_EFFECT))  # as tables.summarize names its task set
    summary = pd.concat([summary, avg], ignore_index=True)
    summary["n_diverged"] = [
        int((m, t, me) == (m, "rte", "noisytune"))
        for m, t, me in summary[["model", "task", "method"]].itertuples(index=False)
    ]
    summary["n_failed"] = 0

    comparisons = []
    for model in models:
        for task, (base, shift, (low, high)) in TASK_EFFECT.items():
            if task == "stsb":
                continue
            comparisons.append(
                {
                    "model": model,
                    "task": task,
                    "method": "noisytune",
                    "baseline": "finetune",
                    "metric": TASK_METRIC[task],
                    "n_pairs": 4 if task == "rte" else 5,
                    "mean_method": base + shift,
                    "mean_baseline": base,
                    "delta": shift,
                    "ci_low": low,
                    "ci_high": high,
                    # Significant exactly where the CI excludes 0, as a paired t-test on such data would be.
                    "p_ttest": 0.0004 if task == "rte" else 0.004 if low * high > 0 else 0.4567,
                    "p_wilcoxon": 0.0625,
                    "p_holm": 0.0012 if task == "rte" else 0.012 if low * high > 0 else 0.9,
                    "min_seeds_for_significance": 3 if task == "rte" else 23,
                    "average_over": None,  # named on average rows only
                }
            )
    tables_dir.mkdir(parents=True, exist_ok=True)
    runs_df.to_csv(tables_dir / "runs.csv", index=False)
    summary.to_csv(tables_dir / "summary.csv", index=False)
    pd.DataFrame(comparisons).to_csv(tables_dir / "comparisons.csv", index=False)


def _spec(**overrides: object) -> ReportSpec:
    raw = {
        "title": "NoisyTune Table 2 on GLUE subsets",
        "paper": "NoisyTune",
        "artifact": "Table 2",
        "methods": ["finetune", "noisytune"],
        "paper_model": {"minilm-l6": "bert-base"},
        "choices": ["lambda = 0.15 for every task (the paper gives one value)"],
        "notes": ["Smoke-test fixture."],
        "provenance": {"commit": "abc1234", "hardware": "1x H100", "compute time": "0.3 GPU-h"},
    }
    raw.update(overrides)
    return ReportSpec.from_dict(raw)


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tables"
    _write_tables(path, ["minilm-l6"])
    return path


def _text(report: dict) -> str:
    """The report document as the JSON text the template reads: every string in it, quoted."""
    return json.dumps(report, ensure_ascii=False)


def _source(tables_dir: Path, spec: ReportSpec) -> str:
    return _text(report_document(tables_dir, spec))


def _section(report: dict, title: str) -> list[dict]:
    """The blocks of the section headed `title`, up to the next section."""
    blocks = report["blocks"]
    start = blocks.index({"kind": "heading", "level": 1, "text": title}) + 1
    ends = [
        i for i in range(start, len(blocks)) if blocks[i]["kind"] == "heading" and blocks[i]["level"] == 1
    ]
    return blocks[start : ends[0] if ends else len(blocks)]


def _cells(report: dict) -> list[dict]:
    """Every cell of every table of the report."""
    return [
        cell
        for block in report["blocks"]
        if block["kind"] == "table"
        for row in block["rows"]
        for cell in row
    ]


def _verdicts(report: dict) -> set[str]:
    return {cell["verdict"] for cell in _cells(report) if "verdict" in cell}


def _pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    ("paper_delta", "low", "high", "n_pairs", "expected"),
    [
        (0.9, 0.2, 1.5, 5, REPRODUCED),
        (-0.4, -1.0, -0.1, 5, REPRODUCED),
        (0.9, -1.5, -0.2, 5, CONTRADICTED),
        (-0.4, 0.1, 0.8, 5, CONTRADICTED),
        (0.0, 0.1, 0.8, 5, CONTRADICTED),
        (0.9, -0.3, 0.6, 5, WITHIN_NOISE),
        (0.9, 0.0, 0.6, 5, WITHIN_NOISE),
        (0.9, math.nan, math.nan, 1, TOO_FEW_SEEDS),
        (0.9, 0.2, 1.5, 2, TOO_FEW_SEEDS),  # a clear CI on 2 seeds still says nothing about their spread
        (0.9, math.nan, math.nan, 0, NOT_RUN),
        (0.9, 0.05, 0.1, 5, DIRECTION_ONLY),  # right sign, a tenth of the paper's Δ
        (-0.4, -3.0, -1.0, 5, DIRECTION_ONLY),
        (None, 0.2, 0.6, 5, NO_PAPER_VALUE),
    ],
)
def test_verdict(paper_delta: float | None, low: float, high: float, n_pairs: int, expected: str) -> None:
    assert verdict(paper_delta, low, high, n_pairs) == expected
    assert verdict(paper_delta, low, high, n_pairs, 0.01) == expected  # a significant test changes nothing


def test_two_seeds_that_agree_are_too_few_whatever_their_test_says() -> None:
    """The case that used to read "reproduced": differences 1.0 and 1.1 give CI [1.0, 1.1], p = 0.03."""
    from robustft.stats import paired_bootstrap_ci, paired_ttest

    method, baseline = [61.0, 62.1], [60.0, 61.0]
    low, high = paired_bootstrap_ci(method, baseline)
    p_value = paired_ttest(method, baseline)
    assert p_value < 0.05 and low > 0
    assert verdict(1.05, low, high, 2, p_value) == TOO_FEW_SEEDS
    assert verdict(1.05, low, high, 2, p_value, min_seeds=2) == REPRODUCED  # the floor is configurable


@pytest.mark.parametrize(
    ("paper_delta", "low", "high", "expected"),
    [
        (1.0, 0.5, 1.5, "paper Δ in CI"),
        (1.0, 0.05, 0.1, "ours smaller"),
        (1.0, -2.0, -1.0, "ours smaller"),  # the opposite effect is short of the paper's too
        (1.0, 1.2, 3.0, "ours larger"),
        (-1.0, -0.3, -0.1, "ours smaller"),  # measured in the paper's direction
        (-1.0, -3.0, -2.0, "ours larger"),
        (0.0, 0.1, 0.3, "ours larger"),
        (0.0, -0.1, 0.3, "paper Δ in CI"),
        (None, 0.1, 0.3, None),
        (1.0, math.nan, math.nan, None),
    ],
)
def test_magnitude_places_the_papers_delta_against_our_ci(paper_delta, low, high, expected) -> None:
    from robustft.report import magnitude

    assert magnitude(paper_delta, low, high) == expected


@pytest.mark.parametrize("p_value", [0.2, 0.05, math.nan])
def test_verdict_needs_a_significant_test_as_well_as_the_ci(p_value: float) -> None:
    assert verdict(0.9, 0.2, 1.5, 3, p_value) == WITHIN_NOISE
    assert verdict(0.9, -1.5, -0.2, 3, p_value) == WITHIN_NOISE


def test_number_formats() -> None:
    assert fmt_points(84.44, 1) == "84.4"
    assert fmt_points(-0.04, 1) == "0.0"
    assert fmt_points(math.nan, 1) == "–"
    assert fmt_signed(0.456, 2) == "+0.46"
    assert fmt_signed(-1.2, 2) == "−1.20"
    assert fmt_p(0.0004) == "<0.001"
    assert fmt_p(0.04567) == "0.0457"
    assert fmt_p(0.5) == "0.500"
    assert fmt_p(math.nan) == "–"


def test_text_with_typst_markup_reaches_the_pdf_verbatim(tmp_path: Path) -> None:
    """Names and notes are data the template reads, never markup: each is printed as it is, whatever
    typst would make of it in markup (code, maths, emphasis, a reference, a label, an escape)."""
    model, method = f"model {NASTY}", f"method {VERBATIM[2]}"
    _write_tables(tmp_path / "tables", [model])
    for name in ("runs.csv", "summary.csv", "comparisons.csv"):
        frame = pd.read_csv(tmp_path / "tables" / name, keep_default_na=False, na_values=[""])
        frame["method"] = frame["method"].replace({"noisytune": method})
        frame.to_csv(tmp_path / "tables" / name, index=False)
    spec = _spec(
        title=f"Title {VERBATIM[1]}",
        methods=["finetune", method],
        paper_model={model: "bert-base"},
        choices=VERBATIM,
        notes=[f"note {text}" for text in VERBATIM],
        provenance={f"key {NASTY}": f"value {VERBATIM[2]}"},
    )
    out = tmp_path / "out" / "report.pdf"
    build_report(tmp_path / "tables", out, spec)
    report = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))  # what the template read
    assert report["title"] == spec.title
    assert {"kind": "bullets", "items": spec.notes} in report["blocks"]
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler) is not installed")
    # Line breaks fall where the layout puts them: compare without whitespace.
    text = "".join(_pdf_text(out).split())
    provenance = [part for item in spec.provenance.items() for part in item]
    expected = [spec.title, model, method, *spec.choices, *spec.notes, *provenance]
    assert [item for item in expected if "".join(item.split()) not in text] == []


def test_spec_from_dict_defaults_and_typos() -> None:
    spec = ReportSpec.from_dict({"title": "t", "paper": "NoisyTune", "artifact": "Table 2"})
    assert spec.baseline == "finetune"
    assert spec.paper_method_name("noisytune") == "noisytune"
    with pytest.raises(ValueError, match="paper_modle"):
        ReportSpec.from_dict({"title": "t", "paper": "p", "artifact": "a", "paper_modle": {}})
    with pytest.raises(ValueError, match="artifact"):
        ReportSpec.from_dict({"title": "t", "paper": "p"})


def test_spec_paper_method_per_paper_model() -> None:
    names = {"finetune": {"bert-base": "finetune (BERT_ReImp)", "roberta-large": "finetune (Liu)"}, "x": "y"}
    spec = ReportSpec.from_dict({"title": "t", "paper": "p", "artifact": "a", "paper_method": names})
    assert spec.paper_method_name("finetune", "roberta-large") == "finetune (Liu)"
    assert spec.paper_method_name("finetune", "bert-base") == "finetune (BERT_ReImp)"
    assert spec.paper_method_name("finetune", "xlnet-base") == "finetune"  # not listed: its own name
    assert spec.paper_method_name("x", "bert-base") == "y"  # the flat form: every paper model
    with pytest.raises(ValueError, match=r"paper_method\['finetune'\]"):
        ReportSpec.from_dict({"title": "t", "paper": "p", "artifact": "a", "paper_method": {"finetune": 3}})


def test_source_states_proxy_verdicts_and_failures(tables_dir: Path) -> None:
    report = report_document(tables_dir, _spec())
    source = _text(report)
    proxy = (
        "paper column is bert-base; our runs use minilm-l6: "
        "compare the direction of the effect, not the level"
    )
    assert proxy in source
    assert {REPRODUCED, CONTRADICTED, WITHIN_NOISE, NOT_RUN} <= _verdicts(report)
    assert "84.4" not in source  # MNLI was not run, so its paper value must not appear
    assert '"67.7"' in source and '"68.8"' in source  # RTE paper values for bert-base
    assert "diverged" in source and "about 23 would be needed" in source
    assert "recomputed here" in source  # our Avg covers 4 tasks, the paper's all nine
    assert "lambda = 0.15" in source and '"0.3 GPU-h"' in source


def test_same_model_is_not_called_a_proxy(tmp_path: Path) -> None:
    _write_tables(tmp_path, ["bert-base"])
    source = _source(tmp_path, _spec(paper_model={"bert-base": "bert-base"}))
    assert "compare the direction" not in source
    assert "the same model as the paper" in source


def test_summary_that_averages_a_diverged_run_is_rejected(tables_dir: Path) -> None:
    summary = pd.read_csv(tables_dir / "summary.csv")
    summary.loc[(summary["task"] == "rte") & (summary["method"] == "noisytune"), "n"] = 5
    summary.to_csv(tables_dir / "summary.csv", index=False)
    with pytest.raises(ValueError, match="status 'ok'"):
        _source(tables_dir, _spec())


def test_pdf_is_valid_and_reproducible(tables_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "report.pdf", tmp_path / "b" / "report.pdf"
    build_report(tables_dir, first, _spec())
    build_report(tables_dir, second, _spec(), figures_dir=tmp_path / "b" / "figs")
    assert first.read_bytes().startswith(b"%PDF")
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "report_levels.svg").read_bytes() == (
        tmp_path / "b" / "figs" / "report_levels.svg"
    ).read_bytes()


def test_nasty_names_compile(tmp_path: Path) -> None:
    _write_tables(tmp_path / "tables", [NASTY])
    spec = _spec(
        title=f"Title {NASTY}",
        paper_model={NASTY: "bert-base"},
        choices=[NASTY],
        notes=[f"note {NASTY}"],
        provenance={NASTY: NASTY},
    )
    out = tmp_path / "out" / "report.pdf"
    build_report(tmp_path / "tables", out, spec)
    assert out.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = _pdf_text(out)
        assert "a_b#c$*" in text


def test_paper_average_is_recomputed_over_our_tasks() -> None:
    from robustft.report.glue import _paper_number

    spec = ReportSpec.from_dict(
        {"title": "t", "paper": "NoisyTune", "artifact": "Table 2", "paper_model": {"minilm-l6": "bert-base"}}
    )
    partial = replace(spec, average_over={"minilm-l6": ["rte", "cola"]})
    number = _paper_number(partial, "minilm-l6", "GLUE-avg", "finetune")
    assert number is not None and number.value == pytest.approx((67.7 + 58.1) / 2)  # Table 2, BERT-base
    everything = replace(
        spec,
        average_over={"minilm-l6": ["mnli", "qnli", "qqp", "rte", "sst2", "mrpc", "cola", "stsb", "wnli"]},
    )
    assert _paper_number(everything, "minilm-l6", "GLUE-avg", "finetune").value == 79.6  # the paper's own Avg


def test_artifact_appendix_is_printed_on_appendix_pages(tables_dir: Path, tmp_path: Path) -> None:
    from robustft.artifacts import ArtifactResult, write_result
    from robustft.artifacts.base import CLAIM_COLUMNS
    from robustft.report import load_tables
    from robustft.report.glue import _glue_document
    from robustft.report.typeset import load_artifacts

    languages = [f"q{i:03d}" for i in range(150)]  # longer than a page: the table must continue
    appendix = pd.DataFrame(
        {
            "model": "xlmr-tiny",
            "setting": "zero-shot",
            "task": ["UDPOS"] * 75 + ["PANX-NER"] * 75,
            "metric": "f1",
            "language": languages,
            "finetune mean": [50.0 + i / 100 for i in range(150)],
            "finetune n": 3,
        }
    )
    result = ArtifactResult(
        "noisytune/table3",
        "NoisyTune",
        "Table 3",
        "XTREME",
        claims=pd.DataFrame(columns=CLAIM_COLUMNS),
        appendix=appendix,
        appendix_title="Per-language scores, mean over seeds",
    )
    write_result(result, tmp_path / "table3")
    artifacts = load_artifacts([tmp_path / "table3"], tmp_path)
    report = _glue_document(load_tables(tables_dir), _spec(), [], artifacts)
    blocks, source = report["blocks"], _text(report)
    appendix = blocks.index({"kind": "heading", "level": 1, "text": "Appendix"})
    assert blocks.index({"kind": "heading", "level": 1, "text": "Provenance"}) < appendix
    assert blocks[appendix - 1] == {"kind": "pagebreak"}
    assert '"q149"' in source and '"51.49"' in source and "Per-language scores" in source

    out = tmp_path / "out" / "report.pdf"
    build_report(tables_dir, out, _spec(), artifact_dirs=[tmp_path / "table3"])
    assert out.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = _pdf_text(out)
        pages = text.split("\f")
        first = next(i for i, page in enumerate(pages) if "Per-language scores" in page)
        assert "q000" in pages[first] and "q149" not in pages[first]
        assert any(
            "q149" in page and "finetune mean" in page for page in pages[first + 1 :]
        )  # header repeats
        assert all("Appendix" not in page for page in pages[: first - 1])


def test_a_config_without_glue_runs_reports_its_artifacts_alone(tmp_path: Path) -> None:
    """XTREME alone (the CPU variant): no runs.csv, so the PDF is the artifacts, choices and provenance."""
    from robustft.artifacts import ArtifactResult, write_result
    from robustft.artifacts.base import CLAIM_COLUMNS

    appendix = pd.DataFrame({"task": ["XNLI"], "language": ["de"], "finetune mean": [35.5]})
    result = ArtifactResult(
        "noisytune/table3",
        "NoisyTune",
        "Table 3",
        "XTREME",
        claims=pd.DataFrame(columns=CLAIM_COLUMNS),
        notes=["a note that must reach the PDF"],
        appendix=appendix,
        appendix_title="Per-language scores",
    )
    write_result(result, tmp_path / "table3")
    tables = tmp_path / "tables"
    tables.mkdir()  # xtreme.csv would be here; the report reads only the artifacts
    spec = replace(_spec(), choices=["a choice listed in the report"])
    out = tmp_path / "out" / "report.pdf"
    build_report(tables, out, spec, figures_dir=tmp_path / "figures", artifact_dirs=[tmp_path / "table3"])
    assert out.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = _pdf_text(out)
        for expected in (
            "Table 3",
            "a note that must reach the PDF",
            "a choice listed in the report",
            "35.50",
        ):
            assert expected in text, expected


def _all_degenerate(tables_dir: Path) -> None:
    """Mark every ok run degenerate (one prediction for all of dev), as the demo's runs are."""
    runs = pd.read_csv(tables_dir / "runs.csv")
    runs["degenerate"] = runs["status"] == "ok"
    runs.to_csv(tables_dir / "runs.csv", index=False)
    summary = pd.read_csv(tables_dir / "summary.csv")
    summary["n_degenerate"] = summary["n"]
    summary.to_csv(tables_dir / "summary.csv", index=False)


def test_report_counts_degenerate_runs_and_warns_when_all_are(tables_dir: Path) -> None:
    assert "degenerate" not in _source(tables_dir, _spec())  # older tables: nothing to say
    _all_degenerate(tables_dir)
    source = _source(tables_dir, _spec())
    assert "5/5 degenerate" in source and "4/4 degenerate" in source  # beside each mean
    assert "Every run of this report is degenerate" in source
    assert "39 of the 39 runs that finished ok are degenerate" in source


def test_precision_choice_counts_the_precisions_the_runs_used() -> None:
    auto_cpu = "auto: fp32, this CPU has no fast bf16 kernels (AVX2)"
    runs = pd.DataFrame({"precision": ["fp32"] * 3, "precision_why": [auto_cpu] * 3})
    assert precision_choice(runs) == f"Precision: fp32 (all 3 runs; {auto_cpu})"
    runs.loc[0, ["precision", "precision_why"]] = ["bf16", "set explicitly"]
    mixed = f"Precision: fp32 (2 of 3 runs; {auto_cpu}) and bf16 (1 of 3 runs; set explicitly)"
    assert precision_choice(runs) == mixed
    # Tables written before precision was recorded: nothing to say, rather than a wrong claim.
    assert precision_choice(runs.drop(columns=["precision", "precision_why"])) is None
    assert precision_choice(runs.assign(precision=math.nan)) is None


def test_report_choices_state_the_precision_the_runs_used(tables_dir: Path) -> None:
    assert "Precision:" not in _source(tables_dir, _spec())  # older tables: nothing to say
    runs = pd.read_csv(tables_dir / "runs.csv")
    runs["precision"] = ["bf16" if seed == 1 else "fp32" for seed in runs["seed"]]
    runs["precision_why"] = "auto: test"
    runs.to_csv(tables_dir / "runs.csv", index=False)
    choices = _section(report_document(tables_dir, _spec()), "Choices where the paper is silent")
    assert precision_choice(runs) in choices[0]["items"]
    choices = _text({"blocks": choices})
    assert "fp32 (32 of 40 runs; auto: test) and bf16 (8 of 40 runs; auto: test)" in choices


def test_report_warns_only_about_the_cells_that_are_all_degenerate(tables_dir: Path) -> None:
    summary = pd.read_csv(tables_dir / "summary.csv")
    summary["n_degenerate"] = 0
    summary.loc[(summary["task"] == "mrpc") & (summary["method"] == "finetune"), "n_degenerate"] = 5
    summary.loc[(summary["task"] == "cola") & (summary["method"] == "finetune"), "n_degenerate"] = 2
    summary.to_csv(tables_dir / "summary.csv", index=False)
    source = _source(tables_dir, _spec())
    assert "2/5 degenerate" in source
    assert "cells consist only of degenerate runs" in source and "minilm-l6 MRPC finetune" in source
    assert "minilm-l6 CoLA finetune" not in source


def test_report_shows_diverged_runs_beside_the_delta_and_the_magnitude(tables_dir: Path) -> None:
    comparisons = pd.read_csv(tables_dir / "comparisons.csv")
    comparisons["n_diverged_method"] = (comparisons["task"] == "rte").astype(int)
    comparisons["n_diverged_baseline"] = 0
    comparisons.to_csv(tables_dir / "comparisons.csv", index=False)
    report = report_document(tables_dir, _spec())
    source = _text(report)
    assert '"1 / 0 diverged"' in source
    assert source.count(' diverged"') == 1  # only where a run diverged
    # RTE: paper Δ 1.1 inside our CI [0.6, 2.4], in grey under the verdict.
    assert "paper Δ in CI" in [cell.get("sub") for cell in _cells(report) if "verdict" in cell]
    assert "too few seeds = fewer paired seeds than 3 (report.min_seeds)" in source


def test_report_min_seeds_comes_from_the_spec(tables_dir: Path) -> None:
    verdicts = _verdicts(report_document(tables_dir, _spec(min_seeds=6)))
    assert TOO_FEW_SEEDS in verdicts and REPRODUCED not in verdicts
    with pytest.raises(ValueError, match="min_seeds"):
        _spec(min_seeds=0)


def test_a_method_that_lost_more_seeds_to_divergence_is_unstable_not_reproduced(tables_dir: Path) -> None:
    """RTE is reproduced on its seed pairs; once the method diverged on seeds the baseline did not, the
    survivors no longer carry the claim. A baseline that lost as many leaves it reproduced."""
    comparisons = pd.read_csv(tables_dir / "comparisons.csv")
    rte = comparisons["task"] == "rte"

    def render(method: int, baseline: int) -> dict:
        comparisons["n_diverged_method"] = 0
        comparisons["n_diverged_baseline"] = 0
        comparisons.loc[rte, ["n_diverged_method", "n_diverged_baseline"]] = [method, baseline]
        comparisons.to_csv(tables_dir / "comparisons.csv", index=False)
        return report_document(tables_dir, _spec())

    assert REPRODUCED in _verdicts(render(0, 0))
    report = render(2, 0)
    assert "unstable" in _verdicts(report) and REPRODUCED not in _verdicts(report)
    assert '"2 / 0 diverged"' in _text(report)
    assert "unstable = the effect would be reproduced" in _text(report)  # the glossary explains the word
    assert REPRODUCED in _verdicts(render(2, 2))


def test_every_verdict_has_a_colour_in_the_report_template() -> None:
    from robustft.stats import VERDICTS

    template = (REPO / "src/robustft/report/templates/report.typ").read_text()
    colours = template[template.index("#let verdict-colors") : template.index("#let verdict(v)")]
    assert [word for word in VERDICTS if f'"{word}":' not in colours] == []


# --- learning curves ---------------------------------------------------------------------------------------


def _curves(models: list[str]) -> pd.DataFrame:
    """curves.csv as tables.collect_curves would write it for the fake experiment: per run, training
    losses at steps 1, 5, 10 that fall with the seed, and a dev score at epochs 1 and 2."""
    rows = []
    for model in models:
        for task, (base, shift, _) in TASK_EFFECT.items():
            for method in ("finetune", "noisytune"):
                for seed in SEEDS:
                    status = "diverged" if (task, method, seed) == ("rte", "noisytune", 5) else "ok"
                    run = {"model": model, "task": task, "method": method, "seed": seed, "status": status}
                    run["metric"] = TASK_METRIC[task]  # on every row, as collect_curves writes it
                    for step, epoch in ((1, 0.1), (5, 0.5), (10, 1.0)):
                        loss = 1e6 if status == "diverged" else 0.7 - 0.02 * step - 0.01 * seed
                        rows.append({**run, "step": step, "epoch": epoch, "train_loss": loss})
                    for step, epoch in ((10, 1.0), (20, 2.0)):
                        score = base + (shift if method == "noisytune" else 0.0) + epoch + 0.3 * (seed - 3)
                        rows.append(
                            {
                                **run,
                                "step": step,
                                "epoch": epoch,
                                "dev_score": score,
                                "dev_loss": 0.5,
                            }
                        )
    columns = ["model", "task", "method", "seed", "status", "step", "epoch", "train_loss", "metric"]
    return pd.DataFrame(rows, columns=[*columns, "dev_score", "dev_loss"])


def test_load_curves_keeps_every_status_for_the_figures_to_count(tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    tables.mkdir()
    _curves(["minilm-l6"]).to_csv(tables / "curves.csv", index=False)
    curves = load_curves(tables)
    assert set(curves["status"]) == {
        "ok",
        "diverged",
    }  # the diverged rte/noisytune seed is counted, not drawn
    _curves(["minilm-l6"]).assign(status="diverged").to_csv(tables / "curves.csv", index=False)
    assert load_curves(tables) is None  # no finished run: nothing to draw


def test_report_draws_the_learning_curves_when_the_tables_have_them(tables_dir: Path, tmp_path: Path) -> None:
    _curves(["minilm-l6"]).to_csv(tables_dir / "curves.csv", index=False)
    pdf = tmp_path / "out" / "report.pdf"
    build_report(tables_dir, pdf, _spec())
    assert pdf.read_bytes().startswith(b"%PDF")
    # One figure per model x task, as PNG and PDF beside the report, the PDF also in the typst root.
    names = [f"glue_minilm-l6_{task}" for task in ("rte", "mrpc", "cola", "stsb")]
    curves_dir = tmp_path / "out" / "report" / "curves"
    assert sorted(path.name for path in curves_dir.iterdir()) == sorted(
        f"{name}.{extension}" for name in names for extension in ("png", "pdf")
    )
    # The document the template read: beside the figures, in the typst root (here the report's folder).
    section = _section(json.loads((tmp_path / "out" / "report.json").read_text("utf-8")), "Learning curves")
    # In the paper's task order, each embedding its PDF copy in the typst root.
    paths = [block["path"] for block in section if block["kind"] == "figure"]
    assert paths == [f"/report_curves_{name}.pdf" for name in names]
    section = _text({"blocks": section})
    assert all((tmp_path / "out" / f"report_curves_{name}.pdf").exists() for name in names)
    assert "minilm-l6 (paper: bert-base, proxy) · RTE: seeds: finetune 5, noisytune 4;" in section
    assert "band: ± one standard deviation" in section


def test_report_draws_the_xtreme_curves_when_the_tables_have_them(tmp_path: Path) -> None:
    """An XTREME-only config (no runs.csv): the curves follow the artifacts, with the track's own methods
    (not the GLUE table's `methods`)."""
    from tests.report.test_curves import xtreme_curves

    tables = tmp_path / "tables"
    tables.mkdir()
    curves = xtreme_curves().replace({"method": {"noisytune": "noisytune_xtreme"}})
    curves = curves.loc[(curves["method"] == "finetune") | (curves["seed"] == 1)]
    curves.to_csv(tables / "xtreme_curves.csv", index=False)
    pdf = tmp_path / "out" / "report.pdf"
    build_report(tables, pdf, _spec(), figures_dir=tmp_path / "figures")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert (tmp_path / "out" / "report" / "curves" / "xtreme_xlm-r-base_zero-shot_xnli.png").exists()
    assert (tmp_path / "figures" / "report_curves_xtreme_xlm-r-base_zero-shot_xnli.pdf").exists()
    report = json.loads((tmp_path / "figures" / "report.json").read_text("utf-8"))
    section = _section(report, "XTREME learning curves")
    figures = [block["path"] for block in section if block["kind"] == "figure"]
    assert "/report_curves_xtreme_xlm-r-base_zero-shot_xnli.pdf" in figures
    section = _text({"blocks": section})
    assert "xlm-r-base · XNLI · zero-shot: seeds: finetune 2, noisytune_xtreme 1." in section


def test_report_without_curves_csv_builds_without_the_figure(tables_dir: Path, tmp_path: Path) -> None:
    assert load_curves(tables_dir) is None  # tables aggregated before curves.csv was written
    pdf = tmp_path / "out" / "report.pdf"
    build_report(tables_dir, pdf, _spec())
    assert pdf.read_bytes().startswith(b"%PDF")
    assert (tmp_path / "out" / "report_levels.svg").exists()
    assert not list((tmp_path / "out").glob("report_curves_*")) and not (tmp_path / "out" / "report").exists()
    assert "Learning curves" not in _source(tables_dir, _spec())
