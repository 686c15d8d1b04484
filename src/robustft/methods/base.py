"""The one interface every fine-tuning method implements.

A run's method is an ordered list of components, e.g. [NoisyTune] or [NoisyTune, RecAdam]. A component
acts at up to four points and overrides only the hooks it needs; components know nothing about each
other, so they compose freely:

- before training: `prepare_model` (NoisyTune's perturbation, Mixout's module swap), after every
  component's `before_prepare_model` (RecAdam's copy of the checkpoint's weights);
- on the input embeddings during training: `embedding_noise` (NEFTune);
- on the loss: `extra_loss` (SMART's smoothness and Bregman terms, R3F's symmetric KL), or the whole
  step: `training_step` (FreeLB's K ascent steps; at most one component may own the step);
- on the optimizer: `build_optimizer` (RecAdam); `after_optimizer_step` (SMART's EMA teacher).
A component whose state lives outside the model, optimizer and RNG (SMART's EMA teacher) also
implements `state_dict` / `load_state_dict`, so a run resumed from a checkpoint equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from robustft.errors import MethodConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class RunContext:
    """What a component may need to know about the run it is part of."""

    seed: int
    # Parameters that did not come from the checkpoint (the new task head): never treat them as pretrained.
    new_parameter_names: frozenset[str] = frozenset()
    regression: bool = False
    # Optimizer steps: `step` is the number done so far, `max_steps` the planned total (schedules use them).
    step: int = 0
    max_steps: int = 0
    # Components write what they did here; it lands in run.json.
    log: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """One training batch as the loss hooks see it.

    `embed()` looks the word embeddings of the batch up again (a fresh graph node, so a component may
    perturb and detach it freely); `forward(embeddings)` runs the model on word embeddings in place of
    token ids, so position and token-type embeddings are added exactly once (the mt-dnn SMART bug
    feeds the full embedding output back in and adds positions twice). `autocast_dtype` is the half
    precision the model's forward autocasts to under the trainer's mixed precision (accelerate enters
    autocast inside the forward, where a component cannot see it), None in full precision.
    """

    model: nn.Module
    inputs: dict[str, torch.Tensor]
    logits: torch.Tensor
    task_loss: torch.Tensor
    embed: Callable[[], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor]
    autocast_dtype: torch.dtype | None = None

    @property
    def attention_mask(self) -> torch.Tensor | None:
        return self.inputs.get("attention_mask")


@dataclass
class Component:
    """Base class: a dataclass of settings (paper defaults as field defaults) plus optional hooks.

    A registered component is a settings class (methods/settings.py, no torch) whose `implementation`
    names the subclass that adds the hooks; the flags below declare the hooks that decide how components
    compose, so a method can be checked without importing its implementation (and torch)."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    # "module.Class" of the subclass that implements the hooks; "" when this class implements them itself.
    implementation: ClassVar[str] = ""
    owns_training_step: ClassVar[bool] = False  # overrides training_step
    replaces_optimizer: ClassVar[bool] = False  # overrides build_optimizer
    adds_loss_terms: ClassVar[bool] = False  # overrides extra_loss

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise MethodConfigError naming the setting when a value is out of range."""

    def full_precision_reason(self) -> str | None:
        """Why this component's numbers, with these settings, depend on fp32 detail that bf16/fp16
        autocast would lose, or None. `train.precision: auto` then trains the run in fp32."""
        return None

    def before_prepare_model(self, model: nn.Module, context: RunContext) -> None:
        """Called for every component before any component's prepare_model, so a component sees the
        checkpoint's weights whatever its place in the list (RecAdam's `anchor: pretrained` copies them)."""

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        """Called once after the model is loaded and before the first training step."""

    def embedding_noise(
        self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None, context: RunContext
    ) -> torch.Tensor | None:
        """Noise to add to the input embeddings of a training forward pass (never at evaluation)."""
        return None

    def extra_loss(self, batch: Batch, context: RunContext) -> torch.Tensor | None:
        """A term added to the task loss of a training step."""
        return None

    def training_step(self, batch_step: Any, context: RunContext) -> torch.Tensor:
        """Replace the whole forward/backward of a step (only if `owns_training_step`)."""
        raise NotImplementedError

    def build_optimizer(self, model: nn.Module, training_args: Any, context: RunContext) -> Any | None:
        """An optimizer to use instead of AdamW, or None."""
        return None

    def after_optimizer_step(self, model: nn.Module, context: RunContext) -> None:
        """Called after every optimizer step."""

    def state_dict(self) -> dict[str, Any]:
        """State that training changes and that neither the model's weights, the optimizer nor the RNG
        hold (SMART's EMA teacher). It is saved in every checkpoint; most components have none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, when a run resumes from a checkpoint. Called after
        `prepare_model`, so whatever prepare_model built (e.g. the teacher) is there to load into."""
        if state:
            raise ValueError(f"component {self.name!r} keeps no state; the checkpoint has {sorted(state)}")

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def require_number(
    component: str,
    setting: str,
    value: Any,
    minimum: float = 0.0,
    maximum: float = math.inf,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = False,
    why: str = "",
) -> None:
    """Raise MethodConfigError naming `component.setting` unless value is a finite number in range.

    `why` says where the range comes from (the published values), so a user knows what is sensible."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    above = is_number and (value >= minimum if min_inclusive else value > minimum)
    below = is_number and (value <= maximum if max_inclusive else value < maximum)
    if not (above and below):
        low, high = ("[" if min_inclusive else "("), ("]" if max_inclusive else ")")
        reason = f" ({why})" if why else ""
        raise MethodConfigError(
            f"{component}.{setting} must be a finite number in {low}{minimum:g}, {maximum:g}{high}{reason}, "
            f"got {value!r}"
        )


def require_input_embeddings(component: str, model: nn.Module) -> None:
    """Methods that act on the input embeddings cannot run on a model without them."""
    if model.get_input_embeddings() is None:
        model_class = type(model).__name__
        raise MethodConfigError(
            f"{component} needs input embeddings; {model_class}.get_input_embeddings() is None"
        )


# bitsandbytes' quantized parameter classes; Params4bit may store its codes in a float dtype
# (bnb_4bit_quant_storage), so the dtype alone does not tell.
QUANTIZED_PARAMETER_TYPES = ("Params4bit", "Int8Params")


def is_quantized(parameter: torch.Tensor) -> bool:
    """Whether the tensor holds quantized codes rather than the weights themselves (NoisyTune and Mixout
    refuse such weights)."""
    return not parameter.is_floating_point() or type(parameter).__name__ in QUANTIZED_PARAMETER_TYPES


def require_choice(component: str, setting: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MethodConfigError(f"{component}.{setting} must be one of {list(choices)}, got {value!r}")


# Component name -> its settings class (methods/settings.py registers them all when robustft.methods is
# imported); the class that implements it is loaded by component_class.
COMPONENTS: dict[str, type[Component]] = {}
# The flags a settings class declares, and the hook that the implementation must then override.
DECLARED_HOOKS = {
    "owns_training_step": "training_step",
    "replaces_optimizer": "build_optimizer",
    "adds_loss_terms": "extra_loss",
}


def register_component(cls: type[Component]) -> type[Component]:
    COMPONENTS[cls.name] = cls
    return cls


@functools.cache
def component_class(name: str) -> type[Component]:
    """The class that implements the registered component `name` (importing its module, and torch), after
    checking that it overrides exactly the hooks its settings class declares."""
    settings = COMPONENTS[name]
    if not settings.implementation:
        cls = settings
    else:
        module, _, class_name = settings.implementation.rpartition(".")
        cls = getattr(importlib.import_module(module), class_name)
        if not issubclass(cls, settings) or dataclasses.fields(cls) != dataclasses.fields(settings):
            raise TypeError(
                f"{settings.implementation} must subclass {settings.__name__} and add no settings"
            )
    for flag, hook in DECLARED_HOOKS.items():
        overridden = getattr(cls, hook) is not getattr(Component, hook)
        if getattr(cls, flag) != overridden:
            raise TypeError(
                f"component {name!r}: {cls.__name__} {'overrides' if overridden else 'does not override'} "
                f"{hook}, but {settings.__name__}.{flag} is {getattr(cls, flag)}"
            )
    return cls


def build_component(
    name: str, settings: dict[str, Any] | None = None, *, implementation: bool = True
) -> Component:
    """Component `name` with `settings`: its implementation, or with implementation=False only its settings
    class (the same checks and errors, without importing torch)."""
    if name not in COMPONENTS:
        known = ", ".join(sorted(COMPONENTS))
        raise MethodConfigError(f"unknown method component {name!r}; known components: {known}")
    cls = COMPONENTS[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings or {}) - allowed)
    if unknown:
        raise MethodConfigError(
            f"component {name!r} has no setting(s) {unknown}; its settings are {sorted(allowed)}"
        )
    if implementation:
        cls = component_class(name)
    return cls(**(settings or {}))


def overrides(component: Component, hook: str) -> bool:
    """Whether the component implements `hook` (so the trainer can skip work nobody asked for)."""
    return getattr(type(component), hook) is not getattr(Component, hook)


def _replaces_optimizer(component: Component) -> bool:
    return overrides(component, "build_optimizer")


@dataclass
class Method:
    """A named, ordered list of components. `finetune` is the empty list."""

    name: str
    components: list[Component]

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        for component in self.components:  # all of them first, while the weights are the checkpoint's
            component.before_prepare_model(model, context)
        for component in self.components:
            component.prepare_model(model, context)

    def step_owner(self) -> Component | None:
        return next((c for c in self.components if c.owns_training_step), None)

    def optimizer_owner(self) -> Component | None:
        return next((c for c in self.components if _replaces_optimizer(c)), None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "components": [{c.name: c.settings()} for c in self.components]}

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """{component name: its state} (names are unique: components are keyed by name in the config)."""
        return {c.name: c.state_dict() for c in self.components}

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        names = [c.name for c in self.components]
        if sorted(state) != sorted(names):
            raise ValueError(f"method state is for components {sorted(state)}, this method has {names}")
        for component in self.components:
            component.load_state_dict(state[component.name])


def components_named_by(name: str) -> list[str] | None:
    """The components a method name spells ('finetune': none, 'a', 'a+b': those, in that order), or None
    for a free label such as 'nt_l0.1' or 'smart_no_rs'."""
    if name == "finetune":
        return []
    parts = name.split("+")
    return parts if all(part in COMPONENTS for part in parts) else None


def build_method(
    name: str, components: dict[str, dict[str, Any] | None] | None = None, *, implementation: bool = True
) -> Method:
    """Build a method from explicit component settings, or from its name: 'finetune', 'a', 'a+b'.

    A name that spells components ('finetune', 'smart', 'noisytune+smart') must have exactly those
    components, in that order, whatever their settings: run directories and tables are labelled by the
    name, so a SMART run labelled `finetune` would be reported as the baseline. Any other name is a free
    label for whatever components it is given (the config's presets, e.g. `noisytune_l0.05`).
    implementation=False: the method's components are their settings classes (check_method)."""
    if components is None:
        names = [] if name == "finetune" else name.split("+")
        components = {component: {} for component in names}
    if not isinstance(components, dict) or not all(isinstance(s, dict | None) for s in components.values()):
        raise MethodConfigError(
            f"method {name!r}: components must map component names to settings objects, got {components!r}"
        )
    spelled = components_named_by(name)
    if spelled is not None and spelled != list(components):
        raise MethodConfigError(
            f"method {name!r} names the components {spelled} but is given {list(components)}: a method "
            "named 'finetune', after a component or 'a+b' must have exactly those components, in that "
            f"order; name these components {'+'.join(components) or 'finetune'!r} or a label of your own"
        )
    method = Method(
        name=name,
        components=[build_component(c, s, implementation=implementation) for c, s in components.items()],
    )
    # The declared flags, not the hooks: a settings class has none (component_class checks they agree).
    for role, replaces in (
        ("the training step", lambda c: c.owns_training_step),
        ("the optimizer", lambda c: c.replaces_optimizer),
    ):
        owners = [c.name for c in method.components if replaces(c)]
        if len(owners) > 1:
            raise MethodConfigError(
                f"method {name!r}: {owners} each replace {role}; combine at most one of them"
            )
    owner = method.step_owner()
    dropped = [c.name for c in method.components if owner is not None and c.adds_loss_terms]
    if dropped:
        # The step owner computes its own losses: loss terms of other components would be silently lost.
        raise MethodConfigError(
            f"method {name!r}: {owner.name} replaces the training step, so {dropped} cannot add loss terms"
        )
    return method


def check_method(name: str, components: dict[str, dict[str, Any] | None] | None = None) -> None:
    """Raise what build_method would for these settings (MethodConfigError, or TypeError), building only the
    components' settings classes: the workflow checks every configured method at parse time without torch."""
    build_method(name, components, implementation=False)
