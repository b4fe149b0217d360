"""Active pair selection: racing, uncertainty, infogain, random; distinct pairs within a batch."""

import math

import numpy as np
import pytest

from rewardmodels import Scores, next_pairs


def _scores(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return Scores(mean=rng.normal(size=n), sd=rng.uniform(0.2, 1.0, size=n), coef=np.zeros(0))


def _distinct(pairs):
    keys = {tuple(sorted(p)) for p in pairs.tolist()}
    return len(keys) == len(pairs) and all(a != b for a, b in pairs.tolist())


@pytest.mark.parametrize("strategy", ["racing", "uncertainty", "infogain", "random"])
def test_k_distinct_pairs_and_seeded(strategy):
    s = _scores()
    p = next_pairs(s, 10, strategy, seed=3)
    assert p.shape == (10, 2) and p.dtype == np.int64
    assert _distinct(p)
    np.testing.assert_array_equal(p, next_pairs(s, 10, strategy, seed=3))


def test_racing_pairs_posterior_best_with_sampled_challengers():
    s = _scores()
    p = next_pairs(s, 5, "racing", seed=0)
    assert np.all(p[:, 0] == np.argmax(s.mean))
    # with tiny posterior SDs the challenger is the runner-up by mean
    sharp = Scores(mean=s.mean, sd=np.full(30, 1e-9), coef=np.zeros(0))
    order = np.argsort(-s.mean)
    np.testing.assert_array_equal(next_pairs(sharp, 3, "racing")[:, 1], order[1:4])


def test_racing_explores_uncertain_items():
    mean = np.array([1.0, 0.9, -2.0])
    sd = np.array([0.01, 0.01, 5.0])
    s = Scores(mean=mean, sd=sd, coef=np.zeros(0))
    n = 200
    p = next_pairs(s, 1, "racing", seed=1)
    counts = sum(next_pairs(s, 1, "racing", seed=k)[0, 1] == 2 for k in range(n))
    # Item 0 is the posterior best; the challenger is 2 when its draw beats item 1's:
    # P(N(-2, 5^2) > N(0.9, 0.01^2)) = Phi(-2.9 / sqrt(25 + 1e-4)) = 0.281, so over n independent
    # seeds the count is Binomial(n, 0.281): mean 56.2, SD 6.4. Four SDs either side ([31, 82]) hold
    # a correct sampler except with probability ~1e-4, and reject a challenger drawn by mean alone
    # (count 0) or uniformly among the other items (mean 100).
    q = 0.5 * math.erfc((mean[1] - mean[2]) / math.hypot(sd[1], sd[2]) / math.sqrt(2))
    expected, tol = n * q, 4 * math.sqrt(n * q * (1 - q))
    assert p[0, 0] == 0 and abs(counts - expected) <= tol, (counts, expected, tol)


def test_uncertainty_prefers_close_uncertain_pairs():
    mean = np.array([0.0, 0.01, 3.0, 6.0])
    sd = np.array([1.0, 1.0, 0.1, 0.1])
    p = next_pairs(Scores(mean=mean, sd=sd, coef=np.zeros(0)), 1, "uncertainty")
    assert sorted(p[0].tolist()) == [0, 1]


def test_infogain_prefers_pairs_whose_outcome_is_still_informative():
    # 0-1: a coin flip between two items already known to be equal (nothing to learn);
    # 2-3: a likely outcome (p = 0.27), but the scores are uncertain. The outcome's entropy alone
    # would take 0-1.
    mean = np.array([0.0, 0.0, 4.0, 5.0])
    sd = np.array([0.01, 0.01, 3.0, 3.0])
    s = Scores(mean=mean, sd=sd, coef=np.zeros(0))
    assert sorted(next_pairs(s, 1, "infogain")[0].tolist()) == [2, 3]


def test_information_gain_matches_monte_carlo():
    from rewardmodels._active import information_gain

    rng = np.random.default_rng(0)
    h = lambda p: -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # noqa: E731
    for mu, var in [(0.0, 4.0), (1.5, 1.0), (3.0, 9.0), (0.5, 0.0)]:
        d = mu + math.sqrt(var) * rng.standard_normal(200_000)
        p = 1 / (1 + np.exp(-d))
        exact = h(p.mean()) - h(p).mean()
        assert float(information_gain(np.array([mu]), np.array([var]))[0]) == pytest.approx(exact, abs=0.02)


def test_exclude_and_exhaustion():
    s = _scores(n=4)
    p = next_pairs(s, 100, "random")
    assert len(p) == 6 and _distinct(p)
    q = next_pairs(s, 100, "random", exclude=p[:4])
    assert {tuple(sorted(x)) for x in q.tolist()} == {tuple(sorted(x)) for x in p[4:].tolist()}
    assert len(next_pairs(s, 100, "racing")) == 3
    r = next_pairs(s, 100, "infogain", exclude=p[:4])
    assert {tuple(sorted(x)) for x in r.tolist()} == {tuple(sorted(x)) for x in p[4:].tolist()}
    with pytest.raises(ValueError, match="unknown strategy"):
        next_pairs(s, 1, "greedy")


def test_harvest_command_offers_every_strategy():
    import argparse

    from gradopt.cli import _ascent
    from rewardmodels import STRATEGIES

    sub = argparse.ArgumentParser().add_subparsers()
    _ascent.register(sub)
    action = next(a for a in sub.choices["harvest"]._actions if a.dest == "strategy")
    assert sorted(action.choices) == sorted(STRATEGIES)
