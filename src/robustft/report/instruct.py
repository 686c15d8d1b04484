"""The instruction-tuning track's PDF (NEFTune): what ran, every run's numbers, the paper artifacts.

It shares the GLUE report's typst template (templates/report.typ), its document blocks and its artifact
sections (report/typeset.py); what differs is the first part, which lists the judges by name (a win rate
means nothing without its judge) and one row per run instead of GLUE's task table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.artifacts.neftune import PAPER_DATASET
from robustft.report.typeset import (
    Artifact,
    Block,
    artifacts_part,
    bullets,
    document,
    fmt_points,
    heading,
    load_artifacts,
    paragraph,
    refuse_unknown_keys,
    table_block,
    table_cell,
    text_list_section,
    write_pdf,
)
from robustft.tables.instruct import read_instruct

RUN_KEYS = ["model", "dataset", "recipe", "method", "seed"]


@dataclass
class InstructReportSpec:
    """The config's `instruct.report` block, plus what the workflow knows about the run settings."""

    title: str
    baseline: str = "finetune"
    name: str = "neftune"
    paper_model: dict[str, str] = field(default_factory=dict)
    paper_dataset: dict[str, str] = field(default_factory=dict)
    judge_for: dict[str, str] = field(default_factory=dict)  # the paper's judge metric -> our judge
    choices: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    # Settings shown in "What was run": recipes, methods (components), judges, generation, leaderboard.
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InstructReportSpec:
        refuse_unknown_keys(raw, cls, "instruct report")
        return cls(**dict(raw))


def _settings_section(spec: InstructReportSpec, table: pd.DataFrame) -> list[Block]:
    runs = table[RUN_KEYS].drop_duplicates()
    settings = spec.settings
    paper_dataset = {**PAPER_DATASET, **spec.paper_dataset}
    models = []
    for model in dict.fromkeys(runs["model"]):
        paper = spec.paper_model.get(model)
        models.append(f"{model} (stands in for the paper's {paper})" if paper and paper != model else model)
    judges = settings.get("judges") or {}
    judge_lines = [
        f"{name}: {judge.get('kind')}" + (f", model {judge['model']}" if judge.get("model") else "")
        for name, judge in judges.items()
    ]
    items = [
        f"{len(runs)} runs: models {', '.join(models)}; training sets "
        + ", ".join(f"{d} (paper: {paper_dataset.get(d, d)})" for d in dict.fromkeys(runs["dataset"]))
        + f"; seeds {', '.join(str(s) for s in sorted(runs['seed'].unique()))}.",
        "Methods: "
        + "; ".join(
            f"{name} = {json.dumps(components, sort_keys=True)}"
            for name, components in (settings.get("methods") or {}).items()
        )
        + f". Baseline: {spec.baseline}.",
        "Recipes (SFT settings over the defaults): "
        + "; ".join(
            f"{n} = {json.dumps(r, sort_keys=True)}" for n, r in (settings.get("recipes") or {}).items()
        ),
        "SFT defaults of this config: " + json.dumps(settings.get("sft") or {}, sort_keys=True),
        "Generation: " + json.dumps(settings.get("generation") or {}, sort_keys=True),
        "Judges (every win rate names its judge): "
        + ("; ".join(judge_lines) or "none configured")
        + (
            ". Standing for the paper's judges: "
            + "; ".join(f"{metric} by {judge}" for metric, judge in spec.judge_for.items())
            if spec.judge_for
            else ". The first judge stands for every paper judge."
        ),
        "Leaderboard: " + json.dumps(settings.get("leaderboard") or {}, sort_keys=True),
    ]
    return [heading("What was run"), bullets(items)]


def _cell(table: pd.DataFrame, source: str, metric: str, ci: bool = False, decimals: int = 1) -> str:
    rows = table[(table["source"] == source) & (table["metric"] == metric)]
    if rows.empty:
        return "–"
    row = rows.iloc[0]
    if pd.isna(row["value"]):
        return str(row["status"])
    text = fmt_points(float(row["value"]), decimals)
    if ci and pd.notna(row["ci_low"]):
        text += (
            f" [{fmt_points(float(row['ci_low']), decimals)}, {fmt_points(float(row['ci_high']), decimals)}]"
        )
    return text


