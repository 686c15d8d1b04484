"""SMART (Jiang et al., ACL 2020): the adversarial ascent in both modes and ℓ∞ scopes, where ν is added,
R_s, the precision of its forwards and of the teacher, the measured effect of ν, the EMA teacher and its
β schedule, the ablations (λ_s = μ = 0 is plain fine-tuning step for step) and an end-to-end run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from robustft.methods import Batch, MethodConfigError, RunContext, build_method
from robustft.methods.divergences import squared_error, symmetric_kl
from robustft.methods.smart import SMART, full_precision
from robustft.train.trainer import forward_with_embeddings

if TYPE_CHECKING:
    from robustft.train.trainer import RobustTrainer

# ------------------------------------------------------------------------------------------ tiny models


class ConstantModel(nn.Module):
    """Has word embeddings, but its logits are a fixed bias whatever the input."""

    def __init__(self, num_labels: int = 3) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(11, 6)
        self.bias = nn.Parameter(torch.tensor([0.3, -1.2, 2.0][:num_labels]))

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        return SimpleNamespace(logits=self.bias.expand(hidden.shape[0], -1), hidden_states=(hidden,))


class PoolingModel(nn.Module):
    """Masked mean of tanh(W·embedding) and a linear head: deterministic and input-dependent."""

    def __init__(self, num_labels: int = 3, dim: int = 6) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(11, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_labels)
        self.register_buffer("calls", torch.zeros(()))
        with torch.no_grad():  # large enough weights that 1e-5 perturbations move the output measurably
            self.embeddings.weight.mul_(3)
            self.mix.weight.mul_(3)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(hidden.shape[:2]) if attention_mask is None else attention_mask.float()
        mixed = torch.tanh(self.mix(hidden))
        pooled = (mixed * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return SimpleNamespace(logits=self.head(pooled), hidden_states=(hidden, mixed))


IDS = torch.tensor([[1, 4, 2, 7, 0], [3, 3, 9, 0, 0], [5, 6, 8, 10, 2]])
MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


def make_batch(model: nn.Module, inputs: dict[str, torch.Tensor]) -> Batch:
    """A Batch built exactly as RobustTrainer.compute_loss builds it."""
    outputs = model(**inputs)
    return Batch(
        model=model,
        inputs=inputs,
        logits=outputs.logits,
        task_loss=outputs.logits.sum() * 0,
        embed=lambda: model.get_input_embeddings()(inputs["input_ids"]),
        forward=lambda embeddings: forward_with_embeddings(model, inputs, embeddings),
    )


def toy_batch(model: nn.Module) -> Batch:
    return make_batch(model, {"input_ids": IDS, "attention_mask": MASK})


def prepared(model: nn.Module, regression: bool = False, **settings) -> tuple[SMART, RunContext]:
    smart = SMART(**settings)
    context = RunContext(seed=0, regression=regression, max_steps=100)
    smart.prepare_model(model, context)
    return smart, context


def ascent_gradient(batch: Batch, noise: torch.Tensor, regression: bool = False) -> torch.Tensor:
    """∇_ν of Σ_i ℓ_s(f(x_i + ν_i), f(x_i)) computed independently of the implementation."""
    noise = noise.clone().requires_grad_(True)
    adversarial = batch.forward(batch.embed().detach() + noise)
    clean = batch.logits.detach()
    if regression:
        loss = ((adversarial.reshape(-1) - clean.reshape(-1)) ** 2).sum()
    else:
        p, q = clean.softmax(-1), adversarial.softmax(-1)
        loss = ((p - q) * (p.log() - q.log())).sum()  # Σ_i KL(p‖q) + KL(q‖p)
    return torch.autograd.grad(loss, noise)[0]


# ------------------------------------------------------------------------------------------ the regulariser


@pytest.mark.parametrize("mode", ["project", "normalize"])
def test_zero_for_a_model_constant_in_its_input(mode: str) -> None:
    torch.manual_seed(0)
    model = ConstantModel()
    smart, context = prepared(model, perturbation_norm=mode, smoothness_weight=5.0)
    term = smart.extra_loss(toy_batch(model), context)
    assert term is not None and term.requires_grad
    assert abs(float(term)) <= 1e-10
    assert context.log["smart"]["ascent_skipped_nonfinite"] == 0


def test_positive_for_an_input_dependent_model() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(model, perturbation_norm="normalize", bregman_weight=0.0)
    batch = toy_batch(model)
    batch.logits = batch.logits.detach()  # so every gradient below comes from the adversarial branch
    term = smart.extra_loss(batch, context)
    assert float(term) > 1e-6
    term.backward()  # R_s trains θ, embeddings included (the final forward is not detached)
    assert model.head.weight.grad.abs().sum() > 0
    assert model.embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("scope", [None, "token"])
def test_project_mode_is_the_paper_update(scope: str | None) -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    # Without dropout the gradient at |ν| ~ 1e-5 is at the level of fp32 rounding, so pin the formula at
    # larger scales (the same η/ε = 100 as the defaults).
    smart, context = prepared(
        model,
        perturbation_norm="project",
        norm_scope=scope,
        noise_std=1e-2,
        radius=5e-3,
        step_size=0.5,
        bregman_weight=0.0,
    )
    assert smart.norm_scope == (scope or "example")  # the paper's x_i is the whole sequence
    batch = toy_batch(model)
    torch.manual_seed(5)
    noise = smart.adversarial_perturbation(batch, context)
    torch.manual_seed(5)
    start = torch.randn(noise.shape) * smart.noise_std * MASK[..., None]
    grad = ascent_gradient(batch, start)
    dims = (-1,) if scope == "token" else (-2, -1)
    direction = grad / grad.abs().amax(dims, keepdim=True).clamp_min(1e-30)
    expected = (start + smart.step_size * direction).clamp(-smart.radius, smart.radius) * MASK[..., None]
    # The ascent gradient of a near-zero KL is computed from a difference of close probabilities, so two
    # fp32 computations of it agree to ~1e-4 relative (η·g̃ ~ 1e-2 here: 1e-6 absolute).
    assert torch.allclose(noise, expected, rtol=0, atol=1e-5)
    # η = 100 ε: every coordinate where g̃ is not tiny lands on the ball's face, on the side of the gradient
    strong = direction.abs() > 0.05
    assert strong.sum() > 20
    assert torch.equal(noise[strong], smart.radius * direction[strong].sign())
    # per example, exactly one coordinate of each example's g̃ has |g̃| = 1; per token, one of each real token
    units = (direction.abs() == 1).sum(dims)
    units = units[MASK.bool()] if scope == "token" else units
    assert torch.equal(units, torch.ones_like(units))


@pytest.mark.parametrize("steps", [1, 3])
def test_project_mode_stays_in_the_linf_ball(tiny_bert, steps: int) -> None:
    model, batch, mask = tiny_bert
    smart, context = prepared(model, perturbation_norm="project", ascent_steps=steps, bregman_weight=0.0)
    noise = smart.adversarial_perturbation(batch, context)
    assert float(noise.abs().max()) <= smart.radius
    assert torch.equal(noise * (1 - mask), torch.zeros_like(noise))  # no perturbation on padding
    real = noise[mask.squeeze(-1).bool()]
    # η = 100 ε: every coordinate whose |g| is above 1/100 of its example's largest saturates
    assert (real.abs() == smart.radius).float().mean() > 0.25


def test_normalize_mode_is_the_mt_dnn_update() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(
        model, perturbation_norm="normalize", noise_std=1e-2, step_size=100.0, bregman_weight=0.0
    )
    batch = toy_batch(model)
    torch.manual_seed(5)
    noise = smart.adversarial_perturbation(batch, context)
    torch.manual_seed(5)
    start = torch.randn(noise.shape) * smart.noise_std * MASK[..., None]
    step = smart.step_size * ascent_gradient(batch, start)  # the RAW gradient, summed over the batch
    assert float(step.abs().max()) > 0.1 * float(start.abs().max())  # it matters next to the noise
    total = start + step
    expected = total / (total.abs().amax(-1, keepdim=True) + 1e-6) * MASK[..., None]  # no projection
    assert torch.allclose(noise, expected, rtol=0, atol=1e-4)  # entries are O(1)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_normalize_mode_has_unit_linf_per_token(tiny_bert, mask_padding: bool) -> None:
    model, batch, mask = tiny_bert
    smart, context = prepared(
        model, perturbation_norm="normalize", ascent_steps=2, mask_padding=mask_padding, bregman_weight=0.0
    )
    norms = smart.adversarial_perturbation(batch, context).abs().amax(-1)
    real = mask.squeeze(-1).bool()
    assert torch.allclose(norms[real], torch.ones_like(norms[real]), atol=1e-5)
    if mask_padding:
        assert torch.equal(norms[~real], torch.zeros_like(norms[~real]))
    else:  # mt-dnn: padding is perturbed as well
        assert torch.allclose(norms[~real], torch.ones_like(norms[~real]), atol=1e-5)


def test_normalize_mode_per_example_scope(tiny_bert) -> None:
    model, batch, mask = tiny_bert
    # two steps: after one, mt-dnn's + 1e-6 on a norm of ~4σ leaves the maximum at ~0.97
    smart, context = prepared(model, norm_scope="example", ascent_steps=2, bregman_weight=0.0)
    token_norms = smart.adversarial_perturbation(batch, context).abs().amax(-1)
    real = mask.squeeze(-1).bool()
    per_example = token_norms.amax(-1)
    assert torch.allclose(per_example, torch.ones_like(per_example), atol=1e-5)  # mt-dnn adv_norm_level 1
    assert float(token_norms[real].min()) < 0.95  # tokens below the example's maximum are not rescaled


def test_mode_defaults_and_explicit_settings() -> None:
    def settings(**given) -> dict:
        return build_method("smart", {"smart": given}).components[0].settings()

    assert settings()["step_size"] == 1e-5 and settings()["norm_scope"] == "token"  # mt-dnn's CLI
    project = settings(perturbation_norm="project")
    assert project["step_size"] == 1e-3 and project["norm_scope"] == "example"  # the paper's Alg. 1
    explicit = settings(perturbation_norm="project", step_size=1e-4, norm_scope="token")
    assert explicit["step_size"] == 1e-4 and explicit["norm_scope"] == "token"
    # settings() holds the resolved values, so a component rebuilt from them is the same
    assert settings(**project) == project


class NaNGradient(torch.autograd.Function):
    """The identity forward; its backward returns NaN."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        return values.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * math.nan


