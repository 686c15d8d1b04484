"""Published findings: one config's finished GLUE grid, frozen in a folder of the repository.

A finding folder holds what a reader needs to check a number without rerunning it: the config, runs.csv
(one row per run), summary.csv and comparisons.csv (what the package computes from runs.csv), curves.csv,
verdicts.csv (the report's effect table as data: Δ, CI, the p the verdict rests on, the paper's Δ, the
verdict), the report PDF, provenance.json (commits, hardware, wall time) and a README.md naming the one
command that remakes it. Everything in it is written by `publish_finding`; nothing is edited by hand, and
a test recomputes the tables and texts from the folder's runs.csv.

The main README quotes each finding between two marker lines that `update_readme_quote` rewrites, so the
quoted numbers are the folder's.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from robustft.errors import FindingError
from robustft.io import write_json_atomic, write_text_atomic
from robustft.provenance import check_table_runs, cpu_description, git_commit
from robustft.report import GLUE_AVG, ReportSpec, effect_rows, load_tables
from robustft.tables import compare, summarize
from robustft.workflow_config import config_name, expected_run_dirs, load_config, tables_dir

COPIED_TABLES = ("runs.csv", "summary.csv", "comparisons.csv", "curves.csv")
VERDICTS = "verdicts.csv"
PROVENANCE = "provenance.json"
REPORT = "report.pdf"
CONFIG = "config.yaml"
README = "README.md"
VERDICT_COLUMNS = [
    "model",
    "task",
    "method",
    "baseline",
    "metric",
    "n_pairs",
    "mean_method",
    "mean_baseline",
    "delta",
    "ci_low",
    "ci_high",
    "p_claim",
    "paper_delta",
    "verdict",
    "magnitude",
    "min_seeds_for_significance",
    "average_over",
]
FINDING_FILES = frozenset({*COPIED_TABLES, VERDICTS, PROVENANCE, REPORT, CONFIG, README})
QUOTE_START = "<!-- finding {name}: written by `robustft publish-finding`, do not edit -->"
QUOTE_END = "<!-- end of finding {name} -->"


def report_spec(config: dict[str, Any]) -> ReportSpec:
    """The report spec of a workflow config, as the report rule passes it (`report:` without `name`)."""
    return ReportSpec.from_dict({key: value for key, value in config["report"].items() if key != "name"})


def verdict_table(folder: Path, spec: ReportSpec) -> pd.DataFrame:
    """verdicts.csv's rows, computed from the folder's own tables by the report's functions."""
    return effect_rows(load_tables(folder), spec)[VERDICT_COLUMNS]


def recomputed_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """summary.csv and comparisons.csv as the aggregate step computes them from the folder's runs.csv (read
    as the report reads it), with the aggregate step's defaults."""
    runs = load_tables(folder).runs
    return {"summary.csv": summarize(runs), "comparisons.csv": compare(runs)}


def _distinct(values: list[Any]) -> list[Any]:
    """The distinct values (dicts and lists too), None left out, in a stable order."""
    return [json.loads(v) for v in sorted({json.dumps(v, sort_keys=True) for v in values if v is not None})]


def _timing(runs: pd.DataFrame) -> dict[str, Any]:
    """Wall time of the grid from the runs themselves: first start (finish minus the run's wall time) to
    last finish, and the summed job time. Runs recorded before `finished_at` existed leave the span open."""
    timing: dict[str, Any] = {"runs": len(runs)}
    if runs["wall_time_s"].isna().any():
        return {**timing, "job_seconds": None, "span_s": None, "why": "some runs do not record wall_time_s"}
    timing["job_seconds"] = round(float(runs["wall_time_s"].sum()), 1)
    if "finished_at" not in runs or runs["finished_at"].isna().any():
        return {**timing, "span_s": None, "why": "some runs do not record finished_at"}
    finished = pd.to_datetime(runs["finished_at"], utc=True)
    started = finished - pd.to_timedelta(runs["wall_time_s"], unit="s")
    span = (finished.max() - started.min()).total_seconds()
    return {
        **timing,
        "first_run_started": started.min().isoformat(timespec="seconds"),
        "last_run_finished": finished.max().isoformat(timespec="seconds"),
        "span_s": round(span, 1),
    }


