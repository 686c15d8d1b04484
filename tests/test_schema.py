"""config/README.md is generated from the workflow config's schema, so the two cannot drift apart."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.schema import CONFIG_README_PATH, config_reference, load_schema
from robustft.train.config import TrainConfig


def test_the_committed_config_readme_is_the_generated_one() -> None:
    assert CONFIG_README_PATH.read_text() == config_reference(), (
        "config/README.md differs from the schema: run `robustft config-docs --out config/README.md`"
    )


def test_every_train_setting_has_a_row_with_its_default() -> None:
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in config_reference().splitlines()}
    for name, default in dataclasses.asdict(TrainConfig()).items():
        cells = rows[f"train.{name}"]
        assert json.loads(cells[2].strip("`")) == default, name
        assert cells[3].strip(" |"), f"train.{name} has no description"


def test_a_key_without_a_description_is_refused_by_name() -> None:
    schema = copy.deepcopy(load_schema())
    generation = schema["properties"]["instruct"]["properties"]["generation"]
    del generation["properties"]["batch_size"]["description"]
    del schema["properties"]["seeds"]["description"]
    with pytest.raises(ValueError, match=r"\['seeds', 'instruct\.generation\.batch_size'\]"):
        config_reference(schema)


def test_types_and_cells_read_as_words() -> None:
    schema = {
        "description": "d",
        "properties": {
            "limit": {"type": ["integer", "null"], "minimum": 1, "default": None, "description": "a|b <N>"},
            "ratio": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "`<x>`"},
        },
    }
    text = config_reference(schema)
    assert "| `limit` | integer or null (≥ 1) | `null` | a\\|b \\<N> |" in text
    assert "| `ratio` | number (≥ 0, < 1) | — | `<x>` |" in text  # no escape inside a code span
    lines = config_reference().splitlines()
    report_to = next(line for line in lines if line.startswith("| `train.report_to`"))
    assert "`none` or one of `azure_ml`," in report_to and "`wandb` or a list of them" in report_to


def test_the_cli_writes_it(tmp_path: Path, capsys) -> None:
    assert main(["config-docs", "--out", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text() == config_reference()
    assert main(["config-docs"]) == 0
    assert capsys.readouterr().out == config_reference()
