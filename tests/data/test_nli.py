"""SNLI, SciTail, ANLI and MNLI annotator labels: hand-made files in each original format, the Hub
fallback (with `datasets.load_dataset` replaced), every error path, and fractional subsampling.

None of these datasets is in the shared data folder, so every file here is built in tmp_path; the rows
copy the layout (and, where quoted, the text) of the real distributions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from robustft.data import (
    TASKS,
    DataFormatError,
    DataNotFoundError,
    SplitData,
    get_task,
    load_mnli_annotations,
    load_split,
    subsample_fraction,
)
from robustft.data.glue import hub_columns_to_split
from robustft.prefetch import prefetch

NLI_TASKS = ("snli", "scitail", "anli_r1", "anli_r2", "anli_r3", "anli")

# Label names in the order of the Hub's integer ids, from the dataset cards (ClassLabel names).
HUB_LABEL_NAMES = {
    "stanfordnlp/snli": ("entailment", "neutral", "contradiction"),
    "facebook/anli": ("entailment", "neutral", "contradiction"),
}


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _jsonl(path: Path, rows: list[dict[str, Any] | str], bom: bool = False) -> Path:
    """One line per row; a str row is written verbatim (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return _write(path, "\n".join(lines) + "\n", bom=bom)


def _snli(sentence1: str, sentence2: str, gold: str) -> dict[str, Any]:
    return {
        "annotator_labels": [gold],
        "captionID": "3416050480.jpg#4",
        "gold_label": gold,
        "pairID": "3416050480.jpg#4r1n",
        "sentence1": sentence1,
        "sentence1_binary_parse": "( ... )",
        "sentence1_parse": "(ROOT ...)",
        "sentence2": sentence2,
        "sentence2_binary_parse": "( ... )",
        "sentence2_parse": "(ROOT ...)",
    }


def _anli(context: str, hypothesis: str, label: str) -> dict[str, Any]:
    return {
        "uid": f"uid-{hypothesis}",
        "context": context,
        "hypothesis": hypothesis,
        "label": label,
        "model_label": "e",
        "emturk": False,
        "genre": "wiki",
        "reason": "",
        "tag": "",
    }


HORSE = "A person on a horse jumps over a broken down airplane."
SNLI_TRAIN_HEAD = [  # the first rows of snli_1.0_train.jsonl, plus a hand-made one without a gold label
    _snli(HORSE, "A person is training his horse for a competition.", "neutral"),
    _snli(HORSE, "A person is at a diner, ordering an omelette.", "contradiction"),
    _snli("Two people walk.", "Nobody agreed on this one.", "-"),
    _snli(HORSE, "A person is outdoors, on a horse.", "entailment"),
]


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Make every Hub read fail as it does on a compute node; return the (task, split) calls."""
    calls: list[tuple[str, str]] = []

    def offline(task, split, cache_dir):
        calls.append((task.key, split))
        raise ConnectionError("Hub unreachable (test)")

    monkeypatch.setattr("robustft.data.glue._read_hub", offline)
    return calls


# ---------------------------------------------------------------------------------------------- registry


def test_registry_entries_are_consistent() -> None:
    for key in NLI_TASKS:
        task = get_task(key)
        assert task.family == "nli" and task.primary_metric == "accuracy"
        assert next(iter(task.eval_splits)) == "dev", key  # training reports eval_dev_<metric>
        # Every split we read locally also has a Hub split, so the fallback covers all of them.
        assert set(task.hub_splits) == {"train", *task.eval_splits}, key
        for split in ("train", *task.eval_splits):
            n_files = len(task.local_paths("D", split))
            assert n_files == len(task.hub_splits[split].split("+")), (key, split)
            assert all(p.parts[:2] == ("D", "nli") for p in task.local_paths("D", split))


def test_label_ids_follow_hub_order() -> None:
    for key in NLI_TASKS:
        task = get_task(key)
        assert task.labels == HUB_LABEL_NAMES.get(task.hub_id, task.labels)
    assert get_task("snli").labels == HUB_LABEL_NAMES["stanfordnlp/snli"]
    assert get_task("anli").labels == HUB_LABEL_NAMES["facebook/anli"]
    assert get_task("mnli").labels == HUB_LABEL_NAMES["facebook/anli"]  # one 3-way order everywhere
    assert get_task("scitail").labels == ("entailment", "neutral")
    assert get_task("scitail").num_labels == 2 and get_task("anli").num_labels == 3


def test_anli_split_layout() -> None:
    anli = get_task("anli")
    assert list(anli.eval_splits) == [
        *("dev", "dev_r1", "dev_r2", "dev_r3"),
        *("test", "test_r1", "test_r2", "test_r3"),
    ]
    assert anli.hub_splits["train"] == "train_r1+train_r2+train_r3"
    assert anli.hub_splits["test_r2"] == "test_r2"
    assert [p.as_posix() for p in anli.local_paths("D", "dev")] == [
        f"D/nli/anli_v1.0/R{r}/dev.jsonl" for r in (1, 2, 3)
    ]
    r2 = get_task("anli_r2")
    assert list(r2.eval_splits) == ["dev", "test"]
    assert r2.hub_splits == {"train": "train_r2", "dev": "dev_r2", "test": "test_r2"}
    assert r2.local_path("D", "train").as_posix() == "D/nli/anli_v1.0/R2/train.jsonl"
    with pytest.raises(ValueError, match="made of 3 files"):
        anli.local_path("D", "dev")


# ------------------------------------------------------------------------------------------------ SNLI


def test_snli_drops_no_gold_rows_and_says_so(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "nli/snli_1.0/snli_1.0_train.jsonl", SNLI_TRAIN_HEAD, bom=True)
    data = load_split("snli", "train", tmp_path)
    assert data.labels == [1, 2, 0]  # neutral, contradiction, entailment; the '-' row is gone
    assert data.texts[0] == [HORSE] * 3  # the BOM did not stick to the first text
    assert data.texts[1][2] == "A person is outdoors, on a horse."
    assert data.source == f"local:{path} (1 rows without a gold label dropped)"


def test_snli_dev_and_test_files(tmp_path: Path) -> None:
    _jsonl(tmp_path / "nli/snli_1.0/snli_1.0_dev.jsonl", [_snli("P", "H", "entailment")])
    _jsonl(tmp_path / "nli/snli_1.0/snli_1.0_test.jsonl", [_snli("P", "H", "contradiction")])
    assert load_split("snli", "dev", tmp_path).labels == [0]
    test = load_split("snli", "test", tmp_path)
    assert test.labels == [2]
    assert test.source == f"local:{tmp_path / 'nli/snli_1.0/snli_1.0_test.jsonl'}"  # nothing dropped


def test_snli_blank_lines_and_crlf(tmp_path: Path) -> None:
    rows = [json.dumps(_snli("P1", "H1", "neutral")), "", json.dumps(_snli("P2", "H2", "entailment"))]
    _write(tmp_path / "nli/snli_1.0/snli_1.0_dev.jsonl", "\r\n".join(rows) + "\r\n\r\n")
    data = load_split("snli", "dev", tmp_path)
    assert data.texts == [["P1", "P2"], ["H1", "H2"]] and data.labels == [1, 0]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"gold_label": "neutral", "sentence1": "P"', r"not valid JSON"),
        ('["neutral", "P", "H"]', r"expected a JSON object, found list"),
        (json.dumps({"gold_label": "neutral", "sentence1": "P"}), r"lacks key 'sentence2'"),
        (json.dumps(_snli("P", None, "neutral")), r"has a NoneType under key 'sentence2'"),  # type: ignore[arg-type]
        (json.dumps(_snli("P", "H", "entails")), r"label 'entails' is not one of \['entailment'"),
        (json.dumps({k: v for k, v in _snli("P", "H", "x").items() if k != "gold_label"}), "'gold_label'"),
    ],
)
def test_snli_malformed_rows_name_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    # The bad row sits on line 3, after a row that is dropped: line numbers count physical lines.
    path = _jsonl(
        tmp_path / "nli/snli_1.0/snli_1.0_train.jsonl",
        [_snli("P", "H", "neutral"), _snli("P", "H", "-"), bad_line, _snli("P", "H", "neutral")],
    )
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:3: .*{message}"):
        load_split("snli", "train", tmp_path)


def test_snli_file_without_gold_rows(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "nli/snli_1.0/snli_1.0_dev.jsonl", [_snli("P", "H", "-")] * 2)
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}: no data rows \(2 without a gold"):
        load_split("snli", "dev", tmp_path)
    _write(path, "\n")
    with pytest.raises(DataFormatError, match=r"no data rows$"):
        load_split("snli", "dev", tmp_path)


# --------------------------------------------------------------------------------------------- SciTail

SCITAIL_DIR = "nli/SciTailV1.1/tsv_format"


def test_scitail_tsv_keeps_bare_quotes(tmp_path: Path) -> None:
    # Stray quotes are why the Hub's tsv_format lost rows; here each line stays one row.
    _write(
        tmp_path / SCITAIL_DIR / "scitail_1.0_train.tsv",
        'Pluto rotates once on its axis every 6.39 Earth days; "once.\tEarth rotates on its axis once times '
        "in one day.\tneutral\n"
        'He said "yes\tA quote "opens.\tentails\r\n'
        "Plain premise.\tPlain hypothesis.\tentails",
    )
    data = load_split("scitail", "train", tmp_path)
    assert data.labels == [1, 0, 0]  # neutral, entails -> entailment
    assert data.texts[0][1] == 'He said "yes'
    assert data.texts[1] == [
        "Earth rotates on its axis once times in one day.",
        'A quote "opens.',
        "Plain hypothesis.",
    ]


def test_scitail_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / SCITAIL_DIR / "scitail_1.0_dev.tsv", "P\tH\tentails\nP only\tneutral\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: expected 3 tab-separated fields"):
        load_split("scitail", "dev", tmp_path)
    _write(path, "P\tH\tentails\nP\tH\tcontradiction\n")
    with pytest.raises(DataFormatError) as err:
        load_split("scitail", "dev", tmp_path)
    assert f"{path}:2" in str(err.value)
    assert "['entailment', 'neutral', 'entails']" in str(err.value)


# ------------------------------------------------------------------------------------------------ ANLI

ANLI_DIR = "nli/anli_v1.0"


def _anli_round_files(root: Path, split: str, rounds=(1, 2, 3)) -> None:
    labels = {1: "e", 2: "n", 3: "c"}
    for r in rounds:
        _jsonl(
            root / ANLI_DIR / f"R{r}" / f"{split}.jsonl",
            [_anli(f"context {r}a", f"hyp {r}a", labels[r]), _anli(f"context {r}b", f"hyp {r}b", "e")],
        )


def test_anli_one_round_and_letter_labels(tmp_path: Path) -> None:
    _anli_round_files(tmp_path, "dev", rounds=(2,))
    data = load_split("anli_r2", "dev", tmp_path)
    assert data.texts == [["context 2a", "context 2b"], ["hyp 2a", "hyp 2b"]]
    assert data.labels == [1, 0]  # n -> neutral, e -> entailment


def test_anli_all_rounds_concatenate_in_round_order(tmp_path: Path) -> None:
    _anli_round_files(tmp_path, "dev")
    every = load_split("anli", "dev", tmp_path)
    assert every.texts[0] == [
        "context 1a",
        "context 1b",
        "context 2a",
        "context 2b",
        "context 3a",
        "context 3b",
    ]
    assert every.labels == [0, 0, 1, 0, 2, 0]
    assert every.source == " + ".join(f"local:{tmp_path / ANLI_DIR / f'R{r}/dev.jsonl'}" for r in (1, 2, 3))
    r3 = load_split("anli", "dev_r3", tmp_path)
    assert r3.texts[0] == ["context 3a", "context 3b"] and r3.labels == [2, 0]
    # The per-round sets partition the combined one, so "All" is their size-weighted mean.
    parts = [load_split("anli", f"dev_r{r}", tmp_path) for r in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(every)


def test_anli_bad_label_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / ANLI_DIR / "R1/test.jsonl", [_anli("C", "H", "e"), _anli("C", "H", "entailed")])
    with pytest.raises(DataFormatError) as err:
        load_split("anli_r1", "test", tmp_path)
    assert f"{path}:2" in str(err.value)
    assert "'entailed'" in str(err.value) and "'e', 'n', 'c'" in str(err.value)


def test_anli_partial_rounds_stop_without_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _offline(monkeypatch)
    _anli_round_files(tmp_path, "train", rounds=(1, 2))
    with pytest.raises(DataNotFoundError) as err:
        load_split("anli", "train", tmp_path)
    message = str(err.value)
    assert f"missing: {tmp_path / ANLI_DIR / 'R3/train.jsonl'}" in message
    assert str(tmp_path / ANLI_DIR / "R1/train.jsonl") in message  # listed as found
    assert calls == []  # a half-unpacked archive is not silently completed from the Hub
    # The round that is complete still loads on its own.
    assert len(load_split("anli_r1", "train", tmp_path)) == 2


# ------------------------------------------------------------------------------------------ Hub fallback


@pytest.mark.parametrize(
    ("task", "split", "expected"),
    [
        ("snli", "train", ["stanfordnlp/snli", "'plain_text'", "split 'train'", "snli_1.0_train.jsonl"]),
        ("snli", "test", ["split 'test'", "snli_1.0/snli_1.0_test.jsonl", "unzip snli_1.0.zip"]),
        ("scitail", "dev", ["allenai/scitail", "'snli_format'", "split 'validation'", "scitail_1.0_dev.tsv"]),
        ("anli_r3", "test", ["facebook/anli", "split 'test_r3'", "anli_v1.0/R3/test.jsonl"]),
        ("anli", "dev", ["split 'dev_r1+dev_r2+dev_r3'", "R1/dev.jsonl, ", "R3/dev.jsonl do not exist"]),
    ],
)
def test_missing_files_and_no_hub_give_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, split: str, expected: list[str]
) -> None:
    calls = _offline(monkeypatch)
    with pytest.raises(DataNotFoundError) as err:
        load_split(task, split, tmp_path / "nowhere")
    message = str(err.value)
    for part in expected:
        assert part in message, (part, message)
    assert str(tmp_path / "nowhere" / "nli") in message and "ConnectionError" in message
    assert calls == [(task, split)]


class _FakeHub:
    """Stands in for datasets.load_dataset: records the call, returns a real in-memory Dataset."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns
        self.calls: list[tuple] = []

    def __call__(self, path: str, name: str, split: str, cache_dir: str | None = None):
        import datasets

        self.calls.append((path, name, split))
        return datasets.Dataset.from_dict(self.columns)


def test_hub_snli_drops_minus_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    hub = _FakeHub({"premise": ["P0", "P1", "P2"], "hypothesis": ["H0", "H1", "H2"], "label": [2, -1, 0]})
    monkeypatch.setattr("datasets.load_dataset", hub)
    data = load_split("snli", "dev", tmp_path)
    assert hub.calls == [("stanfordnlp/snli", "plain_text", "validation")]
    assert data.texts == [["P0", "P2"], ["H0", "H2"]] and data.labels == [2, 0]
    assert data.source == "hub:stanfordnlp/snli/plain_text:validation (1 rows without a gold label dropped)"


def test_hub_scitail_string_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    hub = _FakeHub(
        {
            "sentence1": ["P0", "P1"],
            "sentence2": ["H0", "H1"],
            "gold_label": ["neutral", "entailment"],
            "annotator_labels": [["neutral"], ["entailment"]],
        }
    )
    monkeypatch.setattr("datasets.load_dataset", hub)
    data = load_split("scitail", "train", tmp_path)
    assert hub.calls == [("allenai/scitail", "snli_format", "train")]
    assert data.labels == [1, 0] and data.texts == [["P0", "P1"], ["H0", "H1"]]


def test_hub_anli_all_rounds_in_one_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    hub = _FakeHub({"uid": ["u"], "premise": ["P"], "hypothesis": ["H"], "label": [1], "reason": [""]})
    monkeypatch.setattr("datasets.load_dataset", hub)
    assert load_split("anli", "test", tmp_path).labels == [1]
    assert hub.calls == [("facebook/anli", "plain_text", "test_r1+test_r2+test_r3")]


def test_hub_bad_label_is_a_format_error_not_missing_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("datasets")
    hub = _FakeHub({"sentence1": ["P"], "sentence2": ["H"], "gold_label": ["contradiction"]})
    monkeypatch.setattr("datasets.load_dataset", hub)
    with pytest.raises(DataFormatError, match=r"hub:allenai/scitail/snli_format:validation row 0: label"):
        load_split("scitail", "dev", tmp_path)


def test_hub_label_ids_are_checked() -> None:
    with pytest.raises(DataFormatError, match=r"row 1: label id 3 is not in 0\.\.2"):
        hub_columns_to_split(get_task("anli"), [["a", "b"], ["c", "d"]], [0, 3], "hub:x")
    # -1 is only dropped where the dataset documents it as "no gold label".
    with pytest.raises(DataFormatError, match=r"row 0: label id -1"):
        hub_columns_to_split(get_task("anli"), [["a"], ["c"]], [-1], "hub:x")
    kept = hub_columns_to_split(get_task("snli"), [["a", "b"], ["c", "d"]], [-1, 2], "hub:x")
    assert kept.labels == [2] and kept.texts == [["b"], ["d"]]


def test_local_files_win_over_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _offline(monkeypatch)
    _anli_round_files(tmp_path, "test")
    assert len(load_split("anli", "test", tmp_path)) == 6
    assert calls == []


def test_prefetch_skips_complete_local_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    hub_reads: list[tuple[str, str]] = []

    def fake_hub(task, split, cache_dir):
        hub_reads.append((task.key, split))
        return SplitData(
            texts=[["P"], ["H"]], labels=[0], source=f"hub:{task.hub_id}:{task.hub_splits[split]}"
        )

    monkeypatch.setattr("robustft.data.glue._read_hub", fake_hub)
    for split in ("train", "dev", "test"):
        _anli_round_files(tmp_path, split)
    _anli_round_files(tmp_path / "partial", "dev", rounds=(1, 2, 3))
    fetched = prefetch([], ["anli"], str(tmp_path), str(tmp_path / "cache"))
    assert hub_reads == []
    assert str(tmp_path / ANLI_DIR / "R2/train.jsonl") in fetched["local"]
    fetched = prefetch([], ["anli_r1"], str(tmp_path / "partial"), str(tmp_path / "cache"))
    assert hub_reads == [("anli_r1", "train"), ("anli_r1", "test")]  # dev is local
    assert "hub:facebook/anli:train_r1" in fetched["datasets"]


# -------------------------------------------------------------------------------- MNLI annotator labels

GLUE_MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
)


