"""Fine-tuning methods. Every module in this package registers its component(s) on import, so adding
a method is one new file; `build_method` composes components into a run's method."""

import importlib
import pkgutil

from robustft.errors import MethodConfigError
from robustft.methods.base import (
    COMPONENTS,
    Batch,
    Component,
    Method,
    RunContext,
    build_method,
    register_component,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "COMPONENTS",
    "Batch",
    "Component",
    "Method",
    "MethodConfigError",
    "RunContext",
    "build_method",
    "register_component",
]
