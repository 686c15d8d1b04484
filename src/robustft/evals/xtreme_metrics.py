"""XTREME metrics: extractive QA (SQuAD / MLQA scripts), tagging F1 (seqeval 0.0.12), BUCC mining, Tatoeba.

Every score is a fraction in [0, 1]. Each function ports the script XTREME (Hu et al., 2020) runs, so that
our numbers are comparable with the paper tables:

- QA, ``normalization="squad"``: SQuAD v1.1's official ``evaluate-v1.1.py`` (rajpurkar/SQuAD-explorer),
  which XTREME applies to XQuAD and TyDiQA-GoldP.
- QA, ``normalization="mlqa"``: MLQA's official ``mlqa_evaluation_v1.py`` (github.com/facebookresearch/MLQA,
  file ``mlqa_evaluation_v1.py`` at commit 5ef5c731a96acb7008b51aac4acb5fa9dff4f297), which XTREME applies
  to MLQA: Unicode punctuation, per-language articles, and character-level ("mixed") segmentation for zh.
- Tagging: ``seqeval.metrics.f1_score`` in its default (conlleval-style) mode, as google-research/xtreme
  ``third_party/run_tag.py`` does for both UD-POS and PAN-X, ported from seqeval 0.0.12 (the version an
  unpinned ``pip install seqeval`` gave XTREME in March 2020; seqeval 1.x chunks bare POS tags differently).
- Retrieval: google-research/xtreme ``third_party/utils_retrieve.py`` (itself from LASER): duplicate
  sentences unified before mining (``text_load_unify``), ratio-margin mining with ``mine_bitext`` defaults,
  mined text pairs mapped back to sentence ids (``read_candidate2score``), the F1-optimal threshold of
  ``bucc_optimize``, the extraction and scoring of ``bucc_eval``; Tatoeba is nearest-neighbour accuracy by
  cosine. numpy replaces faiss: an exact inner-product search on L2-normalised vectors is what faiss
  ``IndexFlatIP`` computes.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

QA_NORMALIZATIONS = ("squad", "mlqa")

# ---------------------------------------------------------------------------------------------------------
# Extractive QA


_ASCII_PUNCT = frozenset(string.punctuation)


def _normalize_squad(text: str) -> str:
    # evaluate-v1.1.py order: lower -> drop ASCII punctuation -> drop English articles -> collapse spaces.
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _is_mlqa_punct(ch: str) -> bool:
    # MLQA's PUNCT is every code point in a Unicode "P*" category, plus string.punctuation (which adds ASCII
    # symbols such as $ + < = > ^ ` | ~ that Unicode files under "S*"). Testing per character gives the same
    # set without materialising a million-entry set at import time.
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


# Patterns exactly as in mlqa_evaluation_v1.py. None = the language has no articles to strip. The Arabic
# pattern's first branch (whitespace, ال, then a start anchor) can never match, so in effect every
# occurrence of the definite-article letters ال is replaced by a space, even inside a word; kept as is,
# because that is what the published MLQA numbers were computed with.
_MLQA_ARTICLES: dict[str, str | None] = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "hi": None,
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
    "zh": None,
}
_MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
_MLQA_MIXED_SEGMENTATION_LANGS = ("zh",)


def _is_cjk(ch: str) -> bool:
    # The MLQA script tests r"[\u4e00-\u9fa5]": the CJK Unified Ideographs block as of Unicode 1.1.
    return "\u4e00" <= ch <= "\u9fa5"


def mixed_segmentation(text: str) -> list[str]:
    """MLQA's zh tokeniser: each CJK ideograph or punctuation mark is a token; other runs split on spaces."""
    tokens: list[str] = []
    pending = ""
    for ch in text:
        if _is_cjk(ch) or _is_mlqa_punct(ch):
            tokens.extend(pending.split())
            pending = ""
            tokens.append(ch)
        else:
            pending += ch
    tokens.extend(pending.split())
    return tokens


def _normalize_mlqa(text: str, language: str) -> str:
    text = "".join(ch for ch in text.lower() if not _is_mlqa_punct(ch))
    pattern = _MLQA_ARTICLES[language]
    if pattern is not None:
        text = re.sub(pattern, " ", text)
    tokens = mixed_segmentation(text) if language in _MLQA_MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(token for token in tokens if token.strip())


def _token_f1(prediction: str, ground_truth: str) -> float:
    # Both scripts split the *normalised* string on whitespace; for zh the normaliser has already put a
    # space between every ideograph, so this split yields characters.
    pred_tokens = prediction.split()
    gold_tokens = ground_truth.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _qa_normalizer(language: str | None, normalization: str) -> Callable[[str], str]:
    if normalization == "squad":
        return _normalize_squad
    if normalization == "mlqa":
        if language not in _MLQA_ARTICLES:
            raise ValueError(
                f"MLQA normalisation needs one of the MLQA languages {sorted(_MLQA_ARTICLES)}, "
                f"got language={language!r}"
            )
        return lambda text: _normalize_mlqa(text, language)
    raise ValueError(f"unknown QA normalization {normalization!r}; known: {QA_NORMALIZATIONS}")


