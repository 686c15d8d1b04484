"""The precision a run trains in: `train.precision`, with `auto` resolved for the device and the method.

bf16 here is always mixed precision (autocast over fp32 weights and optimizer state), never bf16 weights.
`auto` picks bf16 only where it is both fast and faithful:
- on a CUDA GPU, bf16 when the GPU supports it;
- on a CPU, bf16 only when the CPU has fast bf16 kernels (oneDNN's AVX512-BF16 or AMX paths). Without
  them, PyTorch emulates bf16 matrix products and they run far below the fp32 rate (measured on an AVX2
  EPYC, 2 threads: about 1 against 120 GFLOP/s for a 512 x 512 product, and 8 against 50 GFLOP/s for a
  MiniLM-size linear layer under autocast); with them (a 2-core AVX512-BF16 EPYC), bf16 products ran 2.55x
  the fp32 rate and MiniLM training 1.47-1.53x faster;
- anywhere, fp32 when a component of the method declares that its numbers depend on fp32 detail
  (`Component.full_precision_reason`, e.g. R3F's noise far below bf16's spacing).
An explicit fp32, bf16 or fp16 is always used as given; bf16 on a CPU without fast kernels logs a warning.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from robustft.provenance import cpu_capability, cpu_has_fast_bf16

if TYPE_CHECKING:
    from robustft.methods import Component

logger = logging.getLogger(__name__)

AUTO = "auto"
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run asked for (`requested`), what it trains in (`used`, one of PRECISIONS), why, and where."""

    requested: str
    used: str
    why: str
    device: str

    def record(self) -> dict[str, str]:
        """The run.json entry."""
        return asdict(self)

    @property
    def use_cpu(self) -> bool:
        """Whether TrainingArguments needs `use_cpu=True`: transformers refuses bf16/fp16 without a GPU
        unless told that the run is on the CPU on purpose."""
        return self.device == "cpu" and self.used != "fp32"


def training_device() -> str:
    """The device type Trainer will train on: cuda, mps or cpu (the order transformers picks them in)."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cuda_has_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


@functools.cache
def _warn_slow_cpu_bf16(capability: str) -> None:
    """Once per process: an explicit bf16 on a CPU that emulates it."""
    logger.warning(
        "train.precision bf16 on a CPU without fast bf16 kernels (%s): training runs, but slower than in "
        "fp32; `auto` would pick fp32 here",
        capability,
    )


def resolve_precision(requested: str, components: Sequence[Component], device: str) -> PrecisionChoice:
    """The precision a run with `components` trains in on `device` (a torch device type) when it asks for
    `requested` (`auto` or one of PRECISIONS)."""
    if requested not in (AUTO, *PRECISIONS):
        raise ValueError(f"train.precision must be one of {[AUTO, *PRECISIONS]}, got {requested!r}")
    if requested != AUTO:
        why = "set explicitly"
        if requested == "bf16" and device == "cpu" and not cpu_has_fast_bf16():
            _warn_slow_cpu_bf16(cpu_capability())
            why += f"; slower than fp32 here: this CPU has no fast bf16 kernels ({cpu_capability()})"
        return PrecisionChoice(requested, requested, why, device)
    needs_fp32 = [
        f"{c.name} needs fp32: {reason}" for c in components if (reason := c.full_precision_reason())
    ]
    if needs_fp32:
        return PrecisionChoice(AUTO, "fp32", "auto: fp32, " + "; ".join(needs_fp32), device)
    if device == "cuda":
        if cuda_has_bf16():
            return PrecisionChoice(AUTO, "bf16", "auto: bf16 autocast, this GPU supports bf16", device)
        return PrecisionChoice(AUTO, "fp32", "auto: fp32, this GPU does not support bf16", device)
    if device == "cpu":
        if cpu_has_fast_bf16():
            why = f"auto: bf16 autocast, this CPU has fast bf16 kernels ({cpu_capability()})"
            return PrecisionChoice(AUTO, "bf16", why, device)
        why = f"auto: fp32, this CPU has no fast bf16 kernels ({cpu_capability()})"
        return PrecisionChoice(AUTO, "fp32", why, device)
    return PrecisionChoice(
        AUTO, "fp32", f"auto: fp32 on {device} (bf16 is chosen only on CUDA and CPUs)", device
    )
