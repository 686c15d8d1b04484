"""RecAdam (Chen et al., EMNLP 2020; Sanyuan-Chen/RecAdam RecAdam.py L28-36, L116-129) on tiny models."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from robustft.methods import MethodConfigError, RunContext, build_method
from robustft.methods.recadam import RecAdam, RecAdamOptimizer, anneal_lambda

NEW = frozenset({"classifier.weight", "classifier.bias"})


class Tiny(nn.Module):
    """A 'backbone' and a new 'classifier' head; no parameter name contains a model type."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.LayerNorm(6))
        self.classifier = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def _model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def _args(lr: float = 1e-4, weight_decay: float = 0.1, eps: float = 1e-8) -> SimpleNamespace:
    return SimpleNamespace(
        learning_rate=lr, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=eps, weight_decay=weight_decay
    )


def _optimizer(model: nn.Module, args: SimpleNamespace, **settings) -> RecAdamOptimizer:
    context = RunContext(seed=0, new_parameter_names=NEW)
    component = RecAdam(**settings)
    component.prepare_model(model, context)
    return component.build_optimizer(model, args, context)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _adamw(model: nn.Module, args: SimpleNamespace) -> torch.optim.AdamW:
    """The Trainer's baseline: AdamW with biases and LayerNorm weights undecayed."""
    decayed = {"encoder.0.weight", "classifier.weight"}
    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in named if n in decayed], "weight_decay": args.weight_decay},
            {"params": [p for n, p in named if n not in decayed], "weight_decay": 0.0},
        ],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        foreach=False,
        fused=False,
    )


# ------------------------------------------------------------------------------------------ schedule


def test_sigmoid_schedule() -> None:
    assert anneal_lambda("sigmoid", 250, 0.5, 250) == 0.5
    assert anneal_lambda("sigmoid", 1000, 0.1, 1000) == 0.5
    # README setting k = 0.1, t0 = 1000: λ(1) ≈ e^-100, i.e. no task gradient at the start
    assert anneal_lambda("sigmoid", 1, 0.1, 1000) == pytest.approx(math.exp(-0.1 * 999), rel=1e-9)
    assert anneal_lambda("sigmoid", 260, 0.5, 250) == pytest.approx(1 / (1 + math.exp(-5)))
    assert anneal_lambda("sigmoid", 5000, 0.5, 250) == 1.0
    # far from t0 there is no overflow, only exact 0 and 1
    assert anneal_lambda("sigmoid", 1, 1.0, 1e6) == 0.0
    assert anneal_lambda("sigmoid", 1e6, 1.0, 0) == 1.0
    # anneal_w scales the curve (RecAdam.py `anneal_function`)
    assert anneal_lambda("sigmoid", 250, 0.5, 250, 0.5) == 0.25


def test_linear_and_constant_schedules() -> None:
    assert anneal_lambda("linear", 50, 0.5, 200) == 0.25
    assert anneal_lambda("linear", 400, 0.5, 200) == 1.0
    assert anneal_lambda("constant", 1, 0.5, 250) == 1.0
    assert anneal_lambda("constant", 1, 0.5, 250, 0.3) == 0.3


# ------------------------------------------------------------------------------------------ the update


@pytest.mark.parametrize(
    "settings",
    [
        {"anneal_fun": "constant"},  # λ ≡ w = 1
        {"anneal_fun": "sigmoid", "anneal_k": 1e4, "anneal_t0": 0},  # λ(t ≥ 1) = sigmoid(1e4) = 1
    ],
)
def test_lambda_one_is_adamw_step_for_step(settings: dict) -> None:
    # a large lr and weight decay, so that decaying after the update instead (RecAdam.py) would show
    args = _args(lr=1e-2, weight_decay=0.1)
    settings = {**settings, "pretrain_coef": 50.0}
    model, reference = _model(), _model()
    _train(model, _optimizer(model, args, **settings), steps=6)
    _train(reference, _adamw(reference, args), steps=6)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-7), name


def test_default_schedule_is_not_adamw() -> None:
    args = _args(lr=1e-4)
    model, reference = _model(), _model()
    _train(model, _optimizer(model, args), steps=1)
    _train(reference, _adamw(reference, args), steps=1)
    assert not torch.allclose(model.encoder[0].weight, reference.encoder[0].weight, atol=1e-6)
    # the head is not recalled: plain AdamW there, whatever λ is (same gradient at the first step)
    assert torch.allclose(model.classifier.weight, reference.classifier.weight, rtol=0, atol=1e-7)


def _one_step_by_hand(theta, anchor, grad, lam, args, gamma, decayed=True):
    lr, wd, eps = args.learning_rate, (args.weight_decay if decayed else 0.0), args.adam_epsilon
    theta = theta * (1 - lr * wd)
    # first Adam step: m̂ = g, v̂ = g²
    theta = theta - lr * lam * grad / (grad.abs() + eps)
    return theta - lr * (1 - lam) * gamma * (theta - anchor)


