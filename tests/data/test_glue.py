"""GLUE loading: real files (row counts, Hub label ids) and hand-made TSVs for every error path."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from robustft.data import DataFormatError, DataNotFoundError, get_task
from robustft.data.base import TASKS
from robustft.data.glue import HUB_ID, load_split, read_glue_tsv

# (task, split) -> rows in the official GLUE release (and the HF `nyu-mll/glue` split sizes).
ROW_COUNTS = {
    ("cola", "train"): 8551,
    ("cola", "dev"): 1043,
    ("sst2", "train"): 67349,
    ("sst2", "dev"): 872,
    ("mrpc", "train"): 3668,
    ("mrpc", "dev"): 408,
    ("stsb", "train"): 5749,
    ("stsb", "dev"): 1500,
    ("rte", "train"): 2490,
    ("rte", "dev"): 277,
    ("wnli", "train"): 635,
    ("wnli", "dev"): 71,
    ("qnli", "dev"): 5463,
}

# The label names of nyu-mll/glue, in the order of its integer ids.
HUB_LABEL_NAMES = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}


def _present(glue_dir: Path, task: str, split: str) -> Path:
    path = get_task(task).local_path(glue_dir.parent, split)
    if not path.exists():
        pytest.skip(f"{path} is not in this copy of the shared data")
    return path


# ---------------------------------------------------------------------------------------------- real files


@pytest.mark.parametrize(("task", "split"), sorted(ROW_COUNTS))
def test_real_file_row_count(glue_dir: Path, task: str, split: str) -> None:
    path = _present(glue_dir, task, split)
    data = load_split(task, split, glue_dir.parent)
    assert len(data) == ROW_COUNTS[(task, split)]
    assert all(len(column) == len(data) for column in data.texts)
    assert len(data.texts) == len(get_task(task).text_columns)
    assert data.source == f"local:{path}"
    if get_task(task).is_regression:
        assert all(0.0 <= v <= 5.0 for v in data.labels)
    else:
        assert set(data.labels) <= set(range(get_task(task).num_labels))
        assert all(isinstance(v, int) for v in data.labels)
    # Every text cell is non-empty: a shifted column would leave empty strings or ids behind.
    assert all(text.strip() for column in data.texts for text in column)


def test_label_ids_follow_hub_order() -> None:
    for task, names in HUB_LABEL_NAMES.items():
        spec = get_task(task)
        assert spec.num_labels == len(names), task
        assert spec.hub_id == HUB_ID == "nyu-mll/glue"
    assert get_task("mnli").labels == ("entailment", "neutral", "contradiction")
    assert get_task("rte").labels.index("entailment") == 0
    assert get_task("qnli").labels.index("not_entailment") == 1
    assert get_task("stsb").labels is None
    assert get_task("stsb").num_labels == 1


def test_real_rte_labels(glue_dir: Path) -> None:
    _present(glue_dir, "rte", "train")
    train = load_split("rte", "train", glue_dir.parent)
    # train.tsv row 0: "No Weapons of Mass Destruction Found in Iraq Yet." ... not_entailment
    assert train.texts[0][0] == "No Weapons of Mass Destruction Found in Iraq Yet."
    assert train.texts[1][0] == "Weapons of Mass Destruction Found in Iraq."
    assert train.labels[0] == 1  # not_entailment
    assert Counter(train.labels) == {0: 1249, 1: 1241}  # HF rte train: 1249 entailment
    dev = load_split("rte", "dev", glue_dir.parent)
    assert dev.labels[:2] == [1, 0]
    assert Counter(dev.labels) == {0: 146, 1: 131}


def test_real_mrpc_bom_and_labels(glue_dir: Path) -> None:
    path = _present(glue_dir, "mrpc", "train")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the file really has the BOM we must strip
    train = load_split("mrpc", "train", glue_dir.parent)
    assert train.labels[0] == 1
    assert train.texts[0][0].startswith("Amrozi accused his brother")
    assert train.texts[1][0].startswith('Referring to him as only "the witness"')  # bare quotes kept
    assert Counter(train.labels) == {1: 2474, 0: 1194}
    assert Counter(load_split("mrpc", "dev", glue_dir.parent).labels) == {1: 279, 0: 129}


def test_real_cola_headerless(glue_dir: Path) -> None:
    _present(glue_dir, "cola", "train")
    train = load_split("cola", "train", glue_dir.parent)
    assert train.texts[0][0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert train.labels[0] == 1  # acceptable
    assert Counter(train.labels) == {1: 6023, 0: 2528}


def test_real_other_first_rows(glue_dir: Path) -> None:
    _present(glue_dir, "sst2", "dev")
    sst2 = load_split("sst2", "dev", glue_dir.parent)
    assert sst2.labels[:2] == [1, 0]
    assert sst2.texts[0][0].startswith("it 's a charming and often affecting journey")
    _present(glue_dir, "stsb", "train")
    stsb = load_split("stsb", "train", glue_dir.parent)
    assert stsb.labels[:2] == [5.0, 3.8]
    assert stsb.texts[0][0] == "A plane is taking off."
    assert stsb.texts[1][0] == "An air plane is taking off."
    _present(glue_dir, "qnli", "dev")
    qnli = load_split("qnli", "dev", glue_dir.parent)
    assert qnli.labels[:2] == [0, 1]  # entailment, not_entailment
    _present(glue_dir, "wnli", "dev")
    assert load_split("wnli", "dev", glue_dir.parent).labels[:2] == [0, 1]


# --------------------------------------------------------------------------------------- hand-made files


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def test_bom_header_mrpc_layout(tmp_path: Path) -> None:
    _write(
        tmp_path / "glue" / "MRPC" / "train.tsv",
        "\ufeff" + MRPC_HEADER + '1\t11\t12\tHe said "yes.\tShe said no.\n0\t13\t14\ta b\tc d\n',
    )
    data = load_split("mrpc", "train", tmp_path)
    assert data.labels == [1, 0]
    assert data.texts == [['He said "yes.', "a b"], ["She said no.", "c d"]]


def test_header_column_order_is_read_from_the_file(tmp_path: Path) -> None:
    # Columns by name, not position: a file with the label first still maps correctly.
    path = _write(tmp_path / "rte.tsv", "label\tsentence2\tindex\tsentence1\nentailment\tH\t0\tP\n")
    data = read_glue_tsv(get_task("rte"), path)
    assert data.texts == [["P"], ["H"]]
    assert data.labels == [0]


def test_headerless_cola(tmp_path: Path) -> None:
    _write(
        tmp_path / "glue" / "CoLA" / "dev.tsv",
        "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tRope the stretched.\r\nx\t1\t\tLast line",
    )
    data = load_split("cola", "dev", tmp_path)
    assert data.labels == [1, 0, 1]
    # CRLF and a missing final newline leave no stray characters in the text.
    assert data.texts == [["The sailors rode the breeze.", "Rope the stretched.", "Last line"]]


def test_regression_labels_are_floats(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = _write(tmp_path / "stsb.tsv", header + "0\tg\tf\ty\t1\tn\tn\tA\tB\t3.800\n")
    data = read_glue_tsv(get_task("stsb"), path)
    assert data.labels == [3.8]
    bad = _write(tmp_path / "bad.tsv", header + "0\tg\tf\ty\t1\tn\tn\tA\tB\tfive\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(bad))}:2: label 'five' is not a number"):
        read_glue_tsv(get_task("stsb"), bad)


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "glue" / "RTE" / "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\tP\tH\tentailment\n1\tP only\tentailment\n",
    )
    with pytest.raises(DataFormatError) as err:
        load_split("rte", "train", tmp_path)
    assert f"{path}:3" in str(err.value)
    assert "expected 4" in str(err.value) and "found 3" in str(err.value)


def test_missing_field_headerless_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path / "glue" / "CoLA" / "train.tsv", "a\t1\t\tOne.\nb\t0\t\tTwo.\nc\t1\tThree.\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:3: expected 4"):
        load_split("cola", "train", tmp_path)


def test_bad_label_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "glue" / "RTE" / "dev.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\tP\tH\tentailment\n1\tP\tH\tneutral\n",
    )
    with pytest.raises(DataFormatError) as err:
        load_split("rte", "dev", tmp_path)
    message = str(err.value)
    assert f"{path}:3" in message
    assert "'neutral'" in message and "not_entailment" in message


def test_header_lacking_a_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tgold\n0\tP\tH\tentailment\n")
    with pytest.raises(
        DataFormatError, match=rf"{re.escape(str(path))}:1: header lacks column\(s\) \['label'\]"
    ):
        read_glue_tsv(get_task("rte"), path)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(empty))}: file is empty"):
        read_glue_tsv(get_task("rte"), empty)
    header_only = _write(tmp_path / "header.tsv", "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(header_only))}: no data rows"):
        read_glue_tsv(get_task("rte"), header_only)


def test_missing_local_file_and_no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(task, split, cache_dir):
        raise ConnectionError("Hub unreachable (test)")

    monkeypatch.setattr("robustft.data.glue._read_hub", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_split("rte", "train", tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "glue" / "RTE" / "train.tsv") in message
    assert "nyu-mll/glue" in message
    assert "'rte'" in message and "'train'" in message
    assert "ConnectionError" in message
    assert isinstance(err.value, FileNotFoundError)  # callers catching FileNotFoundError still work

    # The Hub split name of a non-train split, e.g. MNLI's mismatched dev set.
    with pytest.raises(DataNotFoundError, match="validation_mismatched"):
        load_split("mnli", "dev_mm", tmp_path)


def test_local_file_is_preferred_over_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hub(task, split, cache_dir):
        raise AssertionError("the Hub must not be used when the local file exists")

    monkeypatch.setattr("robustft.data.glue._read_hub", hub)
    _write(tmp_path / "glue" / "WNLI" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\tB\t1\n")
    assert load_split("wnli", "dev", tmp_path).labels == [1]


def test_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(KeyError) as err:
        load_split("glue-9", "train", "anywhere")
    message = str(err.value)
    assert "'glue-9'" in message
    for key in TASKS:
        assert key in message


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"no split 'test'.*train, dev"):
        load_split("rte", "test", tmp_path)
    assert get_task("mnli").local_path(tmp_path, "dev_mm") == tmp_path / "glue/MNLI/dev_mismatched.tsv"


def test_task_variant_names_a_fraction_of_the_training_set() -> None:
    from robustft.data import get_task, split_task_variant, task_variant_name

    assert split_task_variant("mrpc@0.2") == ("mrpc", 0.2)
    assert split_task_variant("mrpc") == ("mrpc", None)
    assert get_task("mrpc@0.2") is get_task("mrpc")
    assert task_variant_name("snli", 0.001) == "snli@0.001" and task_variant_name("mrpc", 1.0) == "mrpc"
    for bad in ("mrpc@0", "mrpc@1.5", "mrpc@x", "mrpc@"):
        with pytest.raises(KeyError, match="training fraction"):
            get_task(bad)
