"""What the workflow's jobs used against what the workflow profile asks a cluster for.

Every compute rule has a `benchmark:` file, `results/benchmarks/<rule>/<the job's wildcards>.tsv`, which
Snakemake writes when the job ends: wall seconds (`s`), peak resident memory (`max_rss`, MB), CPU time and
mean load. This module reads them all and sets each rule's peak against its request in the workflow profile
(`profiles/default/config.yaml`, `set-resources`: `mem_mb` and `runtime` in minutes, evaluated by Snakemake's
own code with `attempt` = 1). A rule the profile does not size (the instruction-tuning jobs are sized in their
rules from the model's parameter count, robustft.job_resources) is listed with its use and no request.

A request below a rule's peak means the first attempt of such a job is killed and retried with more; a
request many times the peak only makes a cluster job wait longer in the queue. `robustft resource-usage`
prints the table (see docs/running.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from robustft.errors import ConfigError

BENCHMARKS_DIR = "results/benchmarks"
WORKFLOW_PROFILE = "profiles/default/config.yaml"
# A rule whose peak stays under this fraction of its request asks for more than it needs.
GENEROUS_FRACTION = 0.25
# The columns of Snakemake's benchmark TSV that the table uses (it writes "NA" or "-" when unmeasured).
BENCHMARK_COLUMNS = ("s", "max_rss", "cpu_time")


def read_benchmarks(root: Path) -> pd.DataFrame:
    """One row per job benchmark under `root`: rule (the first folder), job (the rest of the path) and the
    measured columns; an empty frame with those columns when there are none."""
    rows = []
    for path in sorted(Path(root).glob("*/**/*.tsv")):
        table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
        missing = [column for column in BENCHMARK_COLUMNS if column not in table.columns]
        if missing or table.empty:
            raise ConfigError(f"{path}: not a Snakemake benchmark file (no {', '.join(missing) or 'rows'})")
        relative = path.relative_to(root)
        measured = table.iloc[-1]  # `benchmark: repeat(...)` writes a row per repeat; the last is the newest
        rows.append(
            {"rule": relative.parts[0], "job": str(Path(*relative.parts[1:]).with_suffix(""))}
            | {column: float(measured[column]) for column in BENCHMARK_COLUMNS}
        )
    return pd.DataFrame(rows, columns=["rule", "job", *BENCHMARK_COLUMNS])


def profile_requests(profile: Path, attempt: int = 1) -> dict[str, dict[str, float]]:
    """`set-resources` of a Snakemake profile: per rule, its `mem_mb` and `runtime` (minutes) at `attempt`,
    parsed and evaluated by Snakemake's own code, as a run would see them."""
    from snakemake.cli import parse_set_resources
    from snakemake.profiles import ProfileConfigFileParser

    try:
        with Path(profile).open() as handle:
            settings = ProfileConfigFileParser().parse(handle)
        rules = parse_set_resources(settings.get("set-resources") or [])
    except Exception as err:  # Snakemake raises its own WorkflowError / ValueError / OSError kinds here
        raise ConfigError(f"{profile}: cannot read its set-resources ({err})") from err
    requests: dict[str, dict[str, float]] = {}
    for rule, resources in rules.items():
        requests[rule] = {
            name: float(
                resource.evaluate(
                    wildcards=None, input=None, attempt=attempt, threads=1, rulename=rule, async_run=None
                ).value
            )
            for name, resource in resources.items()
            if name in ("mem_mb", "runtime")
        }
    return requests


def usage_table(benchmarks: pd.DataFrame, requests: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Per rule: jobs, peak and median memory (MB) against `mem_mb`, longest wall time (minutes) against
    `runtime`, and a verdict on each ("over": some job needed more than the request; "generous": every job
    used under GENEROUS_FRACTION of it; "ok"; "not in profile")."""
    rows = []
    for rule, jobs in benchmarks.groupby("rule", sort=True):
        request = requests.get(str(rule), {})
        peak_mb, longest_min = jobs["max_rss"].max(), jobs["s"].max() / 60
        rows.append(
            {
                "rule": rule,
                "jobs": len(jobs),
                "max_rss_mb": peak_mb,
                "median_rss_mb": jobs["max_rss"].median(),
                "mem_mb_request": request.get("mem_mb"),
                "memory": _verdict(peak_mb, request.get("mem_mb")),
                "max_minutes": longest_min,
                "runtime_request": request.get("runtime"),
                "time": _verdict(longest_min, request.get("runtime")),
                "cpu_hours": jobs["cpu_time"].sum() / 3600,
            }
        )
    return pd.DataFrame(rows)


def _verdict(peak: float, request: float | None) -> str:
    if request is None:
        return "not in profile"
    if pd.isna(peak):
        return "not measured"
    if peak > request:
        return "over"
    return "generous" if peak < GENEROUS_FRACTION * request else "ok"


def format_usage(table: pd.DataFrame) -> str:
    """The usage table as aligned text, numbers rounded for reading."""
    if table.empty:
        return "no benchmark files: run some jobs of the workflow first"
    shown = table.copy()
    for column in ("max_rss_mb", "median_rss_mb", "mem_mb_request", "runtime_request"):
        shown[column] = shown[column].map(lambda value: "-" if pd.isna(value) else f"{value:.0f}")
    shown["max_minutes"] = shown["max_minutes"].map(lambda value: f"{value:.1f}")
    shown["cpu_hours"] = shown["cpu_hours"].map(lambda value: f"{value:.2f}")
    return shown.to_string(index=False)