@pytest.mark.parametrize(("t0", "lam"), [(1e6, 0.0), (1, 0.5)])
def test_one_step_by_hand(t0: float, lam: float) -> None:
    """λ = 0: the backbone moves only by weight decay and the quadratic pull; λ = 1/2: both terms halve."""
    args, gamma = _args(lr=1e-2, weight_decay=0.1), 20.0
    model = _model()
    optimizer = _optimizer(model, args, pretrain_coef=gamma, anneal_k=0.7, anneal_t0=t0)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # move away from θ* so the pull has something to do
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()

    for name, p in model.named_parameters():
        decayed = name in ("encoder.0.weight", "classifier.weight")
        if name in NEW:  # plain AdamW
            expected = _one_step_by_hand(before[name], anchor[name], grads[name], 1.0, args, gamma, decayed)
        else:
            expected = _one_step_by_hand(before[name], anchor[name], grads[name], lam, args, gamma, decayed)
        assert torch.allclose(p, expected, rtol=0, atol=1e-6), name
    if lam == 0.0:  # the pull alone, written out: θ* + (1 - lr·γ)·(θ - θ*)
        name = "encoder.0.bias"  # undecayed
        expected = anchor[name] + (1 - args.learning_rate * gamma) * (before[name] - anchor[name])
        assert torch.allclose(dict(model.named_parameters())[name], expected, rtol=0, atol=1e-6)


def test_gradient_free_parameters_are_untouched() -> None:
    args = _args()
    model = _model()
    optimizer = _optimizer(model, args)
    before = model.encoder[0].weight.detach().clone()
    model.classifier(torch.randn(2, 6)).sum().backward()  # only the head gets gradients
    optimizer.step()
    assert torch.equal(model.encoder[0].weight, before)


# ------------------------------------------------------------------------------------------ grouping


def test_groups_follow_the_checkpoint_not_parameter_names() -> None:
    model = _model()
    optimizer = _optimizer(model, _args())
    ids = {id(p): n for n, p in model.named_parameters()}
    recalled = {ids[id(p)] for g in optimizer.param_groups if g["recall"] for p in g["params"]}
    plain = {ids[id(p)] for g in optimizer.param_groups if not g["recall"] for p in g["params"]}
    assert recalled == {n for n, _ in model.named_parameters()} - NEW
    assert plain == NEW
    decayed = {ids[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {"encoder.0.weight", "classifier.weight"}  # the Trainer's split
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert ("anchor" in optimizer.state[p]) == group["recall"]


def test_frozen_parameters_are_left_out() -> None:
    model = _model()
    model.encoder[0].weight.requires_grad_(False)
    optimizer = _optimizer(model, _args())
    assert all(p is not model.encoder[0].weight for g in optimizer.param_groups for p in g["params"])


def test_no_pretrained_parameter_fails_loudly() -> None:
    model = _model()
    context = RunContext(seed=0, new_parameter_names=frozenset(n for n, _ in model.named_parameters()))
    with pytest.raises(MethodConfigError, match="nothing to recall"):
        RecAdam().build_optimizer(model, _args(lr=2e-5), context)


# ------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"pretrain_coef": -1.0}, "pretrain_coef"),
        ({"pretrain_coef": math.nan}, "pretrain_coef"),
        ({"pretrain_coef": "5000"}, "pretrain_coef"),
        ({"anneal_fun": "cosine"}, "anneal_fun"),
        ({"anneal_k": 0.0}, "anneal_k"),
        ({"anneal_k": -0.1}, "anneal_k"),
        ({"anneal_k": True}, "anneal_k"),
        ({"anneal_t0": -1}, "anneal_t0"),
        ({"anneal_t0": math.inf}, "anneal_t0"),
        ({"anneal_fun": "linear", "anneal_t0": 0}, "anneal_t0"),
        ({"anneal_w": 0.0}, "anneal_w"),
        ({"anneal_w": 1.5}, "anneal_w"),
        ({"anchor": "checkpoint"}, "anchor"),
    ],
)
def test_invalid_settings_name_the_setting(settings: dict, named: str) -> None:
    with pytest.raises(MethodConfigError, match=f"recadam.{named}"):
        build_method("recadam", {"recadam": settings})


def test_defaults_are_the_public_cli_defaults() -> None:
    component = build_method("recadam").components[0]
    assert (component.pretrain_coef, component.anneal_fun, component.anneal_k, component.anneal_t0) == (
        5000.0,
        "sigmoid",
        0.5,
        250.0,
    )
    assert (component.anneal_w, component.anchor) == (1.0, "initial")
    assert set(component.settings()) == {
        "pretrain_coef",
        "anneal_fun",
        "anneal_k",
        "anneal_t0",
        "anneal_w",
        "anchor",
    }


