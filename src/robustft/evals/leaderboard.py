"""Open LLM Leaderboard (v1) benchmarks through lm-evaluation-harness, as in NEFTune Figure 3.

One registry entry per benchmark (LEADERBOARD_TASKS). Each task runs with lm-eval's own upstream task YAML:
when the benchmark's files are under `data_dir`, they are converted once into the row shape the Hub dataset
has (so the upstream `doc_to_text`/`doc_to_choice`/`process_docs` apply unchanged) and a local YAML is
written that `include:`s the upstream one and replaces only `dataset_path`/`dataset_name`/`dataset_kwargs`.
Without local files the upstream task reads the Hub (or a warm Hugging Face cache); when that fails too the
task's result says "not run" and why, and never holds a number.

Result: `<out_dir>/<task>.json` per task (the run directory's `leaderboard/`), value and stderr in percent.
`limit` (documents per task, per subject for MMLU) exists for CPU/CI smoke runs: it is written into the
result with `comparable: false`, so a report can keep such numbers apart from real ones.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustft.errors import DataFormatError, RunError
from robustft.io import write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

# lm-eval's results key is "<metric>,<filter>"; every task here is scored without a filter.
FILTER = "none"
DEFAULT_SEED = 1234  # lm-eval's own default seeds; use one eval seed for every run so all see the same shots.
DEFAULT_BATCH_SIZE = 8

# Converter: (data_dir, dest dir) -> {upstream YAML, relative to lm_eval/tasks: {split: converted jsonl}}.
Converter = Callable[[Path, Path], dict[str, dict[str, Path]]]


@dataclass(frozen=True)
class LeaderboardTask:
    name: str  # our key = lm-eval task (or group) name = the result file's stem
    num_fewshot: int
    metric: str  # lm-eval metric name in the results ("acc_norm"); TruthfulQA-MC2's mc2 is called "acc"
    leaderboard_metric: str  # what the Open LLM Leaderboard v1 called it
    hub_dataset: str
    local_files: tuple[str, ...]  # relative to data_dir; all must exist for the local path
    upstream_yamls: tuple[str, ...]  # relative to lm_eval/tasks: the task's YAMLs (and its group YAMLs)
    convert: Converter
    subtasks: tuple[str, ...] = ()  # a group's leaf tasks, averaged without weights (MMLU)


LEADERBOARD_TASKS: dict[str, LeaderboardTask] = {}


def register_leaderboard_task(task: LeaderboardTask) -> LeaderboardTask:
    LEADERBOARD_TASKS[task.name] = task
    return task


def get_leaderboard_task(name: str) -> LeaderboardTask:
    if name not in LEADERBOARD_TASKS:
        raise KeyError(f"unknown leaderboard task {name!r}; known: {sorted(LEADERBOARD_TASKS)}")
    return LEADERBOARD_TASKS[name]


# ----------------------------------------------------------------------------------------- converters
def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((line_number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{line_number}: not valid JSON ({err})") from None
    return rows


def _jsonl_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode()


def _write_if_changed(path: Path, data: bytes) -> Path:
    """Unchanged files keep their mtime, so `datasets` reuses its cache of them instead of growing it."""
    if not (path.exists() and path.read_bytes() == data):
        write_bytes_atomic(path, data)
    return path


def _arc_row(path: Path, line_number: int, raw: dict[str, Any]) -> dict[str, Any]:
    """ARC-V1-Feb2018 jsonl -> the allenai/ai2_arc row (question = stem, choices = {text, label})."""
    try:
        choices = raw["question"]["choices"]
        row = {
            "id": raw["id"],
            "question": raw["question"]["stem"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
            "answerKey": raw["answerKey"],
        }
    except (KeyError, TypeError) as err:
        raise DataFormatError(f"{path}:{line_number}: not an ARC record (missing {err})") from None
    if row["answerKey"] not in row["choices"]["label"]:
        raise DataFormatError(f"{path}:{line_number}: answerKey {row['answerKey']!r} is not a choice label")
    return row


ARC_FILES = {
    "train": "leaderboard/arc_challenge/ARC-Challenge-Train.jsonl",
    "validation": "leaderboard/arc_challenge/ARC-Challenge-Dev.jsonl",
    "test": "leaderboard/arc_challenge/ARC-Challenge-Test.jsonl",
}


def convert_arc(data_dir: Path, dest: Path) -> dict[str, dict[str, Path]]:
    files = {}
    for split, relative in ARC_FILES.items():
        source = data_dir / relative
        rows = [_arc_row(source, number, raw) for number, raw in _read_jsonl(source)]
        files[split] = _write_if_changed(dest / f"{split}.jsonl", _jsonl_bytes(rows))
    return {"arc/arc_challenge.yaml": files}


HELLASWAG_FILES = {
    "train": "leaderboard/hellaswag/hellaswag_train.jsonl",
    "validation": "leaderboard/hellaswag/hellaswag_val.jsonl",
}
HELLASWAG_FIELDS = ("ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id", "split")


def convert_hellaswag(data_dir: Path, dest: Path) -> dict[str, dict[str, Path]]:
    """rowanz jsonl -> the Rowan/hellaswag row: the same fields, the label as a string (as on the Hub)."""
    files = {}
    for split, relative in HELLASWAG_FILES.items():
        source = data_dir / relative
        rows = []
        for number, raw in _read_jsonl(source):
            missing = [key for key in (*HELLASWAG_FIELDS, "split_type", "label") if key not in raw]
            if missing:
                raise DataFormatError(f"{source}:{number}: not a HellaSwag record (missing {missing})")
            row = {key: raw[key] for key in (*HELLASWAG_FIELDS, "split_type")}
            row["label"] = str(raw["label"])
            rows.append(row)
        files[split] = _write_if_changed(dest / f"{split}.jsonl", _jsonl_bytes(rows))
    return {"hellaswag/hellaswag.yaml": files}


MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)  # fmt: skip
MMLU_SPLITS = {"dev": "dev", "validation": "val", "test": "test"}  # HF split -> Hendrycks folder/suffix
MMLU_GROUP_YAMLS = (
    "mmlu/default/_mmlu.yaml",
    "mmlu/default/_mmlu_humanities.yaml",
    "mmlu/default/_mmlu_other.yaml",
    "mmlu/default/_mmlu_social_sciences.yaml",
    "mmlu/default/_mmlu_stem.yaml",
)


def _mmlu_file(subject: str, split: str) -> str:
    folder = MMLU_SPLITS[split]
    return f"leaderboard/mmlu/{folder}/{subject}_{folder}.csv"


def convert_mmlu(data_dir: Path, dest: Path) -> dict[str, dict[str, Path]]:
    """Hendrycks CSVs (question, A, B, C, D, answer letter; no header) -> the cais/mmlu row
    {question, subject, choices, answer index}. 44 of the shared CSVs were re-saved with CRLF line ends;
    the csv module reads those as one record per line, and CRLF inside a quoted field becomes LF as in the
    original (LF) files the Hub dataset was built from."""
    yamls: dict[str, dict[str, Path]] = {}
    for subject in MMLU_SUBJECTS:
        files = {}
        for split in MMLU_SPLITS:
            source = data_dir / _mmlu_file(subject, split)
            rows = []
            with source.open(encoding="utf-8", newline="") as handle:
                for number, record in enumerate(csv.reader(handle), start=1):
                    if len(record) != 6 or record[5] not in ("A", "B", "C", "D"):
                        raise DataFormatError(
                            f"{source}:{number}: expected question, 4 choices and an answer letter A-D, "
                            f"got {len(record)} fields"
                        )
                    fields = [text.replace("\r\n", "\n") for text in record]
                    rows.append(
                        {
                            "question": fields[0],
                            "subject": subject,
                            "choices": fields[1:5],
                            "answer": "ABCD".index(fields[5]),
                        }
                    )
            files[split] = _write_if_changed(dest / subject / f"{split}.jsonl", _jsonl_bytes(rows))
        yamls[f"mmlu/default/mmlu_{subject}.yaml"] = files
    return yamls


TRUTHFULQA_FILE = "leaderboard/truthfulqa/v1_2021/mc_task.json"


def convert_truthfulqa(data_dir: Path, dest: Path) -> dict[str, dict[str, Path]]:
    """TruthfulQA v1 (2021) mc_task.json -> the truthful_qa `multiple_choice` row: each {answer: label} map
    becomes {choices, labels} in file order, as the Hub dataset's builder did."""
    source = data_dir / TRUTHFULQA_FILE
    try:
        records = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{source}: not valid JSON ({err})") from None
    rows = []
    for index, record in enumerate(records):
        try:
            row = {"question": record["question"]}
            for key in ("mc1_targets", "mc2_targets"):
                row[key] = {"choices": list(record[key]), "labels": list(record[key].values())}
        except (KeyError, TypeError, AttributeError) as err:
            raise DataFormatError(f"{source}: record {index} is not a TruthfulQA MC record ({err})") from None
        rows.append(row)
    path = _write_if_changed(dest / "validation.jsonl", _jsonl_bytes(rows))
    return {"truthfulqa/truthfulqa_mc2.yaml": {"validation": path}}


