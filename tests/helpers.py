"""Paths the tests share: the checkout, the hand-made fixture files and the real benchmark files.

A module rather than conftest.py, so test modules can import these names (conftest is not for importing).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Small hand-made inputs (tiny workflow configs, the XTREME-layout tree); never the real benchmark files.
FIXTURES = REPO / "tests" / "fixtures"


def shared_data_dir() -> Path:
    """The real benchmark files: $ROBUSTFT_TEST_DATA, else `shared/data` beside the checkout."""
    env = os.environ.get("ROBUSTFT_TEST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"
