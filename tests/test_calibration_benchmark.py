"""benchmarks/calibration.py's uncertainty signals on synthetic data where the answer is known:
the error head finds where a linear fit errs, leverage and nearest-neighbour distance grow away
from the rated items, and out-of-fold predictions never see their own fold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))
calibration = pytest.importorskip("calibration")
from rewardmodels._train import _ridge, group_folds  # noqa: E402


def heteroscedastic(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """y linear in Z plus noise whose SD grows with the first feature."""
    Z = rng.normal(size=(n, 5))
    y = Z @ np.array([1.0, -0.5, 0.3, 0.0, 0.2]) + rng.normal(size=n) * np.exp(Z[:, 0])
    return Z, y


@pytest.mark.parametrize("kind", calibration.HEAD_TARGETS)
def test_error_head_ranks_where_the_probe_errs(kind):
    rng = np.random.default_rng(0)
    Z, y = heteroscedastic(600, rng)
    w = np.ones(len(y))
    oof = calibration.oof_predictions(Z, y, w, np.arange(len(y)), lam=1.0)
    beta, c = _ridge(Z, calibration.error_target(y, oof, np.zeros_like(y), kind), w, 1.0)
    Zt, yt = heteroscedastic(400, rng)
    probe, b = _ridge(Z, y, w, 1.0)
    err = np.abs(yt - Zt @ probe - b)
    assert spearmanr(Zt @ beta + c, err).statistic > 0.3
    # a head that learns nothing about the residual (the targets shuffled) ranks by chance
    shuffled = rng.permutation(calibration.error_target(y, oof, np.zeros_like(y), kind))
    beta0, c0 = _ridge(Z, shuffled, w, 1.0)
    assert abs(spearmanr(Zt @ beta0 + c0, err).statistic) < 0.2


def test_error_target_subtracts_the_targets_own_variance():
    y, oof, sd = np.array([1.0, 0.0]), np.array([0.0, 0.0]), np.array([0.5, 0.0])
    assert calibration.error_target(y, oof, sd, "abs").tolist() == [1.0, 0.0]
    assert calibration.error_target(y, oof, sd, "sq_minus_bt_var").tolist() == [0.75, 0.0]
    with pytest.raises(ValueError, match="error target"):
        calibration.error_target(y, oof, sd, "huber")


def test_oof_predictions_never_see_their_own_fold():
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    groups = np.repeat(np.arange(20), 3)
    w = np.ones(60)
    oof = calibration.oof_predictions(Z, y, w, groups, lam=0.5, folds=4, seed=2)
    fold = group_folds(groups, 4, 2)
    for k in range(4):
        beta, b = _ridge(Z[fold != k], y[fold != k], w[fold != k], 0.5)
        np.testing.assert_allclose(oof[fold == k], Z[fold == k] @ beta + b)
    full, b = _ridge(Z, y, w, 0.5)
    assert not np.allclose(oof, Z @ full + b)  # not the in-sample fit


def test_leverage_and_distance_grow_away_from_the_rated_items():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(200, 4))
    probes = np.array([[0.0, 0, 0, 0], [2.0, 0, 0, 0], [6.0, 0, 0, 0]])
    lev = calibration.leverage(Z, np.ones(200), 1.0, probes)
    dist = calibration.knn_distance(Z, probes, k=5)
    assert lev[0] < lev[1] < lev[2] and dist[0] < dist[1] < dist[2]
    # knn_distance is the brute-force mean of the k smallest distances
    brute = np.sort(np.linalg.norm(probes[:, None, :] - Z[None], axis=-1), axis=1)[:, :5].mean(1)
    np.testing.assert_allclose(dist, brute, rtol=1e-6)
    # leverage is z'(Zc'Zc + λI)^-1 z at the centred point
    Zc = Z - Z.mean(0)
    q = probes[1] - Z.mean(0)
    np.testing.assert_allclose(lev[1], q @ np.linalg.solve(Zc.T @ Zc + np.eye(4), q))


def test_spearman_interval_contains_the_estimate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    r = calibration.spearman_ci(x, x + rng.normal(size=300), resamples=300)
    assert r["ci95"][0] < r["spearman"] < r["ci95"][1] and r["n"] == 300 and r["spearman"] > 0.5


def test_knn_residual_averages_the_nearest_rated_items_residuals():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(300, 3))
    residual = np.abs(Z[:, 0])  # the error grows along the first feature
    probes = np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]])
    est = calibration.knn_residual(Z, residual, probes, k=7)
    assert est[0] < est[1] < est[2]
    nearest = np.argsort(np.linalg.norm(probes[:, None, :] - Z[None], axis=-1), axis=1)[:, :7]
    np.testing.assert_allclose(est, residual[nearest].mean(1))


def test_length_columns_standardise_log_length():
    cols = calibration.length_columns(["ab", "abcd", ""], centre=np.log(2), scale=np.log(2))
    np.testing.assert_allclose(cols[:, 0], [0.0, 1.0, -1.0])  # "" counts as length 1
    np.testing.assert_allclose(cols[:, 1], cols[:, 0] ** 2)


def test_spearman_over_replicates_is_their_mean_on_shared_resamples():
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    errs = [x + rng.normal(size=200) * s for s in (0.5, 3.0)]
    r = calibration.spearman_ci([x, x], errs, resamples=200)
    each = [spearmanr(x, e).statistic for e in errs]
    assert r["per_replicate"] == pytest.approx(each) and r["spearman"] == pytest.approx(np.mean(each))
    assert r["ci95"][0] < r["spearman"] < r["ci95"][1]
    assert "per_replicate" not in calibration.spearman_ci(x, errs[0], resamples=50)


def test_subspace_members_read_their_columns_and_disagree_off_the_data():
    rng = np.random.default_rng(6)
    Z = rng.normal(size=(300, 8))
    y = Z @ rng.normal(size=8) + 0.3 * rng.normal(size=300)
    heads = calibration.subspace_heads(Z, y, np.ones(300), 1.0, members=40, fraction=0.5, seed=1)
    assert len(heads) == 40
    for cols, beta, b in heads:
        assert cols.any() and beta.shape == (cols.sum(),)
    # members differ in their columns, not all read the same half
    assert len({cols.tobytes() for cols, _, _ in heads}) > 30
    near, far = Z[:5], 6.0 * rng.normal(size=(5, 8))
    assert calibration.subspace_sd(heads, far).mean() > 2 * calibration.subspace_sd(heads, near).mean()
    # each member is a ridge probe on its columns (one bootstrap draw of the items)
    cols, beta, b = heads[0]
    from rewardmodels._ensemble import bootstrap_heads
    ref, rb = bootstrap_heads(Z[:, cols], y, np.ones(300), 1.0, 1, 1)
    np.testing.assert_allclose(beta, ref[0])
    assert b == pytest.approx(rb[0])


def test_oracle_head_ranks_by_a_learnable_error_and_not_by_noise():
    rng = np.random.default_rng(7)
    Z_fit, Z = rng.normal(size=(400, 4)), rng.normal(size=(300, 4))
    err_fit, err = np.abs(Z_fit[:, 0]) + 0.1 * rng.random(400), np.abs(Z[:, 0])
    # |z0| is not linear in z0, but z0's sign carries nothing: a linear head finds little
    lin = calibration.oracle_head(Z_fit, err_fit, Z, err)
    assert set(lin) == {f"l{lam:g}" for lam in calibration.ORACLE_L2} and max(lin.values()) < 0.3
    # an error linear in the features is found
    lin_fit, lin_err = Z_fit[:, 1] + 0.1 * rng.random(400), Z[:, 1]
    assert min(calibration.oracle_head(Z_fit, lin_fit, Z, lin_err).values()) > 0.9


def test_residual_terms_names_the_term_the_residual_follows_beyond_shrinkage():
    rng = np.random.default_rng(8)
    feats = [{k: float(rng.random()) for k in calibration.UTILITY_WEIGHTS} for _ in range(200)] + [None]
    for f in feats[:-1]:
        f["key"] = 1.0  # a constant term
    utility = np.array([sum(calibration.UTILITY_WEIGHTS[k] * f[k] for k in f) for f in feats[:-1]] + [-9.0])
    # a model that misses the cadence term and shrinks everything towards the mean
    fitted = 0.5 * (utility - calibration.UTILITY_WEIGHTS["cadence"] * np.array([f["cadence"] for f in feats[:-1]] + [0]))
    out = calibration.residual_terms(feats, fitted - utility, utility)
    assert out["valid"] == 200 and out["n"] == 201
    assert out["utility"] < -0.5  # shrinkage
    assert out["cadence"] < -0.5 and all(abs(out[k]) < 0.3 for k in ("steps", "leaps", "meter", "repeat", "phrases"))
    assert out["key"] is None


def test_mean_tree_averages_nested_figures_and_skips_missing():
    trees = [{"a": {"r": 1.0}, "b": None}, {"a": {"r": 3.0}, "b": 2.0}]
    assert calibration._mean_tree(trees) == {"a": {"r": 2.0}, "b": 2.0}
    assert calibration._mean_tree([None, None]) is None


def test_repetition_features_count_bars_and_half_bars_heard_before():
    tunes = ["X:1\nM:4/4\nK:D\n|:ab cd|ab cd|ab fg|ef ga:|\n", "X:2\nK:D\n", "X:3\nK:D\nabcd|efga|\n"]
    f = calibration.repetition_features(tunes)
    assert f.shape == (3, 4)
    # bars abcd abcd abfg efga: one whole repeat, halves ab ab ab ef: two
    np.testing.assert_allclose(f[0], [0.25, 0.5, 0.0625, 0.25])
    np.testing.assert_allclose(f[1], 0.0)  # no bars
    np.testing.assert_allclose(f[2], 0.0)  # nothing repeats
