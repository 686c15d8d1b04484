"""NEFTune: the noise's scale and masking in both modes, training-only activation, and a draw-for-draw
cross-check of `hf` mode against transformers' own `neftune_noise_alpha` hook."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.neftune import neftune_post_forward_hook

from robustft.methods import MethodConfigError, RunContext, build_method
from robustft.methods.neftune import NEFTune
from robustft.train.glue import train_run
from robustft.train.trainer import attach_embedding_noise

CONTEXT = RunContext(seed=0)


def test_hf_mode_matches_transformers_hook_under_the_same_rng_state() -> None:
    embedding = nn.Embedding(100, 16).train()
    ids = torch.randint(0, 100, (3, 7))
    clean = embedding(ids)

    embedding.neftune_noise_alpha = 5.0
    torch.manual_seed(11)
    expected = neftune_post_forward_hook(embedding, (ids,), clean)
    torch.manual_seed(11)
    ours = clean + NEFTune(alpha=5.0, mode="hf").embedding_noise(clean, torch.ones(3, 7), CONTEXT)
    assert torch.equal(ours, expected)


def test_hf_mode_uses_padded_length_and_noises_padding() -> None:
    embeddings = torch.zeros(2, 10, 8)
    mask = torch.tensor([[1] * 10, [1] * 3 + [0] * 7])
    noise = NEFTune(alpha=4.0, mode="hf").embedding_noise(embeddings, mask, CONTEXT)
    bound = 4.0 / math.sqrt(10 * 8)
    assert noise.abs().max() <= bound
    assert noise[1, 3:].abs().sum() > 0  # pads get noise, as in transformers
    assert noise.abs().max() > 0.9 * bound


def test_paper_mode_uses_each_unpadded_length_and_spares_padding() -> None:
    torch.manual_seed(0)
    embeddings = torch.zeros(2, 10, 8)
    mask = torch.tensor([[1] * 10, [1] * 3 + [0] * 7])
    noise = NEFTune(alpha=4.0, mode="paper").embedding_noise(embeddings, mask, CONTEXT)
    assert torch.count_nonzero(noise[1, 3:]) == 0
    long_bound, short_bound = 4.0 / math.sqrt(10 * 8), 4.0 / math.sqrt(3 * 8)
    assert noise[0].abs().max() <= long_bound
    assert long_bound < noise[1, :3].abs().max() <= short_bound  # the short example gets a larger scale


@pytest.mark.parametrize("mode", ["paper", "hf"])
def test_noise_norm_is_alpha_over_root_three_in_expectation(mode: str) -> None:
    torch.manual_seed(0)
    alpha, batch, length, dim = 10.0, 400, 32, 64
    noise = NEFTune(alpha=alpha, mode=mode).embedding_noise(torch.zeros(batch, length, dim), None, CONTEXT)
    squared_norms = noise.pow(2).sum(dim=(1, 2))  # E||ε·α/√(Ld)||² = α²/3 exactly
    assert squared_norms.mean().item() == pytest.approx(alpha**2 / 3, rel=0.01)


def test_gaussian_distribution_has_unit_variance_before_scaling() -> None:
    torch.manual_seed(0)
    noise = NEFTune(alpha=1.0, mode="hf", distribution="gaussian").embedding_noise(
        torch.zeros(64, 16, 32), None, CONTEXT
    )
    assert (noise * math.sqrt(16 * 32)).std().item() == pytest.approx(1.0, rel=0.02)


def test_noise_only_while_training_and_hook_removable() -> None:
    embedding_model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
        )
    )
    ids = torch.randint(0, 50, (2, 5))
    handle = attach_embedding_noise(embedding_model, [NEFTune(alpha=5.0)], CONTEXT, lambda: None)
    embeddings = embedding_model.get_input_embeddings()

    embedding_model.eval()
    with torch.no_grad():
        assert torch.equal(embedding_model(ids).logits, embedding_model(ids).logits)
    embedding_model.train()
    assert not torch.equal(embeddings(ids), embeddings(ids))  # works on a causal LM's embed_tokens
    handle.remove()
    assert torch.equal(embeddings(ids), embeddings(ids))


def test_no_hook_without_a_noise_component() -> None:
    assert (
        attach_embedding_noise(nn.Embedding(3, 2), build_method("finetune").components, CONTEXT, lambda: None)
        is None
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"mode": "trl"}, "mode"),
        ({"distribution": "x"}, "distribution"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict, named: str) -> None:
    with pytest.raises(MethodConfigError, match=f"neftune.{named}"):
        build_method("neftune", {"neftune": settings})


def test_model_without_input_embeddings_is_rejected() -> None:
    class NoEmbeddings(nn.Module):
        def get_input_embeddings(self) -> None:
            return None

    with pytest.raises(MethodConfigError, match="input embeddings"):
        NEFTune().prepare_model(NoEmbeddings(), RunContext(seed=0))


def test_neftune_run_end_to_end_and_hook_gone_afterwards(
    tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    from tests.train.test_glue import make_spec

    data = tmp_path / "data" / "glue" / "RTE"
    data.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (glue_dir / "RTE" / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:25]
        (data / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    result = train_run(make_spec(tiny_model, tmp_path / "data", method="neftune+noisytune"), tmp_path / "run")
    assert result["status"] == "ok"