def test_nonfinite_ascent_gradient_skips_the_term() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    batch = toy_batch(model)
    model.mix.register_forward_hook(lambda module, args, output: NaNGradient.apply(output))
    smart, context = prepared(model, bregman_weight=0.0)
    assert smart.extra_loss(batch, context) is None
    assert context.log["smart"]["ascent_skipped_nonfinite"] == 1
    assert "skipped" in context.log["smart"]["effect"]  # the effect of a ν that does not exist
    smart, context = prepared(model)  # the Bregman term is still added
    term = smart.extra_loss(batch, context)
    assert term is not None and math.isfinite(float(term))
    assert context.log["smart"]["ascent_skipped_nonfinite"] == 1


def test_regression_uses_squared_error() -> None:
    torch.manual_seed(0)
    model = PoolingModel(num_labels=1)
    batch = toy_batch(model)
    smart, context = prepared(model, regression=True, bregman_weight=0.0, smoothness_weight=2.0)
    assert context.log["smart"]["divergence"] == "squared_error"
    torch.manual_seed(3)
    term = smart.extra_loss(batch, context)
    torch.manual_seed(3)
    noise = smart.adversarial_perturbation(batch, context)
    adversarial = batch.forward(batch.embed() + noise)
    expected = 2.0 * ((adversarial.reshape(-1) - batch.logits.reshape(-1)) ** 2).mean()
    assert float(expected) > 0
    assert torch.allclose(term, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("regression", [False, True])
def test_bregman_term_against_the_teacher(regression: bool) -> None:
    torch.manual_seed(0)
    model = PoolingModel(num_labels=1 if regression else 3)
    smart, context = prepared(model, regression=regression, smoothness_weight=0.0, bregman_weight=3.0)
    with torch.no_grad():
        smart._teacher.head.bias.add_(torch.tensor([0.5, -0.5, 0.0])[: model.head.out_features])
        teacher_logits = smart._teacher(input_ids=IDS, attention_mask=MASK).logits
    batch = toy_batch(model)
    term = smart.extra_loss(batch, context)
    divergence = squared_error if regression else symmetric_kl
    expected = 3.0 * divergence(batch.logits, teacher_logits)
    assert float(expected) > 1e-3
    assert torch.allclose(term, expected, rtol=1e-6, atol=0)
    term.backward()
    assert all(p.grad is None for p in smart._teacher.parameters())  # the teacher is a constant
    assert model.head.bias.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ the teacher


def test_beta_schedule() -> None:
    smart = SMART()
    for max_steps, switch in ((100, 10), (1000, 100), (35, 3)):
        for step in (1, switch):
            assert smart.beta(RunContext(seed=0, step=step, max_steps=max_steps)) == 0.99, (max_steps, step)
        for step in (switch + 1, max_steps):
            assert smart.beta(RunContext(seed=0, step=step, max_steps=max_steps)) == 0.999, (max_steps, step)


def test_ema_update() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(model, smoothness_weight=0.0)
    teacher = smart._teacher
    assert teacher is not model and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    start = {name: p.detach().clone() for name, p in teacher.named_parameters()}
    for name, p in model.named_parameters():
        assert torch.equal(start[name], p.detach()), name  # θ̃_0 = θ_0

    def take_step(step: int, beta: float) -> None:
        with torch.no_grad():  # a fake optimizer step (in place, as torch optimizers do)
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.calls.add_(1)
        before = {name: p.detach().clone() for name, p in teacher.named_parameters()}
        context.step = step
        smart.after_optimizer_step(model, context)
        for name, p in model.named_parameters():
            expected = beta * before[name] + (1 - beta) * p.detach()
            updated = dict(teacher.named_parameters())[name]
            assert torch.allclose(updated, expected, rtol=1e-6, atol=1e-7), name
        assert torch.equal(teacher.calls, model.calls)  # buffers are copied

    take_step(1, 0.99)
    take_step(10, 0.99)
    take_step(11, 0.999)
    # the teacher has its own storage: a change to the student reaches it only through the EMA
    with torch.no_grad():
        model.head.bias.add_(100.0)
    assert float((teacher.head.bias - model.head.bias).abs().min()) > 50


def test_mu_zero_creates_no_teacher() -> None:
    model = PoolingModel()
    smart, context = prepared(model, bregman_weight=0.0, smoothness_weight=0.0)
    assert smart._teacher is None
    assert context.log["smart"]["teacher"] is False
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = torch.get_rng_state()
    assert smart.extra_loss(toy_batch(model), context) is None
    smart.after_optimizer_step(model, context)
    assert torch.equal(torch.get_rng_state(), state)  # disabled hooks draw no random numbers
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])