def _glue_mnli_row(index: int, pair: str, s1: str, s2: str, votes: list[str], gold: str) -> str:
    return "\t".join(
        [str(index), "1", pair, "slate", "( b )", "( b )", "(ROOT)", "(ROOT)", s1, s2, *votes, gold]
    )


GLUE_DEV_MATCHED = (
    GLUE_MNLI_HEADER
    + "\n".join(
        [
            # The first row of GLUE's dev_matched.tsv (parses shortened): 4 of 5 annotators said neutral.
            _glue_mnli_row(
                0,
                "63735n",
                "The new rights are nice enough",
                "Everyone really likes the newest benefits ",
                ["neutral", "entailment", "neutral", "neutral", "neutral"],
                "neutral",
            ),
            _glue_mnli_row(
                1,
                "91383c",
                'He said "no',
                "H2",
                ["contradiction", "neutral", "contradiction", "entailment", "contradiction"],
                "contradiction",
            ),
            _glue_mnli_row(2, "7n", "P3", "H3", ["entailment"] * 5, "entailment"),
            _glue_mnli_row(
                3,
                "8e",
                "P4",
                "H4",
                ["entailment", "neutral", "entailment", "neutral", "entailment"],
                "entailment",
            ),
        ]
    )
    + "\n"
)


def test_glue_tsv_annotations(tmp_path: Path) -> None:
    path = _write(tmp_path / "glue/MNLI/dev_matched.tsv", GLUE_DEV_MATCHED)
    notes = load_mnli_annotations("dev", tmp_path)
    assert notes.source == f"local:{path}"
    assert notes.labels == [1, 2, 0, 0]
    assert notes.pair_ids == ["63735n", "91383c", "7n", "8e"]
    assert notes.votes == [(1, 4, 0), (1, 1, 3), (5, 0, 0), (3, 2, 0)]
    assert notes.agreement() == [4, 3, 5, 3]
    assert notes.agreement_fraction() == [0.8, 0.6, 1.0, 0.6]
    assert notes.patterns() == ["4/1/0", "3/1/1", "5/0/0", "3/2/0"]  # SMART Figure 2's buckets
    assert notes.distributions()[0] == (0.2, 0.8, 0.0)
    assert notes.texts[0][1] == 'He said "no'
    # The MNLI task reads the same file, so predictions on it line up with the annotations.
    notes.check_aligned(load_split("mnli", "dev", tmp_path))


