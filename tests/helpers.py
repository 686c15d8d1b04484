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


# The head of a subprocess script that parses the workflow (Snakefile sys.argv[1], config file
# sys.argv[2]) with Snakemake's API; the lines a test appends run inside the `with`, indented by 4, with
# `workflow` (Snakemake's Workflow) and `json` at hand.
LOAD_WORKFLOW_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[2])]),
        snakefile=Path(sys.argv[1]),
        workdir=Path.cwd(),
    )._workflow
"""


def tiny_bert_config(vocab_size: int):
    """The tests' random 2-layer BERT shape (32 wide), for the real MiniLM tokenizer's vocabulary."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