def normalize_answer(text: str, language: str | None = None, normalization: str = "squad") -> str:
    """The answer string as the official script compares it (exposed for inspection and tests)."""
    return _qa_normalizer(language, normalization)(text)


def squad_scores(
    predictions: Mapping[str, str],
    answers: Mapping[str, Sequence[str]],
    language: str | None = None,
    normalization: str = "squad",
) -> dict[str, float]:
    """Token F1 and exact match, each the max over a question's gold answers, averaged over questions.

    The questions are the keys of ``answers``; one absent from ``predictions`` scores 0 (the official
    scripts warn "Unanswered question ... will receive score 0"), predictions for unknown ids are ignored.
    ``language`` is only read by ``normalization="mlqa"`` (the answer language: en es de ar hi vi zh).
    """
    normalize = _qa_normalizer(language, normalization)
    if not answers:
        raise ValueError("squad_scores needs at least one question in `answers`")
    f1_total = em_total = 0.0
    for qid, golds in answers.items():
        if isinstance(golds, str) or not golds:
            raise ValueError(f"question {qid!r}: gold answers must be a non-empty list of strings")
        if qid not in predictions:
            continue
        pred = normalize(predictions[qid])
        normalized_golds = [normalize(gold) for gold in golds]
        em_total += max(float(pred == gold) for gold in normalized_golds)
        f1_total += max(_token_f1(pred, gold) for gold in normalized_golds)
    return {"f1": f1_total / len(answers), "em": em_total / len(answers)}


# ---------------------------------------------------------------------------------------------------------
# Sequence tagging


