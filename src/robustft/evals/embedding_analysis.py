"""NEFTune's embedding analyses (Jain et al., ICLR 2024, Figures 6-8): what the noise does to a model's
input-embedding matrix E (V × d), with no training.

- Figure 6: token ids of training samples are embedded with E, NEFTune's noise is added exactly as in
  training (robustft.methods.neftune, `paper` mode: uniform in [-1, 1] scaled by α/√(L·d), L the sample's
  length), and each noisy vector is snapped to its nearest row of E; a token *flipped* when that row is
  not its own. Reported per sample as the % of its tokens that flipped.
- Figure 8: every row of E (or a seeded sample of `max_vocab` rows) is taken as a member of a length-L
  sequence, noised at α/√(L·d), and snapped back: the number of rows that flip, per α and L.
- Figure 7: the top-k singular values of the embedding similarity E·Eᵀ, computed from the SVD of E (the
  singular values of E·Eᵀ are the squares of E's; no V × V matrix is formed), for the base model and for
  the finished SFT runs of the config (± NEFTune).

Nearest neighbours are Euclidean, as in the paper, searched over the whole vocabulary in blocks of
`chunk_rows` query vectors (‖x‖² − 2x·Eᵀ + ‖E‖², argmin per row), so memory stays at chunk_rows × V floats.
The same uniform draws are used for every α (common random numbers: the noise at α = 10 is twice the noise
at α = 5), so the flip counts of one model grow with α by construction rather than by chance.

Outputs are the track's tables `embedding_flips.csv` (one row per sample and α, or per α and L) and
`embedding_spectra.csv` (one row per singular value), read by the artifacts neftune/figure6-8. Torch,
transformers and pandas are imported inside the functions: the workflow calls `embedding_settings` and
`spectrum_runs` while it parses the Snakefile.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DISTANCE = "euclidean"
FLIPS_TABLE = "embedding_flips"
SPECTRA_TABLE = "embedding_spectra"
FIGURE6, FIGURE8 = "figure6", "figure8"
BASE = "base"  # the checkpoint name of the untuned model in embedding_spectra.csv
ARMS = ("baseline", "neftune")  # the SFT runs Figure 7 compares with the base model
# The tables' columns, so that a table without rows still has its header.
FLIP_COLUMNS = [
    "figure",  # figure6: one training sample at one α; figure8: the vocabulary at one α and L
    "model",
    "alpha",
    "length",  # L of the noise scale α/√(L·d): the sample's length (figure6) or the sequence length (figure8)
    "item",  # figure6: the sample's index among those drawn
    "n_tokens",  # tokens noised: the sample's (figure6) or the vocabulary rows' (figure8)
    "n_flipped",
    "vocab_size",
    "dim",
    "dataset",
    "source",
    "max_vocab",
    "seed",
    "distance",
]
SPECTRUM_COLUMNS = [
    "model",
    "checkpoint",  # base, or the run's method
    "arm",  # base, baseline (plain SFT) or neftune
    "dataset",
    "recipe",
    "method",
    "seed",
    "run_dir",
    "sft_status",
    "status",  # ok or not run
    "reason",
    "rank",
    "singular_value",  # of E·Eᵀ
    "vocab_size",
    "dim",
]


@dataclass(frozen=True)
class EmbeddingSettings:
    """The config's `instruct.embeddings` block, with the track's models and training set filled in
    (embedding_settings). Defaults are the schema's."""

    models: tuple[str, ...]
    dataset: str
    samples: int = 1000  # Figure 6: training samples embedded
    max_length: int = 512  # Figure 6: tokens per sample at most (the paper's SFT length)
    sample_alphas: tuple[float, ...] = (5.0, 10.0, 15.0, 25.0, 50.0)
    vocab_alphas: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
    lengths: tuple[int, ...] = (32, 64, 128, 256, 512)
    max_vocab: int | None = None  # Figure 8: rows noised at most (a seeded sample); None: all of E
    top_k: int = 100  # Figure 7
    chunk_rows: int = 1024  # query vectors per distance block
    batch_size: int = 16  # Figure 6: samples noised together
    seed: int = 0
    precision: str = "fp32"  # the dtype the models are loaded in; E is analysed in fp32
    baseline: str = "finetune"  # Figure 7: the plain SFT method

    def __post_init__(self) -> None:
        for name in ("samples", "max_length", "top_k", "chunk_rows", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"instruct.embeddings.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_vocab is not None and self.max_vocab < 1:
            raise ValueError(f"instruct.embeddings.max_vocab must be >= 1 or null, got {self.max_vocab}")
        if any(not 0 <= alpha <= 100 for alpha in (*self.sample_alphas, *self.vocab_alphas)):
            raise ValueError("instruct.embeddings alphas must be in [0, 100], NEFTune's range")
        if any(length < 1 for length in self.lengths):
            raise ValueError(f"instruct.embeddings.lengths must be >= 1, got {list(self.lengths)}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EmbeddingSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"instruct.embeddings: unknown settings {unknown}; known: {sorted(known)}")
        values = dict(raw)
        for key in ("models", "sample_alphas", "vocab_alphas", "lengths"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def embedding_settings(instruct_block: Mapping[str, Any]) -> dict[str, Any]:
    """The config's `instruct.embeddings` with its defaults resolved: no models means the track's models,
    no dataset the track's first training set; the report's baseline names Figure 7's plain SFT arm."""
    block = dict(instruct_block.get("embeddings") or {})
    block["models"] = list(block.get("models") or instruct_block["models"])
    block["dataset"] = block.get("dataset") or instruct_block["datasets"][0]
    block["baseline"] = instruct_block.get("report", {}).get("baseline", "finetune")
    return block


def spectrum_runs(
    grid: Iterable[Sequence[Any]], settings: Mapping[str, Any], recipe: str = "default"
) -> list[dict[str, Any]]:
    """The SFT runs of an instruct grid (model, dataset, recipe, method, seed) whose embeddings Figure 7
    compares with their base model's: the analysed models trained on the analysed set with `recipe`,
    plain (the report's baseline) or with NEFTune (a method named neftune*, uniform noise), every seed."""
    runs = []
    for model, dataset, run_recipe, method, seed in dict.fromkeys(tuple(run) for run in grid):
        if model not in settings["models"] or dataset != settings["dataset"] or run_recipe != recipe:
            continue
        if method == settings["baseline"]:
            arm = "baseline"
        elif "neftune" in method and "gauss" not in method:
            arm = "neftune"
        else:
            continue
        runs.append(
            {"model": model, "dataset": dataset, "recipe": recipe, "method": method, "seed": seed, "arm": arm}
        )
    return runs


# ------------------------------------------------------------------------------------------ computation


def snap_to_vocabulary(
    noisy: torch.Tensor, token_ids: torch.Tensor, vocabulary: torch.Tensor, chunk_rows: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest row of `vocabulary` for each row of `noisy`, whether it flipped), Euclidean.

    Squared distances ‖x‖² − 2x·Eᵀ + ‖E‖² for `chunk_rows` vectors at a time (chunk_rows × V floats in
    memory), argmin per row. A vector flipped when the row argmin found is strictly nearer than its own
    token's (`token_ids`), both measured directly: a vocabulary with duplicate rows then does not count a
    tie as a flip, whichever of the equal rows argmin happens to return.
    """
    import torch

    if noisy.dim() != 2 or vocabulary.dim() != 2 or noisy.size(1) != vocabulary.size(1):
        raise ValueError(
            f"shapes {tuple(noisy.shape)} and {tuple(vocabulary.shape)} do not match (n, d), (V, d)"
        )
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    row_norms = vocabulary.pow(2).sum(dim=1)
    nearest = torch.empty(noisy.size(0), dtype=torch.long, device=noisy.device)
    flipped = torch.empty(noisy.size(0), dtype=torch.bool, device=noisy.device)
    for start in range(0, noisy.size(0), chunk_rows):
        block = noisy[start : start + chunk_rows]
        distances = block.pow(2).sum(dim=1, keepdim=True) - 2 * block @ vocabulary.T + row_norms
        index = distances.argmin(dim=1)
        # The expanded form loses ~1e-7·‖x‖² to rounding, more than a small noise moves a vector: decide
        # the flip on the direct distances to the own row and to the row argmin found.
        own_rows = vocabulary[token_ids[start : start + chunk_rows]]
        own = (block - own_rows).pow(2).sum(dim=1)
        best = (block - vocabulary[index]).pow(2).sum(dim=1)
        nearest[start : start + len(block)] = index
        flipped[start : start + len(block)] = best < own
    return nearest, flipped


def neftune_noise(
    embeddings: torch.Tensor, alpha: float, attention_mask: torch.Tensor | None, seed: int
) -> torch.Tensor:
    """NEFTune's training noise for (batch, L, d) `embeddings` (the package's own implementation, `paper`
    mode: L each row's unmasked length, padding not noised), drawn from a generator seeded with `seed` so
    that every α gets the same uniform draws."""
    import torch

    from robustft.methods.base import RunContext
    from robustft.methods.neftune import NEFTune

    method = NEFTune(alpha=float(alpha), mode="paper", distribution="uniform")
    devices = [embeddings.device] if embeddings.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # never disturb the caller's RNG
        torch.manual_seed(seed)  # seeds the CUDA generators too
        return method.embedding_noise(embeddings, attention_mask, RunContext(seed=seed))


def _stream_seed(*parts: int) -> int:
    """A seed for one noise draw, distinct for each (settings seed, figure, batch or length)."""
    import numpy as np

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def sample_flips(
    vocabulary: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    alphas: Iterable[float],
    *,
    chunk_rows: int = 1024,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Figure 6: for each sequence (token ids) and α, {"alpha", "item", "length", "n_tokens", "n_flipped"}:
    how many of its tokens snap to another vocabulary row once noised as in training (L = its length)."""
    import torch

    alphas = list(alphas)
    rows = []
    for batch_index, start in enumerate(range(0, len(sequences), batch_size)):
        batch = sequences[start : start + batch_size]
        longest = max(len(ids) for ids in batch)
        ids = torch.zeros(len(batch), longest, dtype=torch.long, device=vocabulary.device)
        mask = torch.zeros(len(batch), longest, device=vocabulary.device)
        for row, token_ids in enumerate(batch):
            ids[row, : len(token_ids)] = torch.as_tensor(token_ids, dtype=torch.long)
            mask[row, : len(token_ids)] = 1
        embeddings, real = vocabulary[ids], mask.bool()
        which_sample = torch.arange(len(batch), device=vocabulary.device).view(-1, 1).expand_as(ids)[real]
        for alpha in alphas:
            noisy = embeddings + neftune_noise(embeddings, alpha, mask, _stream_seed(seed, 6, batch_index))
            _, flipped = snap_to_vocabulary(noisy[real], ids[real], vocabulary, chunk_rows)
            counts = torch.zeros(len(batch), device=vocabulary.device).index_add_(
                0, which_sample, flipped.float()
            )
            for row, token_ids in enumerate(batch):
                rows.append(
                    {
                        "alpha": float(alpha),
                        "item": start + row,
                        "length": len(token_ids),
                        "n_tokens": len(token_ids),
                        "n_flipped": int(counts[row].item()),
                    }
                )
    return rows


def vocabulary_rows(vocab_size: int, max_vocab: int | None, seed: int) -> torch.Tensor:
    """The rows Figure 8 noises: all of them, or a seeded random `max_vocab` of them in index order."""
    import torch

    if max_vocab is None or max_vocab >= vocab_size:
        return torch.arange(vocab_size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(vocab_size, generator=generator)[:max_vocab].sort().values


def vocabulary_flips(
    vocabulary: torch.Tensor,
    alphas: Iterable[float],
    lengths: Iterable[int],
    *,
    max_vocab: int | None = None,
    chunk_rows: int = 1024,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Figure 8: for each L and α, {"alpha", "length", "n_tokens", "n_flipped"}: how many vocabulary rows
    snap to another row when each is noised as a member of a length-L sequence (scale α/√(L·d)).

    The rows are laid out as consecutive length-L sequences (the last one filled up with zero rows, which
    are dropped again), so the package's own noise function gives each row exactly the scale of training.
    """
    import torch

    rows_used = vocabulary_rows(vocabulary.size(0), max_vocab, seed).to(vocabulary.device)
    n, dim = len(rows_used), vocabulary.size(1)
    alphas, results = list(alphas), []
    for length in lengths:
        sequences = math.ceil(n / length)
        laid_out = torch.zeros(sequences * length, dim, dtype=vocabulary.dtype, device=vocabulary.device)
        laid_out[:n] = vocabulary[rows_used]
        laid_out = laid_out.view(sequences, length, dim)
        for alpha in alphas:
            noise = neftune_noise(laid_out, alpha, None, _stream_seed(seed, 8, length))
            noisy = (laid_out + noise).view(-1, dim)[:n]
            _, flipped = snap_to_vocabulary(noisy, rows_used, vocabulary, chunk_rows)
            results.append(
                {"alpha": float(alpha), "length": int(length), "n_tokens": n, "n_flipped": int(flipped.sum())}
            )
    return results


def top_singular_values(vocabulary: torch.Tensor, k: int = 100) -> list[float]:
    """The k largest singular values of E·Eᵀ, largest first: the squares of E's (E = UΣVᵀ gives
    E·Eᵀ = UΣ²Uᵀ, which is symmetric positive semi-definite), computed in float64 from E alone."""
    import torch

    values = torch.linalg.svdvals(vocabulary.detach().to("cpu", torch.float64))
    return [float(v) for v in values[:k].pow(2)]


# ------------------------------------------------------------------------------------------ models, data


def load_embedding_matrix(
    model: str, *, sft_dir: str | Path | None = None, dtype: str = "fp32", cache_dir: str | None = None
) -> tuple[torch.Tensor, Any]:
    """(E as an fp32 tensor on the CPU, the tokenizer) of a registry model, Hub id or model folder, or of
    the model a finished SFT run saved (`sft_dir`). The rest of the network is dropped at once."""
    import torch

    from robustft.models import get_model_spec, load_causal_lm, load_sequence_classifier, load_tokenizer

    if sft_dir is not None:
        from robustft.train.sft import load_finetuned

        network, tokenizer = load_finetuned(sft_dir, dtype=dtype, cache_dir=cache_dir)
    elif get_model_spec(model, cache_dir).kind == "causal-lm":
        network, tokenizer = load_causal_lm(model, dtype=dtype, cache_dir=cache_dir)
    else:  # an encoder: its word embeddings (the new classification head is never used)
        network = load_sequence_classifier(model, num_labels=2, cache_dir=cache_dir)
        tokenizer = load_tokenizer(model, cache_dir)
    matrix = network.get_input_embeddings().weight.detach().to("cpu", torch.float32).clone()
    del network
    return matrix, tokenizer


def training_token_ids(
    tokenizer: Any, dataset: str, data_dir: str | Path, settings: EmbeddingSettings, cache_dir: str | None
) -> tuple[list[list[int]], str]:
    """(token ids of `settings.samples` training examples drawn with the settings' seed, where they came
    from): prompt and response as one text, as SFT sees it, cut at `max_length` tokens."""
    from robustft.data.instruct import load_instruct_dataset, subsample

    data = subsample(load_instruct_dataset(dataset, data_dir, cache_dir), settings.samples, settings.seed)
    encoded = tokenizer(
        [example.prompt + example.completion for example in data.examples],
        truncation=True,
        max_length=settings.max_length,
    )["input_ids"]
    return [list(ids) for ids in encoded if ids], data.source


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ------------------------------------------------------------------------------------------ tables


def flip_table(
    settings: EmbeddingSettings, data_dir: str | Path, cache_dir: str | None = None, device: str = "auto"
) -> list[dict[str, Any]]:
    """Every row of embedding_flips.csv: Figures 6 and 8 for each of the settings' models."""
    device = pick_device(device)
    rows = []
    for model in settings.models:
        began = time.perf_counter()
        matrix, tokenizer = load_embedding_matrix(model, dtype=settings.precision, cache_dir=cache_dir)
        matrix = matrix.to(device)
        sequences, source = training_token_ids(tokenizer, settings.dataset, data_dir, settings, cache_dir)
        common = {
            "model": model,
            "vocab_size": matrix.size(0),
            "dim": matrix.size(1),
            "seed": settings.seed,
            "distance": DISTANCE,
        }
        figure6 = sample_flips(
            matrix,
            sequences,
            settings.sample_alphas,
            chunk_rows=settings.chunk_rows,
            batch_size=settings.batch_size,
            seed=settings.seed,
        )
        rows += [
            {"figure": FIGURE6, **common, **r, "dataset": settings.dataset, "source": source} for r in figure6
        ]
        figure8 = vocabulary_flips(
            matrix,
            settings.vocab_alphas,
            settings.lengths,
            max_vocab=settings.max_vocab,
            chunk_rows=settings.chunk_rows,
            seed=settings.seed,
        )
        rows += [{"figure": FIGURE8, **common, **r, "max_vocab": settings.max_vocab} for r in figure8]
        logger.info(
            "%s: %d samples, %d rows, %.1f s",
            model,
            len(sequences),
            len(figure8),
            time.perf_counter() - began,
        )
    return rows


def spectrum_table(
    settings: EmbeddingSettings, runs: Sequence[Mapping[str, Any]], cache_dir: str | None = None
) -> list[dict[str, Any]]:
    """Every row of embedding_spectra.csv: the top-k singular values of E·Eᵀ of each model and of each
    of its runs (`runs`: spectrum_runs' records with their `run_dir`), and a "not run" row, with the
    reason, for an arm (plain SFT, NEFTune) that has no run or whose run kept no model."""
    rows = []
    for model in settings.models:
        matrix, _ = load_embedding_matrix(model, dtype=settings.precision, cache_dir=cache_dir)
        base = {"model": model, "checkpoint": BASE, "arm": BASE, "dataset": settings.dataset}
        rows += _spectrum_rows(base, matrix, settings.top_k)
        for arm in ARMS:
            mine = [run for run in runs if run["model"] == model and run["arm"] == arm]
            if not mine:
                method = settings.baseline if arm == "baseline" else "NEFTune (neftune*)"
                reason = (
                    f"this config's instruct grid has no {method} run of {model} on {settings.dataset} "
                    "(default recipe)"
                )
                rows.append({**base, "checkpoint": arm, "arm": arm, "status": "not run", "reason": reason})
            for run in mine:
                rows += _run_spectrum_rows(run, settings, cache_dir)
    return rows


def _run_spectrum_rows(
    run: Mapping[str, Any], settings: EmbeddingSettings, cache_dir: str | None
) -> list[dict[str, Any]]:
    """One SFT run's spectrum rows, or one "not run" row when it kept no model. Its SFT status (ok or
    diverged, from sft/metrics.json) rides along, so the artifact can leave diverged runs out."""
    from robustft.train.sft import MODEL_DIR

    sft_dir = Path(run["run_dir"]) / "sft"
    metrics = sft_dir / "metrics.json"
    status = json.loads(metrics.read_text(encoding="utf-8")).get("status") if metrics.is_file() else None
    keys = ("model", "dataset", "recipe", "method", "seed", "run_dir", "arm")
    described = {**{key: run[key] for key in keys}, "checkpoint": run["method"], "sft_status": status}
    if not (sft_dir / MODEL_DIR).is_dir():
        reason = f"{sft_dir / MODEL_DIR} is absent (the run kept no model: sft.save_model false?)"
        return [{**described, "status": "not run", "reason": reason}]
    tuned, _ = load_embedding_matrix(
        run["model"], sft_dir=sft_dir, dtype=settings.precision, cache_dir=cache_dir
    )
    return _spectrum_rows(described, tuned, settings.top_k)


def _spectrum_rows(described: Mapping[str, Any], matrix: torch.Tensor, top_k: int) -> list[dict[str, Any]]:
    values = top_singular_values(matrix, top_k)
    shape = {"vocab_size": matrix.size(0), "dim": matrix.size(1)}
    return [
        {**described, **shape, "status": "ok", "rank": rank, "singular_value": value}
        for rank, value in enumerate(values, start=1)
    ]


def _write_table(rows: list[dict[str, Any]], columns: list[str], out: Path) -> None:
    import pandas as pd

    from robustft.io import write_text_atomic

    write_text_atomic(out, pd.DataFrame(rows, columns=columns).to_csv(index=False))


# ------------------------------------------------------------------------------------------ CLI


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_embedding_flips(args: argparse.Namespace) -> int:
    settings = EmbeddingSettings.from_dict(args.settings)
    _set_threads(args.threads)
    began = time.perf_counter()
    rows = flip_table(settings, args.data_dir, args.cache_dir, args.device)
    _write_table(rows, FLIP_COLUMNS, Path(args.out))
    print(
        json.dumps(
            {
                "rows": len(rows),
                "seconds": round(time.perf_counter() - began, 1),
                "settings": asdict(settings),
            }
        )
    )
    return 0


def cmd_embedding_spectra(args: argparse.Namespace) -> int:
    settings = EmbeddingSettings.from_dict(args.settings)
    _set_threads(args.threads)
    rows = spectrum_table(settings, args.runs, args.cache_dir)
    _write_table(rows, SPECTRUM_COLUMNS, Path(args.out))
    print(json.dumps({"rows": len(rows), "runs": len(args.runs)}))
    return 0
