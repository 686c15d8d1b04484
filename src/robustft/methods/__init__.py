"""Fine-tuning methods. Each module registers one component; `build_method` composes them."""

from robustft.methods import noisytune as _noisytune  # noqa: F401  (registers the component)
from robustft.methods.base import (
    COMPONENTS,
    Component,
    Method,
    MethodConfigError,
    RunContext,
    build_method,
    register_component,
)

__all__ = [
    "COMPONENTS",
    "Component",
    "Method",
    "MethodConfigError",
    "RunContext",
    "build_method",
    "register_component",
]