# XTREME (google-research/xtreme, March 2020) installed seqeval unpinned, i.e. 0.0.12. seqeval 1.x takes a
# tag's type as tag[1:], so a bare POS tag loses its first letter and CCONJ/SCONJ both become "CONJ"; 0.0.12
# takes tag.split("-")[-1], the whole tag. Porting 0.0.12's rules pins XTREME's numbers whatever seqeval
# version is installed (and drops the dependency).


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """seqeval 0.0.12 ``end_of_chunk``: did a chunk end between the previous and the current token?"""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """seqeval 0.0.12 ``start_of_chunk``: does a chunk start at the current token?"""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) chunks of a tag sequence, exactly as seqeval 0.0.12 ``get_entities``.

    The chunk prefix is a tag's first character and its type ``tag.split("-")[-1]``: "B-PER" is prefix
    B, type PER; a bare UPOS tag is its own type with its first letter as prefix, so equal neighbours
    merge into one chunk (NOUN NOUN), except where the letter is a boundary prefix: S (SCONJ, SYM) always
    makes a one-token chunk, I (INTJ) continues a run of INTJ. No tag is rejected, as in 0.0.12.
    """
    prev_tag, prev_type, begin = "O", "", 0
    chunks: list[tuple[str, int, int]] = []
    for i, label in enumerate([*tags, "O"]):  # the trailing "O" closes a chunk that runs to the end
        tag, type_ = label[0], label.split("-")[-1]
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def tagging_f1(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> float:
    """seqeval 0.0.12's micro F1 over chunks (``f1_score``), as XTREME's run_tag.py scores UD-POS and PAN-X.

    For PAN-X (IOB2) this is the usual entity F1. For UD-POS it is *not* token accuracy: a run of equal
    tags forms one chunk that must be predicted in full (see ``get_entities``). XTREME's POS numbers carry
    this quirk; so do ours. Sentences are joined with an "O" between them, as seqeval flattens nested lists.

    Source: seqeval 0.0.12 (github.com/chakki-works/seqeval; PyPI sdist seqeval-0.0.12.tar.gz, sha256
    9c7764b88b6d1430ab59de63efddf19495fca82159920fd11e362a405f8fc378), file
    ``seqeval/metrics/sequence_labeling.py``: ``get_entities``, ``end_of_chunk``, ``start_of_chunk`` and
    ``f1_score`` in the default prefix mode (``suffix=False``), which is how XTREME's run_tag.py calls it.
    """
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"{len(true_tags)} gold sentences but {len(predicted_tags)} predicted")
    for index, (gold, pred) in enumerate(zip(true_tags, predicted_tags, strict=True)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {index}: {len(gold)} gold tags but {len(pred)} predicted tags")
    true_chunks = set(get_entities([tag for sentence in true_tags for tag in [*sentence, "O"]]))
    pred_chunks = set(get_entities([tag for sentence in predicted_tags for tag in [*sentence, "O"]]))
    n_correct = len(true_chunks & pred_chunks)
    precision = n_correct / len(pred_chunks) if pred_chunks else 0.0
    recall = n_correct / len(true_chunks) if true_chunks else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# ---------------------------------------------------------------------------------------------------------
# Retrieval

# Similarity blocks of at most this many entries (float32: 256 MiB) keep BUCC's ~400k x 400k search
# within memory; the arithmetic is the same exact search faiss IndexFlatIP runs.
_MAX_BLOCK_ENTRIES = 1 << 26


def _l2_normalize(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (rows, dim) array, got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    # faiss.normalize_L2 leaves an all-zero row as zeros; so do we (instead of NaNs).
    return np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)


def _knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities (descending) and their database rows, for unit-norm inputs."""
    k = min(k, database.shape[0])
    sims = np.empty((queries.shape[0], k), dtype=np.float32)
    inds = np.empty((queries.shape[0], k), dtype=np.int64)
    block = max(1, _MAX_BLOCK_ENTRIES // max(1, database.shape[0]))
    for start in range(0, queries.shape[0], block):
        scores = queries[start : start + block] @ database.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        sims[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
        inds[start : start + block] = np.take_along_axis(top, order, axis=1)
    return sims, inds


def unify_sentences(ids: Sequence[str], sentences: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The unique texts in first-seen order, and for each the sentence ids that hold it.

    XTREME mines unique texts, not rows (``mine_bitext`` -> ``text_load_unify``), so a sentence repeated in
    the corpus is one row of the search and weighs once in every neighbourhood mean. The ids of a text are
    those ``bucc_eval`` reads for it: its scorer (``read_sent2id``) compares texts with surrounding
    whitespace stripped, so "a" and "a " are two rows to mine but share one list of ids.
    """
    if len(ids) != len(sentences):
        raise ValueError(f"{len(ids)} ids for {len(sentences)} sentences")
    unique = list(dict.fromkeys(sentences))  # first-seen order
    ids_by_text: dict[str, list[str]] = {}
    for sentence_id, sentence in zip(ids, sentences, strict=True):
        ids_by_text.setdefault(sentence.strip(), []).append(sentence_id)
    return unique, [list(ids_by_text[sentence.strip()]) for sentence in unique]


def expand_candidates(
    candidates: Sequence[tuple[str, str, float]],
    source_ids_by_row: Sequence[Sequence[str]],
    target_ids_by_row: Sequence[Sequence[str]],
) -> list[tuple[str, str, float]]:
    """Mined (row, row, score) pairs of the unified texts as (source_id, target_id, score) pairs.

    ``candidates`` are ``bucc_mine`` output whose ids are rows of ``unify_sentences`` as strings; the id
    lists are its second return value. This is XTREME's ``read_candidate2score`` (google-research/xtreme
    ``third_party/utils_retrieve.py`` at commit 4940374c91213da89b28feec25413788566ad7d9; the same rule as
    LASER ``tasks/bucc/bucc.py``): its ``read_sent2id`` deletes every text held by more than one id, so a
    pair whose source or target text is repeated is *dropped*, not expanded to every id pair. Such a gold
    pair can never be extracted and counts only against recall, as in the published BUCC numbers. A pair
    seen twice keeps its best score.
    """
    best: dict[tuple[str, str], float] = {}
    for src_row, trg_row, score in candidates:
        src_ids = source_ids_by_row[int(src_row)]
        trg_ids = target_ids_by_row[int(trg_row)]
        if len(src_ids) != 1 or len(trg_ids) != 1:
            continue
        pair = (src_ids[0], trg_ids[0])
        best[pair] = max(float(score), best.get(pair, float(score)))
    return [(src, trg, score) for (src, trg), score in best.items()]


def bucc_mine(
    source_emb: np.ndarray,
    target_emb: np.ndarray,
    source_ids: Sequence[str],
    target_ids: Sequence[str],
    k: int = 4,
) -> list[tuple[str, str, float]]:
    """Candidate (source_id, target_id, margin score) pairs, as XTREME's ``mine_bitext`` defaults.

    Ratio margin (Artetxe & Schwenk, 2019) on cosine similarity:
    margin(x, y) = cos(x, y) / (sum_{z in NN_k(x)} cos(x, z) / 2k + sum_{z in NN_k(y)} cos(y, z) / 2k),
    with the neighbourhoods taken in the other language (k capped at its size). Mining mode is XTREME's
    default ``retrieval="max"``: every source proposes its best-margin target among its k nearest (forward),
    every target its best source (backward); all these proposals, sorted by score, are accepted greedily
    while neither side is already used (so the result is one-to-one); a proposal is kept only if its score
    is > 0 (``mine_bitext``'s threshold=0). The BUCC threshold is chosen later, by ``bucc_scores``.
    XTREME mines unique texts: pass the rows of ``unify_sentences`` with ids ``str(row)``, then map the
    mined pairs to sentence ids with ``expand_candidates`` before ``bucc_scores``.
    """
    x = _l2_normalize(source_emb)
    y = _l2_normalize(target_emb)
    if len(source_ids) != x.shape[0] or len(target_ids) != y.shape[0]:
        raise ValueError(
            f"{len(source_ids)} source ids for {x.shape[0]} rows, "
            f"{len(target_ids)} target ids for {y.shape[0]} rows"
        )
    if x.shape[0] == 0 or y.shape[0] == 0:
        return []
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x2y_sim, x2y_ind = _knn(x, y, k)
    y2x_sim, y2x_ind = _knn(y, x, k)
    x2y_mean = x2y_sim.mean(axis=1)
    y2x_mean = y2x_sim.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fwd_scores = x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_ind]) / 2)
        bwd_scores = y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_ind]) / 2)
    fwd_best = x2y_ind[np.arange(x.shape[0]), fwd_scores.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(y.shape[0]), bwd_scores.argmax(axis=1)]

    pair_src = np.concatenate([np.arange(x.shape[0]), bwd_best])
    pair_trg = np.concatenate([fwd_best, np.arange(y.shape[0])])
    scores = np.concatenate([fwd_scores.max(axis=1), bwd_scores.max(axis=1)]).astype(np.float64)
    seen_src: set[int] = set()
    seen_trg: set[int] = set()
    mined: list[tuple[str, str, float]] = []
    for i in np.argsort(-scores, kind="stable"):
        src, trg = int(pair_src[i]), int(pair_trg[i])
        if src in seen_src or trg in seen_trg:
            continue
        # A pair blocks its rows even when its score fails the > 0 test, as in mine_bitext.
        seen_src.add(src)
        seen_trg.add(trg)
        if scores[i] > 0:
            mined.append((source_ids[src], target_ids[trg], float(scores[i])))
    return mined


def _prf(n_correct: int, n_extracted: int, n_gold: int) -> tuple[float, float, float]:
    if n_correct == 0:
        return 0.0, 0.0, 0.0
    precision = n_correct / n_extracted
    recall = n_correct / n_gold
    return precision, recall, 2 * precision * recall / (precision + recall)


def bucc_scores(
    candidates: Iterable[tuple[str, str, float]],
    gold: Iterable[tuple[str, str]],
    threshold: float | None = None,
) -> dict[str, float]:
    """Precision, recall and F1 of the candidates scoring >= threshold, against the gold pairs.

    ``threshold=None`` picks the F1-optimal one as XTREME's ``bucc_optimize``: walk the candidates by
    descending score and, at each new best F1, set the threshold halfway to the next candidate's score
    (exactly that score when the best cut is the last candidate, where XTREME would index past the end).
    XTREME optimises it on the dev (BUCC "sample") gold and applies it to test: pass the returned
    ``"threshold"`` back in for the test call. A pair proposed twice keeps its higher score.
    """
    cand_scores: dict[tuple[str, str], float] = {}
    for src, trg, score in candidates:
        cand_scores[(src, trg)] = max(float(score), cand_scores.get((src, trg), float(score)))
    gold_pairs = {(src, trg) for src, trg in gold}
    if not gold_pairs:
        raise ValueError("bucc_scores needs at least one gold pair")

    if threshold is None:
        ranked = sorted(cand_scores.items(), key=lambda item: -item[1])
        threshold, best_f1, n_correct = 0.0, 0.0, 0
        for rank, (pair, score) in enumerate(ranked):
            n_correct += pair in gold_pairs
            f1 = _prf(n_correct, rank + 1, len(gold_pairs))[2]
            if f1 > best_f1:
                best_f1 = f1
                threshold = (score + ranked[rank + 1][1]) / 2 if rank + 1 < len(ranked) else score

    extracted = {pair for pair, score in cand_scores.items() if score >= threshold}
    precision, recall, f1 = _prf(len(extracted & gold_pairs), len(extracted), len(gold_pairs))
    return {"f1": f1, "precision": precision, "recall": recall, "threshold": float(threshold)}


def tatoeba_accuracy(source_emb: np.ndarray, target_emb: np.ndarray) -> float:
    """Share of English rows i whose most cosine-similar non-English row is row i (aligned pairs).

    The direction is XTREME's (run_retrieval.py: `similarity_search(x, y)` indexes the non-English
    sentences x and searches them with each English sentence y); the reverse can score differently.
    """
    x = _l2_normalize(source_emb)
    y = _l2_normalize(target_emb)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"Tatoeba needs aligned, non-empty rows; got {x.shape[0]} source, {y.shape[0]} target"
        )
    _, nearest = _knn(y, x, 1)
    return float(np.mean(nearest[:, 0] == np.arange(y.shape[0])))
