"""Paper artifacts: each table or figure as a function of the runs table (see base.py).

Adding one is one decorated function in its paper's module, and its key in index.py. The paper modules
import pandas, scipy and matplotlib, so they are imported (registering every artifact) on the first use of
a name below, not with the package: the workflow reads only index.py when it parses the Snakefile.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustft.artifacts.base import (
        ARTIFACTS,
        ArtifactContext,
        ArtifactResult,
        get_artifact,
        read_appendix,
        read_result,
        write_result,
    )

# One module per paper; importing it registers its artifacts.
PAPER_MODULES = ("crossmethod", "neftune", "noisytune", "noisytune_xtreme", "smart")

__all__ = [
    "ARTIFACTS",
    "ArtifactContext",
    "ArtifactResult",
    "get_artifact",
    "read_appendix",
    "read_result",
    "write_result",
]


def __getattr__(name: str) -> Any:
    """A name of base.py, once every paper's artifacts are registered."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in PAPER_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    value = getattr(importlib.import_module(f"{__name__}.base"), name)
    globals()[name] = value
    return value
