"""Tests of grids.ggd: density, SRGA fit (numpy and torch), shape solve, closed-form KL, distance.

Truths come from outside the module where possible: scipy.stats.gennorm samples and density,
math.lgamma, numerical integration with scipy.integrate.quad, textbook Gaussian/Laplace KLs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import gammainc
from scipy.stats import gennorm

from grids import ggd
from grids.ggd import GGD

FIT_ALPHAS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0]
N_SAMPLES = 400_000


def _sigma_of_scale(alpha: float, scale: float) -> float:
    # Standard deviation of scipy's gennorm(beta=alpha, scale=scale).
    return scale * math.exp(0.5 * (math.lgamma(3 / alpha) - math.lgamma(1 / alpha)))


def _samples(alpha: float, scale: float, seed: int, n: int = N_SAMPLES) -> np.ndarray:
    return gennorm.rvs(alpha, scale=scale, size=n, random_state=np.random.default_rng(seed))


def _truncated_population_fit(alpha: float) -> tuple[float, float]:
    """Large-sample value of fit_ggd on GGD(alpha, sigma=1) data, including the +-5 std cut.

    For |x| <= t and z = (t/beta)^alpha: E[|x|^k; kept] = E|x|^k * P((k+1)/alpha, z), with P the
    regularised lower incomplete Gamma function.
    """
    beta = math.exp(0.5 * (math.lgamma(1 / alpha) - math.lgamma(3 / alpha)))
    z = (ggd.OUTLIER_STDS / beta) ** alpha
    p1, p2, p3 = (gammainc(k / alpha, z) for k in (1, 2, 3))
    sigma = math.sqrt(p3 / p1)
    ratio = ggd.rho(alpha) * p3 * p1 / p2**2
    return ggd.shape_from_ratio(ratio), sigma


# --- fit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_fit_recovers_light_tailed_parameters(alpha):
    scale = 0.7
    sigma = _sigma_of_scale(alpha, scale)
    fit = ggd.fit_ggd(_samples(alpha, scale, seed=int(alpha * 100)))
    assert fit.alpha == pytest.approx(alpha, rel=0.02)
    assert fit.sigma == pytest.approx(sigma, rel=0.02)


@pytest.mark.parametrize("alpha", FIT_ALPHAS)
def test_moment_estimator_without_cut_recovers_all_alphas(alpha):
    # The SRGA cut (+-5 std) biases heavy tails (see the next test and fit_ggd's docstring); the
    # estimator itself, without the cut, recovers gennorm's parameters over alpha in [0.3, 3].
    scale = 0.7
    sigma = _sigma_of_scale(alpha, scale)
    values = _samples(alpha, scale, seed=int(alpha * 100))
    fit = ggd.fit_ggd(values, outlier_stds=None)
    assert fit.alpha == pytest.approx(alpha, rel=0.02)
    assert fit.sigma == pytest.approx(sigma, rel=0.02)
    assert ggd.fit_ggd_torch(torch.from_numpy(values), outlier_stds=None).alpha == pytest.approx(fit.alpha, rel=1e-9)


@pytest.mark.parametrize("alpha", FIT_ALPHAS)
@pytest.mark.parametrize("scale", [1e-3, 2.5])
def test_fit_matches_truncated_population_value(alpha, scale):
    # What the estimator should converge to, bias included; the cut is in std units, so the
    # relative result does not depend on the scale.
    alpha_inf, sigma_inf = _truncated_population_fit(alpha)
    fit = ggd.fit_ggd(_samples(alpha, scale, seed=int(alpha * 100) + 1))
    assert fit.alpha == pytest.approx(alpha_inf, rel=0.02)
    assert fit.sigma == pytest.approx(sigma_inf * _sigma_of_scale(alpha, 1.0) * scale, rel=0.02)


def test_fit_flattens_any_shape_and_dtype():
    x = _samples(1.5, 1.0, seed=3, n=60_000)
    flat = ggd.fit_ggd(x)
    assert ggd.fit_ggd(x.reshape(20, 30, 100)) == flat
    f32 = ggd.fit_ggd(x.astype(np.float32))
    assert f32.alpha == pytest.approx(flat.alpha, rel=1e-5)
    assert f32.sigma == pytest.approx(flat.sigma, rel=1e-5)


def test_fit_drops_outliers_and_uses_uncentred_sigma():
    # 10_000 values at -1/+1 around mean 0.5, plus one value far beyond 5 std: it is dropped.
    x = np.concatenate([np.full(5000, -0.5), np.full(5000, 1.5), [1e6]])
    fit = ggd.fit_ggd(x)
    # Kept values: mean 0.5, mean square 1.25, mean |x - mean| = 1 -> r = 1.25 (< 4/3: clamped).
    assert fit.sigma == pytest.approx(math.sqrt(1.25), rel=1e-12)
    assert fit.alpha == ggd.ROOT_BRACKET[1]
    assert ggd.fit_ggd(x, method="grid").alpha == pytest.approx(9.999, abs=1e-12)


def test_fit_cut_uses_population_std_in_both_backends():
    # 100 values +-1 plus one value v placed at 5.01 population stds from the mean: dropped with
    # np.std's ddof=0, but it would be kept with ddof=1 (threshold 0.5% wider at n = 101).
    n = 101

    def z(v: float) -> float:
        return (v - v / n) / math.sqrt((n - 1 + v * v) / n - v * v / n**2)

    v = brentq(lambda v: z(v) - 5.01, 1.0, 100.0)
    x = np.concatenate([np.tile([-1.0, 1.0], 50), [v]])
    assert np.abs(x[-1] - x.mean()) > 5 * x.std() and np.abs(x[-1] - x.mean()) < 5 * x.std(ddof=1)
    inner = ggd.fit_ggd(x[:-1])
    for fit in (ggd.fit_ggd(x), ggd.fit_ggd_torch(torch.from_numpy(x))):
        assert fit.sigma == pytest.approx(inner.sigma, rel=1e-12)
        assert fit.alpha == pytest.approx(inner.alpha, rel=1e-12)


@pytest.mark.parametrize("bad", [np.array([]), np.ones(10), np.array([1.0, np.nan, 2.0]), np.array([0, np.inf])])
def test_fit_rejects_degenerate_input(bad):
    with pytest.raises(ValueError):
        ggd.fit_ggd(bad)
    with pytest.raises(ValueError):
        ggd.fit_ggd_torch(torch.from_numpy(np.asarray(bad, dtype=np.float64)))


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["root", "grid"])
def test_fit_torch_equals_numpy(alpha, dtype, method):
    t = torch.from_numpy(_samples(alpha, 0.3, seed=7, n=100_000)).to(dtype).reshape(100, 1000)
    got = ggd.fit_ggd_torch(t, method=method)
    want = ggd.fit_ggd(t.numpy(), method=method)  # the same (possibly float32) values
    assert isinstance(got, GGD) and isinstance(got.alpha, float) and isinstance(got.sigma, float)
    assert got.alpha == pytest.approx(want.alpha, rel=1e-6)
    assert got.sigma == pytest.approx(want.sigma, rel=1e-6)


# --- rho and the shape solve ---------------------------------------------------------------------


def test_rho_known_values_and_monotone():
    assert ggd.rho(2.0) == pytest.approx(math.pi / 2, rel=1e-14)
    assert ggd.rho(1.0) == pytest.approx(2.0, rel=1e-14)
    a = np.linspace(0.05, 20, 2001)
    r = ggd.rho(a)
    assert r.shape == a.shape
    assert np.all(np.diff(r) < 0)
    assert ggd.rho(1e4) == pytest.approx(4 / 3, rel=1e-3)
    # Against plain Gamma where it does not overflow.
    for g in [0.3, 0.7, 1.3, 5.0]:
        want = math.gamma(1 / g) * math.gamma(3 / g) / math.gamma(2 / g) ** 2
        assert ggd.rho(g) == pytest.approx(want, rel=1e-12)
    # Small shapes: Gamma(3/0.01) overflows, the log-space ratio does not.
    assert np.isfinite(ggd.rho(0.01))


def test_shape_root_inverts_rho():
    alphas = np.array([0.05001, 0.1, 0.3, 0.77, 1.0, 2.0, 4.5, 11.0, 19.99])
    got = ggd.shape_from_ratio(ggd.rho(alphas))
    np.testing.assert_allclose(got, alphas, rtol=1e-10)
    assert isinstance(ggd.shape_from_ratio(2.0), float)


def test_shape_root_clamps_outside_bracket():
    lo, hi = ggd.ROOT_BRACKET
    assert ggd.shape_from_ratio(ggd.rho(lo) * 1.5) == lo
    assert ggd.shape_from_ratio(1e9) == lo
    assert ggd.shape_from_ratio(ggd.rho(hi) * 0.999) == hi
    assert ggd.shape_from_ratio(1.0) == hi  # below 4/3: no GGD has it


def test_grid_and_root_agree_within_grid_step():
    # Ratios spanning the grid's range, plus the exact grid points themselves.
    r = np.exp(np.random.default_rng(0).uniform(np.log(ggd.rho(9.99)), np.log(ggd.rho(0.2)), 5000))
    r = np.concatenate([r, ggd.rho(ggd.GRID_SHAPES[::97])])
    root = ggd.shape_from_ratio(r, method="root")
    grid = ggd.shape_from_ratio(r, method="grid")
    assert grid.shape == r.shape
    assert np.max(np.abs(root - grid)) <= 0.001 + 1e-12
    # The grid answer is the closest-rho grid point (brute-force argmin as the reference).
    ref = ggd.GRID_SHAPES[np.argmin(np.abs(ggd.rho(ggd.GRID_SHAPES)[None, :] - r[:500, None]), axis=1)]
    np.testing.assert_array_equal(grid[:500], ref)
    # On-grid values come back exactly.
    np.testing.assert_array_equal(grid[5000:], ggd.GRID_SHAPES[::97])


def test_grid_saturates_and_unknown_method_raises():
    assert ggd.shape_from_ratio(1e6, method="grid") == pytest.approx(0.2)
    assert ggd.shape_from_ratio(1.0, method="grid") == pytest.approx(9.999)
    with pytest.raises(ValueError):
        ggd.shape_from_ratio(2.0, method="newton")
    with pytest.raises(ValueError):
        ggd.shape_from_ratio(np.nan)


# --- density ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,sigma", [(0.3, 1.0), (0.6, 0.2), (1.0, 2.0), (2.0, 1.0), (4.0, 0.5)])
def test_pdf_normalised_with_variance_sigma2(alpha, sigma):
    p = GGD(alpha, sigma)
    b = p.beta
    # Symmetric: twice the half line, split at beta so QUADPACK sees the cusp at 0 and the tail apart.
    mass = 2 * sum(quad(p.pdf, lo, hi, epsabs=0, epsrel=1e-11, limit=500)[0] for lo, hi in [(0, b), (b, np.inf)])
    var = 2 * sum(
        quad(lambda x: x * x * p.pdf(x), lo, hi, epsabs=0, epsrel=1e-11, limit=500)[0]
        for lo, hi in [(0, b), (b, 10 * b), (10 * b, np.inf)]
    )
    assert mass == pytest.approx(1.0, rel=1e-8)
    assert var == pytest.approx(sigma**2, rel=1e-8)


def test_pdf_matches_scipy_gennorm():
    x = np.linspace(-6, 6, 101).reshape(1, 101)
    for alpha, sigma in [(0.4, 1.0), (1.0, 0.5), (2.0, 1.3)]:
        p = GGD(alpha, sigma)
        want = gennorm.pdf(x, alpha, scale=p.beta)
        got = p.pdf(x)
        assert got.shape == x.shape
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert GGD(2.0, 1.0).pdf(0.0) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-14)


def test_ggd_validates_parameters():
    for a, s in [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (np.nan, 1.0), (1.0, np.inf)]:
        with pytest.raises(ValueError):
            GGD(a, s)


# --- KL and distance ------------------------------------------------------------------------


def _log_pdf(alpha: float, sigma: float):
    # Independent of grids.ggd: math.lgamma only.
    log_beta = math.log(sigma) + 0.5 * (math.lgamma(1 / alpha) - math.lgamma(3 / alpha))
    beta = math.exp(log_beta)
    log_norm = math.log(alpha) - math.log(2) - log_beta - math.lgamma(1 / alpha)
    return (lambda x: log_norm - (abs(x) / beta) ** alpha), beta


def _kl_quad(a1, s1, a2, s2) -> float:
    lp1, b1 = _log_pdf(a1, s1)
    lp2, _ = _log_pdf(a2, s2)

    def f(x):
        l1 = lp1(x)
        return math.exp(l1) * (l1 - lp2(x))

    # Symmetric integrand: 2 * half line. Pieces at decades of beta1 keep each one smooth enough for
    # QUADPACK: the cusp at 0 (alpha < 1) alone in [0, beta1], and heavy tails, which for alpha = 0.3
    # reach ~1e9 beta1 before p1 underflows, spread over finite pieces before the infinite one.
    edges = [0.0] + [b1 * 10.0**k for k in range(0, 10)] + [np.inf]
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        total += quad(f, lo, hi, epsabs=1e-300, epsrel=1e-12, limit=1000)[0]
    return 2 * total


KL_PAIRS = [
    (2.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 2.0, 1.0),
    (0.5, 1.0, 2.0, 1.3),
    (0.3, 1.0, 0.8, 0.7),
    (0.8, 0.7, 0.3, 1.0),
    (1.0, 2.0, 0.4, 1.0),
    (3.0, 1.0, 1.5, 0.5),
    (0.8, 1.0, 0.8, 1.2),
    (0.3, 2.0, 0.35, 2.0),
    (0.4, 1e-3, 1.7, 2e-3),
]


@pytest.mark.parametrize("a1,s1,a2,s2", KL_PAIRS)
def test_kl_closed_form_equals_quadrature(a1, s1, a2, s2):
    got = ggd.kl_divergence(a1, s1, a2, s2)
    assert isinstance(got, float)
    assert got == pytest.approx(_kl_quad(a1, s1, a2, s2), rel=1e-6)


def test_kl_textbook_special_cases():
    s1, s2 = 0.7, 1.9
    gauss = math.log(s2 / s1) + s1**2 / (2 * s2**2) - 0.5
    assert ggd.kl_divergence(2.0, s1, 2.0, s2) == pytest.approx(gauss, rel=1e-12)
    b1, b2 = s1 / math.sqrt(2), s2 / math.sqrt(2)  # Laplace scale
    laplace = math.log(b2 / b1) + b1 / b2 - 1
    assert ggd.kl_divergence(1.0, s1, 1.0, s2) == pytest.approx(laplace, rel=1e-12)


def test_kl_self_is_zero_and_distance_zero():
    a = np.array([0.05, 0.1, 0.3, 0.77, 1.0, 2.0, 3.3, 10.0, 20.0])
    for s in [1e-4, 0.37, 1.0, 250.0]:
        kl = ggd.kl_divergence(a, s, a, s)
        assert np.all(np.abs(kl) <= 1e-12)
    assert ggd.log_kl_distance(0.0) == 0.0
    assert ggd.log_kl_distance(ggd.kl_divergence(1.3, 0.4, 1.3, 0.4)) == pytest.approx(0.0, abs=1e-6)


def test_kl_positive_for_distinct_pairs():
    rng = np.random.default_rng(1)
    a1, a2 = rng.uniform(0.2, 5, (2, 2000))
    s1, s2 = np.exp(rng.uniform(-3, 3, (2, 2000)))
    kl = ggd.kl_divergence(a1, s1, a2, s2)
    assert kl.shape == (2000,)
    assert np.all(np.isfinite(kl))
    # Strictly positive (clamping alone would hide a wrong sign as exact zeros).
    assert np.all(kl > 0)


def test_kl_broadcasting_matches_double_loop():
    rng = np.random.default_rng(2)
    a1, s1 = rng.uniform(0.3, 3, 5), rng.uniform(0.1, 2, 5)
    a2, s2 = rng.uniform(0.3, 3, 7), rng.uniform(0.1, 2, 7)
    mat = ggd.kl_divergence(a1[:, None], s1[:, None], a2[None, :], s2[None, :])
    assert mat.shape == (5, 7)
    loop = np.array([[ggd.kl_divergence(a1[i], s1[i], a2[j], s2[j]) for j in range(7)] for i in range(5)])
    np.testing.assert_array_equal(mat, loop)
    assert GGD(a1[0], s1[0]).kl(GGD(a2[3], s2[3])) == mat[0, 3]
    dist = ggd.log_kl_distance(mat)
    np.testing.assert_array_equal(dist, [[ggd.log_kl_distance(v) for v in row] for row in mat])


def test_log_kl_distance_values():
    assert ggd.log_kl_distance(1e-5) == pytest.approx(math.log10(2), rel=1e-14)
    assert ggd.log_kl_distance(0.1) == pytest.approx(math.log10(0.1 + 1e-5) + 5, rel=1e-14)
    d = ggd.log_kl_distance(np.array([0.0, 1e-3, 1.0, 100.0]))
    assert np.all(np.diff(d) > 0)


def test_beta_from_sigma():
    assert ggd.beta_from_sigma(2.0, 1.0) == pytest.approx(math.sqrt(2), rel=1e-14)
    assert ggd.beta_from_sigma(1.0, 1.0) == pytest.approx(1 / math.sqrt(2), rel=1e-14)
    np.testing.assert_allclose(ggd.beta_from_sigma(np.array([1.0, 2.0]), 3.0), 3 * np.array([2**-0.5, 2**0.5]))
    assert GGD(0.5, 2.0).beta == ggd.beta_from_sigma(0.5, 2.0)