def test_annotations_refuse_a_split_that_does_not_line_up(tmp_path: Path) -> None:
    _write(tmp_path / "glue/MNLI/dev_matched.tsv", GLUE_DEV_MATCHED)
    notes = load_mnli_annotations("dev", tmp_path)
    split = load_split("mnli", "dev", tmp_path)
    with pytest.raises(ValueError, match="has 2 examples, the annotations 4"):
        notes.check_aligned(subsample_fraction(split, 0.5, seed=0))
    reordered = SplitData(texts=[t[::-1] for t in split.texts], labels=split.labels[::-1], source="rev")
    with pytest.raises(ValueError, match="example 0 differs"):
        notes.check_aligned(reordered)
    # Trailing spaces (which copies of GLUE do not agree on) are not a difference.
    stripped = SplitData(texts=[[t.strip() for t in c] for c in split.texts], labels=split.labels, source="s")
    notes.check_aligned(stripped)


def test_unfilled_annotation_slot_is_counted_out(tmp_path: Path) -> None:
    # Four votes instead of five: the sum of votes says so, and the pattern sums to 4, so the
    # five-vote buckets of SMART Figure 2 leave this example out instead of misfiling it.
    row = _glue_mnli_row(0, "9n", "P", "H", ["neutral", "", "neutral", "entailment", "neutral"], "neutral")
    _write(tmp_path / "glue/MNLI/dev_matched.tsv", GLUE_MNLI_HEADER + row + "\n")
    notes = load_mnli_annotations("dev", tmp_path)
    assert notes.votes == [(1, 3, 0)]
    assert notes.patterns() == ["3/1/0"] and notes.agreement_fraction() == [0.75]


