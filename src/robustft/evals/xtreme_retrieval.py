"""Sentence retrieval (BUCC 2018, Tatoeba) with the encoder of an XNLI run, as NoisyTune Sec. 3.1 says.

A sentence is the mean of its token representations at one hidden layer (padding masked out). Every layer
is scored; the reported layer is `retrieval_layer`, or with "best" the layer whose score averaged over
the languages is highest, as the paper picks "the best-performing hidden layer" (Zheng et al. 2021).
That choice is made on the evaluation data itself, so it is optimistic by one selection among
(layers + 1); the per-layer scores are kept in metrics.json so a reader can see the spread.
BUCC mines with the ratio margin over k nearest neighbours and keeps the candidates above a threshold
chosen to maximise F1 on the dev gold (XTREME); with the dev split as the evaluation split the threshold
is chosen on it, which the run records.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def sentence_embeddings(
    model: Any, tokenizer: Any, sentences: list[str], max_seq_length: int, batch_size: int = 64
) -> np.ndarray:
    """Mean-pooled token states at every layer: an array [layers + 1, sentences, hidden] in fp32."""
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
            layers = [(layer.float() * mask).sum(1) / mask.sum(1).clamp(min=1) for layer in states]
            pooled.append(torch.stack(layers).cpu().numpy())
    return np.concatenate(pooled, axis=1)


def _score_layers(task_key: str, evaluation, dev, embed, settings) -> list[dict[str, float]]:
    """The task's scores at every layer for one language."""
    from robustft.evals.xtreme_metrics import bucc_mine, bucc_scores, tatoeba_accuracy

    source, target = embed(evaluation.source_sentences), embed(evaluation.target_sentences)
    if task_key == "tatoeba":
        return [
            {"accuracy": tatoeba_accuracy(source[layer], target[layer])} for layer in range(source.shape[0])
        ]
    dev_source = dev_target = None
    if dev is not None:
        dev_source, dev_target = embed(dev.source_sentences), embed(dev.target_sentences)
    scores = []
    for layer in range(source.shape[0]):
        threshold = None
        if dev is not None:
            dev_candidates = bucc_mine(
                dev_source[layer], dev_target[layer], dev.source_ids, dev.target_ids, k=settings.bucc_k
            )
            threshold = bucc_scores(dev_candidates, dev.gold)["threshold"]
        candidates = bucc_mine(
            source[layer], target[layer], evaluation.source_ids, evaluation.target_ids, k=settings.bucc_k
        )
        scores.append(bucc_scores(candidates, evaluation.gold, threshold=threshold))
    return scores


def evaluate_retrieval(spec: Any, task: Any) -> dict[str, Any]:
    """Score every language at every layer, then report the chosen layer's scores."""
    from pathlib import Path

    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from robustft.data.xtreme import load_xtreme_split
    from robustft.train.config import RunError
    from robustft.train.xtreme import configured_languages

    settings = spec.xtreme
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
    limit = spec.train.max_eval_samples
    languages = configured_languages(spec)

    def embed(sentences: list[str]) -> np.ndarray:
        return sentence_embeddings(
            model, tokenizer, sentences, spec.train.max_seq_length, spec.train.eval_batch_size
        )

    by_language: dict[str, list[dict[str, float]]] = {}
    sizes: dict[str, int] = {}
    threshold_from: dict[str, str] = {}
    for language in tqdm(languages, desc=f"{spec.task} {settings.eval_split}", unit="language"):
        evaluation = load_xtreme_split(
            spec.task, settings.eval_split, language, spec.data_dir, spec.cache_dir
        )
        if limit is not None and spec.task == "tatoeba" and limit < len(evaluation.source_sentences):
            # Tatoeba's rows are aligned pairs: the first `limit` stay aligned.
            evaluation.source_sentences = evaluation.source_sentences[:limit]
            evaluation.target_sentences = evaluation.target_sentences[:limit]
        dev = None
        if spec.task == "bucc2018" and settings.eval_split != "dev":
            dev = load_xtreme_split(spec.task, "dev", language, spec.data_dir, spec.cache_dir)
        threshold_from[language] = (
            "tatoeba: none" if spec.task == "tatoeba" else ("dev" if dev else "eval split")
        )
        by_language[language] = _score_layers(spec.task, evaluation, dev, embed, settings)
        sizes[language] = (
            len(evaluation.gold) if spec.task == "bucc2018" else len(evaluation.source_sentences)
        )

    primary = task.primary_metric
    n_layers = len(next(iter(by_language.values())))
    mean_by_layer = [
        float(np.mean([scores[layer][primary] for scores in by_language.values()]))
        for layer in range(n_layers)
    ]
    if settings.retrieval_layer == "best":
        layer = int(np.argmax(mean_by_layer))
    else:
        layer = int(settings.retrieval_layer)
        if not 0 <= layer < n_layers:
            raise RunError(f"retrieval_layer {layer} is not a layer of this encoder (0..{n_layers - 1})")
    logger.info("%s: layer %d (mean %s by layer: %s)", spec.task, layer, primary, mean_by_layer)
    return {
        "languages": {lang: {**scores[layer], "n": sizes[lang]} for lang, scores in by_language.items()},
        "layer": layer,
        "layer_selection": settings.retrieval_layer,
        "mean_by_layer": mean_by_layer,
        "threshold_from": threshold_from,
        "encoder_dir": str(encoder_dir),
        "train_languages": None,
        "n_train": None,
    }
