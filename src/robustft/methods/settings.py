"""Every method component's settings, without torch: its name, settings (paper defaults as field
defaults), their validation, and the class that implements it.

The workflow checks every configured method at parse time (`check_method`) with these classes alone, so
parsing the Snakefile imports neither torch nor the components' modules; `build_method` imports a
component's implementation (a subclass of its settings class that adds the hooks) only when it builds one.
A component declares here the hooks that decide how it composes with others (`owns_training_step`,
`replaces_optimizer`, `adds_loss_terms`); loading its implementation checks that it overrides exactly those.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from robustft.errors import MethodConfigError
from robustft.methods.base import Component, register_component, require_choice, require_number

NOISE_DISTRIBUTIONS = ("uniform", "gaussian")  # NEFTune and NoisyTune


def require_bool(component: str, setting: str, value: object) -> None:
    if not isinstance(value, bool):
        raise MethodConfigError(f"{component}.{setting} must be true or false, got {value!r}")


# --------------------------------------------------------------------------------------------- FreeLB

NORMS = ("l2", "linf")
MAX_ADV_STEPS = 10  # K: the launch scripts use 2-4


@register_component
@dataclass
class FreeLBSettings(Component):
    """FreeLB's settings; implemented in robustft.methods.freelb."""

    name = "freelb"
    paper = "Zhu et al., ICLR 2020, Algorithm 1; zhuchen03/FreeLB run_glue_freelb.py"
    owns_training_step = True
    implementation = "robustft.methods.freelb.FreeLB"

    adv_steps: int = 3  # K: HF/ALBERT launch/run_glue.sh uses 2-4 (3 for most tasks)
    adv_lr: float = 0.1  # fairseq RoBERTa MNLI launch (launch/FreeLB/mnli-fp32-clip.sh); ALBERT 3e-2..2e-1
    adv_init_mag: float = 0.1  # fairseq RoBERTa MNLI launch; ALBERT launch values 0..0.6
    adv_max_norm: float = 0.0  # 0 = unbounded, as in most launch values (ALBERT QQP 0.7, RoBERTa MNLI 0.3)
    norm: str = "l2"  # HF script `--norm_type` default
    clean_pass: bool = False  # False: HF script; True: FreeLB#10's extra clean pass (see module docstring)

    def validate(self) -> None:
        steps = self.adv_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_ADV_STEPS:
            raise MethodConfigError(
                f"freelb.adv_steps must be an integer in [1, {MAX_ADV_STEPS}] (the launch scripts use 2-4; "
                f"each step costs a forward and a backward pass), got {steps!r}"
            )
        # Upper bounds a few times above the launch values (adv_lr 0.03-0.2, init 0-0.6, norm 0-0.7).
        # l2 magnitudes are norms of a whole sequence's δ (the init is NEFTune's α/√(L·d) scale, α <= 15
        # published); linf ones bound each coordinate of embeddings whose entries are about 0.05.
        magnitude = 100.0 if self.norm == "l2" else 1.0
        for setting, maximum, why in (
            ("adv_lr", 10.0, "the launch scripts use 0.03 to 0.2"),
            (
                "adv_init_mag",
                magnitude,
                f"the launch scripts use 0 to 0.6; the bound is for norm {self.norm}",
            ),
            (
                "adv_max_norm",
                magnitude,
                f"the launch scripts use 0 to 0.7; the bound is for norm {self.norm}",
            ),
        ):
            require_number(
                "freelb", setting, getattr(self, setting), 0.0, maximum, max_inclusive=True, why=why
            )
        require_choice("freelb", "norm", self.norm, NORMS)
        if not isinstance(self.clean_pass, bool):
            raise MethodConfigError(f"freelb.clean_pass must be true or false, got {self.clean_pass!r}")


# --------------------------------------------------------------------------------------------- Mixout

LAYER_RULES = ("paper", "all")
GRADIENTS = ("exact", "reference")


