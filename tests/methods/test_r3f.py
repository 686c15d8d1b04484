"""R3F (Aghajanyan et al., 2020; fairseq examples/rxf): the noisy symmetric-KL term on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from robustft.methods import Batch, MethodConfigError, RunContext, build_method
from robustft.methods.r3f import R3F
from robustft.models import load_sequence_classifier_with_info
from robustft.train.config import RunSpec, TrainConfig
from robustft.train.glue import train_run
from robustft.train.trainer import forward_with_embeddings


class TinyClassifier(nn.Module):
    """Embedding table + mean pooling + linear head: small enough to compute the term by hand."""

    def __init__(self, vocab: int = 7, dim: int = 3, outputs: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, outputs)

    def get_input_embeddings(self) -> nn.Module:
        return self.embedding

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(embeddings).mean(dim=1))


class Recorder:
    """batch.forward that remembers what it was given."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.inputs = model, []

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        self.inputs.append(embeddings)
        return self.model(embeddings)


def _batch(model: TinyClassifier, ids: torch.Tensor, clean_logits: torch.Tensor | None = None):
    recorder = Recorder(model)
    logits = model(model.embedding(ids)) if clean_logits is None else clean_logits
    batch = Batch(
        model=model,
        inputs={"input_ids": ids},
        logits=logits,
        task_loss=logits.sum() * 0,
        embed=lambda: model.embedding(ids),
        forward=recorder,
    )
    return batch, recorder


@pytest.fixture
def tiny() -> tuple[TinyClassifier, torch.Tensor]:
    torch.manual_seed(0)
    return TinyClassifier(), torch.tensor([[1, 2, 3, 0], [4, 5, 6, 6], [2, 2, 1, 3]])


def test_term_matches_hand_computation(tiny) -> None:
    model, ids = tiny
    sigma, lam = 0.3, 0.7
    batch, recorder = _batch(model, ids)
    term = R3F(noise_eps=sigma, r3f_lambda=lam).extra_loss(batch, RunContext(seed=0))

    (noisy_input,) = recorder.inputs
    noise = (noisy_input - model.embedding(ids)).detach().double()
    assert bool((noise.abs() <= sigma + 1e-6).all()) and bool((noise != 0).all())
    with torch.no_grad():
        embeddings = model.embedding.weight.double()[ids]
        head_w, head_b = model.head.weight.double(), model.head.bias.double()
        p = torch.softmax(torch.tanh(embeddings).mean(1) @ head_w.T + head_b, dim=-1)
        q = torch.softmax(torch.tanh(embeddings + noise).mean(1) @ head_w.T + head_b, dim=-1)
        per_example = (p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)
        expected = lam * per_example.sum() / ids.size(0)  # batchmean
    assert term.dtype == torch.float32
    assert float(term) == pytest.approx(float(expected), rel=1e-4)
    assert float(term) > 1e-4  # not trivially zero


def test_gradients_flow_through_both_sides_but_not_into_the_table(tiny) -> None:
    model, ids = tiny
    clean = model(model.embedding(ids)).detach().requires_grad_()  # a leaf stands for the clean branch
    batch, _ = _batch(model, ids, clean_logits=clean)
    model.zero_grad()
    R3F(noise_eps=0.3).extra_loss(batch, RunContext(seed=0)).backward()
    # clean side: not detached (fairseq), unlike SMART's mt-dnn criterion
    assert clean.grad is not None and float(clean.grad.abs().sum()) > 0
    # noisy side: the head gets gradients only through the noisy forward here
    assert model.head.weight.grad is not None and float(model.head.weight.grad.abs().sum()) > 0
    # the noisy branch starts from detached embeddings
    assert model.embedding.weight.grad is None


def test_uniform_noise_bounded_on_every_position() -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(4, 16, 64)
    noise = R3F(noise_eps=1e-3).noise(embeddings)
    assert noise.dtype == torch.float32 and noise.shape == embeddings.shape
    assert bool((noise.abs() <= 1e-3).all())
    assert float(noise.max()) == pytest.approx(1e-3, rel=0.01)
    assert float(noise.min()) == pytest.approx(-1e-3, rel=0.01)
    assert float(noise.std()) == pytest.approx(1e-3 / math.sqrt(3), rel=0.03)
    assert bool((noise != 0).all())  # all positions (fairseq noises padding too)