# ------------------------------------------------------------------------------------------- registry
register_leaderboard_task(
    LeaderboardTask(
        name="arc_challenge",
        num_fewshot=25,
        metric="acc_norm",
        leaderboard_metric="acc_norm",
        hub_dataset="allenai/ai2_arc (ARC-Challenge)",
        local_files=tuple(ARC_FILES.values()),
        upstream_yamls=("arc/arc_challenge.yaml",),
        convert=convert_arc,
    )
)
register_leaderboard_task(
    LeaderboardTask(
        name="hellaswag",
        num_fewshot=10,
        metric="acc_norm",
        leaderboard_metric="acc_norm",
        hub_dataset="Rowan/hellaswag",
        local_files=tuple(HELLASWAG_FILES.values()),
        upstream_yamls=("hellaswag/hellaswag.yaml",),
        convert=convert_hellaswag,
    )
)
register_leaderboard_task(
    LeaderboardTask(
        name="mmlu",
        num_fewshot=5,
        metric="acc",
        leaderboard_metric="acc (unweighted mean of 57 subjects)",
        hub_dataset="cais/mmlu",
        local_files=tuple(_mmlu_file(s, split) for s in MMLU_SUBJECTS for split in MMLU_SPLITS),
        upstream_yamls=(*MMLU_GROUP_YAMLS, *(f"mmlu/default/mmlu_{s}.yaml" for s in MMLU_SUBJECTS)),
        convert=convert_mmlu,
        subtasks=tuple(f"mmlu_{s}" for s in MMLU_SUBJECTS),
    )
)
register_leaderboard_task(
    LeaderboardTask(
        name="truthfulqa_mc2",
        num_fewshot=0,
        metric="acc",
        leaderboard_metric="mc2",
        hub_dataset="truthfulqa/truthful_qa (multiple_choice)",
        local_files=(TRUTHFULQA_FILE,),
        upstream_yamls=("truthfulqa/truthfulqa_mc2.yaml",),
        convert=convert_truthfulqa,
    )
)