@register_component
@dataclass
class MixoutSettings(Component):
    """Mixout's settings; implemented in robustft.methods.mixout."""

    name = "mixout"
    paper = "Lee, Cho, Kang, ICLR 2020 (bloodwass/mixout)"
    implementation = "robustft.methods.mixout.Mixout"

    p: float = 0.9  # paper's headline; grid {0.7, 0.8, 0.9}
    layers: str = "paper"  # "paper": all Linear but the FFN input projections (mixout#13); "all"
    include_head: bool = False  # mix the new head toward its random init (HF example); paper: no
    gradient: str = "reference"  # the authors' backward (no 1/(1-p)); "exact": the true gradient
    disable_dropout: bool = True  # mixout replaces dropout (mixout#1)
    head_dropout: bool = False  # keep the new head's dropout; paper: no regularisation on the head

    def validate(self) -> None:
        p = self.p
        if isinstance(p, bool) or not isinstance(p, int | float) or not (math.isfinite(p) and 0 <= p < 1):
            raise MethodConfigError(f"mixout.p must be a finite number in [0, 1), got {p!r}")
        require_choice("mixout", "layers", self.layers, LAYER_RULES)
        require_choice("mixout", "gradient", self.gradient, GRADIENTS)
        require_bool("mixout", "include_head", self.include_head)
        require_bool("mixout", "disable_dropout", self.disable_dropout)
        require_bool("mixout", "head_dropout", self.head_dropout)
        if self.include_head and self.head_dropout:
            raise MethodConfigError(
                "mixout.head_dropout and mixout.include_head are both true: they are the two alternative "
                "regularisers of the new head (dropout(p) or mixout toward its initialisation); choose one"
            )


# -------------------------------------------------------------------------------------------- NEFTune

MODES = ("paper", "hf")


@register_component
@dataclass
class NEFTuneSettings(Component):
    """NEFTune's settings; implemented in robustft.methods.neftune."""

    name = "neftune"
    paper = "Jain et al., ICLR 2024, Algorithm 1"
    implementation = "robustft.methods.neftune.NEFTune"

    alpha: float = 5.0  # paper: α ∈ {5, 10, 15}; 5 for Alpaca and Evol-Instruct (Table 7)
    mode: str = "paper"
    distribution: str = "uniform"

    def validate(self) -> None:
        require_number(
            "neftune",
            "alpha",
            self.alpha,
            0.0,
            100.0,
            max_inclusive=True,
            why="the paper uses 5, 10 and 15",
        )
        require_choice("neftune", "mode", self.mode, MODES)
        require_choice("neftune", "distribution", self.distribution, NOISE_DISTRIBUTIONS)


# ------------------------------------------------------------------------------------------ NoisyTune

SCALES = ("matrix", "global")


@register_component
@dataclass
class NoisyTuneSettings(Component):
    """NoisyTune's settings; implemented in robustft.methods.noisytune."""

    name = "noisytune"
    paper = "Wu et al., ACL 2022, Eq. 1"
    implementation = "robustft.methods.noisytune.NoisyTune"

    noise_lambda: float = 0.15  # paper: 0.15 on GLUE, 0.1 on XTREME (Sec 3.1)
    distribution: str = "uniform"
    scale: str = "matrix"
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def validate(self) -> None:
        # λ = 1 already adds noise of ±0.5 std to every weight; the paper sweeps 0-0.3 (Figure 6).
        require_number(
            "noisytune",
            "noise_lambda",
            self.noise_lambda,
            0.0,
            1.0,
            max_inclusive=True,
            why="the paper sweeps 0 to 0.3",
        )
        require_choice("noisytune", "distribution", self.distribution, NOISE_DISTRIBUTIONS)
        require_choice("noisytune", "scale", self.scale, SCALES)
        for setting in ("include", "exclude"):
            patterns = getattr(self, setting)
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise MethodConfigError(
                    f"noisytune.{setting} must be a list of regular expressions, got {patterns!r}"
                )
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise MethodConfigError(
                        f"noisytune.{setting}: bad regular expression {pattern!r}: {err}"
                    ) from None


# ------------------------------------------------------------------------------------------------ R3F

NOISE_TYPES = ("uniform", "normal")


