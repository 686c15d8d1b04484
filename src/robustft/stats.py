"""Paired statistics for comparing a method against a baseline over the same seeds.

Every function takes two equal-length arrays `a` (method) and `b` (baseline) whose i-th entries come
from the same seed, so the unit of analysis is the per-seed difference `a - b`. With the 3-10 seeds
that fine-tuning papers use, most tests are at the edge of being computable, so each function returns
NaN (or None) instead of a number that would look meaningful but is not; the rules are in the docstrings.
The one exception, mean_bootstrap_ci, bootstraps the mean of a single sample (the paired CI is it applied
to the differences; the AlpacaEval judge uses it for its win rate over prompts).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

# Scores are fractions x 100, so two runs that tie exactly can differ in the 14th decimal after the
# subtraction. Rounding the differences keeps such float noise from breaking ties in the rank test or
# from turning a zero-variance sample into a huge t statistic (scipy's wilcoxon docs warn about this).
_DIFF_DECIMALS = 9


def paired_differences(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Per-seed differences a - b, rounded to 1e-9 (see above).

    Refuses NaN: a missing or diverged run must be dropped from both sides, not paired.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired samples must be 1-D and the same length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired samples contain NaN or inf; drop unpaired or failed seeds first")
    return np.round(a - b, _DIFF_DECIMALS)


def paired_ttest(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p-value of the paired t-test.

    NaN when there are fewer than 2 pairs or all differences are equal: the t statistic divides by the
    standard deviation of the differences, so a constant nonzero difference would give t=inf and p=0,
    which is an artefact of too few seeds rather than evidence.
    """
    d = paired_differences(a, b)
    if d.size < 2 or np.ptp(d) == 0:
        return math.nan
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def wilcoxon_p(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p-value of the exact Wilcoxon signed-rank test (zero differences discarded).

    NaN when there are fewer than 2 pairs or every difference is zero (no ranks to test). scipy's
    method="auto" (scipy >= 1.15) uses the exact null distribution for n <= 50 without ties, and
    enumerates all sign flips for n <= 13 when there are ties or zeros, so with seed counts it is exact.
    The test has a floor: with 5 pairs the smallest attainable p-value is 2 / 2**5 = 0.0625.
    """
    d = paired_differences(a, b)
    if d.size < 2 or not d.any():
        return math.nan
    return float(stats.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)


def paired_bootstrap_ci(
    a: ArrayLike, b: ArrayLike, n_boot: int = 10000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean paired difference, resampling whole seeds.

    Resampling the differences is the same as resampling (a, b) pairs together, so this is
    mean_bootstrap_ci of the differences. (nan, nan) for fewer than 2 pairs.
    """
    return mean_bootstrap_ci(paired_differences(a, b), n_boot=n_boot, confidence=confidence, seed=seed)


def mean_bootstrap_ci(
    values: ArrayLike, n_boot: int = 10000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of one sample (scipy.stats.bootstrap), resampling its items.

    The percentile method is used because BCa needs a jackknife that is degenerate with a handful of
    seeds. (nan, nan) for fewer than 2 values, where there is nothing to resample. Refuses NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError(f"a bootstrap sample must be 1-D and finite, got shape {values.shape}")
    if values.size < 2:
        return math.nan, math.nan
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and do not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        adjusted[tested] = multipletests(p[tested], method="holm")[1]
    return adjusted


def seeds_needed(delta: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Smallest number of paired seeds for a two-sided paired t-test to detect `delta` with `power`.

    The effect size is |delta| / sd_diff (Cohen's d_z). None when delta is 0 or NaN, or sd_diff is NaN
    or 0 (no variance estimate, e.g. from a single pair). statsmodels' solve_power fails to converge for
    large effects, where the answer is 2 or 3, so the integer answer is found by searching n directly on
    the statsmodels power function, which is monotone in n.
    """
    if not (math.isfinite(delta) and math.isfinite(sd_diff)) or delta == 0 or sd_diff <= 0:
        return None
    effect = abs(delta) / sd_diff

    def enough(n: int) -> bool:
        achieved = TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided")
        if math.isnan(achieved):
            # scipy's noncentral t cdf returns NaN far in the wrong-sign tail for large effects; that tail
            # is ~0 there, so the upper rejection region alone (the same critical value) is the power.
            achieved = TTestPower().power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger")
        return bool(achieved >= power)

    # A paired t-test needs 2 pairs; double until powered, then bisect between the last two sizes.
    low, high = 1, 2
    while not enough(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


# ------------------------------------------------------------------------------------------ verdicts
# The one vocabulary every report and artifact uses for a claim "method beats baseline". docs/verdicts.md
# is tested against these dictionaries, so the documentation cannot drift from the code.

# Fewer paired seeds than this and no verdict is drawn: two seeds with differences 1.0 and 1.1 already
# give a CI of [1.0, 1.1] and p = 0.03, which says nothing about seed-to-seed variance. The config key
# `report.min_seeds` overrides it; VERDICTS writes it as MIN_SEEDS_PLACEHOLDER (verdict_meanings fills it).
MIN_PAIRED_SEEDS = 3
SIGNIFICANCE = 0.05

REPRODUCED = "reproduced"
DIRECTION_ONLY = "direction only"
CONTRADICTED = "contradicted"
WITHIN_NOISE = "within noise"
TOO_FEW_SEEDS = "too few seeds"
NOT_RUN = "not run"
NO_PAPER_VALUE = "no paper value"
CLEAR_GAIN = "clear gain"
CLEAR_LOSS = "clear loss"
MECHANICS_CHECK = "mechanics check"
NOT_COMPARABLE = "not comparable"
UNSTABLE = "unstable"
MIN_SEEDS_PLACEHOLDER = "{min_seeds}"

VERDICTS: dict[str, str] = {
    REPRODUCED: "our 95% CI excludes 0 on the side of the paper's Δ, the paired test is significant (p < "
    "0.05, Holm-adjusted across tasks where there is a family), and the paper's Δ lies inside our CI",
    DIRECTION_ONLY: "as reproduced, but the paper's Δ lies outside our CI: the direction agrees, the size "
    "does not (the magnitude says whether ours is smaller or larger)",
    CONTRADICTED: "our CI excludes 0 on the other side of the paper's Δ (or away from 0 where the paper "
    "reports no change), and the paired test is significant",
    WITHIN_NOISE: "our CI includes 0, or the paired test is not significant",
    UNSTABLE: "the effect would be reproduced or direction only on the paired seeds, but the method diverged "
    "on more seeds than its baseline: a diverged seed counts against its method, so the survivors carry no "
    "claim",
    TOO_FEW_SEEDS: "fewer paired seeds than {min_seeds}: no claim is drawn either way",
    NOT_RUN: "no seed pairs: the runs are absent, failed or diverged",
    NO_PAPER_VALUE: "a clear effect (CI excludes 0, test significant) but no paper number to compare with",
    CLEAR_GAIN: "no paper to compare with (cross-method table): CI above 0 and the test significant",
    CLEAR_LOSS: "no paper to compare with (cross-method table): CI below 0 and the test significant",
    MECHANICS_CHECK: "runs that check the code paths (tiny or English-only models): nothing is compared "
    "with the paper",
    NOT_COMPARABLE: "our number covers a different set (e.g. a subset of an XTREME task's languages) than "
    "the paper's, so the two are not compared",
}

PAPER_IN_CI = "paper Δ in CI"
OURS_SMALLER = "ours smaller"
OURS_LARGER = "ours larger"

MAGNITUDES: dict[str, str] = {
    PAPER_IN_CI: "the paper's Δ lies inside our 95% CI",
    OURS_SMALLER: "our CI lies entirely short of the paper's Δ in the paper's direction (a weaker effect, "
    "none, or the opposite one)",
    OURS_LARGER: "our CI lies entirely beyond the paper's Δ in the paper's direction (a stronger effect); "
    "where the paper reports no change, our CI excludes 0",
}


def verdict_meanings(min_seeds: int | None = None) -> dict[str, str]:
    """VERDICTS with the seed floor written in, the one place MIN_SEEDS_PLACEHOLDER is filled: a report's
    floor as "N (report.min_seeds)", or (None, for docs/verdicts.md) the config key and its default."""
    floor = (
        f"report.min_seeds (default {MIN_PAIRED_SEEDS})"
        if min_seeds is None
        else f"{min_seeds} (report.min_seeds)"
    )
    return {word: meaning.replace(MIN_SEEDS_PLACEHOLDER, floor) for word, meaning in VERDICTS.items()}


def _absent(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def diverged_against_method(n_diverged_method: float | None, n_diverged_baseline: float | None) -> bool:
    """Whether the method lost more seeds to divergence than its baseline (unknown counts: no).

    Counts, not seed identities: they are what every table prints beside the Δ, so a reader can check
    the rule, and a method and baseline that each lost one seed lost the same share of their runs.
    """
    return _count(n_diverged_method) > _count(n_diverged_baseline)


def _count(value: object) -> float:
    """A diverged-run count as a number; a missing one (None, NaN, pandas' NA) is 0."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number


def magnitude(paper_delta: float | None, ci_low: float, ci_high: float) -> str | None:
    """Where the paper's Δ sits against our 95% CI (a key of MAGNITUDES); None without both.

    Measured in the paper's direction, so "ours smaller" means a weaker effect for a negative paper Δ
    too. A paper Δ of exactly 0 has no direction: a CI that excludes it is "ours larger".
    """
    if _absent(paper_delta) or _absent(ci_low) or _absent(ci_high):
        return None
    if ci_low <= paper_delta <= ci_high:
        return PAPER_IN_CI
    if paper_delta == 0:
        return OURS_LARGER
    short = ci_high < paper_delta if paper_delta > 0 else ci_low > paper_delta
    return OURS_SMALLER if short else OURS_LARGER


def verdict(
    paper_delta: float | None,
    ci_low: float,
    ci_high: float,
    n_pairs: float,
    p_value: float | None = None,
    min_seeds: int = MIN_PAIRED_SEEDS,
    n_diverged_method: float | None = None,
    n_diverged_baseline: float | None = None,
) -> str:
    """The verdict (a key of VERDICTS) on the claim "method beats baseline by the paper's Δ".

    `n_pairs` counts paired seeds; `p_value` is the paired test the claim rests on (None: the CI alone
    decides, used where no test exists). The rules, in order: no pairs -> not run; fewer than `min_seeds`
    -> too few seeds; CI missing or including 0, or p missing or >= 0.05 -> within noise; no paper Δ ->
    no paper value; CI on the paper's side of 0 -> reproduced when the paper's Δ is inside the CI, else
    direction only; otherwise contradicted. Last, a reproduced or direction-only claim whose method
    diverged on more seeds than its baseline (`n_diverged_*`, unknown counts as 0) -> unstable: the
    diverged seeds are not in the pairing, so the survivors alone must not carry the claim.
    """
    word = _verdict_on_pairs(paper_delta, ci_low, ci_high, n_pairs, p_value, min_seeds)
    if word in (REPRODUCED, DIRECTION_ONLY) and diverged_against_method(
        n_diverged_method, n_diverged_baseline
    ):
        return UNSTABLE
    return word


def _verdict_on_pairs(
    paper_delta: float | None,
    ci_low: float,
    ci_high: float,
    n_pairs: float,
    p_value: float | None,
    min_seeds: int,
) -> str:
    if _absent(n_pairs) or n_pairs <= 0:
        return NOT_RUN
    if n_pairs < min_seeds:
        return TOO_FEW_SEEDS
    if _absent(ci_low) or _absent(ci_high) or ci_low <= 0 <= ci_high:
        return WITHIN_NOISE
    if p_value is not None and (_absent(p_value) or p_value >= SIGNIFICANCE):
        return WITHIN_NOISE
    if _absent(paper_delta):
        return NO_PAPER_VALUE
    if paper_delta != 0 and (ci_low > 0) == (paper_delta > 0):
        return REPRODUCED if magnitude(paper_delta, ci_low, ci_high) == PAPER_IN_CI else DIRECTION_ONLY
    return CONTRADICTED


def verdicts_markdown() -> str:
    """The vocabulary as the Markdown tables of docs/verdicts.md (a test keeps the two identical)."""
    lines = ["| verdict | meaning |", "| --- | --- |"]
    lines += [f"| {word} | {meaning} |" for word, meaning in verdict_meanings().items()]
    lines += ["", "| magnitude | meaning |", "| --- | --- |"]
    lines += [f"| {word} | {meaning} |" for word, meaning in MAGNITUDES.items()]
    return "\n".join(lines) + "\n"