def test_teacher_starts_from_the_model_after_earlier_components(tiny_model: str) -> None:
    from robustft.models import load_sequence_classifier_with_info

    def teacher_and_model(method: str) -> tuple[nn.Module, nn.Module, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
        original = {name: p.detach().clone() for name, p in model.named_parameters()}
        built = build_method(method)
        built.prepare_model(model, RunContext(seed=1, new_parameter_names=frozenset(new)))
        smart = next(c for c in built.components if isinstance(c, SMART))
        return smart._teacher, model, original

    name = "bert.encoder.layer.0.attention.self.query.weight"
    teacher, model, original = teacher_and_model("noisytune+smart")
    assert torch.equal(dict(teacher.named_parameters())[name], dict(model.named_parameters())[name])
    assert not torch.equal(dict(teacher.named_parameters())[name], original[name])  # perturbed
    teacher, model, original = teacher_and_model("smart+noisytune")
    assert torch.equal(dict(teacher.named_parameters())[name], original[name])  # not perturbed
    assert not torch.equal(dict(model.named_parameters())[name], original[name])


# ------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("smoothness_weight", -1.0),
        ("smoothness_weight", "1"),
        ("noise_std", -1e-5),
        ("noise_std", math.nan),
        ("radius", -1e-5),
        ("step_size", -1e-3),
        ("step_size", math.inf),
        ("ascent_steps", 0),
        ("ascent_steps", 1.5),
        ("ascent_steps", True),
        ("bregman_weight", -1.0),
        ("momentum", 1.5),
        ("momentum_final", -0.1),
        ("momentum_warmup_fraction", 2.0),
        ("perturbation_norm", "l2"),
        ("perturbation_site", "position_embeddings"),
        ("norm_scope", "batch"),
        ("adversarial_precision", "bf16"),
        ("kl_detach_opposite", 1),
        ("mask_padding", "yes"),
    ],
)
def test_invalid_settings_rejected(setting: str, value: object) -> None:
    with pytest.raises(MethodConfigError, match=re.escape(f"smart.{setting}")):
        build_method("smart", {"smart": {setting: value}})