def test_glue_tsv_annotation_errors(tmp_path: Path) -> None:
    path = tmp_path / "glue/MNLI/dev_mismatched.tsv"
    bad_vote = _glue_mnli_row(
        0, "1n", "P", "H", ["neutral", "maybe", "neutral", "neutral", "neutral"], "neutral"
    )
    _write(path, GLUE_MNLI_HEADER + bad_vote + "\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: annotator label 'maybe'"):
        load_mnli_annotations("dev_mm", tmp_path)
    short = "\t".join(["0", "1", "1n", "slate", "P", "H", "neutral"])
    _write(
        path,
        GLUE_MNLI_HEADER
        + _glue_mnli_row(0, "1n", "P", "H", ["neutral"] * 5, "neutral")
        + "\n"
        + short
        + "\n",
    )
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:3: expected 16 tab-separated fields"):
        load_mnli_annotations("dev_mm", tmp_path)
    # A GLUE-style TSV without the annotator columns (e.g. the train file's layout) is refused by name.
    _write(path, "index\tpairID\tsentence1\tsentence2\tlabel1\tgold_label\n0\t1n\tP\tH\tneutral\tneutral\n")
    with pytest.raises(DataFormatError, match=r":1: header lacks column\(s\) \['label2', 'label3'"):
        load_mnli_annotations("dev_mm", tmp_path)


