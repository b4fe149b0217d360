"""Active selection of the next pairs to rate, from a Bradley-Terry posterior.

- ``racing`` (posterior-sampling best-arm racing, as in the essay): the item with the highest
  posterior mean is compared with the best item of one draw θ̃ ~ N(mean, sd²) (itself excluded);
  each further pair takes a fresh draw, skipping challengers already paired in the batch.
- ``uncertainty``: pairs whose outcome is least certain, scored by p(1-p)·sqrt(sd_i² + sd_j²)
  with p = σ(μ_i - μ_j); candidates are each item's neighbours in the ordering by mean (nearest
  means give p ≈ 0.5), so it scales to 10^5 items.
- ``random``: uniform distinct pairs.

No pair (in either order) appears twice in a batch. Returns an int array (k, 2); fewer rows only
when the items cannot form k distinct pairs.
"""

from __future__ import annotations

import numpy as np

from ._bradley_terry import Scores

STRATEGIES = ("racing", "uncertainty", "random")


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
    out: list[tuple[int, int]] = []
    seen = set(exclude)
    for idx in np.argsort(-score, kind="stable"):
        key = _key(int(i[idx]), int(j[idx]))
        if key not in seen:
            seen.add(key)
            out.append((int(i[idx]), int(j[idx])))
            if len(out) == k:
                break
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
    else:
        pairs = _random(n, k, rng, ex)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
