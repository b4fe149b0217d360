"""Active selection of the next pairs to rate, from a Bradley-Terry posterior.

- ``racing`` (posterior-sampling best-arm racing, as in the essay): the item with the highest
  posterior mean is compared with the best item of one draw θ̃ ~ N(mean, sd²) (itself excluded);
  each further pair takes a fresh draw, skipping challengers already paired in the batch.
- ``uncertainty``: pairs whose outcome is least certain, scored by p(1-p)·sqrt(sd_i² + sd_j²)
  with p = σ(μ_i - μ_j); candidates are each item's neighbours in the ordering by mean (nearest
  means give p ≈ 0.5), so it scales to 10^5 items.
- ``infogain``: pairs whose outcome tells most about the scores (BALD: the mutual information
  between the outcome and θ_i - θ_j ~ N(μ_i - μ_j, sd_i² + sd_j²), logistic link approximated by a
  probit, Houlsby et al. 2011): unlike ``uncertainty`` it prefers a coin-flip pair only when the
  scores are still uncertain, not when the two items are known to be equally good. Candidates are
  the neighbours by mean (as ``uncertainty``) and 20k random pairs (then random pairs if too few).
- ``random``: uniform distinct pairs.

No pair (in either order) appears twice in a batch. Returns an int array (k, 2); fewer rows only
when the items cannot form k distinct pairs.
"""

from __future__ import annotations

import numpy as np

from ._bradley_terry import Scores

STRATEGIES = ("racing", "uncertainty", "infogain", "random")
_LOGIT_PROBIT = 1 / 1.702  # σ(x) ≈ Φ(x / 1.702), within 0.01 everywhere
_BALD_C = np.sqrt(np.pi * np.log(2) / 2)


def _key(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def _racing(mean, sd, k, rng, exclude) -> list[tuple[int, int]]:
    n = len(mean)
    best = int(np.argmax(mean))
    out: list[tuple[int, int]] = []
    taken = {best} | {j for (i, j) in exclude if i == best} | {i for (i, j) in exclude if j == best}
    while len(out) < k and len(taken) < n:
        draw = mean + sd * rng.standard_normal(n)
        draw[list(taken)] = -np.inf
        challenger = int(np.argmax(draw))
        taken.add(challenger)
        out.append((best, challenger))
    return out


def _uncertainty(mean, sd, k, rng, exclude, window: int = 4) -> list[tuple[int, int]]:
    n = len(mean)
    order = np.argsort(mean + 1e-12 * rng.standard_normal(n))
    cand_i, cand_j = [], []
    for w in range(1, min(window, n - 1) + 1):
        cand_i.append(order[:-w])
        cand_j.append(order[w:])
    i = np.concatenate(cand_i)
    j = np.concatenate(cand_j)
    p = 1.0 / (1.0 + np.exp(-(mean[i] - mean[j])))
    score = p * (1 - p) * np.sqrt(sd[i] ** 2 + sd[j] ** 2)
    return _top_pairs(i, j, score, k, exclude)[0]


def _top_pairs(i, j, score, k, exclude) -> tuple[list[tuple[int, int]], set]:
    """The k highest-scoring candidate pairs (i[c], j[c]) not in `exclude` (either order), and the
    set of pairs taken or excluded."""
    out: list[tuple[int, int]] = []
    seen = set(exclude)
    for idx in np.argsort(-score, kind="stable"):
        key = _key(int(i[idx]), int(j[idx]))
        if key not in seen:
            seen.add(key)
            out.append((int(i[idx]), int(j[idx])))
            if len(out) == k:
                break
    return out, seen


def information_gain(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Expected information (bits) about d from one outcome y ~ Bernoulli(σ(d)), d ~ N(mu, var):
    H[p(y)] - E_d H[p(y | d)], in the probit approximation (exact in the limits var -> 0 and mu = 0)."""
    m, v = _LOGIT_PROBIT * np.asarray(mu, float), _LOGIT_PROBIT ** 2 * np.asarray(var, float)
    from scipy.special import ndtr

    p = np.clip(ndtr(m / np.sqrt(1 + v)), 1e-12, 1 - 1e-12)
    marginal = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    expected = _BALD_C / np.sqrt(v + _BALD_C ** 2) * np.exp(-m ** 2 / (2 * (v + _BALD_C ** 2)))
    return np.maximum(marginal - expected, 0.0)


def _infogain(mean, sd, k, rng, exclude, window: int = 4) -> list[tuple[int, int]]:
    n = len(mean)
    order = np.argsort(mean + 1e-12 * rng.standard_normal(n))
    w = min(window, n - 1)
    i = np.concatenate([order[:-d] for d in range(1, w + 1)] + [rng.integers(0, n, 20 * k)])
    j = np.concatenate([order[d:] for d in range(1, w + 1)] + [(i[-20 * k:] + rng.integers(1, n, 20 * k)) % n])
    score = information_gain(mean[i] - mean[j], sd[i] ** 2 + sd[j] ** 2)
    out, seen = _top_pairs(i, j, score, k, exclude)
    if len(out) < k:  # candidates exhausted: fill with random pairs not yet taken
        out += _random(n, k - len(out), rng, seen)
    return out


def _random(n, k, rng, exclude) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    seen = set(exclude)
    k = min(k, n * (n - 1) // 2 - len(seen))
    while len(out) < k:
        i, j = (int(x) for x in rng.choice(n, 2, replace=False))
        if _key(i, j) not in seen:
            seen.add(_key(i, j))
            out.append((i, j))
    return out


def next_pairs(scores: Scores, k: int, strategy: str = "racing", seed: int = 0,
               exclude=None) -> np.ndarray:
    """The next `k` pairs to ask a rater about -> int array (k, 2) of item indices.

    scores: posterior from `fit` (mean, sd of shape (n,)). exclude: optional (e, 2) pairs not to
    propose again (e.g. ones already rated), in either order.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    mean = np.asarray(scores.mean, dtype=float)
    sd = np.asarray(scores.sd, dtype=float)
    n = len(mean)
    if n < 2 or k == 0:
        return np.zeros((0, 2), dtype=np.int64)
    ex = {_key(int(a), int(b)) for a, b in np.asarray([] if exclude is None else exclude).reshape(-1, 2)}
    rng = np.random.default_rng(seed)
    if strategy == "racing":
        pairs = _racing(mean, sd, k, rng, ex)
    elif strategy == "uncertainty":
        pairs = _uncertainty(mean, sd, k, rng, ex)
    elif strategy == "infogain":
        pairs = _infogain(mean, sd, k, rng, ex)
    else:
        pairs = _random(n, k, rng, ex)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
