"""The hierarchical Bayesian comparison of two regularizers across datasets, on every seed's
result (Corani, Benavoli, Demšar, Mangili & Zaffalon, Machine Learning 2017): the model of
baycomp's HierarchicalTest (baycomp 1.0.3, `hierarchical-t-test.stan`), sampled here by a
Hamiltonian Monte Carlo written in numpy, so that no Stan is needed at run time.

The model, for datasets i = 1..q with J_i paired seeds each, x_ij the difference
right - left of seed j on dataset i (higher better), after baycomp's scaling (below):

    x_i. ~ MVN(delta_i 1, sigma_i^2 M_i),  M_i = (1 - rho_i) I + rho_i 1 1'
    delta_i ~ Student-t(nu, delta0, std0)
    delta0 ~ U(-max|x|, max|x|),  std0 ~ U(0, 1000 std_among),  sigma_i ~ U(0, 1000 std_within)
    nu - 1 ~ Gamma(alpha, beta) (beta a rate),  alpha ~ U(1, 2),  beta ~ U(0.01, 0.1)

rho_i is the correlation of one dataset's seeds: they share data. baycomp takes rho = 1/K for
K-fold cross-validation, i.e. n_test / (n_train + n_test); regbench's seeds that re-split the data
are the same kind of resampling and take the same correlation, n_test / (n_train + n_test), the
one behind the corrected t-test of the report (regbench.reporting.power: c = n_test / n_train,
correlation c / (1 + c)). Seeds on one fixed split share all of it: what varies between them is
training's randomness alone, and they are independent given the split (rho = 0); delta_i is then
the difference on that split, and the test rows' sampling error enters only through the spread
between datasets (std0). The caller chooses (regbench.reporting.study).

baycomp's scaling: every difference and the rope are divided by the mean over datasets of the
per-dataset standard deviation (ddof 0), so that the priors' bounds are scale-free; std_within is
that mean after the next step, std_among the standard deviation of the dataset means. A dataset
whose differences are all equal (no variance; the likelihood would be unbounded) gets them
replaced, as baycomp does, by symmetric jitter within the (scaled) rope; baycomp centres it on 0,
here on the dataset's own mean (the same where, as usually, all are 0: a regularizer that changed
nothing), so that a constant nonzero difference is not read as none.

The answer: for each posterior draw of (delta0, std0, nu), the Student-t distribution of the
difference on a new dataset gives its mass below -rope (left better), within the rope and above
it (right better); P(left better), P(rope) and P(right better) are the fractions of draws in
which each is the largest (baycomp's `probs`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

# baycomp's HierarchicalTest defaults (the bounds of the hyperpriors)
LOWER_ALPHA, UPPER_ALPHA = 1.0, 2.0
LOWER_BETA, UPPER_BETA = 0.01, 0.1
UPPER_SIGMA = 1000.0
# Vehtari et al. 2021 ask for a rank-normalized R-hat below 1.01 before a final analysis; on the
# 4 × 1000 draws here the largest R-hat often sits at 1.01-1.02 (seen on the cases of
# tests/test_hierarchical.py, whose probabilities agree with Stan's), so the one-line warning is
# kept for chains that truly disagree (the older threshold, 1.05)
RHAT_OK = 1.05
ESS_OK = 400  # a bulk effective sample size of at least 100 per chain, 4 chains
WARMUP, DRAWS = 500, 1000  # per chain; 4 chains give 4000 draws, an ESS near 1000 where they mix
LENGTH = 1.5  # the mean integration time (the whitened posterior has unit scale)
MAX_STEPS = 128  # early in warm-up the step size can be tiny: a cap on one trajectory's cost


@dataclass
class Hierarchical:
    """One comparison's posterior: the three probabilities (see the module docstring), the
    posterior mean of delta0 and the probability that it is positive (in the metric's units and
    direction: right - left), and how well the chains mixed: the largest rank-normalized R-hat
    and the smallest bulk effective sample size over delta0, std0, nu and the three masses."""

    p_left: float
    p_rope: float
    p_right: float
    mean_delta0: float
    rhat: float
    ess: float
    n_draws: int
    seconds: float

    @property
    def converged(self) -> bool:
        return self.rhat < RHAT_OK and self.ess >= ESS_OK

    def warning(self, what: str = "") -> str:
        """One line where the chains did not mix well enough to trust the second decimal, else ""."""
        if self.converged:
            return ""
        return (f"hierarchical test{' ' + what if what else ''}: the chains mixed poorly (R-hat {self.rhat:.3f}, "
                f"bulk ESS {self.ess:.0f}; want < {RHAT_OK} and >= {ESS_OK}); read its probabilities loosely")


@dataclass
class _Data:
    """The scaled data of B independent problems (one per chain), each q datasets: per dataset the
    mean, the sum of squared deviations, the seed count and the correlation, and the bounds."""

    mean: np.ndarray  # B × q
    ss: np.ndarray  # B × q
    n: np.ndarray  # B × q
    rho: np.ndarray  # B × q
    delta_lo: np.ndarray  # B
    delta_hi: np.ndarray
    std0_hi: np.ndarray
    sigma_hi: np.ndarray
    centred: np.ndarray  # B booleans: sample delta_i itself (else eta_i; see _log_density)

    def __post_init__(self) -> None:
        # x' M^-1 x for M = (1-rho) I + rho 11': the deviations from the mean over (1 - rho), the
        # mean's n over (1 + (n-1) rho) (M's eigenvalues: 1 - rho, n - 1 times, and 1 + (n-1) rho)
        self.w_ss = self.ss / (1 - self.rho)
        self.w_mean = self.n / (1 + (self.n - 1) * self.rho)


def prepare(diffs: list[np.ndarray], rope: float,
            rng: np.random.Generator) -> tuple[list[np.ndarray], float, dict, float]:
    """baycomp's preprocessing (HierarchicalTest.sample's scaled_data and prepare_stan_data) of
    the per-dataset differences right - left: the scaled differences, the scaled rope, the
    hyperprior bounds and the scale divided by."""
    diffs = [np.asarray(d, float).copy() for d in diffs]
    for d in diffs:  # differences equal up to the subtraction's rounding (4 ulps) are equal: 0.83-0.80 vs 0.84-0.81
        if np.ptp(d) <= 4 * np.finfo(float).eps * max(float(np.abs(d).max()), 1.0):
            d[:] = d.mean()
    scale = float(np.mean([_std(d) for d in diffs]))
    if not scale > 0:  # every dataset constant: no spread to scale by; the probabilities are scale-free
        scale = rope if rope > 0 else max(float(np.max(np.abs(np.concatenate(diffs)))), 1.0)
    rope, diffs = rope / scale, [d / scale for d in diffs]
    jitter = rope if rope > 0 else 1e-3  # with no rope, a little spread keeps sigma off 0
    for d in diffs:
        if _std(d) == 0:
            half = len(d) // 2
            u = rng.uniform(-jitter, jitter, half)
            centre = d[0]
            d[:half] = centre + u
            d[half:2 * half] = centre - u  # an odd count keeps its last value: the centre
    within = float(np.mean([_std(d) for d in diffs]))
    among = float(np.std([np.mean(d) for d in diffs]))
    if not among > 0:  # the datasets' means all equal: bound std0 by the within spread instead
        among = within
    bounds = {"delta_hi": float(np.max(np.abs(np.concatenate(diffs)))), "std0_hi": among * UPPER_SIGMA,
              "sigma_hi": within * UPPER_SIGMA}
    return diffs, rope, bounds, scale


def _std(x: np.ndarray) -> float:
    """np.std (ddof 0), exactly 0 for equal values (np.std of [0.03] * 3 is 3e-18: the mean's rounding)."""
    return 0.0 if np.ptp(x) == 0 else float(np.std(x))


# The unconstrained coordinates, as Stan maps them: bounded ones by a scaled logit, nu - 1 by a log.
# Layout: [delta0, std0, nu - 1, alpha, beta, eta_1..q, sigma_1..q] (delta_i = delta0 + std0 eta_i).
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return special.expit(z)


def _log_density(u: np.ndarray, d: _Data, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The log posterior density (up to a constant) in unconstrained coordinates, with Stan's
    Jacobian terms, and its gradient. u: B × (2q + 5)."""
    q = d.mean.shape[1]
    a, b, e, f, g = (u[:, k] for k in range(5))
    dl, cs = u[:, 5:5 + q], u[:, 5 + q:]
    sa, sb, sf, sg, sc = _sigmoid(a), _sigmoid(b), _sigmoid(f), _sigmoid(g), _sigmoid(cs)
    width = d.delta_hi - d.delta_lo
    delta0 = d.delta_lo + width * sa
    std0 = d.std0_hi * sb
    nm1 = np.exp(e)
    nu = nm1 + 1
    alpha = LOWER_ALPHA + (UPPER_ALPHA - LOWER_ALPHA) * sf
    beta = LOWER_BETA + (UPPER_BETA - LOWER_BETA) * sg
    sigma = d.sigma_hi[:, None] * sc

    # log-Jacobians of the maps (log sigmoid + log (1 - sigmoid) = -softplus(z) - softplus(-z))
    def log_jac(z: np.ndarray) -> np.ndarray:
        return -np.logaddexp(0, z) - np.logaddexp(0, -z)

    lp = log_jac(a) + log_jac(b) + e + log_jac(f) + log_jac(g) + log_jac(cs).sum(1)
    # nu - 1 ~ Gamma(alpha, beta)
    lp += alpha * np.log(beta) - special.gammaln(alpha) + (alpha - 1) * e - beta * nm1
    # delta_i ~ Student-t(nu, delta0, std0), sampled centred (the coordinate is delta_i) or
    # non-centred (it is eta_i, delta_i = delta0 + std0 eta_i; Papaspiliopoulos et al. 2007), per
    # chain as `d.centred` says: where each dataset's seeds pin its delta_i down better than the
    # datasets agree, the centred form mixes; where they agree better than the seeds pin it down,
    # std0 is small and the centred delta_i sit in a funnel no single step size crosses
    c = d.centred[:, None]
    z = np.where(c, (dl - delta0[:, None]) / std0[:, None], dl)
    delta = np.where(c, dl, delta0[:, None] + std0[:, None] * dl)
    r = 1 + z * z / nu[:, None]
    lp += q * (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu)) \
        - q * d.centred * np.log(std0)
    lp -= ((nu[:, None] + 1) / 2 * np.log(r)).sum(1)
    # the seeds' likelihood (constants dropped)
    dev = d.mean - delta
    quad = d.w_ss + d.w_mean * dev * dev
    lp += (-d.n * np.log(sigma) - 0.5 * quad / (sigma * sigma)).sum(1)
    if not grad:
        return lp, None

    out = np.empty_like(u)
    dt_dz = -(nu[:, None] + 1) * z / (nu[:, None] * r)  # d log t / dz
    d_delta = d.w_mean * dev / (sigma * sigma)  # d likelihood / d delta_i
    d_dl = np.where(c, dt_dz / std0[:, None] + d_delta, dt_dz + d_delta * std0[:, None])
    d_delta0 = np.where(d.centred, -(dt_dz / std0[:, None]).sum(1), d_delta.sum(1))
    d_std0 = np.where(d.centred, (-dt_dz * z / std0[:, None]).sum(1) - q / std0, (d_delta * z).sum(1))
    d_nu = q * 0.5 * (special.digamma((nu + 1) / 2) - special.digamma(nu / 2) - 1 / nu) \
        + (-0.5 * np.log(r) + (nu[:, None] + 1) / 2 * z * z / (nu[:, None] ** 2 * r)).sum(1)
    d_alpha = np.log(beta) - special.digamma(alpha) + e
    d_beta = alpha / beta - nm1
    d_sigma = -d.n / sigma + quad / sigma**3
    out[:, 0] = d_delta0 * width * sa * (1 - sa) + (1 - 2 * sa)
    out[:, 1] = d_std0 * d.std0_hi * sb * (1 - sb) + (1 - 2 * sb)
    out[:, 2] = (d_nu - beta) * nm1 + alpha  # d/de of the gamma term, (alpha - 1) e - beta e^e, and the Jacobian e
    out[:, 3] = d_alpha * (UPPER_ALPHA - LOWER_ALPHA) * sf * (1 - sf) + (1 - 2 * sf)
    out[:, 4] = d_beta * (UPPER_BETA - LOWER_BETA) * sg * (1 - sg) + (1 - 2 * sg)
    out[:, 5:5 + q] = d_dl
    out[:, 5 + q:] = d_sigma * d.sigma_hi[:, None] * sc * (1 - sc) + (1 - 2 * sc)
    return lp, out


def _constrained(u: np.ndarray, d: _Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(delta0, std0, nu) of each row of u."""
    delta0 = d.delta_lo + (d.delta_hi - d.delta_lo) * _sigmoid(u[:, 0])
    return delta0, d.std0_hi * _sigmoid(u[:, 1]), np.exp(u[:, 2]) + 1


def centred(mean: np.ndarray, ss: np.ndarray, n: np.ndarray, rho: np.ndarray) -> bool:
    """Whether the centred form suits one comparison: the typical standard error of a dataset's
    mean difference (its seeds' spread, widened for their correlation) is below the spread of the
    datasets' means, i.e. the seeds pin each delta_i down better than the datasets agree."""
    variance = ss / np.maximum(n - 1, 1)
    standard_error = np.sqrt(np.mean(variance * (rho + (1 - rho) / n)))
    return bool(standard_error < np.std(mean))


def _hmc(d: _Data, rng: np.random.Generator, warmup: int, draws: int) -> np.ndarray:
    """Hamiltonian Monte Carlo, one chain per row of `d`, all advanced together: a diagonal mass
    matrix estimated in warm-up windows, the step size tuned by dual averaging (Hoffman & Gelman
    2014) to an acceptance rate of 0.8, and trajectories of a random number of steps with a mean
    integration time of LENGTH (the posterior, whitened by the mass matrix, has unit scale).
    Returns draws × B × dim."""
    rows, q = d.mean.shape
    dim = 2 * q + 5
    u = rng.uniform(-2, 2, (rows, dim))  # Stan's initialisation
    # a centred delta_i starts near its data (the data are scaled to unit spread): no far-off start
    u[:, 5:5 + q] = np.where(d.centred[:, None], d.mean + rng.uniform(-0.5, 0.5, (rows, q)), u[:, 5:5 + q])
    inv_mass = np.ones((rows, dim))
    lp, gr = _log_density(u, d)
    eps = np.full(rows, 0.1)
    windows = [int(warmup * f) for f in (0.15, 0.3, 0.55, 0.9)]
    collected: list[np.ndarray] = []
    target, gamma, t0, kappa = 0.8, 0.05, 10.0, 0.75

    def restart(eps: np.ndarray) -> tuple:
        return np.log(10 * eps), np.zeros(rows), np.zeros(rows), 0

    mu, hbar, log_bar, m = restart(eps)
    out = np.empty((draws, rows, dim))
    for it in range(warmup + draws):
        p = rng.standard_normal((rows, dim)) / np.sqrt(inv_mass)
        h0 = lp - 0.5 * (p * p * inv_mass).sum(1)
        # one step count for every chain (drawn independently of the state, so each chain's
        # kernel stays reversible); each chain integrates for its own step size times it
        n_steps = int(rng.integers(1, 2 * math.ceil(LENGTH / float(np.median(eps))) + 1))
        n_steps = min(n_steps, MAX_STEPS)
        x, pp = u, p + 0.5 * eps[:, None] * gr
        for step in range(n_steps):
            x = x + eps[:, None] * inv_mass * pp
            new_lp, g = _log_density(x, d)
            pp = pp + (0.5 if step == n_steps - 1 else 1.0) * eps[:, None] * g
        h1 = new_lp - 0.5 * (pp * pp * inv_mass).sum(1)
        accept_p = np.exp(np.minimum(0.0, np.nan_to_num(h1 - h0, nan=-np.inf)))
        take = rng.uniform(size=rows) < accept_p
        u = np.where(take[:, None], x, u)
        lp = np.where(take, new_lp, lp)
        gr = np.where(take[:, None], g, gr)
        if it < warmup:
            m += 1
            hbar = (1 - 1 / (m + t0)) * hbar + (target - accept_p) / (m + t0)
            log_eps = mu - math.sqrt(m) / gamma * hbar
            eta = m ** -kappa
            log_bar = eta * log_eps + (1 - eta) * log_bar
            eps = np.exp(log_eps)
            if it >= windows[0]:
                collected.append(u.copy())
            if it + 1 in windows[1:]:
                s = np.stack(collected)
                # Stan's regularisation of the variance estimate towards 1e-3
                n = len(s)
                inv_mass = (n / (n + 5)) * s.var(0) + 1e-3 * (5 / (n + 5))
                collected = []
                mu, hbar, log_bar, m = restart(eps)
            if it + 1 == warmup:
                eps = np.exp(log_bar)
        else:
            out[it - warmup] = u
    return out


def rank_normalized_rhat_ess(chains: np.ndarray) -> tuple[float, float]:
    """Rank-normalized split R-hat and bulk effective sample size (Vehtari, Gelman, Simpson,
    Carpenter & Bürkner 2021) of one quantity: `chains` is chains × draws."""
    c, n = chains.shape
    half = n // 2
    split = np.concatenate([chains[:, :half], chains[:, n - half:]])  # 2c × half
    ranks = stats.rankdata(split, method="average").reshape(split.shape)
    z = stats.norm.ppf((ranks - 3 / 8) / (split.size + 1 / 4))
    m, n = z.shape
    means, variances = z.mean(1), z.var(1, ddof=1)
    w = variances.mean()
    b = n * means.var(ddof=1)
    if not w > 0:  # a constant quantity (every draw the same) mixes trivially
        return 1.0, float(m * n)
    var_plus = (n - 1) / n * w + b / n
    rhat = math.sqrt(var_plus / w)
    # ESS by Geyer's initial monotone sequence on the chains' pooled autocorrelation (as Stan)
    centred = z - means[:, None]
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(centred, size, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), size, axis=1)[:, :n] / n
    rho_hat = 1 - (w - acov.mean(0)) / var_plus
    rho_hat[0] = 1.0
    pairs = [rho_hat[2 * k] + rho_hat[2 * k + 1] for k in range((n - 1) // 2)]
    total, previous = 0.0, math.inf
    for s in pairs:
        if s <= 0:
            break
        s = min(s, previous)  # the initial monotone sequence
        total += s
        previous = s
    tau = -1 + 2 * total if total else 1.0
    return rhat, float(m * n / max(tau, 1 / math.log10(max(m * n, 10))))


def compare(left: list[np.ndarray], right: list[np.ndarray], rope: float, rho: list[float] | float, *,
            chains: int = 4, warmup: int = WARMUP, draws: int = DRAWS, seed: int = 0) -> Hierarchical:
    """The hierarchical test of `left` against `right`: per dataset, the paired seeds' scores
    (higher better, equal lengths within a dataset, at least 2), `rho` each dataset's correlation
    between seeds (see the module docstring), `rope` in the scores' units. Seeded."""
    return compare_many([(left, right)], rope, rho, chains=chains, warmup=warmup, draws=draws, seed=seed)[0]


def compare_many(pairs: list[tuple[list[np.ndarray], list[np.ndarray]]], rope: float,
                 rho: list[float] | float | list[list[float]], *, chains: int = 4, warmup: int = WARMUP,
                 draws: int = DRAWS, seed: int = 0) -> list[Hierarchical]:
    """`compare` for several comparisons over the same datasets at once (their chains advance
    together, which costs little more than one). `rho`: one value, one per dataset, or one list
    per pair."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    q = len(pairs[0][0])
    rows: list[dict] = []
    ropes, scales = [], []
    for k, (left, right) in enumerate(pairs):
        if len(left) != q or len(right) != q:
            raise ValueError("every comparison needs the same number of datasets")
        diffs = []
        for a, b in zip(left, right):
            a, b = np.asarray(a, float), np.asarray(b, float)
            if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
                raise ValueError("each dataset needs the same number (at least 2) of paired seeds on both sides")
            diffs.append(b - a)  # baycomp's y - x: positive where right is better
        scaled, scaled_rope, bounds, scale = prepare(diffs, rope, rng)
        scales.append(scale)
        r = np.broadcast_to(np.asarray(rho[k] if np.ndim(rho) == 2 else rho, float), (q,))
        rows.append({"mean": [x.mean() for x in scaled], "ss": [((x - x.mean()) ** 2).sum() for x in scaled],
                     "n": [len(x) for x in scaled], "rho": list(r), **bounds})
        ropes.append(scaled_rope)

    def stacked(key: str) -> np.ndarray:
        return np.repeat(np.array([row[key] for row in rows], float), chains, axis=0)

    data = _Data(mean=stacked("mean"), ss=stacked("ss"), n=stacked("n"), rho=stacked("rho"),
                 delta_lo=-stacked("delta_hi"), delta_hi=stacked("delta_hi"), std0_hi=stacked("std0_hi"),
                 sigma_hi=stacked("sigma_hi"),
                 centred=np.repeat([centred(*(np.array(row[k], float) for k in ("mean", "ss", "n", "rho")))
                                    for row in rows], chains))
    with np.errstate(all="ignore"):  # a rejected trajectory may leave the range of floats (std0 = 0, nu = inf)
        samples = _hmc(data, rng, warmup, draws)  # draws × (pairs·chains) × dim
    seconds = time.perf_counter() - started
    results = []
    for k in range(len(pairs)):
        block = samples[:, k * chains:(k + 1) * chains]  # draws × chains × dim
        flat = block.reshape(-1, block.shape[-1])
        sub = _Data(**{f: np.repeat(getattr(data, f)[k * chains:k * chains + 1], len(flat), axis=0)
                       for f in ("mean", "ss", "n", "rho", "delta_lo", "delta_hi", "std0_hi", "sigma_hi",
                                 "centred")})
        delta0, std0, nu = _constrained(flat, sub)
        masses = masses_of(delta0, std0, nu, ropes[k])
        p = np.bincount(masses.argmax(1), minlength=3) / len(masses)
        diagnostics = [rank_normalized_rhat_ess(v.reshape(draws, chains).T)
                       for v in (delta0, std0, np.log(nu), *masses.T)]
        results.append(Hierarchical(
            p_left=float(p[0]), p_rope=float(p[1]), p_right=float(p[2]),
            mean_delta0=float(delta0.mean()) * scales[k],
            rhat=max(r for r, _ in diagnostics), ess=min(e for _, e in diagnostics), n_draws=len(flat),
            seconds=seconds))
    return results


def masses_of(delta0: np.ndarray, std0: np.ndarray, nu: np.ndarray, rope: float) -> np.ndarray:
    """Per draw, the Student-t(nu, delta0, std0) mass below -rope, within it and above it (n × 3;
    left better, equivalent, right better), as baycomp's HierarchicalTest.sample."""
    below = stats.t.cdf(-rope, nu, delta0, std0)
    above = stats.t.sf(rope, nu, delta0, std0)
    return np.stack([below, 1 - below - above, above], axis=1)
