"""Encoding and decoding for the XTREME task kinds: sentence-pair classification, tagging and extractive QA.

Each kind turns its split into model features for training, and turns the model's outputs on an
evaluation split back into predictions in the split's own terms (labels, one tag per word, answer text),
following XTREME's reference code (google-research/xtreme): a tag is read from a word's first sub-token;
sentences longer than the window are cut into word chunks that fit it; QA contexts are read in windows
that start every `doc_stride` tokens, questions cut to `max_query_length` tokens, and the best span is
the highest start+end logit over every window, at most `max_answer_length` tokens long. (XTREME's legacy
code also keeps a token's score only in the window where it has the most context; we score a span in
every window that holds it, as Hugging Face's run_qa does.)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE_INDEX = -100  # positions that carry no label: special tokens and non-first sub-tokens


@dataclass(frozen=True)
class QAWindowSettings:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20


# ---------------------------------------------------------------------------------------- classification


def encode_pairs(texts: list[list[str]], labels: list[int] | None, tokenizer: Any, max_seq_length: int):
    import datasets

    columns = dict(tokenizer(*texts, truncation=True, max_length=max_seq_length))
    if labels is not None:
        columns["labels"] = list(labels)
    return datasets.Dataset.from_dict(columns)


# ---------------------------------------------------------------------------------------- tagging


def _word_pieces(words: list[str], tokenizer: Any) -> tuple[list[str], list[int]]:
    """Words with empty tokenisations replaced by the unknown token (as XTREME does), and each word's
    sub-token count."""
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    fixed = [word if ids else tokenizer.unk_token for word, ids in zip(words, pieces, strict=True)]
    return fixed, [max(1, len(ids)) for ids in pieces]


def word_chunks(lengths: list[int], limit: int) -> list[tuple[int, int]]:
    """Cut a sentence into [start, end) word ranges of at most `limit` sub-tokens each (a word longer
    than the limit gets a chunk of its own and is truncated there, keeping its first sub-token)."""
    chunks, start, used = [], 0, 0
    for index, length in enumerate(lengths):
        if index > start and used + length > limit:
            chunks.append((start, index))
            start, used = index, 0
        used += length
    if lengths:
        chunks.append((start, len(lengths)))
    return chunks


@dataclass
class TaggingFeatures:
    dataset: Any  # datasets.Dataset of input_ids, attention_mask, labels
    chunks: list[tuple[int, int, int]]  # (sentence index, first word, end word) of each feature


def encode_tagging(
    sentences: list[list[str]],
    tags: list[list[str]] | None,
    tag_names: tuple[str, ...],
    tokenizer: Any,
    max_seq_length: int,
) -> TaggingFeatures:
    import datasets

    tag_ids = {name: i for i, name in enumerate(tag_names)}
    limit = max_seq_length - tokenizer.num_special_tokens_to_add()
    words_of_chunk, chunks = [], []
    for index, words in enumerate(sentences):
        fixed, lengths = _word_pieces(words, tokenizer)
        for start, end in word_chunks(lengths, limit):
            words_of_chunk.append(fixed[start:end])
            chunks.append((index, start, end))
    encoded = tokenizer(words_of_chunk, is_split_into_words=True, truncation=True, max_length=max_seq_length)
    columns = {key: list(value) for key, value in encoded.items()}
    labels = []
    for row, (index, start, _) in enumerate(chunks):
        row_labels, previous = [], None
        for word in encoded.word_ids(row):
            first = word is not None and word != previous
            if first and tags is not None:
                tag = tags[index][start + word]
                if tag not in tag_ids:
                    raise ValueError(
                        f"tag {tag!r} of sentence {index} is not one of the task's tags {tag_names}"
                    )
                row_labels.append(tag_ids[tag])
            else:
                # Evaluation features mark first sub-tokens with 0 so decoding can find them.
                row_labels.append(0 if first else IGNORE_INDEX)
            previous = word
        labels.append(row_labels)
    columns["labels"] = labels
    return TaggingFeatures(datasets.Dataset.from_dict(columns), chunks)


def decode_tagging(
    logits: np.ndarray,
    features: TaggingFeatures,
    sentences: list[list[str]],
    tag_names: tuple[str, ...],
) -> list[list[str]]:
    """One predicted tag per word: the arg-max at each word's first sub-token, chunks joined back."""
    predicted: list[list[str | None]] = [[None] * len(words) for words in sentences]
    labels = features.dataset["labels"]
    for row, (index, start, _) in enumerate(features.chunks):
        first_positions = [p for p, label in enumerate(labels[row]) if label != IGNORE_INDEX]
        for offset, position in enumerate(first_positions):
            predicted[index][start + offset] = tag_names[int(logits[row, position].argmax())]
    # A word cut off by truncation (only possible inside an over-long single word's chunk) gets the
    # task's outside tag (NER "O", POS "X": other); it is counted as a prediction, not skipped.
    fallback = next((tag for tag in ("O", "X") if tag in tag_names), tag_names[0])
    return [[tag if tag is not None else fallback for tag in sentence] for sentence in predicted]


