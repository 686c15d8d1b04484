"""Text statistics of generations: NEFTune Table 4 (length, repetition, diversity) and Figure 5 (overlap).

Table 4 (NEFTune Sec. 5.2) reports, per model, the mean output length in characters and in whitespace
tokens, the 2-gram repetition rate and the log-diversity. Repetition and diversity are measured on a
fixed-length prefix of each output (50 whitespace tokens for Alpaca, 100 for Evol-Instruct, 150 for
ShareGPT and OpenPlatypus; shorter outputs are dropped) so that longer outputs are not penalised for
having more chances to repeat themselves. The paper cites Kirchenbauer et al. (2023) / Li et al. (2022):

    rep_n = 100 · (1 − |unique n-grams| / |n-grams|),   diversity = ∏_{n=2..4} (1 − rep_n / 100),
    log-diversity = −log(1 − diversity)

Two conventions, both reported, because the released code does not compute the formula as written:
- `released`: Kirchenbauer et al.'s `measure_repetition_and_diversity` (lm-watermarking,
  metrics/repetition_diversity.py; John Kirchenbauer is a NEFTune author). Per text: its n-gram loop stops
  one window early (the last n-gram is not counted), rep_n is a fraction in [0, 1] but is divided by 100
  again in the diversity product, and 1 − diversity is floored at e^−20 (log-diversity at most 20). The
  paper's Table 4 values (log-diversity 8.4–16.4, far above −log(1 − 0.97) ≈ 3.5 for 1.5% repetition) are
  what this convention gives when the per-chunk values are averaged, so it is the one to compare with.
- `formula`: the formula above with every n-gram counted and rep_n in percent; same e^−20 floor.
Both are averaged over chunks; `repetition_n` is reported in percent in both.

Figure 5 plots per-example ROUGE-L (F-measure, rouge-score) and sentence BLEU (sacrebleu, n-grams up to
4, exponential smoothing) of greedy generations on training prompts against the training responses, both
on a 0–1 scale as in the figure's axes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustft.errors import DataNotFoundError
from robustft.io import read_jsonl, write_json_atomic

# NEFTune Sec. 5.2: prefix length (whitespace tokens) per training dataset; keys follow INSTRUCT_DATASETS.
CHUNK_CUTOFFS: dict[str, int] = {
    "alpaca": 50,
    "alpaca_seed": 50,
    "evol_instruct": 100,
    "sharegpt": 150,
    "open_platypus": 150,
}
CONVENTIONS = ("released", "formula")
NGRAM_ORDERS = (2, 3, 4)
MAX_LOG_DIVERSITY = 20.0  # Kirchenbauer et al.'s floor: 1 - diversity >= e^-20


def ngram_counts(tokens: Sequence[str], n: int, *, drop_last: bool = False) -> tuple[int, int]:
    """(unique, total) n-grams of a token list. `drop_last` reproduces the released loop, which stops one
    window early (`while end < len(tokens)`), so a text of n tokens has no n-gram at all."""
    windows = len(tokens) - n + (0 if drop_last else 1)
    grams = [tuple(tokens[i : i + n]) for i in range(max(windows, 0))]
    return len(set(grams)), len(grams)


def repetition_and_diversity(text: str, convention: str = "released") -> dict[str, float]:
    """Repetition rates (percent) of 2/3/4-grams, diversity and log-diversity of one whitespace-split text.

    A text without any n-gram of some order has undefined repetition; its values are NaN (the released
    code divides by zero there). Chunks of 50+ tokens always have n-grams.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    tokens = text.split()
    released = convention == "released"
    result: dict[str, float] = {}
    diversity = 1.0
    for n in NGRAM_ORDERS:
        unique, total = ngram_counts(tokens, n, drop_last=released)
        if total == 0:
            nan = math.nan
            return {**{f"repetition_{k}": nan for k in NGRAM_ORDERS}, "diversity": nan, "log_diversity": nan}
        repeated = 1 - unique / total  # a fraction
        result[f"repetition_{n}"] = 100 * repeated
        # released: the fraction is divided by 100 once more (see the module docstring)
        diversity *= 1 - (repeated / 100 if released else repeated)
    result["diversity"] = diversity
    result["log_diversity"] = -math.log(max(1 - diversity, math.exp(-MAX_LOG_DIVERSITY)))
    return result


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def chunk_statistics(texts: Sequence[str], cutoff: int) -> dict[str, Any]:
    """Repetition and diversity on the first `cutoff` whitespace tokens of each text; shorter texts are
    dropped (NEFTune Sec. 5.2). Means over the kept chunks, per convention."""
    if cutoff < 5:  # the released loop needs 5 tokens for one 4-gram
        raise ValueError(f"chunk cutoff must be >= 5 whitespace tokens, got {cutoff}")
    chunks = [" ".join(text.split()[:cutoff]) for text in texts if len(text.split()) >= cutoff]
    out: dict[str, Any] = {"cutoff": cutoff, "n_kept": len(chunks), "n_dropped": len(texts) - len(chunks)}
    for convention in CONVENTIONS:
        per_chunk = [repetition_and_diversity(chunk, convention) for chunk in chunks]
        out[convention] = {key: _mean([row[key] for row in per_chunk]) for key in (per_chunk or [{}])[0]}
    return out


