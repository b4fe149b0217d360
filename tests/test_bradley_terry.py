"""Bayesian Bradley-Terry: agreement with choix, recovery, invariances, ties, covariates, SDs."""

import choix
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardmodels import fit, win_probability


def _simulate(theta, m, rng, tie_band=0.0):
    n = len(theta)
    i = rng.integers(0, n, m)
    j = (i + rng.integers(1, n, m)) % n
    d = theta[i] - theta[j]
    win = rng.random(m) < 1 / (1 + np.exp(-d))
    tie = np.abs(d) < tie_band
    pairs = np.where(win[:, None], np.stack([i, j], 1), np.stack([j, i], 1))
    return pairs[~tie], np.stack([i, j], 1)[tie]


def test_matches_choix_map():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=15)
    pairs, _ = _simulate(theta, 150, rng)
    alpha = 0.3
    # choix penalises alpha * ||θ||² (not alpha/2), i.e. a Gaussian prior with variance 1/(2 alpha).
    ref = choix.opt_pairwise(15, pairs.tolist(), alpha=alpha, tol=1e-10)
    ours = fit(pairs, 15, prior_sd=1 / np.sqrt(2 * alpha), tol=1e-10)
    assert ours.converged
    np.testing.assert_allclose(ours.mean, ref, atol=1e-6)


def test_recovers_known_scores():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=200)
    pairs, _ = _simulate(theta, 20000, rng)
    s = fit(pairs, 200)  # the prior N(0, 1) is the true generating distribution
    assert np.corrcoef(theta, s.mean)[0, 1] > 0.97
    z = (s.mean - theta) / s.sd
    assert 0.7 < np.std(z) < 1.3  # SDs are calibrated to the actual error


@settings(max_examples=25, deadline=None)
@given(st.floats(-5, 5), st.lists(st.floats(-3, 3), min_size=2, max_size=6))
def test_win_probability_shift_invariant(c, theta):
    theta = np.array(theta)
    for tie in (0.0, 0.7):
        p = win_probability(theta[:, None], theta[None, :], tie)
        q = win_probability(theta[:, None] + c, theta[None, :] + c, tie)
        np.testing.assert_allclose(p, q, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(st.floats(-4, 4), st.integers(0, 1000))
def test_fit_shift_invariant(c, seed):
    """Shifting the prior mean of every item shifts the MAP by the same constant."""
    rng = np.random.default_rng(seed)
    pairs, _ = _simulate(rng.normal(size=8), 30, rng)
    a = fit(pairs, 8, tol=1e-10)
    b = fit(pairs, 8, prior_mean=c, tol=1e-10)
    np.testing.assert_allclose(b.mean, a.mean + c, atol=1e-7)
    np.testing.assert_allclose(b.sd, a.sd, atol=1e-7)


def test_isolated_items_and_disconnected_graph():
    pairs = np.array([[0, 1], [0, 1], [1, 0], [2, 3], [2, 3]])  # {0,1} and {2,3}; 4 and 5 unrated
    s = fit(pairs, 6, prior_mean=[0, 0, 0, 0, 0.5, -1.0], prior_sd=1.0)
    assert s.converged and np.all(np.isfinite(s.mean)) and np.all(np.isfinite(s.sd))
    np.testing.assert_allclose(s.mean[4:], [0.5, -1.0], atol=1e-8)
    np.testing.assert_allclose(s.sd[4:], 1.0, atol=1e-8)
    assert s.mean[0] > s.mean[1] and s.mean[2] > s.mean[3]
    assert np.all(s.sd[:4] < 1.0)
    empty = fit(np.zeros((0, 2)), 3)
    np.testing.assert_allclose(empty.mean, 0.0)
    np.testing.assert_allclose(empty.sd, 1.0)


def test_sd_approximation_close_to_exact():
    rng = np.random.default_rng(2)
    pairs, _ = _simulate(rng.normal(size=300), 1500, rng)
    exact = fit(pairs, 300)
    approx = fit(pairs, 300, exact_sd_limit=0)
    np.testing.assert_allclose(approx.mean, exact.mean)
    assert np.all(approx.sd <= exact.sd + 1e-12)  # Neumann truncation is a lower bound
    assert np.max(np.abs(approx.sd - exact.sd)) < 0.02


def test_ties_pull_scores_together_and_estimate_nu():
    rng = np.random.default_rng(3)
    theta = rng.normal(size=40)
    pairs, ties = _simulate(theta, 4000, rng, tie_band=0.3)
    s = fit(pairs, 40, ties=ties, prior_sd=3.0)
    assert s.converged and s.tie > 0
    assert np.corrcoef(theta, s.mean)[0, 1] > 0.95
    only_ties = fit(np.zeros((0, 2)), 2, ties=[[0, 1]] * 5)
    assert abs(only_ties.mean[0] - only_ties.mean[1]) < 1e-8 and np.isfinite(only_ties.tie)
    # ties between items 1 and 2 pull their scores together
    base = fit([[0, 1]], 3)
    tied = fit([[0, 1]], 3, ties=[[1, 2], [1, 2]])
    assert abs(tied.mean[1] - tied.mean[2]) < abs(base.mean[1] - base.mean[2])


def test_tie_gradient_matches_finite_differences():
    from rewardmodels._bradley_terry import _Problem
    rng = np.random.default_rng(4)
    wins = np.array([[0, 1], [2, 1], [0, 2]])
    ties = np.array([[1, 2], [0, 1]])
    X = rng.normal(size=(3, 2))
    prob = _Problem(wins, ties, 3, np.zeros(3), np.ones(3), X, 2.0)
    x = rng.normal(size=6)
    f, g = prob.value_grad(x)
    eps = 1e-6
    num = np.array([(prob.value_grad(x + eps * e)[0] - prob.value_grad(x - eps * e)[0]) / (2 * eps)
                    for e in np.eye(6)])
    np.testing.assert_allclose(g, num, atol=1e-6)
    prob.value_grad(x)
    H = prob.dense_hessian()
    num_h = np.stack([(prob.value_grad(x + eps * e)[1] - prob.value_grad(x - eps * e)[1]) / (2 * eps)
                      for e in np.eye(6)])
    np.testing.assert_allclose(H, num_h, atol=1e-5)
    prob.value_grad(x)
    v = rng.normal(size=6)
    np.testing.assert_allclose(prob.hessp(v), H @ v, atol=1e-10)


def test_covariate_coefficient_recovered():
    rng = np.random.default_rng(5)
    theta = rng.normal(size=300)
    X = (theta + 0.3 * rng.normal(size=300))[:, None]
    pairs, _ = _simulate(theta, 3000, rng)
    s = fit(pairs, 300, covariates=X)
    assert 0.6 < s.coef[0] < 1.4
    # an unrated item's posterior mean follows its covariate
    s2 = fit(pairs[pairs.max(1) < 299], 300, covariates=X)
    assert s2.mean[299] == pytest.approx(s2.coef[0] * X[299, 0], abs=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="itself"):
        fit([[1, 1]], 3)
    with pytest.raises(ValueError, match="out of range"):
        fit([[0, 3]], 3)
    with pytest.raises(ValueError, match="prior_sd"):
        fit([[0, 1]], 3, prior_sd=0.0)