def test_defaults_are_the_mt_dnn_regime_with_the_paper_values() -> None:
    smart = build_method("smart").components[0]
    assert smart.settings() == {
        "smoothness_weight": 1.0,
        "noise_std": 1e-5,
        "radius": 1e-5,
        "step_size": 1e-5,
        "ascent_steps": 1,
        "perturbation_norm": "normalize",
        "perturbation_site": "embedding_output",
        "norm_scope": "token",
        "adversarial_precision": "fp32",
        "kl_detach_opposite": True,
        "mask_padding": True,
        "bregman_weight": 1.0,
        "momentum": 0.99,
        "momentum_final": 0.999,
        "momentum_warmup_fraction": 0.1,
    }


class NoEmbeddings(nn.Module):
    def get_input_embeddings(self):
        return None


@pytest.mark.parametrize("model", [NoEmbeddings(), nn.Linear(2, 2)])
def test_model_without_input_embeddings_rejected(model: nn.Module) -> None:
    with pytest.raises(MethodConfigError, match=re.escape("smart.smoothness_weight")):
        SMART().prepare_model(model, RunContext(seed=0))
    SMART(smoothness_weight=0.0).prepare_model(nn.Linear(2, 2), RunContext(seed=0))  # Bregman alone is fine


# ------------------------------------------------------------------------------------------ tiny BERT


