"""How many paired seeds a comparison with the baseline needs: the power of the report's paired
t-test, the confidence interval of the mean difference, and the "inconclusive" flag.

The model behind both t-tests of the report (regbench.reporting.aggregate.paired_p): the J
paired differences are normal with mean mu, and the variance of their mean is
sigma^2 * (1/J + c), sigma^2 being what their sample variance estimates and c = 0 for the plain
paired t-test, c = n_test/n_train for Nadeau & Bengio's corrected one (seeds that re-split the
data). Under it the test's statistic mean / sqrt(s^2 (1/J + c)) follows a noncentral t
distribution with J - 1 degrees of freedom and noncentrality

    delta(J) = (mu / sigma) / sqrt(1/J + c)

(exact where the differences are exchangeably correlated with correlation c / (1 + c): their
mean is then independent of their sample variance). The power at J pairs is the chance that
|T| exceeds t(1 - alpha/2, J - 1). With c = 0 this is statsmodels' TTestPower with effect size
mu / sigma; with c > 0 delta(J) never exceeds (mu / sigma) / sqrt(c): the correction does not
shrink with J, the power tends to Phi(delta_inf - z) + Phi(-delta_inf - z) (z = z(1 - alpha/2))
and where that is below the power asked for, no number of seeds suffices (`math.inf`).

mu / sigma is estimated from the seeds at hand (the observed mean difference over the
standard deviation of the differences), so the figure is a planning estimate, not a promise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

MIN_PAIRS = 2  # a t-test needs two pairs
MAX_PAIRS = 10**7  # searched up to here; beyond it the count is not a plan anyone runs


def power(d: float, n: int, alpha: float, correction: float | None = None) -> float:
    """The two-sided paired t-test's power at `n` pairs for a standardized difference `d`
    (mean over the standard deviation of the differences), with the corrected test's
    `correction` (n_test/n_train) or none (the plain test)."""
    c = correction or 0.0
    df = n - 1
    delta = d / math.sqrt(1 / n + c)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, delta) + stats.nct.cdf(-crit, df, delta))


def limit_power(d: float, alpha: float, correction: float | None = None) -> float:
    """The power as the number of pairs grows without end: 1 for the plain test (d != 0), and
    Phi(delta_inf - z) + Phi(-delta_inf - z) with delta_inf = |d| / sqrt(correction) for the
    corrected one."""
    if not correction:
        return 1.0 if d else alpha
    delta = abs(d) / math.sqrt(correction)
    z = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf(delta - z) + stats.norm.cdf(-delta - z))


def seeds_needed(d: float, alpha: float = 0.05, target: float = 0.8, correction: float | None = None) -> float:
    """The fewest paired seeds (at least 2) at which the paired t-test detects a standardized
    difference `d` with power `target` at level `alpha`: a whole number as a float, `math.inf`
    where no number suffices (d = 0, or the corrected test's limit below `target`: see
    limit_power) or more than MAX_PAIRS would be needed, NaN for an undefined `d`."""
    if d is None or not math.isfinite(d):
        return math.nan
    if d == 0 or limit_power(d, alpha, correction) <= target:
        return math.inf
    if power(d, MIN_PAIRS, alpha, correction) >= target:
        return float(MIN_PAIRS)
    low, high = MIN_PAIRS, MIN_PAIRS * 2  # power(low) < target; the power grows with n
    while power(d, high, alpha, correction) < target:
        if high >= MAX_PAIRS:
            return math.inf
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power(d, mid, alpha, correction) < target else (low, mid)
    return float(high)


def interval(diff: np.ndarray, alpha: float = 0.05, correction: float | None = None) -> tuple[float, float]:
    """The (1 - alpha) confidence interval of the mean paired difference, the one the report's
    t-test inverts: mean ± t(1 - alpha/2, J - 1) * s * sqrt(1/J + c). NaN below 2 pairs."""
    n = len(diff)
    if n < MIN_PAIRS:
        return math.nan, math.nan
    mean = float(np.mean(diff))
    half = stats.t.ppf(1 - alpha / 2, n - 1) * float(np.std(diff, ddof=1)) * math.sqrt(1 / n + (correction or 0.0))
    return mean - half, mean + half


def inconclusive(low: float, high: float, min_effect: float | None) -> bool:
    """Whether the interval [low, high] holds both no effect (0) and a meaningful one (a value at
    least `min_effect` away from 0, either way): the seeds at hand cannot tell which."""
    if min_effect is None or not (math.isfinite(low) and math.isfinite(high)):
        return False
    return low <= 0 <= high and (high >= min_effect or low <= -min_effect)


def planned(diff: np.ndarray, alpha: float, target: float, correction: float | None,
            min_effect: float | None) -> tuple[float, float, float, float]:
    """(seeds_needed, ci_low, ci_high, needs) for one comparison's paired differences.

    seeds_needed: the pairs that detect the observed mean difference with power `target`;
    needs: for an inconclusive comparison (see `inconclusive`), the pairs that detect the larger
    of the observed difference and `min_effect`, the smallest difference that matters (planning
    for a smaller one spends seeds telling apart differences called negligible), and at least one
    more than it has (the pairs at hand did not settle it); NaN otherwise.
    """
    low, high = interval(diff, alpha, correction)
    if len(diff) < MIN_PAIRS:
        return math.nan, low, high, math.nan
    sd = float(np.std(diff, ddof=1))
    mean = float(np.mean(diff))
    if not sd > 0:  # every difference the same: nothing to plan
        return math.nan, low, high, math.nan
    needed = seeds_needed(mean / sd, alpha, target, correction)
    needs = math.nan
    if inconclusive(low, high, min_effect):
        needs = max(seeds_needed(max(abs(mean), min_effect) / sd, alpha, target, correction), len(diff) + 1.0)
    return needed, low, high, needs


def count_text(n: float) -> str:
    """A seeds count as the report prints it: the number, or `never` for math.inf."""
    return "never" if n == math.inf else str(int(n))