def _multinli(s1: str, s2: str, annotators: list[str], gold: str, pair: str) -> dict[str, Any]:
    return {
        "annotator_labels": annotators,
        "genre": "fiction",
        "gold_label": gold,
        "pairID": pair,
        "promptID": "1",
        "sentence1": s1,
        "sentence1_binary_parse": "( b )",
        "sentence1_parse": "(ROOT)",
        "sentence2": s2,
        "sentence2_binary_parse": "( b )",
        "sentence2_parse": "(ROOT)",
    }


MULTINLI_DIR = "nli/multinli_1.0"


def test_original_multinli_annotations(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / MULTINLI_DIR / "multinli_1.0_dev_mismatched.jsonl",
        [
            _multinli(
                "P1",
                "H1",
                ["contradiction", "contradiction", "neutral", "contradiction", "entailment"],
                "contradiction",
                "1c",
            ),
            _multinli(
                "P2", "H2", ["neutral", "entailment", "contradiction", "neutral", "entailment"], "-", "2n"
            ),
            _multinli(
                "P3",
                "H3",
                ["entailment", "entailment", "entailment", "entailment", "neutral"],
                "entailment",
                "3e",
            ),
        ],
        bom=True,
    )
    notes = load_mnli_annotations("dev_mm", tmp_path)
    assert notes.source == f"local:{path} (1 rows without a gold label dropped)"  # as GLUE dropped them
    assert notes.labels == [2, 0] and notes.pair_ids == ["1c", "3e"]
    assert notes.patterns() == ["3/1/1", "4/1/0"]
    assert notes.texts == [["P1", "P3"], ["H1", "H3"]]
    with pytest.raises(DataNotFoundError):
        load_mnli_annotations("dev", tmp_path)  # matched is a different file


