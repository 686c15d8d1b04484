"""Download what compute nodes need into the local cache, on a machine that reaches the Hub.

Compute nodes then run with HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 and read from the same cache.
Tasks whose local files exist are skipped: the local copy wins at run time anyway.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from robustft.data import get_task, load_split
from robustft.io import write_json_atomic
from robustft.models import get_model_spec

# Weights as safetensors only (no pickled .bin), plus configs and tokenizer files.
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]


def prefetch(
    models: list[str],
    tasks: list[str],
    data_dir: str,
    cache_dir: str,
    marker: str | None = None,
    xtreme_runs: list[tuple[str, str, str, str]] = (),
) -> dict[str, list[str]]:
    """`xtreme_runs`: (task, setting, eval split, train split) of the XTREME track, read once here."""
    from huggingface_hub import snapshot_download

    fetched: dict[str, list[str]] = {"models": [], "datasets": [], "local": []}
    for name in tqdm(models, desc="models", unit="model"):
        spec = get_model_spec(name, cache_dir)  # a Hub id's config.json comes into the cache here
        if spec.is_hub:
            snapshot_download(spec.location(), cache_dir=cache_dir, allow_patterns=MODEL_FILES)
            fetched["models"].append(spec.location())
        else:
            fetched["local"].append(f"model {name}: {spec.location()}")
    for key in tqdm(tasks, desc="datasets", unit="task"):
        task = get_task(key)
        for split in ("train", *task.eval_splits):
            paths = task.local_paths(data_dir, split)  # several for ANLI's rounds together
            if all(path.exists() for path in paths):
                fetched["local"].extend(str(path) for path in paths)
                continue
            data = load_split(key, split, data_dir, cache_dir)  # goes to the Hub and fills the cache
            fetched["datasets"].append(data.source)
    for task, setting, split, train_split in tqdm(xtreme_runs, desc="XTREME", unit="task"):
        fetched["datasets"].extend(_prefetch_xtreme(task, setting, split, train_split, data_dir, cache_dir))
    if marker:
        write_json_atomic(Path(marker), fetched)
    print(json.dumps(fetched, indent=2))
    return fetched


def _prefetch_xtreme(
    task: str, setting: str, split: str, train_split: str, data_dir: str, cache_dir: str
) -> list[str]:
    """Read an XTREME task's training data (unless it is a retrieval task, which trains nothing) and its
    evaluation split in every language: what is not local comes from the Hub into the cache."""
    from robustft.data.xtreme import XTREME_TASKS, load_xtreme_split, load_xtreme_train

    spec = XTREME_TASKS[task]
    sources = []
    if spec.kind != "retrieval":
        # English-only translate-train-all is refused at run time unless configured; here it only fetches.
        data, _ = load_xtreme_train(
            task, setting, data_dir, cache_dir, split=train_split, english_only_ok=True
        )
        sources.append(data.source)
    for language in spec.languages:
        sources.append(load_xtreme_split(task, split, language, data_dir, cache_dir).source)
        if task == "bucc2018" and split != "dev":  # the threshold is chosen on the dev gold
            sources.append(load_xtreme_split(task, "dev", language, data_dir, cache_dir).source)
    return sources