@register_component
@dataclass
class R3FSettings(Component):
    """R3F's settings; implemented in robustft.methods.r3f."""

    name = "r3f"
    paper = "Aghajanyan et al., 2020 (arXiv 2008.03156), Eq. 1-2; fairseq examples/rxf"
    implementation = "robustft.methods.r3f.R3F"
    adds_loss_terms = True

    noise_eps: float = 1e-5  # σ: fairseq `--eps` default 1e-5
    r3f_lambda: float = 1.0  # λ: fairseq `--r3f-lambda` default 1.0 (paper sweeps {0.1, 0.5, 1, 5})
    noise_type: str = "uniform"  # fairseq `--noise-type` default; paper tries both U and N

    def validate(self) -> None:
        require_number(
            "r3f",
            "noise_eps",
            self.noise_eps,
            0.0,
            1.0,
            max_inclusive=True,
            why="fairseq uses 1e-5; embedding entries are about 0.05",
        )
        require_number(
            "r3f",
            "r3f_lambda",
            self.r3f_lambda,
            0.0,
            100.0,
            max_inclusive=True,
            why="the paper sweeps 0.1 to 5",
        )
        require_choice("r3f", "noise_type", self.noise_type, NOISE_TYPES)

    def full_precision_reason(self) -> str | None:
        return (
            f"its noise (noise_eps {self.noise_eps:g}) is added to fp32 embeddings, but under bf16 autocast "
            "the first matmul casts x + z to bf16, whose spacing there is far larger, and rounds it away"
        )


# -------------------------------------------------------------------------------------------- RecAdam

ANNEAL_FUNCTIONS = ("sigmoid", "linear", "constant")
ANNEAL_UNITS = ("fraction", "steps")
ANCHORS = ("pretrained", "initial")

# The public code's CLI defaults, in optimizer steps (run_glue_with_RecAdam.py L652-662).
REFERENCE_T0_STEPS, REFERENCE_K = 250.0, 0.5
# A run of the authors' length, at which the fraction defaults equal the CLI's step counts: the geometric
# middle of their BERT-base runs, 9,000 (STS-B) to 61,360 (MNLI) optimizer steps.
REFERENCE_RUN_STEPS = 25_000
# The settings each unit uses, with their defaults; a setting of the other unit is refused.
UNIT_DEFAULTS: dict[str, dict[str, float]] = {
    "steps": {"anneal_t0": REFERENCE_T0_STEPS, "anneal_k": REFERENCE_K},
    "fraction": {
        "anneal_t0": REFERENCE_T0_STEPS / REFERENCE_RUN_STEPS,  # 0.01
        "anneal_width": 1 / (REFERENCE_K * REFERENCE_RUN_STEPS),  # 8e-5: 2 steps of 25,000
    },
}


@register_component
@dataclass
class RecAdamSettings(Component):
    """RecAdam's settings; implemented in robustft.methods.recadam."""

    name = "recadam"
    paper = "Chen et al., EMNLP 2020 (Sanyuan-Chen/RecAdam)"
    implementation = "robustft.methods.recadam.RecAdam"
    replaces_optimizer = True

    pretrain_coef: float = 5000.0  # γ: RecAdam.py / run_glue_with_RecAdam.py default
    anneal_fun: str = "sigmoid"  # paper and CLI default
    # "fraction": t0 and the width are fractions of the planned optimizer steps; "steps": the CLI's unit.
    anneal_unit: str = "fraction"
    anneal_t0: float | None = None  # None: the unit's default (fraction 0.01; steps 250, the CLI's)
    anneal_width: float | None = None  # fraction only: the sigmoid's width 1/k (None: 8e-5 of the run)
    anneal_k: float | None = None  # steps only: the sigmoid's slope per step (None: 0.5, the CLI's)
    anneal_w: float = 1.0  # CLI `--recadam_anneal_w` default; λ = w·f(t)
    anchor: str = "pretrained"  # θ*: the checkpoint's weights, whatever other components do to them

    def __post_init__(self) -> None:
        require_choice("recadam", "anneal_unit", self.anneal_unit, ANNEAL_UNITS)
        own = UNIT_DEFAULTS[self.anneal_unit]
        for setting in ("anneal_width", "anneal_k"):
            if setting not in own and getattr(self, setting) is not None:
                unit, instead = (
                    ("steps", "anneal_width") if setting == "anneal_k" else ("fraction", "anneal_k")
                )
                raise MethodConfigError(
                    f"recadam.{setting} is a setting of anneal_unit {unit!r}, but anneal_unit is "
                    f"{self.anneal_unit!r}: give the sigmoid's shape with recadam.{instead}, or set "
                    f"anneal_unit: {unit}"
                )
        # Resolved here, so settings() (and run.json) show the values the run uses.
        for setting, default in own.items():
            if getattr(self, setting) is None:
                setattr(self, setting, default)
        super().__post_init__()

    def validate(self) -> None:
        require_number(
            "recadam",
            "pretrain_coef",
            self.pretrain_coef,
            0.0,
            1e6,
            max_inclusive=True,
            why="the code's default is 5000",
        )
        require_choice("recadam", "anneal_fun", self.anneal_fun, ANNEAL_FUNCTIONS)
        require_choice("recadam", "anneal_unit", self.anneal_unit, ANNEAL_UNITS)
        linear = self.anneal_fun == "linear"  # t/t0: t0 must be positive
        if self.anneal_unit == "fraction":
            require_number(
                "recadam",
                "anneal_t0",
                self.anneal_t0,
                0.0,
                1.0,
                min_inclusive=not linear,
                max_inclusive=True,
                why="a fraction of the planned optimizer steps; the code's 250 steps are 0.4-2.8% of the "
                "authors' runs",
            )
            require_number(
                "recadam",
                "anneal_width",
                self.anneal_width,
                0.0,
                1.0,
                min_inclusive=False,
                max_inclusive=True,
                why="a fraction of the planned optimizer steps; the code's k = 0.5 is a width of 2 steps",
            )
        else:
            require_number(
                "recadam",
                "anneal_t0",
                self.anneal_t0,
                0.0,
                1e6,
                min_inclusive=not linear,
                max_inclusive=True,
                why="optimizer steps; the authors sweep 100 to 1000",
            )
            # k > 0: λ must rise from recall to learning; k = 0 freezes λ at 1/2, k < 0 anneals backwards.
            # No upper bound: a large k is a hard switch from recall to learning at t0, a sensible choice.
            require_number("recadam", "anneal_k", self.anneal_k, 0.0, min_inclusive=False)
        # w = 0 would freeze the backbone (the public code instead silently switches to plain Adam).
        require_number(
            "recadam", "anneal_w", self.anneal_w, 0.0, 1.0, min_inclusive=False, max_inclusive=True
        )
        require_choice("recadam", "anchor", self.anchor, ANCHORS)


