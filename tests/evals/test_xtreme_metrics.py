"""XTREME metrics pinned on hand-made cases; every expected value is worked out in the comment beside it."""

from __future__ import annotations

import numpy as np
import pytest

from robustft.evals.xtreme_metrics import (
    bucc_mine,
    bucc_scores,
    expand_candidates,
    get_entities,
    mixed_segmentation,
    normalize_answer,
    squad_scores,
    tagging_f1,
    tatoeba_accuracy,
    unify_sentences,
)

# ---------------------------------------------------------------------------------------------------------
# SQuAD v1.1 normalisation and scores


def test_squad_normalization_lowercases_strips_ascii_punctuation_and_articles() -> None:
    # "The  Cat's hat!" -> lower "the  cat's hat!" -> no punctuation "the  cats hat"
    # -> article "the" becomes a space -> whitespace collapsed: "cats hat"
    assert normalize_answer("The  Cat's hat!") == "cats hat"
    # Articles go only as whole words: "theatre" and "another" keep their letters.
    assert normalize_answer("An apple in the theatre, another") == "apple in theatre another"


def test_squad_f1_partial_overlap_and_em() -> None:
    # pred "the big red dog" -> [big, red, dog]; gold "red dog house" -> [red, dog, house]
    # common 2: precision 2/3, recall 2/3, F1 2/3; not an exact match.
    scores = squad_scores({"q": "the big red dog"}, {"q": ["red dog house"]})
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["em"] == 0.0
    # Case, punctuation and article differences vanish: EM 1, F1 1.
    assert squad_scores({"q": "The Eiffel Tower."}, {"q": ["eiffel tower"]}) == {"f1": 1.0, "em": 1.0}


def test_squad_takes_max_over_gold_answers() -> None:
    # Against "France": EM 0, F1 2*(1/2*1)/(3/2) = 2/3; against "Paris, France": EM 1, F1 1; "Lyon": 0.
    scores = squad_scores({"q": "Paris France"}, {"q": ["France", "Paris, France", "Lyon"]})
    assert scores == {"f1": 1.0, "em": 1.0}
    # Only partial golds: the best is "France" at 2/3 (not the mean 1/3 over both).
    scores = squad_scores({"q": "Paris France"}, {"q": ["France", "Lyon"]})
    assert scores["f1"] == pytest.approx(2 / 3)


def test_squad_missing_prediction_counts_zero_and_extra_ids_are_ignored() -> None:
    # q1 exact (1, 1); q2 2/3 F1, EM 0; q3 unanswered (0, 0); "extra" is not a question.
    # F1 = (1 + 2/3 + 0) / 3 = 5/9; EM = 1/3.
    predictions = {"q1": "Einstein", "q2": "the big red dog", "extra": "anything"}
    answers = {"q1": ["Albert Einstein", "Einstein"], "q2": ["red dog house"], "q3": ["1905"]}
    scores = squad_scores(predictions, answers)
    assert scores["f1"] == pytest.approx(5 / 9)
    assert scores["em"] == pytest.approx(1 / 3)


def test_squad_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown QA normalization"):
        squad_scores({"q": "a"}, {"q": ["a"]}, normalization="bleu")
    with pytest.raises(ValueError, match="'q'"):
        squad_scores({"q": "a"}, {"q": []})
    with pytest.raises(ValueError, match="MLQA languages"):
        squad_scores({"q": "a"}, {"q": ["a"]}, normalization="mlqa")  # no language
    with pytest.raises(ValueError, match="MLQA languages"):
        squad_scores({"q": "a"}, {"q": ["a"]}, language="fr", normalization="mlqa")


# ---------------------------------------------------------------------------------------------------------
# MLQA normalisation: where it differs from SQuAD's


def _both(pred: str, gold: str, language: str) -> tuple[dict[str, float], dict[str, float]]:
    answers = {"q": [gold]}
    return (
        squad_scores({"q": pred}, answers, language=language),
        squad_scores({"q": pred}, answers, language=language, normalization="mlqa"),
    )


