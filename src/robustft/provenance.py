"""Where a number came from: code version, package versions, hardware, config hash."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from robustft.errors import TableMismatchError

PACKAGES = (
    "robustft",
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "numpy",
    "scipy",
    "pandas",
    "snakemake",
)


def settings_record(settings: dict[str, Any], later_defaults: dict[str, Any]) -> dict[str, Any]:
    """`settings` for a run's spec record (and so its config hash), less the settings added after runs were
    made wherever they hold the default those runs trained with: a new setting must not turn every
    finished run and checkpoint into one "of another configuration" (retrained, or restarted from step 0)."""
    return {k: v for k, v in settings.items() if k not in later_defaults or v != later_defaults[k]}


def config_hash(payload: Any) -> str:
    """Hash of a run spec. Mappings are order-insensitive except `components`, whose order is semantic."""

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: [[k, canonical(v)] for k, v in item.items()]
                if key == "components" and isinstance(item, dict)
                else canonical(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [canonical(v) for v in value]
        return value

    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD commit, suffixed with '-dirty' when tracked files differ; 'unknown' outside a checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@functools.cache  # read once a process: hardware() asks it for several fields
def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _cpuinfo_field(lines: list[str], key: str) -> str | None:
    """The first processor's value of `key` in /proc/cpuinfo's lines, None where it has none."""
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), e.g. "AMD EPYC 7B13": platform.processor() says only
    x86_64, which cannot tell two machines' speeds apart. None where the file does not exist."""
    return _cpuinfo_field(_cpuinfo(), "model name")


def cpu_generation() -> str | None:
    """The CPU's family, model and stepping numbers (x86 Linux), e.g. "family 25 model 17 stepping 1".
    Cloud VMs often name every generation just "AMD EPYC"; these numbers tell the generations apart (two
    such machines here differed about 3x in the demo's step time, bf16 included, 2.3x in fp32). None where
    /proc/cpuinfo lacks them."""
    lines = _cpuinfo()
    fields = [(key, _cpuinfo_field(lines, key)) for key in ("cpu family", "model", "stepping")]
    if any(value is None for _, value in fields):
        return None
    return " ".join(f"{key.removeprefix('cpu ')} {value}" for key, value in fields)


