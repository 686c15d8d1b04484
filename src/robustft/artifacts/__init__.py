"""Paper artifacts: each table or figure as a function of the runs table (see base.py).

Importing this package registers every artifact; adding one is one decorated function in its paper's
module.
"""

from __future__ import annotations

from robustft.artifacts import crossmethod as _crossmethod  # noqa: F401  (registers the cross-method table)
from robustft.artifacts import neftune as _neftune  # noqa: F401  (registers NEFTune's artifacts)
from robustft.artifacts import noisytune as _noisytune  # noqa: F401  (registers NoisyTune's artifacts)
from robustft.artifacts import noisytune_xtreme as _noisytune_xtreme  # noqa: F401  (NoisyTune Table 3)
from robustft.artifacts import smart as _smart  # noqa: F401  (registers SMART's artifacts)
from robustft.artifacts.base import (
    ARTIFACTS,
    ArtifactContext,
    ArtifactResult,
    get_artifact,
    read_appendix,
    read_result,
    write_result,
)

__all__ = [
    "ARTIFACTS",
    "ArtifactContext",
    "ArtifactResult",
    "get_artifact",
    "read_appendix",
    "read_result",
    "write_result",
]