def text_statistics(
    texts: Sequence[str], *, cutoff: int, output_tokens: Sequence[int | None] | None = None
) -> dict[str, Any]:
    """NEFTune Table 4 row for one set of outputs. `output_tokens` are lengths in the generator's own
    tokenizer (the generation records' `output_tokens`); the mean is null when any is missing."""
    token_lengths = list(output_tokens or [])
    has_tokens = len(token_lengths) == len(texts) and all(length is not None for length in token_lengths)
    chunk = chunk_statistics(texts, cutoff)
    return {
        "n": len(texts),
        "char_length": _mean([len(text) for text in texts]),
        "whitespace_length": _mean([len(text.split()) for text in texts]),
        "token_length": _mean(token_lengths) if has_tokens else None,
        # Table 4's two rows, on the paper's (released) convention; both conventions are under "chunk"
        "repetition_2": chunk["released"].get("repetition_2"),
        "log_diversity": chunk["released"].get("log_diversity"),
        "chunk": chunk,
    }


def overlap_scores(
    outputs: Sequence[str], references: Sequence[str], *, use_stemmer: bool = True
) -> list[dict]:
    """Per-example ROUGE-L F-measure and sentence BLEU-4 (0-1) of each output against its reference."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    bleu = BLEU(max_ngram_order=4, effective_order=True)  # sentence-level BLEU as sacrebleu recommends
    return [
        {
            "rouge_l": scorer.score(reference, output)["rougeL"].fmeasure,
            "bleu": bleu.sentence_score(output, [reference]).score / 100,
        }
        for output, reference in zip(outputs, references, strict=True)
    ]


def _describe(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "std": None}
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def overlap_summary(records: Sequence[dict[str, Any]], *, use_stemmer: bool = True) -> dict[str, Any]:
    """NEFTune Figure 5 input: per-example scores of generation records that carry a "reference"."""
    missing = [record.get("id") for record in records if "reference" not in record]
    if missing:
        raise ValueError(f"{len(missing)} generation records have no 'reference' (first ids: {missing[:5]})")
    scores = overlap_scores(
        [record["output"] for record in records],
        [record["reference"] for record in records],
        use_stemmer=use_stemmer,
    )
    return {
        "n": len(records),
        "rouge_l": _describe([score["rouge_l"] for score in scores]),
        "bleu": _describe([score["bleu"] for score in scores]),
        "per_example": [{"id": record["id"], **score} for record, score in zip(records, scores, strict=True)],
        "settings": {
            "rouge": "rougeL F-measure",
            "use_stemmer": use_stemmer,
            "bleu": "sacrebleu sentence, n<=4",
        },
    }


def cutoff_for(dataset: str | None, cutoff: int | None) -> int:
    """An explicit cutoff wins; else the dataset's NEFTune cutoff."""
    if cutoff is not None:
        return cutoff
    if dataset not in CHUNK_CUTOFFS:
        raise KeyError(
            f"no chunk cutoff for dataset {dataset!r}; give --cutoff (known: {sorted(CHUNK_CUTOFFS)})"
        )
    return CHUNK_CUTOFFS[dataset]


def cmd_text_stats(args: argparse.Namespace) -> int:
    path = Path(args.generations)
    if not path.exists():
        raise DataNotFoundError(f"generations file not found: {path}")
    records = read_jsonl(path)
    if args.overlap:
        result = overlap_summary(records, use_stemmer=not args.no_stemmer)
    else:
        cutoff = cutoff_for(args.dataset, args.cutoff)
        result = text_statistics(
            [record["output"] for record in records],
            cutoff=cutoff,
            output_tokens=[record.get("output_tokens") for record in records],
        )
        result["settings"] = {"dataset": args.dataset, "cutoff": cutoff}
    result["generations"] = str(path)
    write_json_atomic(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_example", "chunk")}, indent=2))
    return 0
