"""The transcribed paper numbers: loading, lookups, duplicates and ambiguity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import robustft
from robustft.reference import (
    GLUE_AVG,
    GLUE_SPLIT_SIZES,
    GLUE_TABLE_ORDER,
    PAPER_TASK_NAME,
    AmbiguousPaperValue,
    load_paper_results,
    paper_lookup,
    paper_task_name,
    paper_value,
)

SMART_ANLI = "Table 6 (arXiv v5; ANLI)"


def test_load_drops_exact_duplicates_and_keeps_columns() -> None:
    frame = load_paper_results()
    assert list(frame.columns) == [
        "paper",
        "artifact",
        "model",
        "dataset",
        "split",
        "method",
        "metric",
        "value",
        "source",
        "confidence",
        "notes",
    ]
    assert not frame.duplicated().any()
    raw = pd.read_csv(
        Path(robustft.__file__).parent / "reference" / "paper_results.csv", keep_default_na=False
    )
    assert len(frame) == len(raw.drop_duplicates())
    assert frame["value"].dtype == float
    # Callers get a copy: editing it must not change later lookups.
    frame.loc[:, "value"] = -1.0
    assert paper_value("NoisyTune", "Table 2", "bert-base", "MNLI", "finetune") == 84.4


def test_noisytune_table2_is_complete() -> None:
    frame = load_paper_results()
    table2 = frame[(frame["paper"] == "NoisyTune") & (frame["artifact"] == "Table 2")]
    models = {"bert-base", "xlnet-base", "roberta-base", "electra-base"}
    assert set(table2["model"]) == models
    assert set(table2["dataset"]) == {*GLUE_TABLE_ORDER, GLUE_AVG}
    assert set(table2["method"]) == {"finetune", "noisytune"}
    assert len(table2.drop_duplicates(["model", "dataset", "method"])) == len(models) * 10 * 2


@pytest.mark.parametrize(
    ("model", "dataset", "method", "metric", "expected"),
    [
        ("bert-base", "MNLI", "finetune", None, 84.4),
        ("bert-base", "MNLI", "noisytune", "accuracy", 84.7),
        ("bert-base", "CoLA", "finetune", "mcc", 58.1),
        ("bert-base", "STS-B", "noisytune", "pearson", 90.1),
        ("bert-base", GLUE_AVG, "noisytune", "average", 80.3),
        ("roberta-base", "RTE", "finetune", None, 77.1),
    ],
)
def test_paper_value(model: str, dataset: str, method: str, metric: str | None, expected: float) -> None:
    assert paper_value("NoisyTune", "Table 2", model, dataset, method, metric) == expected


def test_absent_cell_is_none_but_unknown_artifact_is_an_error() -> None:
    assert paper_value("NoisyTune", "Table 2", "bert-base", "SNLI", "finetune") is None
    assert paper_value("NoisyTune", "Table 2", "bert-base", "CoLA", "finetune", "accuracy") is None
    with pytest.raises(KeyError, match="known artifacts"):
        paper_value("NoisyTune", "Table 9", "bert-base", "MNLI", "finetune")


def test_ambiguous_key_raises_with_the_candidates() -> None:
    # SMART Table 6 reports RoBERTa-large on ANLI in two training settings told apart only by notes.
    with pytest.raises(AmbiguousPaperValue, match=r"73\.8.*71\.3"):
        paper_value("SMART", SMART_ANLI, "roberta-large", "ANLI-R1", "finetune (Nie et al. 2019)")


def test_rows_agreeing_on_the_value_are_one_number() -> None:
    # The same SMART dev number appears under both settings; it is one fact, not an ambiguity.
    number = paper_lookup("SMART", SMART_ANLI, "roberta-large", "ANLI-All", "smart", split="dev")
    assert number is not None
    assert (number.value, number.metric, number.split) == (57.1, "accuracy", "dev")
    assert number.source


def test_task_names() -> None:
    assert {paper_task_name(task) for task in PAPER_TASK_NAME} == set(GLUE_TABLE_ORDER)
    assert paper_task_name("sst2") == "SST-2"
    assert paper_task_name(GLUE_AVG) == GLUE_AVG
    assert set(GLUE_SPLIT_SIZES) == set(PAPER_TASK_NAME)