def test_normal_noise_has_std_sigma() -> None:
    torch.manual_seed(0)
    noise = R3F(noise_eps=1e-3, noise_type="normal").noise(torch.zeros(8, 32, 64))
    assert float(noise.std()) == pytest.approx(1e-3, rel=0.03)
    assert abs(float(noise.mean())) < 1e-4
    assert float(noise.abs().max()) > 2.5e-3  # unbounded, unlike the uniform draw


def test_lambda_zero_skips_the_noisy_forward(tiny) -> None:
    model, ids = tiny

    def fail(_: torch.Tensor) -> torch.Tensor:
        raise AssertionError("no second forward when λ = 0")

    batch, _ = _batch(model, ids)
    batch.forward = fail
    assert R3F(r3f_lambda=0.0).extra_loss(batch, RunContext(seed=0)) is None


def test_regression_uses_squared_error(tiny) -> None:
    torch.manual_seed(0)
    model, ids = TinyClassifier(outputs=1), tiny[1]
    batch, recorder = _batch(model, ids)
    term = R3F(noise_eps=0.3, r3f_lambda=2.0).extra_loss(batch, RunContext(seed=0, regression=True))
    noisy = model(recorder.inputs[0]).detach().reshape(-1)
    expected = 2.0 * ((noisy - batch.logits.detach().reshape(-1)) ** 2).mean()
    assert float(term) == pytest.approx(float(expected), rel=1e-5)
    assert float(term) > 0  # fairseq drops the term for regression; we keep it


def test_inputs_embeds_path_adds_positions_once(tiny_model: str) -> None:
    """σ = 0 without dropout: the noisy forward must equal the clean one (mt-dnn's bug adds positions
    twice and would give a non-zero term)."""
    torch.manual_seed(0)
    model, _ = load_sequence_classifier_with_info(tiny_model, num_labels=3)
    model.eval()
    inputs = {
        "input_ids": torch.tensor([[101, 2023, 2003, 102, 0], [101, 7592, 2088, 999, 102]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
        "token_type_ids": torch.zeros(2, 5, dtype=torch.long),
        "labels": torch.tensor([0, 2]),
    }
    outputs = model(**inputs)
    batch = Batch(
        model=model,
        inputs=inputs,
        logits=outputs.logits,
        task_loss=outputs.loss,
        embed=lambda: model.get_input_embeddings()(inputs["input_ids"]),
        forward=lambda e: forward_with_embeddings(model, inputs, e),
    )
    assert float(R3F(noise_eps=0.0).extra_loss(batch, RunContext(seed=0))) == pytest.approx(0.0, abs=1e-10)
    assert float(R3F(noise_eps=0.5).extra_loss(batch, RunContext(seed=0))) > 1e-6


def test_defaults_are_fairseq_cli_defaults() -> None:
    (component,) = build_method("r3f").components
    assert (component.noise_eps, component.r3f_lambda, component.noise_type) == (1e-5, 1.0, "uniform")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("noise_eps", -1e-5),
        ("noise_eps", math.nan),
        ("noise_eps", True),
        ("r3f_lambda", -0.1),
        ("r3f_lambda", math.inf),
        ("r3f_lambda", "1.0"),
        ("noise_type", "gaussian"),
    ],
)
def test_invalid_settings_rejected(setting: str, value) -> None:
    with pytest.raises(MethodConfigError, match=f"r3f.{setting}"):
        build_method("r3f", {"r3f": {setting: value}})


def test_model_without_input_embeddings_rejected() -> None:
    class NoEmbeddings(nn.Module):
        def get_input_embeddings(self) -> None:
            return None

    with pytest.raises(MethodConfigError, match="input embeddings"):
        R3F().prepare_model(NoEmbeddings(), RunContext(seed=0))


@pytest.mark.parametrize(
    ("task", "folder", "divergence"), [("rte", "RTE", "symmetric_kl"), ("stsb", "STS-B", "squared_error")]
)
def test_train_run_end_to_end(
    task: str, folder: str, divergence: str, tiny_model: str, glue_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for split in ("train", "dev"):
        lines = (glue_dir / folder / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        target = data / "glue" / folder / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines[:25]), encoding="utf-8")
    settings = {"noise_eps": 1e-3, "r3f_lambda": 0.5, "noise_type": "uniform"}
    spec = RunSpec(
        model=tiny_model,
        task=task,
        method="r3f",
        seed=1,
        components={"r3f": settings},
        train=TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, max_seq_length=32, logging_steps=1),
        data_dir=str(data),
    )
    result = train_run(spec, tmp_path / "run")
    assert result["status"] == "ok"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "ok"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["method_log"]["r3f"]["divergence"] == divergence
    assert run["method"]["components"] == [{"r3f": settings}]