def test_unstable_learning_rate_rejected_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(MethodConfigError, match=r"learning_rate.*pretrain_coef"):
        _optimizer(_model(), _args(lr=4e-4))  # 4e-4 · 5000 = 2
    with caplog.at_level(logging.WARNING, logger="robustft.methods.recadam"):
        _optimizer(_model(), _args(lr=3e-4))  # 1.5: oscillates
    assert "oscillates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustft.methods.recadam"):
        _optimizer(_model(), _args(lr=2e-5))  # 0.1, the paper's setting
    assert caplog.text == ""
    _optimizer(_model(), _args(lr=1.0), anneal_fun="constant")  # no pull, nothing to diverge


def test_pull_diverges_above_two() -> None:
    """What the check guards against: with λ = 0 the distance to θ* grows as |1 - lr·γ|^t."""
    for lr, grows in ((3e-4, False), (5e-4, True)):
        model = _model()
        optimizer = _optimizer(model, _args(lr=1e-5, weight_decay=0.0), anneal_t0=1e6)
        optimizer.param_groups[0]["lr"] = lr  # past the build-time check, as a scheduler could not
        anchor = model.encoder[0].weight.detach().clone()
        with torch.no_grad():
            model.encoder[0].weight.add_(1.0)
        for _ in range(5):
            model.encoder[0].weight.grad = torch.zeros_like(anchor)
            optimizer.step()
        distance = float((model.encoder[0].weight - anchor).abs().max())
        assert (distance > 1.0) == grows
        assert distance == pytest.approx(abs(1 - lr * 5000) ** 5, rel=1e-4)


# ------------------------------------------------------------------------------------------ anchors


def _tiny_bert(tiny_model: str):
    from robustft.models import load_sequence_classifier_with_info

    torch.manual_seed(0)
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    return model, frozenset(new)


def _anchors_after(tiny_model: str, method: str, components: dict) -> tuple[dict, dict, dict]:
    model, new = _tiny_bert(tiny_model)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    context = RunContext(seed=1, new_parameter_names=new)
    built = build_method(method, components)
    built.prepare_model(model, context)
    optimizer = built.optimizer_owner().build_optimizer(model, _args(lr=2e-5), context)
    by_param = {id(p): n for n, p in model.named_parameters()}
    anchors = {by_param[id(p)]: s["anchor"] for p, s in optimizer.state.items() if "anchor" in s}
    return original, {n: p.detach().clone() for n, p in model.named_parameters()}, anchors


def test_anchor_initial_is_the_perturbed_model(tiny_model: str) -> None:
    original, start, anchors = _anchors_after(
        tiny_model, "noisytune+recadam", {"noisytune": {}, "recadam": {}}
    )
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[name], original[name])  # NoisyTune did perturb it
    assert set(anchors) == set(start) - {"classifier.weight", "classifier.bias"}
    for n, anchor in anchors.items():
        assert torch.equal(anchor, start[n]), n


def test_anchor_pretrained_is_the_checkpoint(tiny_model: str) -> None:
    original, start, anchors = _anchors_after(
        tiny_model, "recadam+noisytune", {"recadam": {"anchor": "pretrained"}, "noisytune": {}}
    )
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[name], original[name])
    for n, anchor in anchors.items():
        assert torch.equal(anchor, original[n]), n


def test_anchor_pretrained_after_another_component_is_refused(tiny_model: str) -> None:
    with pytest.raises(MethodConfigError, match="list recadam first"):
        _anchors_after(
            tiny_model, "noisytune+recadam", {"noisytune": {}, "recadam": {"anchor": "pretrained"}}
        )


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("method", ["recadam", "noisytune+recadam"])
def test_train_run(tiny_model: str, glue_dir: Path, tmp_path: Path, method: str) -> None:
    from robustft.train.classification import train_run
    from tests.test_train_run import make_spec

    data = tmp_path / "data" / "glue" / "RTE"
    data.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (glue_dir / "RTE" / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:25]
        (data / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "run"
    result = train_run(make_spec(tiny_model, tmp_path / "data", method=method), out)
    assert result["status"] == "ok"
    assert all(math.isfinite(v) for v in result["metrics"].values())
    log = json.loads((out / "run.json").read_text())["method_log"]
    assert log["recadam"]["anchor"] == "initial"
    assert log["recadam"]["new_tensors"] == ["classifier.weight", "classifier.bias"]
    assert log["recadam"]["lambda_at_last_step"] < 0.5  # 3 steps of a t0 = 250 schedule
    assert ("noisytune" in log) == method.startswith("noisytune")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_anchors_live_with_their_parameters() -> None:
    model = _model().cuda()
    optimizer = _optimizer(model, _args())
    for group in optimizer.param_groups:
        for p in group["params"]:
            if group["recall"]:
                assert optimizer.state[p]["anchor"].device == p.device
    model(torch.randn(8, 4, device="cuda")).sum().backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
