"""NEFTune Table 4 statistics and Figure 5 overlap on hand-made texts with values worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from robustft.cli import main
from robustft.evals.text_stats import (
    CHUNK_CUTOFFS,
    chunk_statistics,
    cutoff_for,
    ngram_counts,
    overlap_scores,
    overlap_summary,
    repetition_and_diversity,
    text_statistics,
)


def test_ngram_counts_all_windows_and_the_released_loop():
    tokens = ["a", "b", "a", "b", "a"]
    assert ngram_counts(tokens, 2) == (2, 4)  # ab ba ab ba
    assert ngram_counts(tokens, 2, drop_last=True) == (2, 3)  # the released loop stops one window early
    assert ngram_counts(["a", "b"], 2, drop_last=True) == (0, 0)
    assert ngram_counts(["a"], 2) == (0, 0)


def test_formula_convention_by_hand():
    # "a b a b a b": 2-grams ab ba ab ba ab (2 unique of 5), 3-grams 2 of 4, 4-grams 2 of 3
    stats = repetition_and_diversity("a b a b a b", "formula")
    assert stats["repetition_2"] == pytest.approx(60.0)
    assert stats["repetition_3"] == pytest.approx(50.0)
    assert stats["repetition_4"] == pytest.approx(100 / 3)
    diversity = 0.4 * 0.5 * (2 / 3)
    assert stats["diversity"] == pytest.approx(diversity)
    assert stats["log_diversity"] == pytest.approx(-math.log(1 - diversity))


def test_released_convention_by_hand():
    # windows stop one early: 2-grams ab ba ab ba (2/4), 3-grams aba bab aba (2/3), 4-grams abab baba (2/2);
    # the fractions are divided by 100 again in the product, as in the released code
    stats = repetition_and_diversity("a b a b a b", "released")
    assert stats["repetition_2"] == pytest.approx(50.0)
    assert stats["repetition_3"] == pytest.approx(100 / 3)
    assert stats["repetition_4"] == pytest.approx(0.0)
    diversity = (1 - 0.5 / 100) * (1 - (1 / 3) / 100) * 1
    assert stats["diversity"] == pytest.approx(diversity)
    assert stats["log_diversity"] == pytest.approx(-math.log(1 - diversity))


def test_no_repetition_hits_the_log_diversity_ceiling_and_too_short_is_nan():
    for convention in ("released", "formula"):
        stats = repetition_and_diversity("one two three four five six", convention)
        assert stats["repetition_2"] == 0 and stats["diversity"] == 1
        assert stats["log_diversity"] == pytest.approx(20.0)
        assert math.isnan(repetition_and_diversity("one two three", convention)["log_diversity"])
    with pytest.raises(ValueError, match="convention"):
        repetition_and_diversity("a b c d e", "other")


def test_chunks_use_the_prefix_and_drop_short_texts():
    repetitive = "x y " * 10  # 20 tokens, then a tail that would change the numbers
    texts = [repetitive + "p q r s t u v w", "too short to keep", "a b c d e f g h i j k l m n o p q r s t"]
    out = chunk_statistics(texts, cutoff=20)
    assert (out["n_kept"], out["n_dropped"]) == (2, 1)
    prefix = repetition_and_diversity(repetitive.strip(), "formula")
    clean = repetition_and_diversity("a b c d e f g h i j k l m n o p q r s t", "formula")
    assert out["formula"]["repetition_2"] == pytest.approx(
        (prefix["repetition_2"] + clean["repetition_2"]) / 2
    )
    assert out["formula"]["log_diversity"] == pytest.approx((prefix["log_diversity"] + 20.0) / 2)
    assert chunk_statistics(["short"], cutoff=20)["released"] == {}


def test_text_statistics_lengths_and_paper_cutoffs():
    texts = ["one two three four five", "a b"]
    out = text_statistics(texts, cutoff=5, output_tokens=[5, 3])
    assert out["n"] == 2
    assert out["char_length"] == pytest.approx((23 + 3) / 2)
    assert out["whitespace_length"] == pytest.approx(3.5)
    assert out["token_length"] == pytest.approx(4.0)
    assert out["chunk"]["n_kept"] == 1
    assert out["log_diversity"] == out["chunk"]["released"]["log_diversity"] == pytest.approx(20.0)
    assert text_statistics(texts, cutoff=5, output_tokens=[5, None])["token_length"] is None
    with pytest.raises(ValueError, match="cutoff"):
        text_statistics(texts, cutoff=4)
    assert CHUNK_CUTOFFS == {"alpaca": 50, "alpaca_seed": 50, "evol_instruct": 100, "sharegpt": 150,
                             "open_platypus": 150}  # fmt: skip
    assert cutoff_for("sharegpt", None) == 150 and cutoff_for("sharegpt", 7) == 7
    with pytest.raises(KeyError, match="cutoff"):
        cutoff_for("unknown", None)


def test_rouge_l_and_bleu_by_hand():
    # ROUGE-L: LCS 3 of a 3-token output and a 6-token reference: P 1, R 0.5, F 2/3
    (rouge,) = overlap_scores(["the cat sat"], ["the cat sat on the mat"], use_stemmer=False)
    assert rouge["rouge_l"] == pytest.approx(2 / 3)
    # BLEU-4, equal lengths (no brevity penalty): clipped n-gram precisions 5/6, 3/5, 2/4, 1/3
    (scores,) = overlap_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert scores["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-4)
    (same,) = overlap_scores(["An identical answer here."], ["An identical answer here."])
    assert same["rouge_l"] == pytest.approx(1.0) and same["bleu"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="references"):
        overlap_scores(["a"], [])


def test_overlap_summary_needs_references():
    records = [{"id": 0, "output": "the cat sat", "reference": "the cat sat"}, {"id": 1, "output": "x"}]
    with pytest.raises(ValueError, match="reference"):
        overlap_summary(records)
    out = overlap_summary(records[:1])
    assert out["n"] == 1 and out["rouge_l"]["mean"] == pytest.approx(1.0)
    assert out["per_example"][0]["id"] == 0


def test_cli_writes_text_stats_and_overlap(tmp_path):
    generations = tmp_path / "generations.jsonl"
    rows = [
        {"id": 0, "output": "a b c d e a b c d e", "output_tokens": 10, "reference": "a b c d e"},
        {"id": 1, "output": "short", "output_tokens": 1, "reference": "short"},
    ]
    generations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "text_stats.json"
    assert main(["text-stats", "--generations", str(generations), "--out", str(out), "--cutoff", "10"]) == 0
    stats = json.loads(out.read_text())
    assert stats["n"] == 2 and stats["chunk"]["n_kept"] == 1 and stats["token_length"] == pytest.approx(5.5)
    assert stats["repetition_2"] == pytest.approx(100 * (1 - 5 / 8))  # released loop: 8 windows, 5 unique
    overlap = tmp_path / "overlap.json"
    assert main(["text-stats", "--generations", str(generations), "--out", str(overlap), "--overlap"]) == 0
    assert json.loads(overlap.read_text())["n"] == 2
    assert main(["text-stats", "--generations", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
