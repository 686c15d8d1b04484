"""NEFTune Figures 6-8 on hand-made embedding matrices whose answers are known: no noise flips nothing,
an isolated row never flips at small noise, two near-duplicate rows trade places, blocks change nothing,
and the spectrum of E·Eᵀ is numpy's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustft.evals import embedding_analysis as analysis
from robustft.evals.embedding_analysis import (
    EmbeddingSettings,
    embedding_settings,
    neftune_noise,
    sample_flips,
    snap_to_vocabulary,
    spectrum_runs,
    spectrum_table,
    top_singular_values,
    vocabulary_flips,
    vocabulary_rows,
)
from robustft.methods.base import RunContext
from robustft.methods.neftune import NEFTune

DIM = 4


def grid_vocabulary(rows: int = 12, spacing: float = 10.0) -> torch.Tensor:
    """Rows far apart (`spacing` between neighbours along the first axis), then row 1 moved to within
    1e-3 of row 0: a near-duplicate pair among isolated tokens."""
    matrix = torch.zeros(rows, DIM, dtype=torch.float64)
    matrix[:, 0] = spacing * torch.arange(rows, dtype=torch.float64)
    matrix[:, 1] = 1.0
    matrix[1] = matrix[0] + torch.tensor([1e-3, 0.0, 0.0, 0.0], dtype=torch.float64)
    return matrix


def test_without_noise_no_token_flips() -> None:
    vocabulary = grid_vocabulary()
    vocabulary[5] = vocabulary[4]  # an exact duplicate: a tie is not a flip
    ids = torch.arange(len(vocabulary))
    nearest, flipped = snap_to_vocabulary(vocabulary.clone(), ids, vocabulary, chunk_rows=5)
    assert not flipped.any()
    assert (nearest[ids != 5] == ids[ids != 5]).all()
    cells = vocabulary_flips(vocabulary, [0.0], [4, 8], seed=3)
    assert [c["n_flipped"] for c in cells] == [0, 0]
    samples = sample_flips(vocabulary, [[0, 1, 2], [4, 5, 6, 7, 1]], [0.0], batch_size=2)
    assert [r["n_flipped"] for r in samples] == [0, 0]


def test_no_spurious_flips_from_rounding_in_a_large_offset_vocabulary() -> None:
    # Rows far from the origin (‖x‖² ~ 1e6) but 1e-2 apart: the expanded distance ‖x‖² − 2x·Eᵀ + ‖E‖²
    # rounds in float32 by more than their separation, so the flip is decided on direct distances.
    generator = torch.Generator().manual_seed(0)
    vocabulary = 100.0 + 1e-2 * torch.randn(512, 128, generator=generator)
    ids = torch.arange(len(vocabulary))
    _, flipped = snap_to_vocabulary(vocabulary.clone(), ids, vocabulary, chunk_rows=64)
    assert not flipped.any()


def test_isolated_tokens_never_flip_and_near_duplicates_do() -> None:
    vocabulary = grid_vocabulary()
    length, alpha = 4, 5.0  # noise at most α/√(L·d) = 1.25 per coordinate, far below the spacing of 10
    laid_out = vocabulary.view(3, length, DIM)
    noise = neftune_noise(laid_out, alpha, None, seed=0)
    assert noise.abs().max() <= alpha / math.sqrt(length * DIM)
    _, flipped = snap_to_vocabulary((laid_out + noise).view(-1, DIM), torch.arange(12), vocabulary, 5)
    assert not flipped[2:].any()
    # Rows 0 and 1 are 1e-3 apart: over a few draws each lands nearer the other row about half the time.
    swaps = 0
    for seed in range(20):
        noisy = (laid_out + neftune_noise(laid_out, alpha, None, seed=seed)).view(-1, DIM)
        nearest, flipped = snap_to_vocabulary(noisy, torch.arange(12), vocabulary, chunk_rows=7)
        assert not flipped[2:].any()
        assert (nearest[flipped] == 1 - torch.arange(12)[flipped]).all()  # 0 -> 1 and 1 -> 0 only
        swaps += int(flipped[:2].sum())
    assert 5 < swaps < 35
    counts = vocabulary_flips(vocabulary, [alpha], [length], seed=0)[0]
    assert counts["n_tokens"] == 12 and counts["n_flipped"] <= 2


def test_large_noise_flips_isolated_tokens_too() -> None:
    vocabulary = grid_vocabulary(spacing=0.5)
    cells = vocabulary_flips(vocabulary, [0.5, 100.0], [4], seed=0)
    assert cells[0]["n_flipped"] < cells[1]["n_flipped"]
    assert cells[1]["n_flipped"] > 2


def test_chunked_search_equals_unchunked() -> None:
    generator = torch.Generator().manual_seed(0)
    vocabulary = torch.randn(300, 16, generator=generator)
    ids = torch.randint(0, 300, (257,), generator=generator)
    noisy = vocabulary[ids] + 0.6 * torch.randn(257, 16, generator=generator)
    whole = snap_to_vocabulary(noisy, ids, vocabulary, chunk_rows=10_000)
    for chunk_rows in (1, 7, 64):
        nearest, flipped = snap_to_vocabulary(noisy, ids, vocabulary, chunk_rows=chunk_rows)
        assert torch.equal(nearest, whole[0]) and torch.equal(flipped, whole[1])
    assert 0 < int(whole[1].sum()) < 257  # the check compares something
    brute = torch.cdist(noisy.double(), vocabulary.double()).argmin(dim=1)
    assert torch.equal(whole[0], brute)
    one_block = vocabulary_flips(vocabulary, [20.0, 60.0], [8, 32], chunk_rows=10_000, seed=1)
    assert vocabulary_flips(vocabulary, [20.0, 60.0], [8, 32], chunk_rows=3, seed=1) == one_block


def test_the_noise_is_neftunes_with_the_same_draws_at_every_alpha() -> None:
    embeddings = torch.randn(2, 6, DIM)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    five, ten = neftune_noise(embeddings, 5.0, mask, seed=4), neftune_noise(embeddings, 10.0, mask, seed=4)
    torch.testing.assert_close(ten, 2 * five)
    torch.manual_seed(4)
    expected = NEFTune(alpha=5.0, mode="paper").embedding_noise(embeddings, mask, RunContext(seed=0))
    torch.testing.assert_close(five, expected)
    assert (five[1, 3:] == 0).all()  # padding is not noised
    assert five[1].abs().max() <= 5.0 / math.sqrt(3 * DIM)  # L = the row's unpadded length


def test_sample_flips_counts_each_samples_tokens_with_its_own_length() -> None:
    vocabulary = grid_vocabulary(spacing=0.2)
    sequences = [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
    rows = sample_flips(vocabulary, sequences, [2.0, 30.0], batch_size=1, seed=9)
    assert [(r["item"], r["alpha"], r["length"]) for r in rows] == [
        (0, 2.0, 6),
        (0, 30.0, 6),
        (1, 2.0, 3),
        (1, 30.0, 3),
    ]
    # By hand: sample 1 alone in its batch (the second), its noise drawn as the function draws it.
    ids = torch.tensor([sequences[1]])
    embeddings = vocabulary[ids]
    noise = neftune_noise(embeddings, 30.0, torch.ones(1, 3), analysis._stream_seed(9, 6, 1))
    _, flipped = snap_to_vocabulary((embeddings + noise)[0], ids[0], vocabulary)
    assert rows[3]["n_flipped"] == int(flipped.sum())
    assert rows[0]["n_flipped"] <= rows[1]["n_flipped"]


def test_singular_values_are_those_of_e_times_e_transposed() -> None:
    vocabulary = torch.randn(40, 6, generator=torch.Generator().manual_seed(2))
    ours = top_singular_values(vocabulary, k=5)
    gram = vocabulary.double().numpy() @ vocabulary.double().numpy().T
    np.testing.assert_allclose(ours, np.linalg.svd(gram, compute_uv=False)[:5], rtol=1e-9)
    assert len(top_singular_values(vocabulary, k=100)) == 6  # at most rank d values are nonzero


def test_vocabulary_sample_is_seeded_and_capped() -> None:
    assert torch.equal(vocabulary_rows(10, None, 0), torch.arange(10))
    sample = vocabulary_rows(1000, 50, seed=1)
    assert len(sample) == 50 and torch.equal(sample, sample.sort().values)
    assert torch.equal(sample, vocabulary_rows(1000, 50, seed=1))
    assert not torch.equal(sample, vocabulary_rows(1000, 50, seed=2))


def test_settings_default_to_the_tracks_models_and_first_training_set() -> None:
    block = {"models": ["smollm2-135m"], "datasets": ["alpaca_seed", "alpaca"], "report": {"baseline": "ft"}}
    resolved = embedding_settings({**block, "embeddings": {"models": [], "dataset": None, "samples": 8}})
    assert resolved["models"] == ["smollm2-135m"] and resolved["dataset"] == "alpaca_seed"
    settings = EmbeddingSettings.from_dict(resolved)
    assert settings.samples == 8 and settings.baseline == "ft" and settings.max_vocab is None
    with pytest.raises(ValueError, match="unknown settings"):
        EmbeddingSettings.from_dict({**resolved, "alpha": 5})
    with pytest.raises(ValueError, match="max_vocab"):
        EmbeddingSettings.from_dict({**resolved, "max_vocab": 0})


def test_spectrum_runs_are_the_plain_and_uniform_neftune_runs_of_the_analysed_cell() -> None:
    grid = [
        ("m", "alpaca", "default", "finetune", 0),
        ("m", "alpaca", "default", "neftune_a5", 0),
        ("m", "alpaca", "default", "neftune_gauss_a5", 0),
        ("m", "alpaca", "epochs1", "neftune_a5", 0),
        ("m", "evol_instruct", "default", "neftune_a5", 0),
        ("other", "alpaca", "default", "finetune", 0),
        ("m", "alpaca", "default", "neftune_a5", 0),  # grids may overlap
    ]
    settings = {"models": ["m"], "dataset": "alpaca", "baseline": "finetune"}
    runs = spectrum_runs(grid, settings)
    assert [(r["method"], r["arm"]) for r in runs] == [("finetune", "baseline"), ("neftune_a5", "neftune")]


def fake_loader(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """load_embedding_matrix without a model: a fixed random matrix per (model, run); records the calls."""
    calls: list[tuple[str, str | None]] = []

    def load(model: str, *, sft_dir=None, dtype="fp32", cache_dir=None):
        calls.append((model, None if sft_dir is None else str(sft_dir)))
        seed = 0 if sft_dir is None else 1
        return torch.randn(30, 5, generator=torch.Generator().manual_seed(seed)), None

    monkeypatch.setattr(analysis, "load_embedding_matrix", load)
    return calls


def test_spectra_say_not_run_for_absent_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = fake_loader(monkeypatch)
    settings = EmbeddingSettings(models=("m",), dataset="alpaca_seed", top_k=3)
    no_model = tmp_path / "m" / "neftune_a5" / "seed0"
    (no_model / "sft").mkdir(parents=True)
    (no_model / "sft" / "metrics.json").write_text(json.dumps({"status": "ok"}))
    run = {"model": "m", "dataset": "alpaca_seed", "recipe": "default", "method": "neftune_a5", "seed": 0}
    rows = pd.DataFrame(spectrum_table(settings, [{**run, "arm": "neftune", "run_dir": str(no_model)}]))
    assert calls == [("m", None)]
    base = rows[rows["arm"] == "base"]
    assert list(base["rank"]) == [1, 2, 3] and (base["status"] == "ok").all()
    missing = rows[rows["status"] == "not run"].set_index("arm")["reason"]
    assert "no finetune run of m on alpaca_seed" in missing["baseline"]
    assert "model" in missing["neftune"] and "absent" in missing["neftune"]


def test_spectra_of_runs_that_kept_their_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = fake_loader(monkeypatch)
    settings = EmbeddingSettings(models=("m",), dataset="alpaca_seed", top_k=2)
    runs = []
    for method, arm in (("finetune", "baseline"), ("neftune_a5", "neftune")):
        run_dir = tmp_path / method / "seed0"
        (run_dir / "sft" / "model").mkdir(parents=True)
        (run_dir / "sft" / "metrics.json").write_text(json.dumps({"status": "ok"}))
        runs.append(
            {"model": "m", "dataset": "alpaca_seed", "recipe": "default", "method": method, "seed": 0}
            | {"arm": arm, "run_dir": str(run_dir)}
        )
    rows = pd.DataFrame(spectrum_table(settings, runs), columns=analysis.SPECTRUM_COLUMNS)
    assert len(calls) == 3 and (rows["status"] == "ok").all()
    assert rows.groupby("checkpoint").size().to_dict() == {"base": 2, "finetune": 2, "neftune_a5": 2}
    assert set(rows.loc[rows["arm"] != "base", "sft_status"]) == {"ok"}


def test_the_flips_command_writes_both_figures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from robustft.cli import main

    fake_loader(monkeypatch)
    monkeypatch.setattr(
        analysis,
        "training_token_ids",
        lambda tokenizer, dataset, data_dir, settings, cache_dir: ([[0, 1, 2], [3, 4]], "hand-made"),
    )
    settings = {"models": ["m"], "dataset": "alpaca_seed", "sample_alphas": [1, 50], "vocab_alphas": [3]}
    settings |= {"lengths": [4, 16], "max_vocab": 20, "chunk_rows": 4}
    out = tmp_path / "embedding_flips.csv"
    assert main(["embedding-flips", "--settings", json.dumps(settings), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == analysis.FLIP_COLUMNS
    assert table.groupby("figure").size().to_dict() == {"figure6": 4, "figure8": 2}
    vocabulary_cells = table[table["figure"] == "figure8"]
    assert set(vocabulary_cells["n_tokens"]) == {20} and set(vocabulary_cells["max_vocab"]) == {20}
    assert (table["distance"] == "euclidean").all() and set(table["vocab_size"]) == {30}


def test_the_schemas_defaults_are_the_settings_defaults() -> None:
    import dataclasses

    import yaml

    from robustft.workflow_config import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    properties = schema["properties"]["instruct"]["properties"]["embeddings"]["properties"]
    own = {f.name: f.default for f in dataclasses.fields(EmbeddingSettings)}
    for key, spec in properties.items():
        if key in ("models", "dataset"):  # resolved from the track by embedding_settings
            continue
        default = own[key]
        assert (list(default) if isinstance(default, tuple) else default) == spec["default"], key
    assert set(own) - set(properties) == {"baseline"}  # the report's baseline, filled in