# ------------------------------------------------------------------------------------- local task YAMLs
def lm_eval_tasks_dir() -> Path:
    """lm-eval's bundled task YAMLs, found without importing lm_eval (the CLI imports this module)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("lm_eval is not installed: pip install 'lm-eval[hf]==0.4.13'")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def default_task_cache(data_dir: str | os.PathLike[str]) -> Path:
    """One cache per data directory: $ROBUSTFT_CACHE (else ~/.cache/robustft)/lm_eval_tasks/<hash>."""
    root = Path(os.environ.get("ROBUSTFT_CACHE", Path.home() / ".cache" / "robustft"))
    key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    return root / "lm_eval_tasks" / key


def missing_local_files(task: LeaderboardTask, data_dir: str | os.PathLike[str]) -> list[str]:
    return [relative for relative in task.local_files if not (Path(data_dir) / relative).is_file()]


def materialize_local_task(
    task: LeaderboardTask, data_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str]
) -> Path | None:
    """Convert the task's local files and write its local YAMLs under cache_dir/<task>/; return that
    directory, or None when some local file is missing. Deterministic: same files in, same bytes out.

    Each YAML is `include: <upstream YAML>` plus, for YAMLs that read data, only the dataset keys, so the
    prompt, the choices, the target, process_docs/process_results and the metrics stay upstream's."""
    import yaml

    data_dir = Path(data_dir)
    if missing_local_files(task, data_dir):
        return None
    task_dir = Path(cache_dir) / task.name
    data_files = task.convert(data_dir, task_dir / "data")
    upstream = lm_eval_tasks_dir()
    for relative in task.upstream_yamls:
        config: dict[str, Any] = {"include": str(upstream / relative)}
        if relative in data_files:
            config |= {
                "dataset_path": "json",
                "dataset_name": None,
                "dataset_kwargs": {
                    "data_files": {s: str(p.resolve()) for s, p in data_files[relative].items()}
                },
            }
        header = f"# robustft.evals.leaderboard: upstream task, data from {data_dir.resolve()}\n"
        text = header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        _write_if_changed(task_dir / Path(relative).name, text.encode())
    return task_dir


