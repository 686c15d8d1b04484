"""Paired statistics, checked against hand computations and independent formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from robustft.stats import (
    holm,
    mean_bootstrap_ci,
    paired_bootstrap_ci,
    paired_differences,
    paired_ttest,
    seeds_needed,
    wilcoxon_p,
)


def exact_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided signed-rank p by enumerating all sign flips of the nonzero |d| ranks (ties get midranks)."""
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    centre = ranks.sum() / 2
    observed = abs(ranks[d > 0].sum() - centre)
    null = [abs(np.dot(signs, ranks) - centre) for signs in itertools.product([0, 1], repeat=len(d))]
    return float(np.mean(np.array(null) >= observed - 1e-9))


def paired_t_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test: P(T > crit) + P(T < -crit) under noncentral t.

    The lower tail is written as P(T > crit) with the sign of nc flipped, by symmetry, because
    scipy's nct.cdf returns NaN far in that tail.
    """
    crit = sps.t.ppf(1 - alpha / 2, n - 1)
    nc = effect * math.sqrt(n)
    return float(sps.nct.sf(crit, n - 1, nc) + sps.nct.sf(crit, n - 1, -nc))


# --- paired t-test ---------------------------------------------------------------------------------------


def test_paired_ttest_matches_hand_computed_t():
    b = np.array([60.0, 61.0, 62.0, 63.0, 64.0])
    a = b + np.array([0.5, 1.5, 1.0, 2.0, 0.0])
    # mean diff 1, sd sqrt(2.5 / 4), so t = 1 / (sqrt(0.625) / sqrt(5)) = 2 * sqrt(2) on 4 df.
    t = 2 * math.sqrt(2)
    assert paired_ttest(a, b) == pytest.approx(2 * sps.t.sf(t, 4), rel=1e-9)
    assert paired_ttest(a, b) == pytest.approx(0.0474207, abs=1e-7)
    assert paired_ttest(b, a) == pytest.approx(paired_ttest(a, b), rel=1e-12)  # two-sided


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([70.0], [69.0]),  # a single pair has no variance estimate
        ([70.0, 71.0, 72.0], [70.0, 71.0, 72.0]),  # identical runs
        ([71.0, 72.0, 73.0], [70.0, 71.0, 72.0]),  # constant nonzero difference would give t = inf
        ([], []),
    ],
)
def test_paired_ttest_nan_when_undefined(a, b):
    assert math.isnan(paired_ttest(a, b))


def test_paired_ttest_ignores_float_noise_from_percent_scaling():
    b = np.array([0.70, 0.88, 0.56]) * 100
    a = np.array([0.71, 0.89, 0.57]) * 100  # differences are 1 up to rounding error in the 14th digit
    assert np.ptp(a - b) > 0
    assert math.isnan(paired_ttest(a, b))


def test_paired_differences_rejects_nan_and_mismatched_lengths():
    with pytest.raises(ValueError, match="NaN"):
        paired_differences([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        paired_differences([1.0, 2.0], [1.0])


# --- Wilcoxon signed-rank ----------------------------------------------------------------------------------


def test_wilcoxon_floor_with_five_and_six_seeds():
    assert wilcoxon_p(np.arange(61.0, 66.0), np.full(5, 60.0)) == pytest.approx(2 / 2**5)  # 0.0625 at best
    assert wilcoxon_p(np.arange(1.0, 7.0), np.zeros(6)) == pytest.approx(2 / 2**6)


@pytest.mark.parametrize(
    "d",
    [
        [1.0, -2.0, 3.0, 4.0, 5.0, -6.0],  # distinct, the classical exact table
        [1.0, 1.0, 2.0, -3.0, 4.0],  # ties
        [1.0, 0.0, 2.0, -3.0, 4.0],  # a zero difference is discarded
        [2.0, 2.0, -2.0, 0.0, 5.0, 0.0, -1.0],
    ],
)
def test_wilcoxon_matches_sign_flip_enumeration(d):
    d = np.array(d)
    assert wilcoxon_p(d + 50.0, np.full(d.size, 50.0)) == pytest.approx(exact_signed_rank_p(d), abs=1e-12)


def test_wilcoxon_hand_value_with_ties():
    # |d| ranks 1.5, 1.5, 3, 4, 5; T- = 4. Sign patterns with T+ <= 4 or >= 11: 12 of 32.
    assert wilcoxon_p([1.0, 1.0, 2.0, -3.0, 4.0], np.zeros(5)) == pytest.approx(12 / 32)


@pytest.mark.parametrize(("a", "b"), [([1.0], [0.0]), ([3.0, 4.0, 5.0], [3.0, 4.0, 5.0]), ([], [])])
def test_wilcoxon_nan_when_not_computable(a, b):
    assert math.isnan(wilcoxon_p(a, b))


# --- bootstrap CI ------------------------------------------------------------------------------------------


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    b = rng.normal(80, 1, 8)
    a = b + np.array([-1.0, 1.0, -2.0, 2.0, -0.5, 0.5, -1.5, 1.5]) + 0.7  # symmetric around 0.7
    ci = paired_bootstrap_ci(a, b, n_boot=2000, seed=3)
    assert ci == paired_bootstrap_ci(a, b, n_boot=2000, seed=3)
    d = a - b
    assert d.min() <= ci[0] < d.mean() < ci[1] <= d.max()
    assert (ci[0] + ci[1]) / 2 == pytest.approx(0.7, abs=0.25)


def test_bootstrap_ci_nested_across_confidence_levels():
    d = np.array([0.3, -1.2, 2.5, 0.9, 1.7, -0.4])
    narrow = paired_bootstrap_ci(d, np.zeros(6), n_boot=5000, confidence=0.8, seed=0)
    wide = paired_bootstrap_ci(d, np.zeros(6), n_boot=5000, confidence=0.99, seed=0)
    assert wide[0] <= narrow[0] < narrow[1] <= wide[1]


def test_bootstrap_ci_matches_normal_theory_for_many_pairs():
    d = np.random.default_rng(7).normal(2.0, 3.0, 400)
    low, high = paired_bootstrap_ci(d, np.zeros(d.size), n_boot=10000, seed=0)
    half_width = sps.norm.ppf(0.975) * d.std(ddof=1) / math.sqrt(d.size)
    assert low == pytest.approx(d.mean() - half_width, abs=0.05)
    assert high == pytest.approx(d.mean() + half_width, abs=0.05)


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(x) for x in paired_bootstrap_ci([70.0], [69.0]))
    # Every resample of a constant difference has the same mean.
    assert paired_bootstrap_ci([71.0, 72.0, 73.0], [70.0, 71.0, 72.0], n_boot=500) == (1.0, 1.0)


def test_mean_bootstrap_ci_known_two_point_case():
    """Resampled means of {0, 1} are 0, 0.5 and 1 with probabilities 1/4, 1/2, 1/4: the 95% percentile
    interval is [0, 1] and the 40% one (30th to 70th percentile) collapses onto 0.5."""
    assert mean_bootstrap_ci([0.0, 1.0], n_boot=4000, seed=2) == (0.0, 1.0)
    assert mean_bootstrap_ci([0.0, 1.0], n_boot=4000, confidence=0.4, seed=2) == (0.5, 0.5)


def test_paired_ci_is_the_one_sample_ci_of_the_differences():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 2.0, 12), rng.normal(0.0, 2.0, 12)
    assert paired_bootstrap_ci(a, b, n_boot=3000, seed=9) == mean_bootstrap_ci(
        paired_differences(a, b), n_boot=3000, seed=9
    )
    assert all(math.isnan(x) for x in mean_bootstrap_ci([0.4]))
    with pytest.raises(ValueError, match="finite"):
        mean_bootstrap_ci([0.4, math.nan])


# --- Holm --------------------------------------------------------------------------------------------------


def test_holm_known_adjustment():
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> raised to 0.06 to stay monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_excludes_nan_from_family():
    adjusted = holm([0.01, np.nan, 0.04])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04])  # a family of 2, not 3
    assert math.isnan(adjusted[1])
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).shape == (0,)


def test_holm_properties_on_random_pvalues():
    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    adjusted = holm(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()  # adjustment keeps the ranking of the raw p-values


# --- seeds needed ------------------------------------------------------------------------------------------


def test_seeds_needed_known_values():
    # Standard table values for a two-sided paired t-test, alpha 0.05, power 0.8 (as in G*Power).
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(0.5, 1.0) == 34
    assert seeds_needed(-1.5, 3.0) == 34  # only |delta| / sd matters


@pytest.mark.parametrize("effect", [0.2, 0.8, 1.7, 3.0, 8.0, 40.0])
def test_seeds_needed_is_minimal(effect):
    n = seeds_needed(effect, 1.0)
    assert n >= 2
    assert paired_t_power(effect, n) >= 0.8
    if n > 2:
        assert paired_t_power(effect, n - 1) < 0.8


@pytest.mark.parametrize(("delta", "sd"), [(0.0, 1.0), (1.0, math.nan), (math.nan, 1.0), (1.0, 0.0)])
def test_seeds_needed_none_when_undefined(delta, sd):
    assert seeds_needed(delta, sd) is None


def test_docs_verdicts_md_is_the_vocabulary_in_stats() -> None:
    """docs/verdicts.md documents exactly stats.VERDICTS and stats.MAGNITUDES (regenerate it with
    robustft.stats.verdicts_markdown() after changing them)."""
    from pathlib import Path

    from robustft.stats import verdicts_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "verdicts.md").read_text(encoding="utf-8")
    assert doc.endswith(verdicts_markdown())
    assert doc.count("| verdict | meaning |") == 1


def test_every_verdict_the_rule_gives_is_documented() -> None:
    from robustft.stats import VERDICTS, verdict

    grid = [math.nan, None, -1.0, 0.0, 0.5, 1.0]
    cis = [(math.nan, math.nan), (-1.0, 1.0), (0.2, 0.6), (0.9, 1.2), (-0.6, -0.2)]
    seen = {
        verdict(paper, low, high, n, p)
        for paper in grid
        for low, high in cis
        for n in (0, 1, 2, 3, 5)
        for p in (None, 0.01, 0.2, math.nan)
    }
    assert seen <= set(VERDICTS)
    assert {"reproduced", "direction only", "too few seeds", "contradicted", "within noise"} <= seen


def test_a_method_that_diverged_on_more_seeds_than_its_baseline_is_unstable() -> None:
    """A diverged seed counts against its method: 3 surviving pairs that would reproduce the paper's Δ
    do not, when the method lost 2 of its 5 seeds and the baseline none."""
    from robustft.stats import DIRECTION_ONLY, REPRODUCED, UNSTABLE, WITHIN_NOISE, verdict

    reproduced = (1.0, 0.5, 1.5, 3, 0.01)
    assert verdict(*reproduced) == REPRODUCED
    assert verdict(*reproduced, n_diverged_method=2, n_diverged_baseline=0) == UNSTABLE
    assert verdict(1.0, 0.05, 0.1, 3, 0.01, n_diverged_method=1, n_diverged_baseline=0) == UNSTABLE
    assert verdict(1.0, 0.05, 0.1, 3, 0.01) == DIRECTION_ONLY
    # The baseline lost as many: both sides lost the same share, the claim stands on its pairs.
    assert verdict(*reproduced, n_diverged_method=1, n_diverged_baseline=1) == REPRODUCED
    assert verdict(*reproduced, n_diverged_method=0, n_diverged_baseline=2) == REPRODUCED
    # Unknown counts (older tables) are no evidence of divergence.
    assert verdict(*reproduced, n_diverged_method=math.nan, n_diverged_baseline=None) == REPRODUCED
    # Only a claimed gain becomes unstable: no effect and too few seeds keep their verdicts.
    assert verdict(1.0, -0.5, 1.5, 3, 0.3, n_diverged_method=2) == WITHIN_NOISE
    assert verdict(1.0, 0.5, 1.5, 2, 0.01, n_diverged_method=2) == "too few seeds"


def test_the_seed_floor_is_a_placeholder_filled_in_one_place() -> None:
    from robustft.stats import MIN_SEEDS_PLACEHOLDER, TOO_FEW_SEEDS, VERDICTS, verdict_meanings

    assert MIN_SEEDS_PLACEHOLDER in VERDICTS[TOO_FEW_SEEDS]
    assert verdict_meanings(5)[TOO_FEW_SEEDS].startswith("fewer paired seeds than 5 (report.min_seeds)")
    assert "report.min_seeds (default 3)" in verdict_meanings()[TOO_FEW_SEEDS]
    assert not any(MIN_SEEDS_PLACEHOLDER in meaning for meaning in verdict_meanings(4).values())