def test_mlqa_spanish_articles() -> None:
    # SQuAD keeps "el": [el, presidente] vs [presidente]: P 1/2, R 1, F1 2/3, EM 0. MLQA-es drops it: EM 1.
    squad, mlqa = _both("el presidente", "presidente", "es")
    assert squad["f1"] == pytest.approx(2 / 3) and squad["em"] == 0.0
    assert mlqa == {"f1": 1.0, "em": 1.0}
    # Whole words only: "lástima" keeps its "la".
    assert normalize_answer("La lástima de los otros", "es", "mlqa") == "lástima de otros"


def test_mlqa_german_articles() -> None:
    # "die Hauptstadt" vs "Hauptstadt": SQuAD F1 2/3, EM 0; MLQA-de strips "die": exact.
    squad, mlqa = _both("die Hauptstadt", "Hauptstadt", "de")
    assert squad["f1"] == pytest.approx(2 / 3) and squad["em"] == 0.0
    assert mlqa == {"f1": 1.0, "em": 1.0}
    # English articles are not German ones: "the" survives MLQA-de, "des" does not.
    assert normalize_answer("the Ende des Tages", "de", "mlqa") == "the ende tages"


def test_mlqa_unicode_punctuation() -> None:
    # "¿" and "«»" are Unicode punctuation but not in string.punctuation: SQuAD keeps them, so the single
    # tokens "¿quién" / "«hamlet»" match nothing (F1 0, EM 0); MLQA removes them (exact).
    squad, mlqa = _both("¿Quién?", "quién", "es")
    assert squad == {"f1": 0.0, "em": 0.0} and mlqa == {"f1": 1.0, "em": 1.0}
    squad, mlqa = _both("«Hamlet»", "Hamlet", "en")
    assert squad == {"f1": 0.0, "em": 0.0} and mlqa == {"f1": 1.0, "em": 1.0}
    # Devanagari danda "।" (category Po) likewise.
    squad, mlqa = _both("भारत।", "भारत", "hi")
    assert squad["em"] == 0.0 and mlqa["em"] == 1.0
    # string.punctuation symbols outside Unicode "P" ($, ^) are still removed.
    assert normalize_answer("$5^", "en", "mlqa") == "5"


def test_mlqa_chinese_mixed_segmentation_gives_partial_credit() -> None:
    # Whitespace tokens: [北京大学] vs [北京] share nothing -> F1 0.
    # Mixed segmentation: [北, 京, 大, 学] vs [北, 京] -> common 2, P 2/4, R 2/2, F1 2*(1/2)/(3/2) = 2/3.
    squad, mlqa = _both("北京大学", "北京", "zh")
    assert squad == {"f1": 0.0, "em": 0.0}
    assert mlqa["f1"] == pytest.approx(2 / 3) and mlqa["em"] == 0.0
    # The ideographic full stop "。" is punctuation only for MLQA.
    squad, mlqa = _both("北京。", "北京", "zh")
    assert squad["em"] == 0.0 and mlqa["em"] == 1.0
    # Non-CJK runs stay whole (split on spaces); each ideograph is its own token.
    assert mixed_segmentation("iPhone 6手机") == ["iPhone", "6", "手", "机"]
    assert normalize_answer("iPhone 6手机", "zh", "mlqa") == "iphone 6 手 机"


def test_mlqa_arabic_definite_article() -> None:
    # MLQA-ar replaces every "ال" by a space: "الكتاب" -> " كتاب" -> "كتاب" = the gold; SQuAD: no match.
    squad, mlqa = _both("الكتاب", "كتاب", "ar")
    assert squad == {"f1": 0.0, "em": 0.0} and mlqa == {"f1": 1.0, "em": 1.0}
    # The official pattern also hits "ال" inside a word ("سلال" -> "سل "); the port keeps that quirk.
    assert normalize_answer("سلال", "ar", "mlqa") == "سل"


def test_mlqa_vietnamese_articles_and_english_agrees_with_squad_on_ascii() -> None:
    assert normalize_answer("cái bàn của tôi", "vi", "mlqa") == "bàn tôi"
    text = "The Big, RED dog's an animal."
    assert normalize_answer(text, "en", "mlqa") == normalize_answer(text) == "big red dogs animal"


