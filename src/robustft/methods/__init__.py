"""Fine-tuning methods. `settings.py` registers every component by its settings class (no torch), which
names the module that implements it; `build_method` composes components into a run's method, importing
their implementations (and torch) only then, and `check_method` checks a method's settings without them."""

from robustft.errors import MethodConfigError
from robustft.methods import settings as _settings  # noqa: F401  (registers every component)
from robustft.methods.base import (
    COMPONENTS,
    Batch,
    Component,
    Method,
    RunContext,
    build_method,
    check_method,
    register_component,
)

__all__ = [
    "COMPONENTS",
    "Batch",
    "Component",
    "Method",
    "MethodConfigError",
    "RunContext",
    "build_method",
    "check_method",
    "register_component",
]
