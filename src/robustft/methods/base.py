"""The one interface every fine-tuning method implements.

A run's method is an ordered list of components, e.g. [NoisyTune] or [NoisyTune, RecAdam]. A component
overrides only the hooks it needs and knows nothing about the others, so they compose freely.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn


class MethodConfigError(ValueError):
    """A method or component setting is unknown, out of range or incompatible."""


@dataclass
class RunContext:
    """What a component may need to know about the run it is part of."""

    seed: int
    # Parameters that did not come from the checkpoint (the new task head): never treat them as pretrained.
    new_parameter_names: frozenset[str] = frozenset()
    # Components write what they did here; it lands in run.json.
    log: dict[str, Any] = field(default_factory=dict)


@dataclass
class Component:
    """Base class: a dataclass of settings (paper defaults as field defaults) plus optional hooks."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise MethodConfigError naming the setting when a value is out of range."""

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        """Called once after the model is loaded and before the first training step."""

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COMPONENTS: dict[str, type[Component]] = {}


def register_component(cls: type[Component]) -> type[Component]:
    COMPONENTS[cls.name] = cls
    return cls


def build_component(name: str, settings: dict[str, Any] | None = None) -> Component:
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
    return cls(**(settings or {}))


@dataclass
class Method:
    """A named, ordered list of components. `finetune` is the empty list."""

    name: str
    components: list[Component]

    def prepare_model(self, model: nn.Module, context: RunContext) -> None:
        for component in self.components:
            component.prepare_model(model, context)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "components": [{c.name: c.settings()} for c in self.components]}


def build_method(name: str, components: dict[str, dict[str, Any] | None] | None = None) -> Method:
    """Build a method from explicit component settings, or from its name: 'finetune', 'a', 'a+b'."""
    if components is None:
        names = [] if name == "finetune" else name.split("+")
        components = {component: {} for component in names}
    if not isinstance(components, dict) or not all(isinstance(s, dict | None) for s in components.values()):
        raise MethodConfigError(
            f"method {name!r}: components must map component names to settings objects, got {components!r}"
        )
    return Method(name=name, components=[build_component(c, s) for c, s in components.items()])