# ---------------------------------------------------------------------------------------------------------
# Tagging F1 (seqeval 0.0.12, default mode). Every case below was also checked against seqeval 0.0.12 itself.


def test_get_entities_keeps_the_whole_pos_tag_as_its_type() -> None:
    # 0.0.12: type = tag.split("-")[-1], the whole UPOS tag, so CCONJ and SCONJ are different chunks: 4.
    # (seqeval 1.x types them tag[1:] = "CONJ" both, and its start rule for S- drops the CCONJ chunk: 3.)
    assert get_entities(["NOUN", "CCONJ", "SCONJ", "VERB"]) == [
        ("NOUN", 0, 0),
        ("CCONJ", 1, 1),
        ("SCONJ", 2, 2),
        ("VERB", 3, 3),
    ]
    # IOB2 entities, and a trailing chunk closed by the end of the sequence.
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]


def test_tagging_f1_ner_wrong_type_and_wrong_boundary() -> None:
    # Sentence 1: gold {PER[0:1], LOC[3]}, predicted the same -> 2 correct.
    # Sentence 2: gold {ORG[0:1]}; predicted B-ORG B-ORG = {ORG[0], ORG[1]} -> wrong boundary, 0 correct.
    # Totals: 3 gold, 4 predicted, 2 correct: P 1/2, R 2/3, F1 = 2*(1/2)(2/3)/(7/6) = 4/7.
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "B-ORG", "O"]]
    assert tagging_f1(gold, pred) == pytest.approx(4 / 7)
    # A wrong type: gold {PER, LOC}, predicted {PER, ORG}: P 1/2, R 1/2, F1 1/2.
    assert tagging_f1([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "B-ORG"]]) == pytest.approx(0.5)