@pytest.fixture
def tiny_bert(tiny_model: str):
    """(tiny BERT in train mode, a padded batch, the (B, L, 1) mask of its real tokens)."""
    from robustft.models import load_sequence_classifier_with_info

    torch.manual_seed(0)
    model, _ = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    model.train()
    ids = torch.randint(1000, 2000, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 7:], mask[3, 4:] = 0, 0
    ids = ids * mask
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
    return model, make_batch(model, inputs), mask[..., None].float()


def _train(tiny_model: str, tmp_path: Path, method: str, components: dict | None) -> dict[str, torch.Tensor]:
    """Three optimizer steps of the real RobustTrainer; the final parameters."""
    trainer = _trainer(tiny_model, tmp_path, method, components)
    trainer.train()
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def _trainer(
    tiny_model: str, tmp_path: Path, method: str, components: dict | None, **arguments
) -> RobustTrainer:
    """A real RobustTrainer for three optimizer steps on the tiny model (TrainingArguments overridable)."""
    import datasets
    from transformers import TrainingArguments

    from robustft.models import load_sequence_classifier_with_info
    from robustft.train.trainer import RobustTrainer

    torch.manual_seed(0)
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (12, 10), generator=generator)
    mask = (torch.arange(10) < torch.randint(4, 11, (12, 1), generator=generator)).long()
    data = datasets.Dataset.from_dict(
        {"input_ids": (ids * mask).tolist(), "attention_mask": mask.tolist(), "labels": [0, 1] * 6}
    )
    built = build_method(method, components)
    context = RunContext(seed=0, new_parameter_names=frozenset(new))
    built.prepare_model(model, context)
    defaults = {"max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "seed": 0}
    args = TrainingArguments(
        output_dir=str(tmp_path / method),
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        **{**defaults, **arguments},
    )
    return RobustTrainer(method=built, context=context, model=model, args=args, train_dataset=data)


def test_both_weights_zero_is_plain_fine_tuning(tiny_model: str, tmp_path: Path) -> None:
    plain = _train(tiny_model, tmp_path, "finetune", None)
    disabled = _train(tiny_model, tmp_path, "off", {"smart": {"smoothness_weight": 0, "bregman_weight": 0}})
    for name, value in plain.items():
        assert torch.equal(disabled[name], value), name
    # and the comparison can tell: the Bregman term alone (no RNG, no dropout) already changes the path
    bregman = _train(tiny_model, tmp_path, "bregman", {"smart": {"smoothness_weight": 0}})
    assert any(not torch.equal(bregman[name], value) for name, value in plain.items())


# ------------------------------------------------------------------------------------------ precision


@pytest.mark.parametrize("precision", ["fp32", "autocast"])
def test_bf16_trainer_keeps_the_perturbation_above_rounding(
    tiny_model: str, tmp_path: Path, precision: str
) -> None:
    """The real Trainer with bf16 mixed precision on CPU (accelerate autocasts inside the model's forward), in
    the paper's project mode, whose ν (ε = 1e-5) is far below bf16's spacing. `logits_change_symmetry`, the
    cosine between the logit change from +ν and the negated change from −ν, is ≈ 1 when the change is ν's
    own (fp32: a small ν acts linearly) and well below 1 when it is rounding (autocast), which does not flip
    sign with ν."""
    trainer = _trainer(
        tiny_model,
        tmp_path,
        "smart",
        {"smart": {"perturbation_norm": "project", "adversarial_precision": precision}},
        bf16=True,
        max_steps=1,
    )
    smart = trainer.method.components[0]
    student, teacher = [], []
    trainer.model.classifier.register_forward_hook(lambda m, a, out: student.append(out.dtype))
    smart._teacher.classifier.register_forward_hook(lambda m, a, out: teacher.append(out.dtype))
    trainer.train()
    effect = trainer.context.log["smart"]["effect"]
    assert student[0] == torch.bfloat16  # the training forward does run under bf16 autocast
    assert teacher == [torch.bfloat16]  # the teacher in the student's precision
    if precision == "fp32":
        assert set(student[1:]) == {torch.float32}  # every forward of R_s and of the measurement
        assert effect["precision"] == "fp32"
        assert effect["logits_change_symmetry"] > 0.99
        assert effect["logits_change_perturbation"] > 50 * torch.finfo(torch.float32).eps
    else:  # what the test above guards against
        assert set(student) == {torch.bfloat16}
        assert effect["precision"] == "bfloat16"
        assert effect["logits_change_symmetry"] < 0.9


@pytest.mark.parametrize("precision", ["fp32", "autocast"])
def test_adversarial_forwards_leave_a_callers_autocast(precision: str) -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(model, adversarial_precision=precision, bregman_weight=0.0)
    dtypes = []
    model.mix.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch = toy_batch(model)
        dtypes.clear()
        smart.extra_loss(batch, context)
    assert set(dtypes) == {torch.float32 if precision == "fp32" else torch.bfloat16}
    assert context.log["smart"]["effect"]["precision"] == ("fp32" if precision == "fp32" else "bfloat16")


def _autocasting(model: nn.Module) -> None:
    """Wrap the model's forward in bf16 autocast the way accelerate's mixed precision does."""
    original = model.forward
    model._original_forward = original

    def forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return original(*args, **kwargs)

    model.forward = forward


class Wrapper(nn.Module):
    """A DDP / DataParallel-like wrapper: the model is `.module`, and the forward calls it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        return self.module.get_input_embeddings()


@pytest.mark.parametrize("wrapped", [False, True])
def test_full_precision_leaves_accelerates_autocast_also_through_a_wrapper(wrapped: bool) -> None:
    model = PoolingModel()
    _autocasting(model)
    autocast_forward = model.forward
    outer = Wrapper(model) if wrapped else model
    dtypes = []
    model.mix.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    outer(input_ids=IDS)
    with full_precision(outer):
        outer(input_ids=IDS)
    assert dtypes == [torch.bfloat16, torch.float32]
    assert model.forward is autocast_forward


def test_full_precision_restores_the_forward_after_an_exception() -> None:
    model = PoolingModel()
    _autocasting(model)
    autocast_forward = model.forward
    with pytest.raises(ValueError, match="inside"), full_precision(Wrapper(model)):
        assert model.forward is model._original_forward
        raise ValueError("raised inside full_precision")
    assert model.forward is autocast_forward


class SelfCastingModel(PoolingModel):
    """Enters bf16 autocast in its own forward, where full_precision cannot reach."""

    def forward(self, *args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().forward(*args, **kwargs)


def test_fp32_rs_refuses_a_forward_that_still_runs_under_autocast() -> None:
    torch.manual_seed(0)
    model = SelfCastingModel()
    smart, context = prepared(model, bregman_weight=0.0)
    batch = toy_batch(model)
    batch.autocast_dtype = torch.bfloat16  # the trainer's mixed precision
    with pytest.raises(RuntimeError, match=r"adversarial_precision='fp32'.*ran under autocast"):
        smart.extra_loss(batch, context)
    # Knowingly in the training precision, it runs.
    smart, context = prepared(model, bregman_weight=0.0, adversarial_precision="autocast")
    assert smart.extra_loss(batch, context) is not None


def test_teacher_runs_in_the_students_precision() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(model, smoothness_weight=0.0)
    dtypes = []
    smart._teacher.mix.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    batch = toy_batch(model)
    smart.extra_loss(batch, context)
    batch.autocast_dtype = torch.bfloat16  # the trainer's mixed precision, entered inside the forward
    smart.extra_loss(batch, context)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an autocast the caller entered
        smart.extra_loss(toy_batch(model), context)
    assert dtypes == [torch.float32, torch.bfloat16, torch.bfloat16]


# ------------------------------------------------------------------------------------------ measured effect


def test_measured_effect_of_each_mode(tiny_bert) -> None:
    model, batch, _ = tiny_bert
    effects = {}
    for mode in ("normalize", "project"):
        smart, context = prepared(model, perturbation_norm=mode, bregman_weight=0.0)
        state = torch.get_rng_state()
        effects[mode] = smart.measure_effect(batch, context)
        assert torch.equal(torch.get_rng_state(), state)  # the run's random stream is unchanged
        assert model.training  # and so is the model's mode
    normalize, project = effects["normalize"], effects["project"]
    assert normalize["perturbation_linf_mean"] == pytest.approx(1.0, abs=0.05)
    assert project["perturbation_linf_mean"] <= 1e-5
    for effect in effects.values():
        assert effect["precision"] == "fp32"
        assert effect["hidden_change_dropout"] > 0.01 and effect["logits_change_dropout"] > 0
        for what in ("logits", "hidden"):
            ratio = effect[f"{what}_change_perturbation"] / effect[f"{what}_change_dropout"]
            assert effect[f"{what}_ratio_to_dropout"] == pytest.approx(ratio)
    assert normalize["hidden_ratio_to_dropout"] > 1e3 * project["hidden_ratio_to_dropout"]
    assert project["logits_change_symmetry"] > 0.99  # a small ν acts linearly in fp32


def test_effect_measurement_is_retried_and_never_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    smart, context = prepared(model, bregman_weight=0.0)
    real = SMART.adversarial_perturbation
    calls = []

    def nonfinite_at_first(self, *args, **kwargs):  # the measurement's ascent on the first batch fails
        calls.append(1)
        return None if len(calls) == 1 else real(self, *args, **kwargs)

    monkeypatch.setattr(SMART, "adversarial_perturbation", nonfinite_at_first)
    with caplog.at_level("WARNING", logger="robustft.methods.smart"):
        assert smart.extra_loss(toy_batch(model), context) is not None  # training goes on
    effect = context.log["smart"]["effect"]
    assert effect["skipped"] == "the ascent gradient is not finite on this batch" and effect["attempts"] == 1
    assert "will try the next batch" in caplog.text
    smart.extra_loss(toy_batch(model), context)
    effect = context.log["smart"]["effect"]
    assert "skipped" not in effect and effect["measured_on"].startswith("training batch 2 (earlier ones: ")
    # An error inside the measurement is logged, not raised; after 10 batches it is given up.
    smart, context = prepared(model, bregman_weight=0.0)
    monkeypatch.setattr(SMART, "measure_effect", lambda self, batch, context: 1 / 0)
    for _ in range(12):
        smart.extra_loss(toy_batch(model), context)
    effect = context.log["smart"]["effect"]
    assert effect == {"skipped": "ZeroDivisionError: division by zero", "attempts": 10}


def test_effect_without_hidden_states_measures_the_logits() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    real_forward = model.forward
    model.forward = lambda *args, **kwargs: SimpleNamespace(
        logits=real_forward(*args, **kwargs).logits, hidden_states=None
    )
    smart, context = prepared(model, bregman_weight=0.0)
    smart.extra_loss(toy_batch(model), context)
    effect = context.log["smart"]["effect"]
    assert effect["hidden_skipped"] == "the model returns no hidden states"
    assert effect["hidden_ratio_to_dropout"] is None and effect["logits_change_perturbation"] > 0


def test_effect_is_measured_once(tiny_bert) -> None:
    model, batch, _ = tiny_bert
    smart, context = prepared(model, bregman_weight=0.0)
    smart.extra_loss(batch, context)
    first = dict(context.log["smart"]["effect"])
    assert first["measured_on"] == "first training batch"
    smart.extra_loss(batch, context)
    assert context.log["smart"]["effect"] == first


# ------------------------------------------------------------------------------------------ where ν goes


@pytest.mark.parametrize("site", ["embedding_output", "word_embeddings"])
def test_perturbation_site(tiny_bert, site: str) -> None:
    model, batch, _ = tiny_bert
    model.eval()
    smart, context = prepared(model, perturbation_site=site, bregman_weight=0.0)
    assert context.log["smart"]["perturbation_site_used"] == site
    inputs = {key: value for key, value in batch.inputs.items() if key != "labels"}
    with torch.no_grad():
        clean = model(**inputs, output_hidden_states=True)
        encoder_input = clean.hidden_states[0]  # BERT's embedding output
        noise = torch.randn(encoder_input.shape) * 0.1
        perturbed, used = smart._perturbed(batch, noise, output_hidden_states=True)
        unperturbed, _ = smart._perturbed(batch, torch.zeros_like(noise))
    assert used is noise
    assert torch.equal(unperturbed.logits, clean.logits)  # positions and token types are added once
    shift = perturbed.hidden_states[0] - encoder_input
    if site == "embedding_output":  # ν is added to the encoder's input itself
        assert torch.allclose(shift, noise, atol=1e-6)
    else:  # ν is added before positions, token types and LayerNorm: the model run on word embeddings + ν
        assert not torch.allclose(shift, noise, atol=1e-2)
        with torch.no_grad():
            expected = forward_with_embeddings(model, batch.inputs, batch.embed() + noise)
        assert torch.allclose(perturbed.logits, expected, atol=1e-6)


def test_site_of_models_without_an_embedding_module() -> None:
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    torch.manual_seed(0)
    llama = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            pad_token_id=0,
        )
    )
    smart, context = prepared(
        llama, bregman_weight=0.0
    )  # rotary positions: the word embeddings feed the layers
    assert context.log["smart"]["perturbation_site_used"] == "word_embeddings"
    assert smart._site_module is llama.get_input_embeddings()
    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, pad_token_id=0)
    )
    with pytest.raises(MethodConfigError, match=r"smart\.perturbation_site.*'wpe'"):
        prepared(gpt2, bregman_weight=0.0)  # learned positions are added inside GPT-2's forward
    smart, context = prepared(gpt2, perturbation_site="word_embeddings", bregman_weight=0.0)
    assert context.log["smart"]["perturbation_site_used"] == "word_embeddings"


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def mini_glue(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """glue/{RTE,STS-B} train and dev: the header plus the first 24 rows of the real files."""
    root = tmp_path_factory.mktemp("smart-data")
    for task in ("RTE", "STS-B"):
        for split in ("train", "dev"):
            source = glue_dir / task / f"{split}.tsv"
            if not source.exists():
                pytest.skip(f"{source} missing")
            lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[:25]
            target = root / "glue" / task / f"{split}.tsv"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(lines), encoding="utf-8")
    return root


@pytest.mark.parametrize(("method", "task"), [("smart", "rte"), ("noisytune+smart", "stsb")])
def test_train_run(tiny_model: str, mini_glue: Path, tmp_path: Path, method: str, task: str) -> None:
    from robustft.train.config import RunSpec, TrainConfig
    from robustft.train.glue import train_run

    spec = RunSpec(
        model=tiny_model,
        task=task,
        method=method,
        seed=1,
        train=TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, max_seq_length=32, logging_steps=1),
        data_dir=str(mini_glue),
    )
    out = tmp_path / "run"
    result = train_run(spec, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == result["status"] == "ok"
    assert all(math.isfinite(v) for v in metrics["metrics"].values())
    run = json.loads((out / "run.json").read_text())
    log = run["method_log"]["smart"]
    assert log["teacher"] is True and log["ascent_skipped_nonfinite"] == 0
    assert log["perturbation_site_used"] == "embedding_output"
    effect = log["effect"]  # the default (mt-dnn) ν acts at the scale of dropout, not far below it
    assert effect["precision"] == "fp32" and 0.05 < effect["hidden_ratio_to_dropout"] < 20
    assert log["divergence"] == ("squared_error" if task == "stsb" else "symmetric_kl")
    assert [next(iter(c)) for c in run["method"]["components"]] == method.split("+")