def finding_provenance(runs: pd.DataFrame, config_path: Path, command: str) -> dict[str, Any]:
    """Where the numbers came from: commits, hardware, versions and precision (read from each run's
    run.json, which must still exist), and the wall time from runs.csv."""
    records = []
    for run_dir in runs["run_dir"]:
        path = Path(run_dir) / "run.json"
        if not path.exists():
            raise FindingError(f"{path} is missing: a finding is published from the runs that made it")
        records.append(json.loads(path.read_text(encoding="utf-8")))
    hardware = [r.get("hardware", {}) for r in records]
    return {
        "config": str(config_path),
        "command": command,
        "published_with_commit": git_commit(),
        "runs_git_commits": sorted({str(r.get("git_commit")) for r in records}),
        "statuses": runs["status"].value_counts().sort_index().to_dict(),
        "hardware": {
            "cpu_model": _distinct([cpu_description(h) if h else None for h in hardware]),
            "cpu_count": _distinct([h.get("cpu_count") for h in hardware]),
            "torch_threads_per_run": _distinct([h.get("torch_threads") for h in hardware]),
            "gpus": _distinct([h.get("gpus") for h in hardware]) or ["none"],
            "platform": _distinct([h.get("platform") for h in hardware]),
        },
        "precision": _distinct([(r.get("precision") or {}).get("used") for r in records]),
        "versions": _distinct([r.get("versions") for r in records]),
        "wall_time": _timing(runs),
    }


