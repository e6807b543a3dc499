"""The statistics of a study across datasets: ranks, the Friedman test with the Iman–Davenport
correction, the Nemenyi critical difference, pairwise Wilcoxon signed-rank tests with Holm's
correction, the Bayesian signed-rank test with a region of practical equivalence, win/tie/loss
counts and performance profiles (Demšar, JMLR 2006; Benavoli et al., JMLR 2016 and 2017;
Dolan & Moré, Math. Programming 2002).

Every function takes `scores`: an array of datasets × configurations where higher is better
(a lower-is-better metric is negated first), one mean over seeds per cell. Nothing here reads
run folders (regbench.reporting.study does).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from regbench.reporting.aggregate import holm

MIN_DATASETS = 3  # with 2, Friedman's statistic takes too few values to reject anything fairly


def ties_equal(scores: np.ndarray) -> np.ndarray:
    """`scores` with values equal up to the rounding of a mean over seeds (4 ulps of the row's
    largest value) made exactly equal, so that 2/3 and 0.6666666666666667 tie in the ranks."""
    out = np.array(scores, dtype=float)
    for row in out:
        scale = max(float(np.abs(row).max()), np.finfo(float).tiny)
        order = np.argsort(row, kind="stable")
        for a, b in zip(order[:-1], order[1:]):
            if row[b] - row[a] <= 4 * np.finfo(float).eps * scale:
                row[b] = row[a]
    return out


def ranks(scores: np.ndarray) -> np.ndarray:
    """Per dataset (row), each configuration's rank, 1 the best, ties sharing the mean of the
    ranks they span (Demšar 2006, sec. 3.2.2)."""
    return np.vstack([stats.rankdata(-row, method="average") for row in ties_equal(scores)])


@dataclass
class Friedman:
    """The Friedman test over N datasets and k configurations.

    `chi2` is Friedman's statistic with the correction for ties (as scipy.stats.friedmanchisquare
    computes it), `p_chi2` its chi-square p-value; `f` the Iman–Davenport statistic
    (N-1)·chi2 / (N(k-1) - chi2), `p` its p-value from F(k-1, (k-1)(N-1)), the one a study
    reports (the chi-square one is too conservative, Demšar sec. 3.2.2). `conclusive` is False
    (and the p-values NaN) below MIN_DATASETS datasets; `note` says why, or what the edge cases
    mean (every dataset ties every configuration; every dataset orders them alike).
    """

    n_datasets: int
    k: int
    chi2: float
    p_chi2: float
    f: float
    p: float
    conclusive: bool
    note: str = ""


def friedman(scores: np.ndarray) -> Friedman:
    """The Friedman test of `scores` (datasets × configurations, higher better)."""
    n, k = scores.shape
    if n < MIN_DATASETS:
        return Friedman(n, k, math.nan, math.nan, math.nan, math.nan, False,
                        f"Friedman test: {n} datasets cannot support a conclusion (it needs at least "
                        f"{MIN_DATASETS}); the ranks below are descriptive only")
    r = ranks(scores)
    mean_rank = r.mean(axis=0)
    # Tie correction: 1 - sum(t^3 - t) / (N k (k^2 - 1)) over the groups of tied values per dataset.
    tied = sum(float((c**3 - c).sum()) for c in (np.unique(row, return_counts=True)[1] for row in r))
    correction = 1 - tied / (n * k * (k * k - 1))
    if correction <= 0:  # every dataset ties every configuration
        return Friedman(n, k, 0.0, 1.0, 0.0, 1.0, True,
                        "Friedman test: every dataset ties every configuration; nothing to tell apart")
    chi2 = 12 * n / (k * (k + 1)) * float(((mean_rank - (k + 1) / 2) ** 2).sum()) / correction
    p_chi2 = float(stats.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if denominator <= 1e-12 * n * k:  # every dataset orders the configurations alike: F is infinite
        return Friedman(n, k, chi2, p_chi2, math.inf, 0.0, True,
                        "Friedman test: every dataset orders the configurations alike (Iman–Davenport F is "
                        "infinite, p = 0; the chi-square p shows how much so few datasets can say)")
    f = (n - 1) * chi2 / denominator
    return Friedman(n, k, chi2, p_chi2, f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))), True)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference: two average ranks that differ by at least this are
    significantly different, q_alpha · sqrt(k(k+1) / (6N)), q_alpha the studentized range
    quantile (1 - alpha, k, infinite df) over sqrt(2) (Demšar 2006, sec. 3.2.2)."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def nemenyi_p(scores: np.ndarray) -> np.ndarray:
    """The Nemenyi test's pairwise p-values (k × k; 1 on the diagonal): the studentized range
    survival function of |R_i - R_j| / sqrt(k(k+1) / (6N)) · sqrt(2)."""
    n, k = scores.shape
    mean_rank = ranks(scores).mean(axis=0)
    z = np.abs(mean_rank[:, None] - mean_rank[None, :]) / math.sqrt(k * (k + 1) / (6 * n))
    return np.clip(stats.studentized_range.sf(z * math.sqrt(2), k, np.inf), 0, 1)


def wilcoxon_holm(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise two-sided Wilcoxon signed-rank tests over datasets (zero differences dropped,
    scipy's default), and their p-values Holm-adjusted as one family of k(k-1)/2 comparisons
    (Benavoli, Corani & Mangili, JMLR 2016). Returns (raw, adjusted), k × k, symmetric, NaN on
    the diagonal and where every difference is zero (the test is undefined)."""
    tied = ties_equal(scores)
    k = scores.shape[1]
    raw = np.full((k, k), np.nan)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for i, j in pairs:
        diff = tied[:, i] - tied[:, j]
        if diff.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exact p-values are unavailable with zeros or ties
                raw[i, j] = raw[j, i] = float(stats.wilcoxon(diff).pvalue)
    adjusted = np.full((k, k), np.nan)
    for (i, j), p in zip(pairs, holm([raw[i, j] for i, j in pairs])):
        adjusted[i, j] = adjusted[j, i] = p
    return raw, adjusted


