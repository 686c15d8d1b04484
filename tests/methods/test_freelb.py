"""FreeLB (Zhu et al., ICLR 2020; zhuchen03/FreeLB run_glue_freelb.py) on a tiny random BERT."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from robustft.methods import COMPONENTS, MethodConfigError, RunContext, build_method
from robustft.methods.freelb import FreeLB
from robustft.models import load_sequence_classifier_with_info, load_tokenizer
from robustft.train.config import RunSpec, TrainConfig
from robustft.train.glue import train_run
from robustft.train.trainer import RobustTrainer, StepFunctions

LENGTHS = (8, 5, 3)


@dataclass
class RecordingStep(StepFunctions):
    """StepFunctions that remembers the embeddings and losses of every pass."""

    seen: list[torch.Tensor] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)

    def loss_with_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(embeddings.detach().clone())
        loss, logits = super().loss_with_embeddings(embeddings)
        self.losses.append(loss.detach())
        return loss, logits

    def deltas(self) -> list[torch.Tensor]:
        with torch.no_grad():
            clean = self.embed()
        return [seen - clean for seen in self.seen]


@pytest.fixture
def model(tiny_model: str) -> nn.Module:
    torch.manual_seed(0)
    model, _ = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    return model.eval()  # no dropout: the passes differ only by δ, so the mathematics can be checked


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (len(LENGTHS), max(LENGTHS)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(LENGTHS):
        mask[row, :length] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


def _step(model: nn.Module, inputs: dict, accumulation: int = 1) -> RecordingStep:
    return RecordingStep(model, inputs, lambda loss: loss.backward(), accumulation)


def _run(component: FreeLB, model: nn.Module, inputs: dict, accumulation: int = 1, seed: int = 0):
    model.zero_grad()
    torch.manual_seed(seed)
    step = _step(model, inputs, accumulation)
    loss = component.training_step(step, RunContext(seed=0))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return step, loss, grads


def _norms(delta: torch.Tensor) -> torch.Tensor:
    return delta.reshape(delta.size(0), -1).norm(dim=1)


# ------------------------------------------------------------------------------------------ the step


def test_gradients_accumulate_over_the_k_passes_and_delta_ascends(model, inputs) -> None:
    component = FreeLB(adv_steps=3, adv_lr=0.3, adv_init_mag=0.1)
    step, loss, grads = _run(component, model, inputs)
    deltas, losses = step.deltas(), torch.stack(step.losses)
    assert len(deltas) == 3

    # the accumulated gradient is the mean of the per-pass gradients at the δ sequence it used
    model.zero_grad()
    for delta in deltas:
        embeddings = model.get_input_embeddings()(inputs["input_ids"]) + delta
        (step.loss_with_embeddings(embeddings)[0] / len(deltas)).backward()
    for name, parameter in model.named_parameters():
        assert torch.allclose(grads[name], parameter.grad, rtol=1e-4, atol=1e-8), name
    assert grads["bert.embeddings.word_embeddings.weight"].abs().sum() > 0  # the table is trained too

    # δ_{t+1} = δ_t + adv_lr · g_t / ‖g_t‖_F per example, with g_t the gradient at δ_t (unbounded here)
    for before, after in itertools.pairwise(deltas):
        leaf = before.clone().requires_grad_()
        embeddings = model.get_input_embeddings()(inputs["input_ids"]).detach() + leaf
        (gradient,) = torch.autograd.grad(step.loss_with_embeddings(embeddings)[0], leaf)
        expected = before + 0.3 * gradient / _norms(gradient).view(-1, 1, 1)
        assert torch.allclose(after, expected, atol=2e-6), float((after - expected).abs().max())

    # the step's loss is the sum of the K scaled losses = their mean
    assert float(loss) == pytest.approx(float(losses.mean()), rel=1e-6)


def test_gradient_accumulation_scales_losses_and_gradients(model, inputs) -> None:
    component = FreeLB(adv_steps=2, adv_lr=0.1, adv_init_mag=0.1)
    one_step, one_loss, one = _run(component, model, inputs, accumulation=1)
    two_step, two_loss, two = _run(component, model, inputs, accumulation=2)
    assert torch.equal(torch.stack(one_step.losses), torch.stack(two_step.losses))  # same δ sequence
    assert float(two_loss) == pytest.approx(float(one_loss) / 2, rel=1e-6)
    for name, grad in one.items():
        assert torch.allclose(two[name], grad / 2, rtol=1e-5, atol=1e-9), name


def test_l2_init_scaled_per_example_and_masked(model, inputs) -> None:
    magnitude = 0.6
    step, _, _ = _run(FreeLB(adv_steps=1, adv_init_mag=magnitude), model, inputs)
    (delta,) = step.deltas()
    hidden = delta.size(-1)
    for row, length in enumerate(LENGTHS):
        assert bool((delta[row, length:] == 0).all()), "padding gets no perturbation"
        bound = magnitude / math.sqrt(length * hidden)  # U(-1, 1) · mag / √(L_i · d)
        assert float(delta[row, :length].abs().max()) <= bound * (1 + 1e-5)
        assert float(delta[row, :length].abs().max()) > 0.8 * bound
        # E‖δ‖² = mag²/3, whatever the length
        assert float(_norms(delta[row : row + 1])) == pytest.approx(magnitude / math.sqrt(3), rel=0.15)


def test_linf_init_uniform_and_masked(model, inputs) -> None:
    step, _, _ = _run(FreeLB(adv_steps=1, adv_init_mag=0.05, norm="linf"), model, inputs)
    (delta,) = step.deltas()
    for row, length in enumerate(LENGTHS):
        assert bool((delta[row, length:] == 0).all())
    real = delta[inputs["attention_mask"].bool()]
    assert float(real.abs().max()) <= 0.05 * (1 + 1e-5)
    assert float(real.abs().max()) > 0.045
    assert float(real.min()) < -0.04  # both signs


def test_l2_projection_bounds_every_example(model, inputs) -> None:
    bounded, _, _ = _run(FreeLB(adv_steps=3, adv_lr=5.0, adv_init_mag=0.01, adv_max_norm=0.02), model, inputs)
    for delta in bounded.deltas()[1:]:
        # the step (5.0) overshoots, so every example lands on the sphere
        assert torch.allclose(_norms(delta), torch.full((3,), 0.02), rtol=1e-3)
    unbounded, _, _ = _run(FreeLB(adv_steps=3, adv_lr=5.0, adv_init_mag=0.01), model, inputs)
    assert bool((_norms(unbounded.deltas()[-1]) > 1.0).all())


def test_l2_projection_leaves_examples_inside_the_ball_alone() -> None:
    component = FreeLB(adv_lr=0.4, adv_max_norm=0.5)
    grad = torch.zeros(2, 2, 3)
    grad[:, 0, 0] = 7.0  # ‖g‖ = 7, step 0.4 along e_00
    delta = torch.zeros(2, 2, 3)
    delta[0, 1, 1] = 0.9  # example 0 starts outside the ball
    out = component.ascend(delta, grad)
    assert torch.allclose(out[1], torch.tensor([[0.4, 0, 0], [0, 0, 0]]))
    expected0 = torch.tensor([[0.4, 0, 0], [0, 0.9, 0]]) * 0.5 / math.hypot(0.4, 0.9)
    assert torch.allclose(out[0], expected0)


def test_linf_step_and_clamp(model, inputs) -> None:
    component = FreeLB(adv_lr=0.3, adv_max_norm=0.25, norm="linf")
    grad = torch.tensor([[[2.0, -1.0], [0.5, 0.0]], [[0.0, 0.1], [-0.2, 0.0]]])
    out = component.ascend(torch.zeros(2, 2, 2), grad)
    # δ + lr · g/‖g‖_∞ per example, then clamp to ±0.25
    expected = (0.3 * grad / torch.tensor([2.0, 0.2]).view(-1, 1, 1)).clamp(-0.25, 0.25)
    assert torch.allclose(out, expected)

    step, _, _ = _run(
        FreeLB(adv_steps=3, adv_lr=1.0, adv_init_mag=0.01, adv_max_norm=0.03, norm="linf"), model, inputs
    )
    for delta in step.deltas()[1:]:
        assert float(delta.abs().max()) == pytest.approx(0.03, rel=1e-4)


def test_clean_pass_prepends_one_unperturbed_pass(model, inputs) -> None:
    step, loss, _ = _run(FreeLB(adv_steps=2, adv_init_mag=0.1, clean_pass=True), model, inputs)
    deltas = step.deltas()
    assert len(deltas) == 3
    assert bool((deltas[0] == 0).all())
    assert all(float(d.abs().sum()) > 0 for d in deltas[1:])
    assert float(loss) == pytest.approx(float(torch.stack(step.losses).sum()) / 3, rel=1e-6)

    default, _, _ = _run(FreeLB(adv_steps=2, adv_init_mag=0.1), model, inputs)
    assert len(default.seen) == 2 and float(default.deltas()[0].abs().sum()) > 0  # HF: never clean


def test_missing_attention_mask_perturbs_every_position(model, inputs) -> None:
    del inputs["attention_mask"]
    step, _, _ = _run(FreeLB(adv_steps=1, adv_init_mag=0.3), model, inputs)
    (delta,) = step.deltas()
    bound = 0.3 / math.sqrt(delta.size(1) * delta.size(2))
    assert bool((delta != 0).all()) and float(delta.abs().max()) <= bound * (1 + 1e-5)


# -------------------------------------------------------------------------- through the real Trainer


def _train(tiny_model: str, method_name: str, components: dict, tmp_path: Path) -> dict[str, torch.Tensor]:
    import datasets
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    tokenizer = load_tokenizer(tiny_model)
    texts = ["a good film", "bad", "the plot was thin and slow", "great acting", "dull", "fine", "ok", "no"]
    dataset = datasets.Dataset.from_dict({**tokenizer(texts), "labels": [1, 0, 0, 1, 0, 1, 1, 0]})
    set_seed(0)
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    method = build_method(method_name, components)
    context = RunContext(seed=0, new_parameter_names=frozenset(new))
    method.prepare_model(model, context)
    args = TrainingArguments(
        output_dir=str(tmp_path / method_name),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        seed=0,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = RobustTrainer(
        method=method,
        context=context,
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_one_step_without_init_is_plain_finetuning(tiny_model: str, tmp_path: Path) -> None:
    """K = 1 and init_mag = 0: the same parameters as `finetune` after 4 steps with dropout on, bit for bit
    (so FreeLB consumes no extra randomness and scales the loss like Trainer)."""
    plain = _train(tiny_model, "finetune", {}, tmp_path)
    freelb = _train(tiny_model, "freelb", {"freelb": {"adv_steps": 1, "adv_init_mag": 0.0}}, tmp_path)
    assert all(torch.equal(freelb[name], value) for name, value in plain.items())
    perturbed = _train(tiny_model, "freelb", {"freelb": {"adv_steps": 1, "adv_init_mag": 0.1}}, tmp_path)
    assert not all(torch.equal(perturbed[name], value) for name, value in plain.items())


def test_train_run_end_to_end(tiny_model: str, glue_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "dev"):
        lines = (glue_dir / "RTE" / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        target = data / "glue" / "RTE" / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines[:25]), encoding="utf-8")
    spec = RunSpec(
        model=tiny_model,
        task="rte",
        method="freelb",
        seed=1,
        train=TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, max_seq_length=32, logging_steps=1),
        data_dir=str(data),
    )
    result = train_run(spec, tmp_path / "run")
    assert result["status"] == "ok"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "ok"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["method_log"]["freelb"]["passes_per_step"] == 3
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses and all(math.isfinite(v) and 0 < v < 5 for v in losses)  # ≈ CE of 2 classes, not K×


# ---------------------------------------------------------------------------------------- settings


def test_defaults() -> None:
    (component,) = build_method("freelb").components
    assert component.settings() == {
        "adv_steps": 3,
        "adv_lr": 0.1,
        "adv_init_mag": 0.1,
        "adv_max_norm": 0.0,
        "norm": "l2",
        "clean_pass": False,
    }
    assert FreeLB.owns_training_step


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("adv_steps", 0),
        ("adv_steps", 2.0),
        ("adv_steps", True),
        ("adv_lr", -0.1),
        ("adv_lr", math.nan),
        ("adv_init_mag", -0.1),
        ("adv_init_mag", math.inf),
        ("adv_max_norm", -1.0),
        ("adv_max_norm", "0.3"),
        ("norm", "l1"),
        ("clean_pass", "yes"),
    ],
)
def test_invalid_settings_rejected(setting: str, value) -> None:
    with pytest.raises(MethodConfigError, match=f"freelb.{setting}"):
        build_method("freelb", {"freelb": {setting: value}})


def test_model_without_input_embeddings_rejected() -> None:
    class NoEmbeddings(nn.Module):
        def get_input_embeddings(self) -> None:
            return None

    with pytest.raises(MethodConfigError, match="input embeddings"):
        FreeLB().prepare_model(NoEmbeddings(), RunContext(seed=0))


def test_two_step_owners_rejected() -> None:
    others = sorted(n for n, c in COMPONENTS.items() if c.owns_training_step and n != "freelb")
    if not others:
        pytest.skip("no other component owns the training step yet")
    with pytest.raises(MethodConfigError, match="training step"):
        build_method(f"freelb+{others[0]}")


def test_freelb_with_a_loss_term_component_is_rejected() -> None:
    with pytest.raises(MethodConfigError, match="cannot add loss terms"):
        build_method("freelb+r3f")