def _runs_section(table: pd.DataFrame) -> list[Block]:
    judges = sorted(s.split(":", 1)[1] for s in table["source"].dropna().unique() if s.startswith("judge:"))
    tasks = sorted(
        s.split(":", 1)[1] for s in table["source"].dropna().unique() if s.startswith("leaderboard:")
    )
    header = ["Model / data", "Recipe", "Method", "Seed", "Loss train / held-out (no noise)"]
    header += [f"Win rate % ({judge}) [95% CI]" for judge in judges]
    header += ["Length (chars)"] + [f"{task} %" for task in tasks]
    rows = []
    for keys, group in table.groupby(RUN_KEYS, sort=False):
        model, dataset, recipe, method, seed = keys
        losses = f"{_cell(group, 'sft', 'final_train_loss', decimals=3)} / "
        losses += _cell(group, "sft", "final_heldout_loss", decimals=3)
        cells = [
            table_cell(model, dataset),
            table_cell(recipe),
            table_cell(method),
            table_cell(str(seed)),
            table_cell(losses),
        ]
        cells += [table_cell(_cell(group, f"judge:{judge}", "win_rate", ci=True)) for judge in judges]
        cells.append(table_cell(_cell(group, "text_stats", "char_length", decimals=0)))
        cells += [table_cell(_cell(group, f"leaderboard:{task}", "score", ci=False)) for task in tasks]
        rows.append(cells)
    return [
        heading("Every run"),
        paragraph(
            "One row per run, straight from instruct.csv (each row keeps its run directory). Losses are "
            "mean response-token cross-entropy of the final model with the noise off. Win-rate CIs are "
            "bootstrap intervals over prompts."
        ),
        table_block(header, rows),
    ]


def _missing_section(table: pd.DataFrame) -> list[Block]:
    bad = table[(table["source"] == "sft") & (table["status"] != "ok")]
    if bad.empty:
        return [
            heading("Failed or missing runs"),
            paragraph("None: every run finished its SFT with status ok."),
        ]
    rows = [
        [
            table_cell(r.model),
            table_cell(r.dataset),
            table_cell(r.recipe),
            table_cell(r.method),
            table_cell(str(r.seed)),
            table_cell(r.status),
        ]
        for r in bad.drop_duplicates(subset=RUN_KEYS).itertuples(index=False)
    ]
    return [
        heading("Failed or missing runs"),
        table_block(["Model", "Data", "Recipe", "Method", "Seed", "Status"], rows),
    ]


def _provenance_section(spec: InstructReportSpec) -> list[Block]:
    entries = {**spec.provenance, "paper numbers": "NEFTune, robustft/reference/paper_results.csv"}
    rows = [[table_cell(k), table_cell(v)] for k, v in entries.items()]
    return [heading("Provenance"), table_block(["Key", "Value"], rows)]


def instruct_document(
    table: pd.DataFrame, spec: InstructReportSpec, artifacts: Sequence[Artifact] = ()
) -> dict[str, Any]:
    """The report as data (typeset.document), as templates/report.typ lays it out."""
    return document(
        spec.title,
        [
            *_settings_section(spec, table),
            *_runs_section(table),
            *artifacts_part(artifacts),
            *_missing_section(table),
            *text_list_section("Choices where the paper is silent", spec.choices),
            *text_list_section("Notes", spec.notes),
            *_provenance_section(spec),
        ],
    )


def build_instruct_report(
    table_path: Path,
    out_pdf: Path,
    spec: InstructReportSpec,
    figures_dir: Path,
    artifact_dirs: Sequence[Path] = (),
) -> None:
    table = read_instruct(table_path)
    figures_dir.mkdir(parents=True, exist_ok=True)
    artifacts = load_artifacts(artifact_dirs, figures_dir)
    write_pdf(instruct_document(table, spec, artifacts), figures_dir, out_pdf)