def bayes_signed_rank(left: np.ndarray, right: np.ndarray, rope: float, *, prior: float = 0.5,
                      n_samples: int = 50_000, seed: int = 0) -> tuple[float, float, float]:
    """The Bayesian signed-rank test (Benavoli et al., ICML 2014; JMLR 2017): P(left better),
    P(practically equivalent), P(right better) over the datasets' differences `left - right`
    (higher better).

    A Dirichlet process posterior over the distribution of the differences, with a prior
    pseudo-observation at 0 of weight `prior`: each Monte-Carlo sample draws weights w from
    Dirichlet(prior, 1, ..., 1) over (0, d_1, ..., d_n) and computes the mass of the Walsh
    averages (d_i + d_j)/2 above `rope`, within it and below it (sum_ij w_i w_j H(...), H the
    step with H(0) = 1/2); the probabilities are the fractions of samples where each mass is
    the largest. Seeded: the same inputs give the same numbers.
    """
    d = np.concatenate(([0.0], np.asarray(left, float) - np.asarray(right, float)))
    sums = d[:, None] + d[None, :]

    def step(a: np.ndarray) -> np.ndarray:
        return (a > 2 * rope).astype(float) + 0.5 * (a == 2 * rope)

    weights = np.ones(len(d))
    weights[0] = prior
    w = np.random.default_rng(seed).dirichlet(weights, n_samples)
    above = np.einsum("si,ij,sj->s", w, step(sums), w, optimize=True)
    below = np.einsum("si,ij,sj->s", w, step(-sums), w, optimize=True)
    if rope > 0:
        mass = np.stack([above, 1 - above - below, below], axis=1)
    else:  # no equivalence region: a tie at 0 is split between the sides (H(0) = 1/2)
        mass = np.stack([above, np.zeros_like(above), 1 - above], axis=1)
    winners = np.bincount(mass.argmax(axis=1), minlength=3) / n_samples
    return float(winners[0]), float(winners[1]), float(winners[2])


def win_tie_loss(scores: np.ndarray) -> np.ndarray:
    """k × k × 3: for row configuration i against column j, the datasets where i scores higher,
    the same (up to rounding, see ties_equal), lower."""
    tied = ties_equal(scores)
    diff = tied[:, :, None] - tied[:, None, :]
    return np.stack([(diff > 0).sum(0), (diff == 0).sum(0), (diff < 0).sum(0)], axis=-1)


def performance_ratios(costs: np.ndarray) -> np.ndarray:
    """Dolan & Moré's performance ratios: each cost (lower better, >= 0; an error rate, 1 - r2,
    a loss) over the dataset's best cost. Where the best cost is 0 (a perfect score), the
    configurations that reach it get 1 and the others infinity (never within a finite tau)."""
    costs = np.asarray(costs, float)
    best = costs.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(best > 0, costs / np.where(best > 0, best, 1), np.where(costs <= best, 1.0, np.inf))
    return ratios


def profile(ratios: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """len(taus) × k: for each tau, the fraction of datasets where a configuration's ratio is at most tau."""
    return (ratios[None, :, :] <= np.asarray(taus)[:, None, None]).mean(axis=1)


def cliques(mean_rank: np.ndarray, different: np.ndarray) -> list[list[int]]:
    """The groups a CD diagram joins with a bar: in order of average rank, the maximal runs of
    consecutive configurations no pair of which the test tells apart (`different[i, j]` True
    where it does). Runs of one are left out. Returns indices into `mean_rank`."""
    order = list(np.argsort(mean_rank, kind="stable"))
    groups: list[list[int]] = []
    for start in range(len(order)):
        end = start
        while end + 1 < len(order) and not any(different[order[end + 1], order[m]] for m in range(start, end + 1)):
            end += 1
        group = order[start:end + 1]
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append([int(i) for i in group])
    return groups