def publish_finding(config_path: Path, out_dir: Path, command: str, readme: Path | None = None) -> Path:
    """Copy a finished config's tables and report into `out_dir` and write verdicts, provenance and README.

    The grid must be complete: runs.csv must hold exactly the runs the config asks for (as the report
    checks), so a half-run grid is never published. `readme`, if given, gets its quote block rewritten.
    """
    config = load_config(config_path)
    if "glue" not in config["tracks"]:
        raise FindingError(f"{config_path}: a finding publishes a GLUE grid; this config has none")
    name, source = config_name(config), Path(tables_dir(config))
    pdf = Path(f"results/reports/{name}.pdf")
    missing = [str(p) for p in [*(source / t for t in COPIED_TABLES), pdf] if not p.exists()]
    if missing:
        raise FindingError(f"{config_path}: run the workflow to its end first; missing {missing}")
    check_table_runs(source / "runs.csv", expected_run_dirs(config)["runs"])
    if readme is not None and quoted_block(readme, out_dir.name) is None:
        raise FindingError(_no_block_message(readme, out_dir.name))
    # A finding folder holds exactly the files its README describes: nothing of another kind is overwritten
    # or left beside them.
    foreign = (
        sorted(p.name for p in out_dir.iterdir() if p.name not in FINDING_FILES) if out_dir.exists() else []
    )
    if foreign:
        raise FindingError(f"{out_dir} holds files a finding does not write: {foreign}; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in COPIED_TABLES:
        shutil.copyfile(source / table, out_dir / table)
    shutil.copyfile(pdf, out_dir / REPORT)
    shutil.copyfile(config_path, out_dir / CONFIG)
    spec = report_spec(config)
    write_text_atomic(out_dir / VERDICTS, verdict_table(out_dir, spec).to_csv(index=False))
    runs = pd.read_csv(out_dir / "runs.csv")
    write_json_atomic(out_dir / PROVENANCE, finding_provenance(runs, config_path, command))
    write_text_atomic(out_dir / README, finding_readme(out_dir))
    if readme is not None:
        update_readme_quote(readme, out_dir)
    return out_dir


# ---------------------------------------------------------------- text


def _num(value: Any, decimals: int = 1, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _seeds(value: Any) -> str:
    if value is None or pd.isna(value) or math.isinf(float(value)):
        return "–"
    return str(math.ceil(float(value)))


def _hours(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 3600:.2f} h"


def _duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "unknown"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def effect_table_markdown(verdicts: pd.DataFrame) -> str:
    """One Markdown row per (task or average, method): paired means, Δ with its 95% CI, the p the verdict
    rests on, the paper's Δ, the verdict and the seeds a paired t-test would need at the observed spread."""
    lines = [
        "| Model | Task | Method | Pairs | Baseline mean | Method mean | Δ [95% CI] | p | Paper Δ | Verdict "
        "| Seeds needed |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in verdicts.itertuples(index=False):
        task = f"{r.task} ({str(r.average_over).replace(';', ', ')})" if r.task == GLUE_AVG else r.task
        effect = f"{_num(r.delta, 2, True)} [{_num(r.ci_low, 2, True)}, {_num(r.ci_high, 2, True)}]"
        verdict = r.verdict if pd.isna(r.magnitude) else f"{r.verdict} ({r.magnitude})"
        lines.append(
            f"| {r.model} | {task} | {r.method} | {_seeds(r.n_pairs)} | {_num(r.mean_baseline, 2)} | "
            f"{_num(r.mean_method, 2)} | {effect} | {_num(r.p_claim, 3)} | {_num(r.paper_delta, 1, True)} | "
            f"{verdict} | {_seeds(r.min_seeds_for_significance)} |"
        )
    return "\n".join(lines)


def _read_folder(folder: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    import yaml

    config = yaml.safe_load((folder / CONFIG).read_text(encoding="utf-8"))
    verdicts = pd.read_csv(folder / VERDICTS, keep_default_na=False, na_values=[""])
    provenance = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))
    # The grid as it ran (a config's lists may be defaults, or cut by `grids:`): counted from runs.csv.
    runs = pd.read_csv(folder / "runs.csv", keep_default_na=False, na_values=[""])
    provenance["grid"] = {
        column: int(runs[column].nunique()) for column in ("seed", "method", "task", "model")
    }
    return config, verdicts, provenance


def _facts(provenance: dict[str, Any]) -> str:
    hardware, timing, grid = provenance["hardware"], provenance["wall_time"], provenance["grid"]
    cpus = ", ".join(str(c) for c in hardware["cpu_model"])
    statuses = ", ".join(f"{n} {status}" for status, n in provenance["statuses"].items())
    started = timing.get("first_run_started")
    date = datetime.fromisoformat(started).date().isoformat() if started else "unknown date"
    return (
        f"{timing['runs']} runs ({statuses}): {grid['seed']} seeds × {grid['method']} methods × "
        f"{grid['task']} tasks × {grid['model']} model(s), run on {date} "
        f"with commit `{', '.join(c[:12] for c in provenance['runs_git_commits'])}` on {cpus} "
        f"({', '.join(str(c) for c in hardware['cpu_count'])} cores, "
        f"{', '.join(str(t) for t in hardware['torch_threads_per_run'])} thread(s) per run, "
        f"{', '.join(str(p) for p in provenance['precision'])}); wall time {_duration(timing.get('span_s'))} "
        f"from the first run's start to the last run's end ({_hours(timing['job_seconds'])} of "
        "run time in all)."
    )


def finding_readme(folder: Path) -> str:
    """The folder's README.md, written from its config, verdicts.csv and provenance.json."""
    config, verdicts, provenance = _read_folder(folder)
    report = config["report"]
    files = [
        f"`{CONFIG}`: the workflow config, as run.",
        "`runs.csv`: one row per run (score, status, wall time, commit, precision, run directory).",
        "`summary.csv`, `comparisons.csv`: per-cell means, and paired comparisons against the baseline "
        "(bootstrap 95% CI, paired t-test, Wilcoxon, Holm), as the package computes them from runs.csv.",
        "`curves.csv`: every run's logged training loss and dev metrics, per step.",
        f"`{VERDICTS}`: the report's effect table as data (the p each verdict rests on, the paper's Δ).",
        f"`{REPORT}`: the full report, with learning curves, choices and provenance.",
        f"`{PROVENANCE}`: commits, hardware, package versions, precision and wall time.",
    ]
    return "\n".join(
        [
            f"# Finding: {report['title']}",
            "",
            "Written by `robustft publish-finding` from the runs; never edited by hand. A test recomputes "
            "summary.csv, comparisons.csv, verdicts.csv and this file from runs.csv.",
            "",
            f"Remake it from the repository root with `{provenance['command']}`.",
            "",
            "## Result",
            "",
            f"Paired over seeds against `{report.get('baseline', 'finetune')}`; scores in points. p is "
            "Holm-adjusted across tasks (the average row: the plain paired t-test). Seeds needed: the seed "
            "pairs a paired t-test would need to find the observed Δ at the observed spread (α = 0.05, "
            "power 0.8).",
            "",
            effect_table_markdown(verdicts),
            "",
            _facts(provenance),
            "",
            "## Choices",
            "",
            *[f"- {choice}" for choice in report.get("choices", [])],
            "",
            "## Files",
            "",
            *[f"- {line}" for line in files],
            "",
        ]
    )


def readme_quote(folder: Path) -> str:
    """The block the main README quotes: the effect table and the facts, with a link to the folder."""
    _, verdicts, provenance = _read_folder(folder)
    name = folder.name
    return "\n".join(
        [
            QUOTE_START.format(name=name),
            effect_table_markdown(verdicts),
            "",
            f"{_facts(provenance)} Folder: [`findings/{name}/`](findings/{name}/); remake it with "
            f"`{provenance['command']}`.",
            QUOTE_END.format(name=name),
        ]
    )


def _quote_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        re.escape(QUOTE_START.format(name=name)) + r".*?" + re.escape(QUOTE_END.format(name=name)), re.S
    )


def quoted_block(readme: Path, name: str) -> str | None:
    """The finding's block as the README has it now, or None when the README does not quote it."""
    match = _quote_pattern(name).search(readme.read_text(encoding="utf-8"))
    return match.group(0) if match else None


def _no_block_message(readme: Path, name: str) -> str:
    return (
        f"{readme} has no block for finding {name}: add the two lines {QUOTE_START.format(name=name)!r} and "
        f"{QUOTE_END.format(name=name)!r} where it should go"
    )


def update_readme_quote(readme: Path, folder: Path) -> None:
    """Rewrite the finding's block in `readme` (between its two marker lines, which must be there)."""
    text = readme.read_text(encoding="utf-8")
    if quoted_block(readme, folder.name) is None:
        raise FindingError(_no_block_message(readme, folder.name))
    write_text_atomic(readme, _quote_pattern(folder.name).sub(lambda _: readme_quote(folder), text))