def task_manager_for(
    tasks: Sequence[LeaderboardTask], data_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str]
) -> tuple[Any, dict[str, str]]:
    """A TaskManager that knows only these tasks (indexing all of lm-eval's ~10k YAMLs takes ~15 s), and
    each task's data source: "local" (our YAMLs over converted files) or "hub" (upstream YAMLs)."""
    from lm_eval.tasks import TaskManager

    paths: list[Path] = []
    sources: dict[str, str] = {}
    for task in tasks:
        local_dir = materialize_local_task(task, data_dir, cache_dir)
        if local_dir is not None:
            paths.append(local_dir)
            sources[task.name] = "local"
        else:
            upstream = lm_eval_tasks_dir()
            paths += sorted({(upstream / relative).parent for relative in task.upstream_yamls})
            sources[task.name] = "hub"
    unique = list(dict.fromkeys(paths))
    return TaskManager(include_path=unique, include_defaults=False), sources


# ------------------------------------------------------------------------------------------ evaluation
def _percent(value: float | None) -> float | None:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # lm-eval writes "N/A" for a stderr it did not compute
    return 100.0 * value


def _leaf_scores(task: LeaderboardTask, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{leaf task: {value, stderr (fractions), n}} from simple_evaluate's output."""
    key, stderr_key = f"{task.metric},{FILTER}", f"{task.metric}_stderr,{FILTER}"
    leaves = task.subtasks or (task.name,)
    scores = {}
    for leaf in leaves:
        entry = results["results"][leaf]
        if key not in entry:
            raise KeyError(f"lm-eval result for {leaf} has no {key!r}; keys: {sorted(entry)}")
        stderr = entry.get(stderr_key)
        scores[leaf] = {
            "value": entry[key],
            "stderr": stderr if isinstance(stderr, int | float) else None,
            "n": int(results["n-samples"][leaf]["effective"]),
            "n_total": int(results["n-samples"][leaf]["original"]),
        }
    return scores


def leaderboard_record(
    task: LeaderboardTask, results: dict[str, Any], *, limit: int | None, lm_eval_version: str
) -> dict[str, Any]:
    """The contract's result fields (value/stderr in percent) from one simple_evaluate output."""
    scores = _leaf_scores(task, results)
    n = sum(score["n"] for score in scores.values())
    record: dict[str, Any] = {
        "task": task.name,
        "metric": task.leaderboard_metric,
        "n": n,
        "n_total": sum(score["n_total"] for score in scores.values()),
        "num_fewshot": task.num_fewshot,
        "status": "ok",
        "reason": None,
        "lm_eval_version": lm_eval_version,
        "limit": limit,
        "comparable": limit is None,
        "lm_eval_metric": f"{task.metric},{FILTER}",
    }
    if not task.subtasks:
        (score,) = scores.values()
        record |= {"value": _percent(score["value"]), "stderr": _percent(score["stderr"])}
        return record
    # The v1 leaderboard averaged the 57 MMLU subjects with equal weight; lm-eval >= 0.4 reports the group
    # weighted by subject size. We report the former as `value` and keep the latter beside it.
    values = [score["value"] for score in scores.values()]
    stderrs = [score["stderr"] for score in scores.values()]
    unweighted_stderr = (
        math.sqrt(sum(s * s for s in stderrs)) / len(stderrs) if all(s is not None for s in stderrs) else None
    )
    group = results["results"].get(task.name, {})
    record |= {
        "value": _percent(sum(values) / len(values)),
        "stderr": _percent(unweighted_stderr),
        "aggregation": f"unweighted mean over the {len(values)} subjects, as the Open LLM Leaderboard v1; "
        "lm-eval 0.4's group score weights subjects by their size (value_size_weighted)",
        "value_size_weighted": _percent(group.get(f"{task.metric},{FILTER}")),
        "limit_applies_to": "each subtask",
        "subtasks": {
            leaf: {"value": _percent(score["value"]), "stderr": _percent(score["stderr"]), "n": score["n"]}
            for leaf, score in scores.items()
        },
    }
    return record


def _not_run(
    task: LeaderboardTask, reason: str, *, limit: int | None, lm_eval_version: str
) -> dict[str, Any]:
    return {
        "task": task.name,
        "metric": task.leaderboard_metric,
        "value": None,
        "stderr": None,
        "n": 0,
        "num_fewshot": task.num_fewshot,
        "status": "not run",
        "reason": reason,
        "lm_eval_version": lm_eval_version,
        "limit": limit,
        "comparable": False,
    }


def _is_done(path: Path, limit: int | None) -> bool:
    """Finished = an "ok" result with the same limit. A "not run" result is retried (the data may have
    arrived since), and so is one from a smoke run when the full task is asked for, or vice versa."""
    if not path.exists():
        return False
    previous = json.loads(path.read_text(encoding="utf-8"))
    return previous.get("status") == "ok" and previous.get("limit") == limit


def run_leaderboard(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    task_cache: str | os.PathLike[str] | None = None,
    bootstrap_iters: int = 100,
    log_samples: bool = False,
    model_name: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate `model` (a transformers causal LM) on the named leaderboard tasks; write and return
    {task: record}, each also in `<out_dir>/<task>.json`. Finished tasks are read back, not rerun.

    `seed` seeds Python/numpy/torch and the few-shot sampler; keep it the same for every run compared.
    `bootstrap_iters` only matters for bootstrapped metrics (none here: the means have a closed-form stderr,
    but 0 would switch stderrs off). `log_samples` writes lm-eval's per-document records next to the result.
    """
    from importlib.metadata import version

    specs = [get_leaderboard_task(name) for name in tasks]  # unknown names fail before any work
    out_dir = Path(out_dir)
    lm_eval_version = version("lm_eval")
    records, todo = _finished_records(specs, out_dir, limit)
    if not todo:
        return records

    from lm_eval.models.huggingface import HFLM
    from lm_eval.utils import handle_non_serializable

    cache_dir = Path(task_cache) if task_cache is not None else default_task_cache(data_dir)
    task_manager, sources = task_manager_for(todo, data_dir, cache_dir)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
    for task in todo:
        path = out_dir / f"{task.name}.json"
        try:
            loaded = task_manager.load([task.name])  # reads the dataset: the Hub, when not local
        except Exception as err:  # datasets has many ways to say "not reachable"
            if sources[task.name] == "local":
                raise
            record = _unreachable_task_record(
                task, err, data_dir, limit=limit, lm_eval_version=lm_eval_version
            )
            write_json_atomic(path, record)
            records[task.name] = record
            continue
        record, results, runtime = _evaluate_task(
            lm,
            task,
            loaded,
            task_manager,
            sources[task.name],
            model_label=model_name or getattr(getattr(model, "config", None), "_name_or_path", None),
            limit=limit,
            batch_size=batch_size,
            seed=seed,
            bootstrap_iters=bootstrap_iters,
            log_samples=log_samples,
            lm_eval_version=lm_eval_version,
        )
        if log_samples:
            samples_path = out_dir / f"{task.name}.samples.json"
            text = json.dumps(results.get("samples", {}), default=handle_non_serializable)
            write_bytes_atomic(samples_path, text.encode())
        write_json_atomic(path, record)
        records[task.name] = record
        logger.info(
            "%s: %s = %.2f (n=%d, %.1f s)",
            task.name,
            task.leaderboard_metric,
            record["value"],
            record["n"],
            runtime,
        )
    return records


def _finished_records(
    specs: list[LeaderboardTask], out_dir: Path, limit: int | None
) -> tuple[dict[str, dict[str, Any]], list[LeaderboardTask]]:
    """({task: record} read back from the finished tasks' files, [the tasks still to run])."""
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for task in specs:
        path = out_dir / f"{task.name}.json"
        if _is_done(path, limit):
            logger.info("%s: %s exists, skipped", task.name, path)
            records[task.name] = json.loads(path.read_text(encoding="utf-8"))
        else:
            todo.append(task)
    return records, todo


def _unreachable_task_record(
    task: LeaderboardTask,
    err: Exception,
    data_dir: str | os.PathLike[str],
    *,
    limit: int | None,
    lm_eval_version: str,
) -> dict[str, Any]:
    """The `not run` record of a task with neither local files nor a reachable Hub dataset, logged."""
    missing = missing_local_files(task, data_dir)
    reason = (
        f"no local files (e.g. {Path(data_dir) / missing[0]} missing) and the Hub dataset "
        f"{task.hub_dataset} could not be loaded: {type(err).__name__}: {err}"
    )
    logger.warning("%s: not run: %s", task.name, reason)
    return _not_run(task, reason, limit=limit, lm_eval_version=lm_eval_version)


def _evaluate_task(
    lm: Any,
    task: LeaderboardTask,
    loaded: dict[str, Any],
    task_manager: Any,
    source: str,
    *,
    model_label: str | None,
    limit: int | None,
    batch_size: int,
    seed: int,
    bootstrap_iters: int,
    log_samples: bool,
    lm_eval_version: str,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(record, lm-eval's results, seconds): one task through lm_eval.simple_evaluate, every random
    number generator (Python, numpy, torch, few-shot sampler) seeded with `seed`."""
    import lm_eval

    top = loaded["groups"].get(task.name) or loaded["tasks"][task.name]
    logger.info("%s: %d-shot, data from %s, limit %s", task.name, task.num_fewshot, source, limit)
    started = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[top],
        num_fewshot=task.num_fewshot,
        task_manager=task_manager,
        batch_size=batch_size,
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    runtime = time.perf_counter() - started
    record = leaderboard_record(task, results, limit=limit, lm_eval_version=lm_eval_version)
    record |= {
        "model": model_label,
        "data": {"source": source}
        | (
            {"files": list(task.local_files) if not task.subtasks else f"{len(task.local_files)} CSVs"}
            if source == "local"
            else {"hub_dataset": task.hub_dataset}
        ),
        "batch_size": batch_size,
        "seed": seed,
        "bootstrap_iters": bootstrap_iters,
        "runtime_s": round(runtime, 2),
        "seconds_per_doc": round(runtime / record["n"], 4) if record["n"] else None,
    }
    return record, results, runtime


# ------------------------------------------------------------------------------------------------- CLI
def cmd_lm_eval(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.tasks:
        get_leaderboard_task(name)  # fail on a typo before loading a model for a minute
    if args.sft_dir:
        try:
            from robustft.train.sft import load_finetuned
        except ImportError as err:
            raise RunError(f"--sft-dir needs robustft.train.sft.load_finetuned ({err})") from None
        model, tokenizer = load_finetuned(args.sft_dir, dtype=args.dtype)
        model_name = str(args.sft_dir)
    else:
        try:
            from robustft.models import load_causal_lm
        except ImportError as err:
            raise RunError(f"--model needs robustft.models.load_causal_lm ({err})") from None
        model, tokenizer = load_causal_lm(args.model, dtype=args.dtype)
        model_name = args.model
    import torch

    if torch.cuda.is_available() and model.device.type == "cpu":
        model.to("cuda")
    model.eval()
    records = run_leaderboard(
        model,
        tokenizer,
        args.tasks,
        args.data_dir,
        args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        task_cache=args.task_cache,
        bootstrap_iters=args.bootstrap_iters,
        log_samples=args.log_samples,
        model_name=model_name,
    )
    summary = {
        name: {k: r.get(k) for k in ("status", "metric", "value", "n", "limit")}
        for name, r in records.items()
    }
    print(json.dumps(summary, indent=2))
    return 0
