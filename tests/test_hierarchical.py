"""The hierarchical Bayesian test (regbench.reporting.hierarchical) against baycomp's
HierarchicalTest, which samples the same model with Stan (pystan 3): its log density against
Stan's at given points, its probabilities against baycomp's within Monte-Carlo error; and the
sampler's own properties (gradient, symmetry, seeding)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from regbench.reporting import hierarchical as h

HAVE_STAN = importlib.util.find_spec("stan") is not None
needs_stan = pytest.mark.skipif(not HAVE_STAN, reason="pystan (the test extra) is not installed")


def scores(shift: float, among: float, noise: float, q: int = 8, n: int = 5, seed: int = 0):
    """q datasets × n seeds of (left, right): left - right has mean `shift`, spread `among` between
    datasets and `noise` between seeds."""
    rng = np.random.default_rng(seed)
    left, right = [], []
    for _ in range(q):
        base = rng.uniform(0.7, 0.9, n)
        effect = shift + among * rng.standard_normal()
        left.append(base + effect + noise * rng.standard_normal(n))
        right.append(base)
    return left, right


CASES = {  # rope 0.01 (one point of accuracy)
    "left wins": (0.03, 0.01, 0.01),
    "equivalent": (0.001, 0.002, 0.005),
    "mixed": (0.006, 0.015, 0.01),
}


def tiny_data(centred: bool, rows: int = 3, q: int = 5, seed: int = 0) -> h._Data:
    rng = np.random.default_rng(seed)
    return h._Data(mean=rng.normal(size=(rows, q)), ss=rng.uniform(1, 3, (rows, q)), n=np.full((rows, q), 5.0),
                   rho=np.full((rows, q), 0.2), delta_lo=np.full(rows, -3.0), delta_hi=np.full(rows, 3.0),
                   std0_hi=np.full(rows, 100.0), sigma_hi=np.full(rows, 1000.0), centred=np.full(rows, centred))


@pytest.mark.parametrize("centred", [True, False])
def test_gradient_matches_finite_differences(centred):
    d = tiny_data(centred)
    u = np.random.default_rng(1).uniform(-2, 2, (3, 2 * 5 + 5))
    _, grad = h._log_density(u, d)
    numeric = np.zeros_like(u)
    for k in range(u.shape[1]):
        step = np.zeros_like(u)
        step[:, k] = 1e-6
        numeric[:, k] = (h._log_density(u + step, d, False)[0] - h._log_density(u - step, d, False)[0]) / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-5 * max(1.0, np.abs(numeric).max()))


def test_the_non_centred_form_is_the_same_density():
    """eta = (delta - delta0) / std0: the densities differ by the Jacobian std0^q alone."""
    c, nc = tiny_data(True), tiny_data(False)
    u = np.random.default_rng(2).uniform(-2, 2, (3, 15))
    delta0, std0, _ = h._constrained(u, nc)
    centred_u = u.copy()
    centred_u[:, 5:10] = delta0[:, None] + std0[:, None] * u[:, 5:10]
    gap = h._log_density(u, nc, False)[0] - 5 * np.log(std0) - h._log_density(centred_u, c, False)[0]
    np.testing.assert_allclose(gap, 0, atol=1e-9)


def test_swapping_sides_mirrors_the_probabilities_and_a_seed_repeats_them():
    left, right = scores(*CASES["mixed"])
    a = h.compare(left, right, 0.01, 0.2, seed=3)
    b = h.compare(right, left, 0.01, 0.2, seed=3)
    # not the same draws (the data differ in sign), so equal within Monte-Carlo error only
    assert abs(a.p_left - b.p_right) < 0.08 and abs(a.p_rope - b.p_rope) < 0.08
    assert a.mean_delta0 == pytest.approx(-b.mean_delta0, abs=0.003)
    again = h.compare(left, right, 0.01, 0.2, seed=3)
    assert (again.p_left, again.p_rope, again.p_right, again.mean_delta0) == (a.p_left, a.p_rope, a.p_right, a.mean_delta0)


def test_a_clear_difference_and_a_tie_read_as_such():
    win = h.compare(*scores(*CASES["left wins"]), 0.01, 0.2)
    assert win.p_left > 0.95 and win.converged
    assert win.mean_delta0 == pytest.approx(-0.03, abs=0.01)  # right - left
    tie = h.compare(*scores(*CASES["equivalent"]), 0.01, 0.2)
    assert tie.p_rope > 0.8 and tie.converged


def test_equal_seeds_on_a_dataset_keep_their_mean():
    """A dataset whose differences are all equal gets jitter around its own mean, not around 0."""
    diffs, rope, _, scale = h.prepare([np.full(4, 0.03), np.array([0.01, 0.02, 0.03, 0.05])], 0.01,
                                      np.random.default_rng(0))
    assert np.mean(diffs[0]) * scale == pytest.approx(0.03) and np.ptp(diffs[0]) > 0
    assert rope * scale == pytest.approx(0.01)


def test_rhat_and_ess_flag_chains_that_disagree():
    rng = np.random.default_rng(0)
    good = rng.standard_normal((4, 1000))
    rhat, ess = h.rank_normalized_rhat_ess(good)
    assert rhat < 1.01 and 3000 < ess < 5000  # independent draws: ESS near their number
    bad = good + np.arange(4)[:, None]
    assert h.rank_normalized_rhat_ess(bad)[0] > 1.1


# ---- against Stan (baycomp's model and baycomp's HierarchicalTest) --------------------------

def stan_model(left, right, rope, runs=1):
    """baycomp's Stan program built on the data baycomp gives it (its own preprocessing, run here
    through regbench's, which test_log_density_matches_stan checks point by point)."""
    import baycomp
    import stan

    diffs, scaled_rope, bounds, _ = h.prepare([r - l for l, r in zip(left, right)], rope, np.random.default_rng(0))
    x = np.array(diffs)
    data = dict(x=x.tolist(), Nsamples=x.shape[1], q=x.shape[0], rho=runs / x.shape[1],
                deltaLow=-bounds["delta_hi"], deltaHi=bounds["delta_hi"], lowerAlpha=h.LOWER_ALPHA,
                upperAlpha=h.UPPER_ALPHA, lowerBeta=h.LOWER_BETA, upperBeta=h.UPPER_BETA, stdLow=0,
                stdHi=bounds["sigma_hi"], std0Low=0, std0Hi=bounds["std0_hi"])
    code = (Path(baycomp.__file__).parent / "hierarchical-t-test.stan").read_text()
    return stan.build(code, data=data), x, bounds