def cpu_capability() -> str:
    """The instruction set PyTorch's CPU kernels use here (e.g. AVX2, AVX512)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # older builds lack the probe
        return "unknown instruction set"


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); False where the build lacks
    oneDNN or the probe, so an unknown CPU counts as slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def hardware() -> dict[str, Any]:
    """run.json's hardware: enough to tell two machines' speeds apart, bf16 kernels included."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_generation": cpu_generation(),
        "cpu_capability": cpu_capability(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def slurm_job_id() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    array = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{array}" if job and array else job


def check_table_runs(table_path: Path, expected_run_dirs: list[str]) -> None:
    """A report is built only from the runs its own config asked for: the table's run directories must be
    exactly `expected_run_dirs`. Snakemake's metadata alone cannot promise this (a table copied or restored
    from elsewhere, or kept after --drop-metadata, looks up to date), so the report checks it itself."""
    import pandas as pd

    def normalized(paths: Any) -> set[str]:
        return {os.path.normpath(os.path.abspath(str(path))) for path in paths}

    found = normalized(pd.read_csv(table_path, usecols=["run_dir"])["run_dir"].dropna().unique())
    expected = normalized(expected_run_dirs)
    foreign, missing = sorted(found - expected), sorted(expected - found)
    if foreign or missing:
        lines = [f"{table_path}: the table does not hold exactly the runs this config asks for"]
        if foreign:
            lines.append(f"  {len(foreign)} run(s) that the config does not ask for, e.g. {foreign[0]}")
        if missing:
            lines.append(f"  {len(missing)} run(s) of the config that the table lacks, e.g. {missing[0]}")
        lines.append(
            "  Rebuild the table from this config's runs: snakemake --forcerun aggregate (GLUE), "
            "collect_xtreme or collect_instruct, with the same --configfile."
        )
        raise TableMismatchError("\n".join(lines))


def grid_manifest_path(tables_dir: str | Path, table: str, run_dirs: list[str]) -> Path:
    """`<tables>/<table>-grid-<key>.json`, KEY naming the set of run directories a table is built from.

    The workflow lists this file as an output of the step that builds the table and as an input of the
    report. A config whose grid changed names a file that does not exist yet, so the table is rebuilt
    whatever Snakemake's metadata says (kept tables without metadata would otherwise look up to date:
    Snakemake does not rerun a job for missing inputs when its outputs exist).
    """
    canonical = json.dumps(sorted(os.path.normpath(str(path)) for path in run_dirs))
    key = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    return Path(tables_dir) / f"{table}-grid-{key}.json"


def write_grid_manifest(tables_dir: str | Path, table: str, run_dirs: list[str]) -> Path:
    """Write the table's grid manifest (the run directories it holds, for a reader to open) and remove the
    manifests of earlier grids of the same table."""
    from robustft.io import write_json_atomic

    path = grid_manifest_path(tables_dir, table, run_dirs)
    for stale in Path(tables_dir).glob(f"{table}-grid-*.json"):
        if stale != path:
            stale.unlink()
    write_json_atomic(path, {"table": f"{table}.csv", "runs": len(run_dirs), "run_dirs": sorted(run_dirs)})
    return path


def cpu_description(hardware_record: dict[str, Any]) -> str:
    """run.json's CPU, e.g. "AMD EPYC [family 25 model 17 stepping 1, AVX512, fast bf16]": the model name
    (only the architecture for runs recorded before it was), then what runs recorded since 2026-12-04 add."""
    name = hardware_record.get("cpu_model") or hardware_record.get("processor", "?")
    details = []
    if hardware_record.get("cpu_generation"):
        details.append(hardware_record["cpu_generation"])
    if "cpu_capability" in hardware_record:
        bf16 = "fast bf16" if hardware_record.get("cpu_fast_bf16") else "no fast bf16"
        details.append(f"{hardware_record['cpu_capability']}, {bf16}")
    # Brackets and commas: reports follow it with "(2 CPUs)" and join several machines with "; ".
    return f"{name} [{', '.join(details)}]" if details else name


def summarize_runs(
    tables_dir: Path, workflow_config_hash: str, table: str = "runs.csv", run_json: str = "run.json"
) -> dict[str, str]:
    """Provenance for a report: what the runs in tables_dir/<table> were made with (read from each run's
    `run_json`, relative to its run directory; the instruction-tuning track keeps it in sft/run.json)."""
    import pandas as pd

    runs = pd.read_csv(Path(tables_dir) / table)
    records = []
    for run_dir in runs["run_dir"].dropna().unique():
        path = Path(run_dir) / run_json
        if path.exists():
            records.append(json.loads(path.read_text()))

    def distinct(values: list[Any]) -> str:
        unique = sorted({json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v) for v in values})
        return "; ".join(unique) if unique else "unknown"

    versions = distinct([r.get("versions", {}) for r in records]).replace('"', "")
    gpus = [", ".join(r["hardware"].get("gpus", [])) or "CPU only" for r in records if "hardware" in r]
    wall = sum(float(r.get("wall_time_s", 0.0)) for r in records)
    return {
        "report generated with commit": git_commit(),
        "runs' git commits": distinct([r.get("git_commit", "unknown") for r in records]),
        "workflow config hash": workflow_config_hash,
        "runs' config hashes": f"{len({r.get('config_hash') for r in records})} distinct (one per run spec)",
        "package versions": versions,
        "hardware": distinct([cpu_description(r["hardware"]) for r in records if "hardware" in r])
        + f" ({distinct([r['hardware'].get('cpu_count') for r in records if 'hardware' in r])} CPUs); "
        + distinct(gpus),
        "compute time": f"{wall / 3600:.2f} h wall time over {len(records)} runs ({wall:.0f} s)",
        "SLURM job ids": distinct([r.get("slurm_job_id") for r in records if r.get("slurm_job_id")]),
    }
