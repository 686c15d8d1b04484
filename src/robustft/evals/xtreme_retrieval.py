"""Sentence retrieval (BUCC 2018, Tatoeba) with the encoder of an XNLI run, as NoisyTune Sec. 3.1 says.

A sentence is the mean of its token representations at one hidden layer (padding masked out). The layer
is `retrieval_layer`, or with "best" the layer whose score averaged over the languages is highest, as the
paper picks "the best-performing hidden layer" (Zheng et al. 2021):
- BUCC chooses the layer, and each layer's threshold, on the dev gold (XTREME chooses the threshold
  there), then mines the evaluation split at that one layer: mining is the expensive part at full size
  (~400k sentences a side), so it runs once. With the dev split as the evaluation split, both choices are
  made on it, which the run records.
- Tatoeba has one split, so every layer is scored on it and the best kept: optimistic by one choice
  among (layers + 1), as in the paper. The per-layer means are kept in metrics.json.
BUCC mines with the ratio margin over k nearest neighbours (XTREME's defaults).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from robustft.errors import RunError

logger = logging.getLogger(__name__)


def sentence_embeddings(
    model: Any,
    tokenizer: Any,
    sentences: list[str],
    max_seq_length: int,
    batch_size: int = 64,
    layers: list[int] | None = None,
) -> np.ndarray:
    """Mean-pooled token states: an array [layers, sentences, hidden] in fp32, every layer (0 = the
    embeddings) or only `layers` (BUCC's test side at full size is ~400k sentences: one layer of XLM-R
    large is 1.7 GB, all 25 would not fit in a job's memory)."""
    import torch

    device = next(model.parameters()).device
    pooled: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(
                sentences[start : start + batch_size],
                truncation=True,
                max_length=max_seq_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            states = model(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"].unsqueeze(-1).float()
            kept = states if layers is None else [states[i] for i in layers]
            means = [(state.float() * mask).sum(1) / mask.sum(1).clamp(min=1) for state in kept]
            pooled.append(torch.stack(means).cpu().numpy())
    return np.concatenate(pooled, axis=1)


def _bucc_candidates(split, embed, k: int, layers: list[int] | None) -> list[list[tuple[str, str, float]]]:
    """Mined (source id, target id, margin) candidates at each layer. As XTREME, the unique texts are
    mined (a repeated sentence is one row of the search), then mapped back to the sentence ids."""
    from robustft.evals.xtreme_metrics import bucc_mine, expand_candidates, unify_sentences

    source_texts, source_ids = unify_sentences(split.source_ids, split.source_sentences)
    target_texts, target_ids = unify_sentences(split.target_ids, split.target_sentences)
    source, target = embed(source_texts, layers), embed(target_texts, layers)
    rows_s, rows_t = [str(i) for i in range(len(source_texts))], [str(i) for i in range(len(target_texts))]
    return [
        expand_candidates(bucc_mine(source[i], target[i], rows_s, rows_t, k=k), source_ids, target_ids)
        for i in range(source.shape[0])
    ]


def _bucc_by_layer(split, embed, k: int) -> list[dict[str, float]]:
    """BUCC scores of one language at every layer, each with its best threshold on this split."""
    from robustft.evals.xtreme_metrics import bucc_scores

    return [bucc_scores(candidates, split.gold) for candidates in _bucc_candidates(split, embed, k, None)]


def _bucc_at_layer(split, embed, k: int, layer: int, threshold: float) -> dict[str, float]:
    from robustft.evals.xtreme_metrics import bucc_scores

    (candidates,) = _bucc_candidates(split, embed, k, [layer])
    return bucc_scores(candidates, split.gold, threshold=threshold)


def _choose_layer(
    by_language: dict[str, list[dict[str, float]]], metric: str, setting: int | str
) -> tuple[int, list[float]]:
    """The configured layer, or the one with the best mean `metric` over languages; and those means."""
    n_layers = len(next(iter(by_language.values())))
    means = [
        float(np.mean([scores[layer][metric] for scores in by_language.values()]))
        for layer in range(n_layers)
    ]
    if setting == "best":
        return int(np.argmax(means)), means
    if not 0 <= int(setting) < n_layers:
        raise RunError(f"retrieval_layer {setting} is not a layer of this encoder (0..{n_layers - 1})")
    return int(setting), means


def evaluate_retrieval(spec: Any, task: Any, languages: list[str]) -> dict[str, Any]:
    """Score every language at every layer, then report the chosen layer's scores. `languages`: those the
    run's settings choose (robustft.train.xtreme.configured_languages, which the run passes in)."""
    settings = spec.xtreme
    encoder_dir, tokenizer, model = _load_encoder(spec)

    def embed(sentences: list[str], layers: list[int] | None = None) -> np.ndarray:
        return sentence_embeddings(
            model, tokenizer, sentences, spec.train.max_seq_length, spec.train.eval_batch_size, layers
        )

    primary = task.primary_metric
    splits = _load_evaluation_splits(spec, languages)
    if spec.task == "tatoeba":
        layer, mean_by_layer, chosen_on, scores = _tatoeba_at_chosen_layer(
            splits, embed, primary, settings.retrieval_layer
        )
    else:
        layer, mean_by_layer, chosen_on, scores = _bucc_at_chosen_layer(
            spec, languages, splits, embed, primary
        )
    logger.info(
        "%s: layer %d chosen on %s (mean %s by layer: %s)",
        spec.task,
        layer,
        chosen_on,
        primary,
        mean_by_layer,
    )
    sizes = {
        lang: len(split.gold) if spec.task == "bucc2018" else len(split.source_sentences)
        for lang, split in splits.items()
    }
    return {
        "languages": {lang: {**scores[lang], "n": sizes[lang]} for lang in splits},
        "layer": layer,
        "layer_selection": settings.retrieval_layer,
        "layer_chosen_on": chosen_on,
        "mean_by_layer": mean_by_layer,
        "encoder_dir": str(encoder_dir),
        "encoder_run": _encoder_run(encoder_dir),
        "data": {lang: split.source for lang, split in splits.items()},
        "train_languages": None,
        "n_train": None,
    }


def _load_encoder(spec: Any) -> tuple[Any, Any, Any]:
    """(encoder_dir, tokenizer, model): the XNLI run's saved encoder, on the GPU when there is one."""
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer

    encoder_dir = Path(spec.encoder_dir)
    if not (encoder_dir / "config.json").is_file():
        raise RunError(
            f"{spec.task}: no encoder in {encoder_dir}; the XNLI run of this model, setting, method and "
            "seed must be trained with xtreme setting save_encoder: true"
        )
    import torch

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir, use_safetensors=True)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    return encoder_dir, tokenizer, model


def _load_evaluation_splits(spec: Any, languages: list[str]) -> dict[str, Any]:
    """{language: evaluation split}; Tatoeba cut to its first max_eval_samples pairs."""
    from tqdm.auto import tqdm

    from robustft.data.xtreme import load_xtreme_split

    settings, limit = spec.xtreme, spec.train.max_eval_samples
    splits = {}
    for language in tqdm(languages, desc=f"{spec.task} {settings.eval_split}: load", unit="language"):
        evaluation = load_xtreme_split(
            spec.task, settings.eval_split, language, spec.data_dir, spec.cache_dir
        )
        if limit is not None and spec.task == "tatoeba" and limit < len(evaluation.source_sentences):
            # Tatoeba's rows are aligned pairs: the first `limit` stay aligned.
            evaluation.source_sentences = evaluation.source_sentences[:limit]
            evaluation.target_sentences = evaluation.target_sentences[:limit]
        splits[language] = evaluation
    return splits


def _tatoeba_at_chosen_layer(
    splits: dict[str, Any], embed, primary: str, setting: int | str
) -> tuple[int, list[float], str, dict[str, dict[str, float]]]:
    """(layer, mean by layer, what chose it, {language: scores}): every layer scored on the one split."""
    from tqdm.auto import tqdm

    from robustft.evals.xtreme_metrics import tatoeba_accuracy

    by_layer = {}
    for language, split in tqdm(splits.items(), desc="tatoeba: score", unit="language"):
        source, target = embed(split.source_sentences), embed(split.target_sentences)
        by_layer[language] = [
            {"accuracy": tatoeba_accuracy(source[i], target[i])} for i in range(len(source))
        ]
    layer, mean_by_layer = _choose_layer(by_layer, primary, setting)
    chosen_on = "the evaluation split (Tatoeba has no other)"
    return layer, mean_by_layer, chosen_on, {lang: by_layer[lang][layer] for lang in splits}


def _bucc_at_chosen_layer(
    spec: Any, languages: list[str], splits: dict[str, Any], embed, primary: str
) -> tuple[int, list[float], str, dict[str, dict[str, float]]]:
    """(layer, mean by layer, what chose it, {language: scores}): the layer and each language's
    threshold chosen on the dev gold, then the evaluation split mined at that layer only."""
    from tqdm.auto import tqdm

    from robustft.data.xtreme import load_xtreme_split

    settings, k = spec.xtreme, spec.xtreme.bucc_k
    on_dev = settings.eval_split != "dev"
    chosen_on = "the dev gold" if on_dev else "the evaluation split (it is the dev split)"
    dev_by_layer = {}
    for language in tqdm(languages, desc="bucc2018: layers on dev", unit="language"):
        dev = (
            load_xtreme_split(spec.task, "dev", language, spec.data_dir, spec.cache_dir)
            if on_dev
            else splits[language]
        )
        dev_by_layer[language] = _bucc_by_layer(dev, embed, k)
    layer, mean_by_layer = _choose_layer(dev_by_layer, primary, settings.retrieval_layer)
    scores = {}
    for language, split in tqdm(splits.items(), desc=f"bucc2018: mine layer {layer}", unit="language"):
        at_layer = dev_by_layer[language][layer]
        # The dev split's own scores when it is the evaluation split; else mine it once more.
        scores[language] = (
            _bucc_at_layer(split, embed, k, layer, at_layer["threshold"]) if on_dev else at_layer
        )
    return layer, mean_by_layer, chosen_on, scores


def _encoder_run(encoder_dir: Any) -> dict[str, Any]:
    """Which XNLI run made the encoder: its config hash, commit and status (from its run.json)."""
    import json
    from pathlib import Path

    run_json = Path(encoder_dir).parent / "run.json"
    if not run_json.is_file():
        return {"run_json": None}
    record = json.loads(run_json.read_text())
    return {
        "run_json": str(run_json),
        **{key: record.get(key) for key in ("config_hash", "git_commit", "status")},
    }