# ---------------------------------------------------------------------------------------------- SMART

PERTURBATION_NORMS = ("normalize", "project")
PERTURBATION_SITES = ("embedding_output", "word_embeddings")
NORM_SCOPES = ("token", "example")
ADVERSARIAL_PRECISIONS = ("fp32", "autocast")
# Settings that follow `perturbation_norm` when unset: mt-dnn's CLI for normalize, the paper for project.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "normalize": {"step_size": 1e-5, "norm_scope": "token"},
    "project": {"step_size": 1e-3, "norm_scope": "example"},
}
MAX_ASCENT_STEPS = 10  # K: 1 in the paper; PGD-style sweeps stop well below 10


@register_component
@dataclass
class SMARTSettings(Component):
    """SMART's settings; implemented in robustft.methods.smart."""

    name = "smart"
    paper = "Jiang et al., ACL 2020, Eq. 1-4, Algorithm 1, Sec. 4.1; mt-dnn mt_dnn/perturbation.py"
    implementation = "robustft.methods.smart.SMART"
    adds_loss_terms = True

    smoothness_weight: float = 1.0  # λ_s: Sec. 4.1, grid {1, 3, 5}
    noise_std: float = 1e-5  # σ: Sec. 4.1 and mt-dnn `--adv_noise_var`
    radius: float = 1e-5  # ε, ℓ∞ ball: Sec. 4.1 (project mode only)
    step_size: float | None = None  # η; unset: 1e-5 for normalize (mt-dnn CLI), 1e-3 for project (Sec. 4.1)
    ascent_steps: int = 1  # K = T̄: Sec. 4.1
    perturbation_norm: str = "normalize"  # mt-dnn (behind the published numbers); "project" = Alg. 1
    perturbation_site: str = "embedding_output"  # mt-dnn: the encoder's input; or "word_embeddings"
    norm_scope: str | None = None  # ℓ∞ per "token" or per "example"; unset: follows perturbation_norm
    adversarial_precision: str = "fp32"  # R_s's forwards in fp32 even under autocast; or "autocast"
    kl_detach_opposite: bool = True  # mt-dnn SymKlCriterion
    mask_padding: bool = True  # our choice; mt-dnn noises padding
    bregman_weight: float = 1.0  # μ: Sec. 4.1
    momentum: float = 0.99  # β for the first `momentum_warmup_fraction` of updates: Sec. 4.1
    momentum_final: float = 0.999  # β afterwards: Sec. 4.1
    momentum_warmup_fraction: float = 0.1  # Sec. 4.1: "first 10% of the updates"

    def __post_init__(self) -> None:
        for setting, value in MODE_DEFAULTS.get(self.perturbation_norm, {}).items():
            if getattr(self, setting) is None:
                setattr(self, setting, value)
        super().__post_init__()

    def full_precision_reason(self) -> str | None:
        # fp32 (the default) runs R_s in fp32 itself, so only `autocast` leaves ν to the training precision.
        if self.adversarial_precision != "autocast":
            return None
        return (
            "adversarial_precision autocast runs R_s in the training precision, where a perturbation of "
            f"noise_std {self.noise_std:g} / radius {self.radius:g} rounds away in the first matmul"
        )

    def validate(self) -> None:
        require_choice("smart", "perturbation_norm", self.perturbation_norm, PERTURBATION_NORMS)
        require_choice("smart", "perturbation_site", self.perturbation_site, PERTURBATION_SITES)
        require_choice("smart", "norm_scope", self.norm_scope, NORM_SCOPES)
        require_choice("smart", "adversarial_precision", self.adversarial_precision, ADVERSARIAL_PRECISIONS)
        # Upper bounds far above every published value: the paper finds λ_s >= 100 "too strong" (its grid is
        # {1, 3, 5}); σ and ε perturb each coordinate of embeddings whose entries are about 0.05, so 1 is
        # noise 20 times the signal.
        for setting, maximum, why in (
            ("smoothness_weight", 100.0, "the paper tunes 1 to 5 and finds 100 too strong"),
            ("bregman_weight", 100.0, "the paper uses 1"),
            ("noise_std", 1.0, "the paper uses 1e-5; embedding entries are about 0.05"),
            ("radius", 1.0, "the paper uses 1e-5 and finds 1e-5 to 1e-4 equivalent"),
        ):
            require_number(
                "smart", setting, getattr(self, setting), 0.0, maximum, max_inclusive=True, why=why
            )
        # No upper bound on η: `project` clamps the step to ε and `normalize` rescales it away, so a large η
        # only means "follow the gradient, not the initial noise".
        require_number("smart", "step_size", self.step_size)
        if (
            isinstance(self.ascent_steps, bool)
            or not isinstance(self.ascent_steps, int)
            or not 1 <= self.ascent_steps <= MAX_ASCENT_STEPS
        ):
            raise MethodConfigError(
                f"smart.ascent_steps must be an integer in [1, {MAX_ASCENT_STEPS}] (the paper uses 1; each "
                f"step costs a forward and a backward pass), got {self.ascent_steps!r}"
            )
        require_bool("smart", "kl_detach_opposite", self.kl_detach_opposite)
        require_bool("smart", "mask_padding", self.mask_padding)
        for setting in ("momentum", "momentum_final", "momentum_warmup_fraction"):
            require_number("smart", setting, getattr(self, setting), 0.0, 1.0, max_inclusive=True)


def method_passes(components: dict[str, Any] | None, precision: str) -> tuple[float, float]:
    """(passes in the run's precision, passes in fp32) per training example, counted from each component's
    algorithm (a forward and backward is 1, a forward alone 1/3); fine-tuning is (1, 0). Components that
    only add noise or an elementwise term (NoisyTune, NEFTune, RecAdam, Mixout) add nothing."""
    passes, fp32 = 1.0, 0.0
    for name, settings in (components or {}).items():
        if name == "smart":
            smart = SMARTSettings(**(settings or {}))
            if smart.bregman_weight > 0:
                passes += 1 / 3  # the EMA teacher's forward
            if smart.smoothness_weight > 0:
                adversarial = smart.ascent_steps + 1  # K ascent passes, then the adversarial forward+backward
                if smart.adversarial_precision == "fp32" and precision != "fp32":
                    fp32 += adversarial + 1  # and R_s's clean reference recomputed in fp32
                else:
                    passes += adversarial
        elif name == "freelb":
            freelb = FreeLBSettings(**(settings or {}))
            passes += freelb.adv_steps - 1 + (1 if freelb.clean_pass else 0)
        elif name == "r3f":
            passes += 1  # the noisy forward, backpropagated with the clean one
    return passes, fp32