@pytest.mark.slow
@needs_stan
def test_log_density_matches_stan():
    """At random points, the log density (centred form, Stan's parameterisation) differs from
    Stan's log_prob (with its Jacobian) by one constant: the same model, the same transforms."""
    left, right = scores(*CASES["mixed"])
    model, x, bounds = stan_model(left, right, 0.01)
    q = x.shape[0]
    d = h._Data(mean=x.mean(1)[None], ss=((x - x.mean(1, keepdims=True)) ** 2).sum(1)[None],
                n=np.full((1, q), float(x.shape[1])), rho=np.full((1, q), 1 / x.shape[1]),
                delta_lo=np.array([-bounds["delta_hi"]]), delta_hi=np.array([bounds["delta_hi"]]),
                std0_hi=np.array([bounds["std0_hi"]]), sigma_hi=np.array([bounds["sigma_hi"]]),
                centred=np.array([True]))
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(6):
        u = rng.uniform(-2, 2, 2 * q + 5)
        u[5:5 + q] = x.mean(1) + rng.uniform(-1, 1, q)
        # Stan's order: delta0, std0, delta[q], sigma[q], nuMinusOne, gammaAlpha, gammaBeta
        stan_u = [u[0], u[1], *u[5:5 + q], *u[5 + q:], u[2], u[3], u[4]]
        gaps.append(model.log_prob(stan_u, adjust_transform=True) - h._log_density(u[None], d, False)[0][0])
    assert np.ptp(gaps) < 1e-6 * max(1.0, abs(gaps[0])), gaps


def mc_error(p: float, ess: float) -> float:
    return math.sqrt(max(p * (1 - p), 1e-4) / ess)


@pytest.mark.slow
@needs_stan
@pytest.mark.parametrize("case", list(CASES))
def test_probabilities_match_baycomp(case, tmp_path, monkeypatch):
    """Ours and baycomp's HierarchicalTest (Stan's NUTS) agree within 4 combined Monte-Carlo
    standard errors, each sqrt(p(1-p)/ESS) (ESS: ours, the smallest bulk ESS of the run; Stan's,
    that of the winner indicator over its chains), floored at p(1-p) = 1e-4 where p is near 0 or 1."""
    import baycomp

    monkeypatch.chdir(tmp_path)  # baycomp caches its last sample in the working directory
    left, right = scores(*CASES[case])
    n = len(left[0])
    chains, nsamples = 4, 5000
    theirs = baycomp.HierarchicalTest(np.array(left), np.array(right), 0.01, runs=1, chains=chains,
                                      nsamples=nsamples, random_state=0)
    winners = np.argmax(theirs.sample, axis=1)
    ours = h.compare(left, right, 0.01, 1 / n, warmup=1000, draws=2500, seed=0)
    assert ours.converged
    for k, (mine, name) in enumerate(zip((ours.p_left, ours.p_rope, ours.p_right), ("left", "rope", "right"))):
        stan_p = float(np.mean(winners == k))
        # pystan stacks its chains interleaved: draw i is chain i % chains
        indicator = (winners == k).astype(float).reshape(nsamples, chains).T
        stan_ess = h.rank_normalized_rhat_ess(indicator)[1] if 0 < stan_p < 1 else float(indicator.size)
        tolerance = 4 * math.hypot(mc_error(mine, ours.ess), mc_error(stan_p, stan_ess))
        print(f"{case} P({name}): ours {mine:.4f} (ESS {ours.ess:.0f}), baycomp {stan_p:.4f} (ESS {stan_ess:.0f}), "
              f"tolerance {tolerance:.4f}")
        assert abs(mine - stan_p) <= tolerance, (name, mine, stan_p, tolerance)
