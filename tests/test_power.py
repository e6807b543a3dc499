"""How many seeds a comparison needs (regbench.reporting.power): the plain paired case against
statsmodels' TTestPower, the corrected (re-split) case against a direct noncentral-t computation
and a simulation of the report's own corrected test, and the report's figures and flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from regbench.reporting import power
from regbench.reporting.aggregate import SeedsPlan, paired_p
from regbench.reporting.report import build
from regbench.reporting.report_command import main
from regbench.reporting.report_format import markdown
from tests.test_report import make_sweep, row_of


@pytest.mark.parametrize("d", [0.3, 0.5, 0.8, 1.2, 2.0, -0.5])
@pytest.mark.parametrize("alpha, target", [(0.05, 0.8), (0.01, 0.9), (0.1, 0.8)])
def test_plain_paired_case_matches_statsmodels(d, alpha, target):
    from statsmodels.stats.power import TTestPower

    oracle = TTestPower().solve_power(effect_size=abs(d), alpha=alpha, power=target, alternative="two-sided")
    assert power.seeds_needed(d, alpha, target) == max(math.ceil(oracle), power.MIN_PAIRS)
    n = int(power.seeds_needed(d, alpha, target))
    assert power.power(d, n, alpha) == pytest.approx(
        TTestPower().power(effect_size=abs(d), nobs=n, alpha=alpha, alternative="two-sided"), abs=1e-10)


def _direct_power(d: float, n: int, alpha: float, c: float) -> float:
    """The corrected test's power written out once more: P(|T| > t crit), T noncentral t with
    n - 1 degrees of freedom and noncentrality d / sqrt(1/n + c)."""
    nc = d * (1 / n + c) ** -0.5
    crit = stats.t.isf(alpha / 2, n - 1)
    return stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)


@pytest.mark.parametrize("d, c", [(1.0, 0.05), (2.0, 0.25), (1.0, 0.1), (3.0, 0.5)])
def test_corrected_case_is_the_first_n_whose_noncentral_t_power_reaches_the_target(d, c):
    n = int(power.seeds_needed(d, 0.05, 0.8, c))
    assert _direct_power(d, n, 0.05, c) >= 0.8 > _direct_power(d, n - 1, 0.05, c)
    assert power.power(d, n, 0.05, c) == pytest.approx(_direct_power(d, n, 0.05, c), abs=1e-12)
    assert n > power.seeds_needed(d, 0.05, 0.8)  # the correction always asks more than the plain test


@pytest.mark.parametrize("d, c", [(0.5, 0.25), (1.0, 0.25), (1.3, 0.25), (0.2, 0.01)])
def test_corrected_case_says_never_where_the_limit_stays_below_the_target(d, c):
    z = stats.norm.isf(0.025)
    limit = stats.norm.cdf(d / math.sqrt(c) - z) + stats.norm.cdf(-d / math.sqrt(c) - z)
    assert limit < 0.8
    assert power.seeds_needed(d, 0.05, 0.8, c) == math.inf
    assert _direct_power(d, 100_000, 0.05, c) < 0.8  # no number of pairs gets there


def test_the_limit_separates_never_from_a_count():
    c, z = 0.25, stats.norm.isf(0.025)
    boundary = math.sqrt(c) * (z + stats.norm.isf(0.2))  # delta_inf where the limit power is about 0.8
    assert power.seeds_needed(boundary * 0.99, 0.05, 0.8, c) == math.inf
    assert math.isfinite(power.seeds_needed(boundary * 1.05, 0.05, 0.8, c))


def test_the_corrected_power_is_the_rejection_rate_of_the_reports_own_test():
    # Nadeau & Bengio's model: differences exchangeably correlated with rho = c / (1 + c); the
    # within-seed deviation sigma_w = sqrt(1 - rho) * sigma is what the sample deviation estimates
    rng = np.random.default_rng(0)
    c, n, reps = 0.1, 8, 3000
    rho = c / (1 + c)
    d = 1.6  # mu / sigma_w
    power_formula = power.power(d, n, 0.05, c)
    assert 0.4 < power_formula < 0.9  # a rate a simulation can check
    shared = rng.standard_normal((reps, 1)) * math.sqrt(rho)
    own = rng.standard_normal((reps, n)) * math.sqrt(1 - rho)
    diffs = d * math.sqrt(1 - rho) + shared + own
    t = diffs.mean(1) / np.sqrt(diffs.var(1, ddof=1) * (1 / n + c))
    p = 2 * stats.t.sf(np.abs(t), n - 1)
    assert [paired_p(row, np.zeros(n), c)[0] for row in diffs[:50]] == pytest.approx(p[:50], rel=1e-9)
    rejected = np.mean(p < 0.05)
    assert rejected == pytest.approx(power_formula, abs=4 * math.sqrt(0.25 / reps))


def test_interval_is_the_one_the_t_test_inverts():
    diff = np.array([0.02, -0.01, 0.03, 0.015])
    for c in (None, 0.2):
        low, high = power.interval(diff, 0.05, c)
        # at the interval's ends the (corrected) t-test's p-value is exactly alpha
        for end in (low, high):
            assert paired_p(diff - end, np.zeros(4), c)[0] == pytest.approx(0.05, rel=1e-9)


def test_zero_or_undefined_differences_need_no_count():
    assert power.seeds_needed(0.0) == math.inf
    assert math.isnan(power.seeds_needed(math.nan))
    assert power.seeds_needed(50.0) == power.MIN_PAIRS


def test_the_report_gives_the_seeds_needed_and_flags_the_inconclusive_comparison(tmp_path):
    fixed = build([make_sweep(tmp_path / "fixed", split_seed=0)])
    row = row_of(fixed, "l2")
    diff = np.array([0.92 - 0.9, 0.85 - 0.8, 0.71 - 0.7])
    assert row["delta.val_acc.seeds_needed"] == power.seeds_needed(diff.mean() / diff.std(ddof=1))
    assert (row["delta.val_acc.ci_low"], row["delta.val_acc.ci_high"]) == pytest.approx(power.interval(diff))
    assert row["delta.val_acc.needs_seeds"] == 7  # the observed 0.027 is above the minimal effect 0.01
    assert row["delta.baseline_config"] == row_of(fixed, "none")["config"]
    assert math.isnan(row_of(fixed, "none")["delta.val_acc.seeds_needed"])
    text = markdown(fixed)
    assert "l2 (config 1) 7" in text and "inconclusive: l2 (config 1)" in text and "needs ~7 seeds (has 3)" in text
    resplit = build([make_sweep(tmp_path / "resplit")])
    assert row_of(resplit, "l2")["delta.val_acc.seeds_needed"] == math.inf  # d 0.97, n_val/n_train 0.25
    assert "never (the re-split correction)" in markdown(resplit)


def test_min_effect_decides_the_flag_and_the_planned_effect(tmp_path):
    sweep = make_sweep(tmp_path / "s", split_seed=0)
    assert math.isnan(row_of(build([sweep], seeds=SeedsPlan(min_effect=None)), "l2")["delta.val_acc.needs_seeds"])
    diff = np.array([0.02, 0.05, 0.01])
    wide = row_of(build([sweep], seeds=SeedsPlan(min_effect=0.05)), "l2")  # the interval: [-0.025, 0.078]
    assert wide["delta.val_acc.needs_seeds"] == power.seeds_needed(0.05 / diff.std(ddof=1)) == 4
    # 3 pairs would detect 0.07 with 80% power, but these 3 did not settle it: at least one more
    assert power.seeds_needed(0.07 / diff.std(ddof=1)) == 3
    assert row_of(build([sweep], seeds=SeedsPlan(min_effect=0.07)), "l2")["delta.val_acc.needs_seeds"] == 4
    assert math.isnan(row_of(build([sweep], seeds=SeedsPlan(min_effect=0.2)), "l2")["delta.val_acc.needs_seeds"])
    strict = row_of(build([sweep], seeds=SeedsPlan(alpha=0.01, power=0.9)), "l2")
    assert strict["delta.val_acc.seeds_needed"] == power.seeds_needed(diff.mean() / diff.std(ddof=1), 0.01, 0.9)


def test_report_options_are_checked_before_any_work(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "s", split_seed=0)
    for bad, what in (["--power", "1"], "--power 1.0"), (["--alpha", "0"], "--alpha 0.0"), \
                     (["--min-effect", "-1"], "--min-effect -1.0"):
        assert main([str(sweep), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"regbench: error: {what}") and "\n" not in err
    assert not (sweep / "report.csv").exists()
    assert main([str(sweep), "--power", "0.9", "--min-effect", "0"]) == 0
    out = capsys.readouterr().out
    assert "90% power" in out and "inconclusive" not in out
