"""SMART (Jiang et al., ACL 2020): the adversarial ascent in both modes, R_s, the EMA teacher and its β
schedule, the ablations (λ_s = μ = 0 is plain fine-tuning step for step) and an end-to-end run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from robustft.methods import Batch, MethodConfigError, RunContext, build_method
from robustft.methods.divergences import squared_error, symmetric_kl
from robustft.methods.smart import SMART
from robustft.train.trainer import forward_with_embeddings

# ------------------------------------------------------------------------------------------ tiny models


class ConstantModel(nn.Module):
    """Has word embeddings, but its logits are a fixed bias whatever the input."""

    def __init__(self, num_labels: int = 3) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(11, 6)
        self.bias = nn.Parameter(torch.tensor([0.3, -1.2, 2.0][:num_labels]))

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, labels=None):
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        return SimpleNamespace(logits=self.bias.expand(hidden.shape[0], -1))


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

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, labels=None):
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(hidden.shape[:2]) if attention_mask is None else attention_mask.float()
        pooled = (torch.tanh(self.mix(hidden)) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return SimpleNamespace(logits=self.head(pooled))


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


def test_project_mode_is_the_paper_update() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    # Without dropout the gradient at |ν| ~ 1e-5 is at the level of fp32 rounding, so pin the formula at
    # larger scales (the same η/ε = 100 as the defaults).
    smart, context = prepared(model, noise_std=1e-2, radius=5e-3, step_size=0.5, bregman_weight=0.0)
    batch = toy_batch(model)
    torch.manual_seed(5)
    noise = smart.adversarial_perturbation(batch, context)
    torch.manual_seed(5)
    start = torch.randn(noise.shape) * smart.noise_std * MASK[..., None]
    grad = ascent_gradient(batch, start)
    direction = grad / grad.abs().amax(-1, keepdim=True).clamp_min(1e-30)
    expected = (start + smart.step_size * direction).clamp(-smart.radius, smart.radius) * MASK[..., None]
    assert torch.allclose(noise, expected, rtol=1e-4, atol=1e-12)
    # η = 100 ε: every coordinate where g̃ is not tiny lands on the ball's face, on the side of the gradient
    strong = direction.abs() > 0.05
    assert strong.sum() > 20
    assert torch.equal(noise[strong], smart.radius * direction[strong].sign())


@pytest.mark.parametrize("steps", [1, 3])
def test_project_mode_stays_in_the_linf_ball(tiny_bert, steps: int) -> None:
    model, batch, mask = tiny_bert
    smart, context = prepared(model, ascent_steps=steps, bregman_weight=0.0)
    noise = smart.adversarial_perturbation(batch, context)
    assert float(noise.abs().max()) <= smart.radius
    assert torch.equal(noise * (1 - mask), torch.zeros_like(noise))  # no perturbation on padding
    real = noise[mask.squeeze(-1).bool()]
    assert (real.abs() == smart.radius).float().mean() > 0.5  # η ≫ ε: most coordinates saturate


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


def test_nonfinite_ascent_gradient_skips_the_term() -> None:
    torch.manual_seed(0)
    model = PoolingModel()
    batch = toy_batch(model)
    batch.forward = lambda embeddings: embeddings.sum(1)[:, :3] * math.nan
    smart, context = prepared(model, bregman_weight=0.0)
    assert smart.extra_loss(batch, context) is None
    assert context.log["smart"]["ascent_skipped_nonfinite"] == 1
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
        ("kl_detach_opposite", 1),
        ("mask_padding", "yes"),
    ],
)
def test_invalid_settings_rejected(setting: str, value: object) -> None:
    with pytest.raises(MethodConfigError, match=re.escape(f"smart.{setting}")):
        build_method("smart", {"smart": {setting: value}})


def test_defaults_are_the_paper_values() -> None:
    smart = build_method("smart").components[0]
    assert smart.settings() == {
        "smoothness_weight": 1.0,
        "noise_std": 1e-5,
        "radius": 1e-5,
        "step_size": 1e-3,
        "ascent_steps": 1,
        "perturbation_norm": "project",
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
    args = TrainingArguments(
        output_dir=str(tmp_path / method),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = RobustTrainer(method=built, context=context, model=model, args=args, train_dataset=data)
    trainer.train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_both_weights_zero_is_plain_fine_tuning(tiny_model: str, tmp_path: Path) -> None:
    plain = _train(tiny_model, tmp_path, "finetune", None)
    disabled = _train(tiny_model, tmp_path, "off", {"smart": {"smoothness_weight": 0, "bregman_weight": 0}})
    for name, value in plain.items():
        assert torch.equal(disabled[name], value), name
    # and the comparison can tell: the Bregman term alone (no RNG, no dropout) already changes the path
    bregman = _train(tiny_model, tmp_path, "bregman", {"smart": {"smoothness_weight": 0}})
    assert any(not torch.equal(bregman[name], value) for name, value in plain.items())


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
    from robustft.train.classification import train_run
    from robustft.train.config import RunSpec, TrainConfig

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
    assert log["divergence"] == ("squared_error" if task == "stsb" else "symmetric_kl")
    assert [next(iter(c)) for c in run["method"]["components"]] == method.split("+")
