"""robustft.methods.settings without torch: the passes per training example that size a method's jobs."""

from __future__ import annotations

import pytest

from robustft.methods.settings import method_passes


@pytest.mark.parametrize(
    ("components", "precision", "expected"),
    [
        (None, "fp32", (1.0, 0.0)),  # fine-tuning
        ({"noisytune": {}}, "fp32", (1.0, 0.0)),  # noise once before training: no extra pass
        ({"neftune": {}}, "bf16", (1.0, 0.0)),
        ({"r3f": {}}, "fp32", (2.0, 0.0)),  # the noisy forward, backpropagated with the clean one
        ({"freelb": {"adv_steps": 3}}, "fp32", (3.0, 0.0)),  # K ascent passes replace the clean one
        ({"freelb": {"adv_steps": 3, "clean_pass": True}}, "fp32", (4.0, 0.0)),
        # SMART, K = 1: the EMA teacher's forward (1/3), one ascent pass and the adversarial pass...
        ({"smart": {}}, "fp32", (1.0 + 1 / 3 + 2, 0.0)),
        # ...which under bf16 run in fp32, with R_s's clean reference recomputed there.
        ({"smart": {}}, "bf16", (1.0 + 1 / 3, 3.0)),
    ],
)
def test_method_passes_count_each_components_forward_and_backward_passes(components, precision, expected):
    assert method_passes(components, precision) == pytest.approx(expected)