def test_multinli_annotation_errors(tmp_path: Path) -> None:
    path = tmp_path / MULTINLI_DIR / "multinli_1.0_dev_matched.jsonl"
    record = _multinli("P", "H", ["neutral"] * 5, "neutral", "1n")
    _jsonl(path, [record, {**record, "annotator_labels": "neutral"}])
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: 'annotator_labels' is not a list"):
        load_mnli_annotations("dev", tmp_path)
    _jsonl(path, [record, {**record, "annotator_labels": []}])
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: no annotator labels"):
        load_mnli_annotations("dev", tmp_path)
    _jsonl(path, [record, "{not json"])
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        load_mnli_annotations("dev", tmp_path)


def test_annotation_sources_order_and_the_missing_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        load_mnli_annotations("dev", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "glue/MNLI/dev_matched.tsv") in message
    assert str(tmp_path / MULTINLI_DIR / "multinli_1.0_dev_matched.jsonl") in message
    assert "nyu-mll/multi_nli" in message
    _jsonl(
        tmp_path / MULTINLI_DIR / "multinli_1.0_dev_matched.jsonl",
        [_multinli("P", "H", ["neutral"] * 5, "neutral", "x")],
    )
    assert load_mnli_annotations("dev", tmp_path).pair_ids == ["x"]
    # With both present the GLUE TSV wins: it is the file an MNLI run evaluates on.
    _write(tmp_path / "glue/MNLI/dev_matched.tsv", GLUE_DEV_MATCHED)
    assert load_mnli_annotations("dev", tmp_path).pair_ids[0] == "63735n"
    with pytest.raises(KeyError, match="not 'test'"):
        load_mnli_annotations("test", tmp_path)