# ---------------------------------------------------------------------------------------- QA


def _cut_question(question: str, tokenizer: Any, max_query_length: int) -> str:
    """The question's text up to its `max_query_length`-th token (XTREME's run_squad cuts there)."""
    question = question.lstrip()  # leading spaces make some tokenizers emit empty tokens
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if len(offsets) <= max_query_length:
        return question
    return question[: offsets[max_query_length - 1][1]]


@dataclass
class QAFeatures:
    dataset: Any  # input_ids, attention_mask (+ start/end_positions when training)
    example_index: list[int]
    offsets: list[list[tuple[int, int] | None]]  # character span of each context token, None elsewhere


def _window_overlap(question_tokens: int, settings: QAWindowSettings, special_tokens: int) -> int:
    """Tokens shared by consecutive windows. XTREME's run_squad starts a window every `doc_stride`
    context tokens, so two windows of `room` context tokens overlap by room - doc_stride (0 when the
    stride is as long as a window: then they only touch)."""
    room = settings.max_seq_length - question_tokens - special_tokens
    if room < 8:
        raise ValueError(
            f"max_seq_length {settings.max_seq_length} leaves no room for the context after a "
            f"{question_tokens}-token question: raise it or lower max_query_length"
        )
    return max(0, room - settings.doc_stride)


def encode_qa(examples: list[Any], tokenizer: Any, settings: QAWindowSettings, train: bool) -> QAFeatures:
    """Every example's windows. The overlap depends on the question's length (longer questions leave
    less room for context), and a tokenizer call takes one overlap, so examples are encoded in groups of
    equal overlap; features carry their example's index, so the order does not matter."""
    import datasets

    questions = [_cut_question(e.question, tokenizer, settings.max_query_length) for e in examples]
    special = tokenizer.num_special_tokens_to_add(pair=True)
    question_tokens = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    groups: dict[int, list[int]] = defaultdict(list)
    for index, length in enumerate(question_tokens):
        groups[_window_overlap(length, settings, special)].append(index)

    columns: dict[str, list[Any]] = defaultdict(list)
    example_index: list[int] = []
    offsets: list[list[tuple[int, int] | None]] = []
    for overlap, indices in sorted(groups.items()):
        encoded = tokenizer(
            [questions[i] for i in indices],
            [examples[i].context for i in indices],
            truncation="only_second",
            max_length=settings.max_seq_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        sample_map = encoded.pop("overflow_to_sample_mapping")
        all_offsets = encoded.pop("offset_mapping")
        for key, value in encoded.items():
            columns[key].extend(value)
        for row, local_index in enumerate(sample_map):
            sequence_ids = encoded.sequence_ids(row)
            context_offsets = [
                tuple(span) if sequence_ids[p] == 1 else None for p, span in enumerate(all_offsets[row])
            ]
            offsets.append(context_offsets)
            example_index.append(indices[local_index])
            if train:
                start, end = _answer_positions(examples[indices[local_index]], context_offsets)
                columns["start_positions"].append(start)
                columns["end_positions"].append(end)
    return QAFeatures(datasets.Dataset.from_dict(dict(columns)), example_index, offsets)


def _answer_positions(example: Any, context_offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """The answer's first and last token in a window, or (0, 0), the first ([CLS]) token, when the
    answer is not wholly inside it."""
    answer_start = example.answer_starts[0]
    answer_end = answer_start + len(example.answers[0])
    positions = [p for p, span in enumerate(context_offsets) if span is not None]
    first, last = positions[0], positions[-1]
    if context_offsets[first][0] > answer_start or context_offsets[last][1] < answer_end:
        return 0, 0
    start = next(p for p in positions if context_offsets[p][1] > answer_start)
    end = max(p for p in positions if context_offsets[p][0] < answer_end)
    return start, end


def decode_qa(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    features: QAFeatures,
    examples: list[Any],
    settings: QAWindowSettings,
) -> dict[str, str]:
    """Each example's answer text: the best-scoring valid span over all its windows ("" if none)."""
    best: dict[int, tuple[float, str]] = defaultdict(lambda: (-np.inf, ""))
    for row, example_index in enumerate(features.example_index):
        offsets = features.offsets[row]
        n = len(offsets)
        starts, ends = start_logits[row, :n], end_logits[row, :n]
        top_starts = np.argsort(starts)[::-1][: settings.n_best]
        top_ends = np.argsort(ends)[::-1][: settings.n_best]
        for s in top_starts:
            for e in top_ends:
                if (
                    offsets[s] is None
                    or offsets[e] is None
                    or e < s
                    or e - s + 1 > settings.max_answer_length
                ):
                    continue
                score = float(starts[s] + ends[e])
                if score > best[example_index][0]:
                    context = examples[example_index].context
                    best[example_index] = (score, context[offsets[s][0] : offsets[e][1]])
    return {example.id: best[i][1] for i, example in enumerate(examples)}