def test_tagging_f1_b_inside_an_entity_splits_it() -> None:
    # Gold B-PER I-PER I-PER = {PER[0:2]}; predicted B-PER I-PER B-PER = {PER[0:1], PER[2]}: a B- where an
    # I- belongs ends one chunk and starts another, so neither matches: 0 correct of 1 gold, 2 predicted.
    assert tagging_f1([["B-PER", "I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "B-PER", "O"]]) == 0.0
    assert get_entities(["B-PER", "I-PER", "B-PER", "O"]) == [("PER", 0, 1), ("PER", 2, 2)]


def test_tagging_f1_default_mode_accepts_i_after_o() -> None:
    # conlleval-style default mode reads "O I-PER I-PER" as the chunk PER[1:2] = gold -> F1 1
    # (strict IOB2 mode would reject the I- start and score 0).
    assert tagging_f1([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]]) == 1.0


def test_tagging_f1_pos_is_chunk_f1_not_token_accuracy() -> None:
    # A bare tag's prefix is its first letter, its type the whole tag; equal neighbours merge into one chunk.
    # Gold DET NOUN VERB -> chunks {DET[0], NOUN[1], VERB[2]}; predicted DET NOUN NOUN -> {DET[0], NOUN[1:2]}.
    # 1 correct: P 1/2, R 1/3, F1 = 2*(1/2)(1/3)/(5/6) = 2/5 (token accuracy would be 2/3).
    assert tagging_f1([["DET", "NOUN", "VERB"]], [["DET", "NOUN", "NOUN"]]) == pytest.approx(0.4)
    # Identical POS sequences score 1.
    assert tagging_f1([["PRON", "VERB", "PUNCT"]], [["PRON", "VERB", "PUNCT"]]) == 1.0


def test_tagging_f1_pos_by_hand_with_0_0_12_rules() -> None:
    # Prefixes: D, N, V, C plain letters (a run of one tag merges); S (SCONJ) always a one-token chunk (end
    # after S, start at S); I (INTJ) continues an INTJ run.
    # gold DET NOUN NOUN CCONJ SCONJ SCONJ INTJ INTJ
    #   -> DET[0] NOUN[1:2] CCONJ[3] SCONJ[4] SCONJ[5] INTJ[6:7]                 6 chunks
    # pred DET NOUN VERB CCONJ SCONJ SCONJ INTJ INTJ
    #   -> DET[0] NOUN[1] VERB[2] CCONJ[3] SCONJ[4] SCONJ[5] INTJ[6:7]           7 chunks
    # correct: DET, CCONJ, SCONJ[4], SCONJ[5], INTJ = 5: P 5/7, R 5/6, F1 = 2*5/(7+6) = 10/13.
    # (seqeval 1.x loses both CCONJ chunks and scores 8/11; token accuracy is 7/8.)
    gold = [["DET", "NOUN", "NOUN", "CCONJ", "SCONJ", "SCONJ", "INTJ", "INTJ"]]
    pred = [["DET", "NOUN", "VERB", "CCONJ", "SCONJ", "SCONJ", "INTJ", "INTJ"]]
    assert tagging_f1(gold, pred) == pytest.approx(10 / 13)
    # Sentences are joined with an "O", so NOUN | NOUN is two chunks {NOUN[0], NOUN[2]}, and NOUN | VERB
    # gets one of them right: P 1/2, R 1/2, F1 1/2 (one merged NOUN[0:1] chunk would have scored 0).
    assert tagging_f1([["NOUN"], ["NOUN"]], [["NOUN"], ["VERB"]]) == pytest.approx(0.5)


def test_tagging_f1_length_mismatch_names_the_sentence() -> None:
    with pytest.raises(ValueError, match="sentence 1"):
        tagging_f1([["NOUN"], ["NOUN", "VERB"]], [["NOUN"], ["NOUN"]])
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        tagging_f1([["NOUN"], ["VERB"]], [["NOUN"]])


# ---------------------------------------------------------------------------------------------------------
# BUCC mining and scoring


def _embeddings_with_cosines(cos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit source vectors (one-hot) and unit target vectors whose pairwise cosines are exactly `cos`."""
    n_src, n_trg = cos.shape
    source = np.eye(n_src, n_src + n_trg)
    target = np.zeros((n_trg, n_src + n_trg))
    target[:, :n_src] = cos.T
    # A private axis per target tops its norm up to 1 without touching any cross cosine.
    target[np.arange(n_trg), n_src + np.arange(n_trg)] = np.sqrt(1 - (cos**2).sum(axis=0))
    return source, target


def test_bucc_margin_beats_a_hub_that_raw_cosine_picks() -> None:
    #          y0    y1    y2 (hub, no translation)
    # x0      0.8   0.0   0.5
    # x1      0.0   0.5   0.55     x1's translation is y1, but its raw nearest target is the hub y2.
    cos = np.array([[0.8, 0.0, 0.5], [0.0, 0.5, 0.55]])
    source, target = _embeddings_with_cosines(cos)
    assert np.argmax(source[1] @ target.T) == 2  # the fixture's premise: cosine alone chooses the hub
    # k=2 neighbourhood means: x0 (0.8+0.5)/2 = 0.65, x1 (0.55+0.5)/2 = 0.525;
    #                          y0 (0.8+0)/2 = 0.4, y1 (0.5+0)/2 = 0.25, y2 (0.55+0.5)/2 = 0.525.
    # margin(x0,y0) = 0.8 / ((0.65+0.4)/2)    = 0.8/0.525  = 1.5238
    # margin(x1,y1) = 0.5 / ((0.525+0.25)/2)  = 0.5/0.3875 = 1.2903
    # margin(x1,y2) = 0.55 / ((0.525+0.525)/2) = 0.55/0.525 = 1.0476  < 1.2903: the hub's crowded
    # neighbourhood is what sinks it (dividing by x1's mean alone would still prefer y2).
    mined = bucc_mine(source, target, ["x0", "x1"], ["y0", "y1", "y2"], k=2)
    assert [(s, t) for s, t, _ in mined] == [("x0", "y0"), ("x1", "y1")]
    assert [score for *_, score in mined] == pytest.approx([0.8 / 0.525, 0.5 / 0.3875], rel=1e-5)


def test_bucc_mine_takes_forward_and_backward_proposals() -> None:
    #          y0    y1    y2
    # x0      0.65  0.0   0.60
    # x1      0.75  0.60  0.80
    cos = np.array([[0.65, 0.0, 0.6], [0.75, 0.6, 0.8]])
    source, target = _embeddings_with_cosines(cos)
    # k=2 means: x0 (0.65+0.6)/2 = 0.625, x1 (0.8+0.75)/2 = 0.775; y0 0.7, y1 (0.6+0)/2 = 0.3, y2 0.7.
    # Forward (each x over its 2 nearest targets):
    #   x0: y0 0.65/((0.625+0.7)/2) = 0.9811, y2 0.6/0.6625 = 0.9057          -> proposes (x0, y0) 0.9811
    #   x1: y2 0.8/((0.775+0.7)/2) = 1.0847, y0 0.75/0.7375 = 1.0169 (y1 is not among its 2 nearest)
    # Backward (each y over both sources):
    #   y1: x1 0.6/((0.775+0.3)/2) = 1.1163                                  -> proposes (x1, y1) 1.1163
    #   y0 -> x1 1.0169, y2 -> x1 1.0847
    # Greedy by score: (x1, y1) 1.1163 [backward only], x1 is then used, ..., (x0, y0) 0.9811 [forward only].
    mined = bucc_mine(source, target, ["x0", "x1"], ["y0", "y1", "y2"], k=2)
    assert [(s, t) for s, t, _ in mined] == [("x1", "y1"), ("x0", "y0")]
    assert [score for *_, score in mined] == pytest.approx([0.6 / 0.5375, 0.65 / 0.6625], rel=1e-5)
    # The margin is symmetric, so swapping the languages swaps the pairs and keeps the scores.
    swapped = bucc_mine(target, source, ["y0", "y1", "y2"], ["x0", "x1"], k=2)
    assert [(t, s, pytest.approx(score, rel=1e-5)) for s, t, score in swapped] == mined


def test_bucc_mine_recovers_planted_pairs_among_distractors() -> None:
    rng = np.random.default_rng(0)
    # Sources 0-11 have translations, 12-14 do not; target row perm[i] is a noisy copy of source i and
    # targets 12-16 are unrelated sentences.
    source = rng.normal(size=(15, 16))
    perm = rng.permutation(12)
    target = np.concatenate([np.empty((12, 16)), rng.normal(size=(5, 16))])
    target[perm] = source[:12] + 0.1 * rng.normal(size=(12, 16))
    source_ids = [f"s{i}" for i in range(15)]
    target_ids = [f"t{j}" for j in range(17)]
    mined = bucc_mine(source, target, source_ids, target_ids)
    planted = {(f"s{i}", f"t{perm[i]}") for i in range(12)}
    assert planted <= {(s, t) for s, t, _ in mined}
    # One-to-one: no source or target used twice; planted pairs outscore anything else mined.
    assert len({s for s, _, _ in mined}) == len(mined) == len({t for _, t, _ in mined})
    best_other = max((score for s, t, score in mined if (s, t) not in planted), default=0.0)
    assert min(score for s, t, score in mined if (s, t) in planted) > best_other


def test_unify_sentences_first_seen_order_and_ids_as_bucc_eval_reads_them() -> None:
    unique, ids = unify_sentences(["a1", "a2", "b1", "a3", "c1"], ["x", "y", "x", "x ", "z"])
    # Mining rows: exact texts, first-seen order ("x " is its own row, as in text_load_unify) ...
    assert unique == ["x", "y", "x ", "z"]
    # ... but bucc_eval compares stripped texts, so "x" and "x " share the ids of all three rows.
    assert ids == [["a1", "b1", "a3"], ["a2"], ["a1", "b1", "a3"], ["c1"]]
    with pytest.raises(ValueError, match="2 ids for 1 sentences"):
        unify_sentences(["a", "b"], ["x"])


def test_expand_candidates_maps_rows_to_ids_and_drops_repeated_texts() -> None:
    source_ids = [["s1"], ["s2", "s3"], ["s4"]]  # source row 1 is a text two sentences share
    target_ids = [["t1"], ["t2"], ["t3", "t4"]]  # so is target row 2
    candidates = [("0", "0", 1.5), ("1", "1", 1.4), ("2", "2", 1.3), ("2", "1", 1.2), ("2", "1", 1.25)]
    # (1, 1) and (2, 2) touch a repeated text: XTREME's read_sent2id has no id for it, so both go;
    # (2, 1) is proposed twice and keeps its best score.
    assert expand_candidates(candidates, source_ids, target_ids) == [("s1", "t1", 1.5), ("s4", "t2", 1.25)]


def test_bucc_duplicate_english_sentence_follows_xtreme() -> None:
    # Four German sentences de-i, whose translations are the English texts e0..e3 (diagonal cosines 0.9,
    # 0.8, 0.7, 0.15; every other cosine 0.1). e0 occurs twice in the English corpus, as en-1 and en-2, and
    # the gold pairs de-0 with the second copy, en-2.
    cos = np.full((4, 4), 0.1)
    np.fill_diagonal(cos, [0.9, 0.8, 0.7, 0.15])
    source, unique_target = _embeddings_with_cosines(cos)
    de_ids = ["de-0", "de-1", "de-2", "de-3"]
    en_ids = ["en-1", "en-2", "en-3", "en-4", "en-5"]
    en_texts = ["e0", "e0", "e1", "e2", "e3"]
    gold = [("de-0", "en-2"), ("de-1", "en-3"), ("de-2", "en-4"), ("de-3", "en-5")]

    # XTREME's path: unify, mine the unique texts, map back to ids, score.
    de_texts, de_ids_by_row = unify_sentences(de_ids, ["d0", "d1", "d2", "d3"])
    en_unique, en_ids_by_row = unify_sentences(en_ids, en_texts)
    assert en_unique == ["e0", "e1", "e2", "e3"] and en_ids_by_row[0] == ["en-1", "en-2"]
    rows = [str(i) for i in range(4)]
    # k=2: each row's two nearest are its partner (c) and a 0.1, so both sides' means are (c + 0.1)/2 and
    # margin(i, i) = c / ((c + 0.1)/2) = 2c/(c + 0.1): 1.8, 1.7778, 1.75, 1.2; the diagonal is mined.
    mined = bucc_mine(source, unique_target, rows[: len(de_texts)], rows, k=2)
    assert [(s, t) for s, t, _ in mined] == [("0", "0"), ("1", "1"), ("2", "2"), ("3", "3")]
    candidates = expand_candidates(mined, de_ids_by_row, en_ids_by_row)
    # The e0 pair is dropped (its text has two ids), so gold (de-0, en-2) is never extracted: the other
    # three are all right, the best cut keeps them all: P 1, R 3/4, F1 6/7.
    assert [(s, t) for s, t, _ in candidates] == [("de-1", "en-3"), ("de-2", "en-4"), ("de-3", "en-5")]
    scores = bucc_scores(candidates, gold)
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(0.75)
    assert scores["f1"] == pytest.approx(6 / 7)

    # Plain mining on the raw rows: de-0's two nearest targets are both copies of e0 (mean 0.9, e0's own
    # mean stays 0.5), so its margin falls to 0.9 / 0.7 = 1.286, below de-1 and de-2 but above de-3 (1.2),
    # and it pairs with whichever copy wins a floating-point tie between identical rows. With en-1 the
    # pair is a false positive ranked above a true one; the best cut keeps all 4: P 3/4, R 3/4, F1 0.75.
    # With en-2 it would be right: F1 1. Either way not what XTREME's script reports.
    raw = bucc_mine(source, unique_target[[0, 0, 1, 2, 3]], de_ids, en_ids, k=2)
    (raw_de0,) = [(t, score) for s, t, score in raw if s == "de-0"]
    assert raw_de0[0] in {"en-1", "en-2"}
    assert raw_de0[1] == pytest.approx(0.9 / 0.7, rel=1e-5)
    assert bucc_scores(raw, gold)["f1"] == pytest.approx(0.75 if raw_de0[0] == "en-1" else 1.0)


def test_bucc_mine_checks_ids() -> None:
    with pytest.raises(ValueError, match="source ids"):
        bucc_mine(np.eye(2), np.eye(2), ["a"], ["x", "y"])


def test_bucc_scores_picks_the_f1_optimal_threshold() -> None:
    # Gold has 4 pairs, one (f, F) never mined. Walking down by score:
    #   top-1 (a,A) gold  P 1   R 1/4  F1 0.400
    #   top-2 (b,B) gold  P 1   R 2/4  F1 0.667
    #   top-3 (c,X) no    P 2/3 R 2/4  F1 0.571
    #   top-4 (d,D) gold  P 3/4 R 3/4  F1 0.750  <- best: threshold halfway to the next, (0.6+0.5)/2 = 0.55
    #   top-5 (e,Y) no    P 3/5 R 3/4  F1 0.667
    candidates = [("a", "A", 0.9), ("b", "B", 0.8), ("c", "X", 0.7), ("d", "D", 0.6), ("e", "Y", 0.5)]
    candidates.append(("a", "A", 0.1))  # a repeated pair keeps its best score, 0.9
    gold = [("a", "A"), ("b", "B"), ("d", "D"), ("f", "F")]
    scores = bucc_scores(candidates, gold)
    assert scores["threshold"] == pytest.approx(0.55)
    assert scores["precision"] == pytest.approx(0.75)
    assert scores["recall"] == pytest.approx(0.75)
    assert scores["f1"] == pytest.approx(0.75)


def test_bucc_scores_with_a_given_threshold() -> None:
    candidates = [("a", "A", 0.9), ("b", "B", 0.8), ("c", "X", 0.7), ("d", "D", 0.6)]
    gold = [("a", "A"), ("b", "B"), ("d", "D"), ("f", "F")]
    # >= 0.7 keeps a, b, c: 2 correct of 3 extracted, of 4 gold: P 2/3, R 1/2, F1 = (2/3)/(7/6) = 4/7.
    scores = bucc_scores(candidates, gold, threshold=0.7)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["threshold"] == 0.7
    # Nothing clears 0.95: all zero.
    assert bucc_scores(candidates, gold, threshold=0.95)["f1"] == 0.0


def test_bucc_scores_best_cut_at_the_last_candidate() -> None:
    # Both candidates are gold: top-1 F1 = 2*(1)(1/2)/(3/2) = 2/3, top-2 F1 = 1. The best cut is after the
    # last candidate, which has no successor to halve towards, so the threshold is its own score.
    scores = bucc_scores([("a", "A", 0.9), ("b", "B", 0.4)], [("a", "A"), ("b", "B")])
    assert scores["threshold"] == pytest.approx(0.4)
    assert scores["f1"] == 1.0


# ---------------------------------------------------------------------------------------------------------
# Tatoeba


def test_tatoeba_accuracy_uses_cosine_not_dot_product() -> None:
    source = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Target 2 is long: by dot product rows 0 and 1 would pick it (5 > 1); by cosine (0.707 < 1) they don't.
    assert tatoeba_accuracy(source, np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])) == 1.0
    # Row 1 = (0,1): cos to (1,0.2) is 0.2/1.02 = 0.196, to (1,1) 0.707 -> picks row 2; rows 0, 2 right: 2/3.
    assert tatoeba_accuracy(source, np.array([[1.0, 0.0], [1.0, 0.2], [1.0, 1.0]])) == pytest.approx(2 / 3)


def test_tatoeba_needs_aligned_rows() -> None:
    with pytest.raises(ValueError, match="aligned"):
        tatoeba_accuracy(np.eye(3), np.eye(2, 3))


def test_tatoeba_searches_the_non_english_side_with_each_english_sentence():
    # XTREME's direction: English row i must find non-English row i. Source row 1 is closer to English
    # row 0 than to its own partner, so the reverse direction would score 1/2; XTREME's scores 2/2.
    source = np.array([[1.0, 0.0], [0.9, 0.1]])
    target = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert tatoeba_accuracy(source, target) == 1.0