# ------------------------------------------------------------------------------------------ subsampling


def _numbered(n: int) -> SplitData:
    return SplitData(texts=[[f"t{i}" for i in range(n)]], labels=list(range(n)), source="local:x")


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(549_367, (549, 5_493, 54_936)), (23_596, (23, 235, 2_359))],  # SMART Table 5: SNLI, SciTail
)
def test_fraction_sizes_match_smart_table_5(n: int, sizes: tuple[int, ...]) -> None:
    split = SplitData(texts=[[""] * n], labels=[0] * n, source="s")
    assert tuple(len(subsample_fraction(split, f, seed=1)) for f in (0.001, 0.01, 0.1)) == sizes
    assert subsample_fraction(split, 1.0, seed=1) is split


def test_fraction_is_deterministic_nested_and_keeps_pairs() -> None:
    split = _numbered(1000)
    small, large = subsample_fraction(split, 0.01, seed=3), subsample_fraction(split, 0.1, seed=3)
    assert small == subsample_fraction(split, 0.01, seed=3)
    assert small.labels != subsample_fraction(split, 0.01, seed=4).labels
    assert set(small.labels) < set(large.labels)  # nested: 1% inside 10%
    assert large.labels == sorted(large.labels)  # file order kept
    assert all(text == f"t{label}" for text, label in zip(large.texts[0], large.labels, strict=True))
    assert large.source == "local:x (random 0.1 = 100 of 1000, data_seed=3)"
    assert len(subsample_fraction(_numbered(100), 0.29, seed=0)) == 29  # not 28 from 28.999999999999996


def test_fraction_errors() -> None:
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"in \(0, 1\]"):
            subsample_fraction(_numbered(10), bad, seed=0)
    with pytest.raises(ValueError, match=r"of 10 rows .* is empty"):
        subsample_fraction(_numbered(10), 0.05, seed=0)


def test_every_registered_task_has_a_reader() -> None:
    from robustft.data.base import READERS

    assert {task.file_format for task in TASKS.values()} <= set(READERS)
