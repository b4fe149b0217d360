"""Simulated rater: utility ordering on hand-made tunes, noise calibration, caching, API."""

import numpy as np
import pytest

from rewardmodels import FLOOR, INVALID, SimulatedRater, music_features

GOOD = ("X:1\nT:good\nM:4/4\nL:1/8\nK:G\n"
        "GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|\n")
# same rhythm, wild leaps and notes outside G major, ends off the tonic
BAD = ("X:1\nT:bad\nM:4/4\nL:1/8\nK:G\n"
       "G,^c'_Bf C^G,e'_E|^d,b_Ac' F,^g_e'C|c2^F,c' _B2dB,|^c2A,2 _e'2B,^A|"
       "G,^c'_Bf C^G,e'_E|^d,b_Ac' F,^g_e'C|c2^F,c' _B2dB,|^A2F,2 _E4:|\n")
BROKEN = "X:1\nT:broken\nM:4/4\nK:G\n"


def test_utility_orders_good_bad_invalid():
    r = SimulatedRater()
    u = r.utility([GOOD, BAD, BROKEN])
    assert u[2] == INVALID
    assert u[0] > u[1] > u[2]
    assert u[1] == FLOOR > INVALID  # a valid tune this bad is clipped to the floor, above invalid ones
    f = music_features(GOOD)
    assert f["key"] == 1.0 and f["cadence"] == 1.0 and f["meter"] == 1.0


def test_stray_tune_header_in_the_body_is_scored_not_a_crash():
    # A generator sample with an "X:" line in its body parses as a music21 Opus of one score.
    text = GOOD.replace("|dedB dedB|c2ec", "|dedB dedB|\nX:1\n|c2ec", 1)
    f = music_features(text)
    assert f is not None and 0.9 < f["key"] <= 1.0


def test_cache_by_text():
    r = SimulatedRater()
    r.utility([GOOD])
    assert len(r.cache) == 1
    r.utility([GOOD, GOOD])
    assert len(r.cache) == 1


def test_agreement_rate_matches_noise_model():
    r = SimulatedRater(agreement=0.75, seed=1, tie_rate=0.0)  # no ties: plain Bradley-Terry
    r.cache.update({"x": 0.0})  # unused key: shows the cache is a plain dict
    u_a, u_b = np.full(4000, 1.0), np.zeros(4000)
    wins = np.mean([w == "a" for w in r._decide(u_a, u_b)])
    assert wins == pytest.approx(0.75, abs=0.03)  # one utility unit apart -> agreement
    exact = SimulatedRater(agreement=1.0)
    assert exact._decide(np.array([0.2]), np.array([0.1])) == ["a"]


def test_compare_and_simulate_api():
    r = SimulatedRater(agreement=1.0, seed=0)
    assert r.compare(GOOD, BAD) == "a"
    assert r.compare(BROKEN, GOOD) == "b"
    same = [SimulatedRater(agreement=1.0, seed=s).compare(BROKEN, BROKEN + "%") for s in range(300)]
    assert {"a", "b", "tie"} == set(same)  # equal utilities: a noisy tie, otherwise a coin flip
    # 300 draws of P(tie) = 0.2: SD 0.023, so 0.1 is more than 4 SDs either side
    assert same.count("tie") / 300 == pytest.approx(0.2, abs=0.1)
    assert r.simulate([GOOD, BAD, BROKEN], [[0, 1], [2, 1], [1, 0]]) == ["a", "b", "b"]
    assert r.simulate([GOOD], []) == []
    a, b = SimulatedRater(seed=5), SimulatedRater(seed=5)
    a.cache = b.cache = {}
    assert a.simulate([GOOD, BAD], [[0, 1]] * 20) == b.simulate([GOOD, BAD], [[0, 1]] * 20)
    with pytest.raises(ValueError, match="agreement"):
        SimulatedRater(agreement=0.3)


# Tie tests. Each draw is an independent Bernoulli, so a fraction over n draws has binomial SD
# sqrt(p (1 - p) / n). Tolerances are 4.5 SDs: a correct rater would miss one with probability
# below 1e-5 (and the seeds are fixed, so a run is reproducible), while the old noise-free ties
# (fraction 1 at equal utilities, 0 otherwise) miss by more than 25 SDs.
def _binomial_tol(p: float, n: int) -> float:
    return 4.5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("level", [INVALID, FLOOR, 0.7])
def test_equal_utilities_tie_at_the_documented_rate(level):
    n = 4000
    r = SimulatedRater(seed=3)  # documented default: tie_rate 0.2
    out = np.array(r._decide(np.full(n, level), np.full(n, level)))
    ties = np.mean(out == "tie")
    assert ties == pytest.approx(0.2, abs=_binomial_tol(0.2, n))  # ± 0.028
    decisive = out[out != "tie"]
    # not always a tie: the rest is a fair coin between a and b
    assert np.mean(decisive == "a") == pytest.approx(0.5, abs=_binomial_tol(0.5, len(decisive)))


def test_tie_rate_parameter_and_validation():
    n = 4000
    for rate in (0.0, 0.1, 0.5):
        out = np.array(SimulatedRater(tie_rate=rate, seed=4)._decide(np.zeros(n), np.zeros(n)))
        assert np.mean(out == "tie") == pytest.approx(rate, abs=_binomial_tol(rate, n) + 1e-12)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="tie_rate"):
            SimulatedRater(tie_rate=bad)


def test_close_but_unequal_utilities_also_tie():
    n = 4000
    r = SimulatedRater(agreement=0.75, seed=5)
    u_a, u_b = np.full(n, 0.1), np.zeros(n)  # a tenth of a utility unit apart
    _, p_tie, _ = r.outcome_probabilities(0.1, 0.0)
    assert 0.15 < p_tie < 0.2  # just below the equal-utility rate
    out = np.array(r._decide(u_a, u_b))
    assert np.mean(out == "tie") == pytest.approx(p_tie, abs=_binomial_tol(p_tie, n))
    # one unit apart: fewer ties, and among decisive judgements the better one wins `agreement`
    out = np.array(r._decide(np.ones(n), np.zeros(n)))
    decisive = out[out != "tie"]
    assert 0.1 < np.mean(out == "tie") < 0.2
    assert np.mean(decisive == "a") == pytest.approx(0.75, abs=_binomial_tol(0.75, len(decisive)))
    # the perfectly consistent rater never ties or errs on unequal utilities
    assert set(SimulatedRater(agreement=1.0, seed=5)._decide(u_a, u_b)) == {"a"}


def test_win_probability_monotone_in_utility_difference():
    r = SimulatedRater(agreement=0.7, seed=6)
    d = np.linspace(-6, 6, 241)
    p_a, p_tie, p_b = r.outcome_probabilities(d, 0.0)
    assert np.allclose(p_a + p_tie + p_b, 1.0) and (p_tie >= 0).all() and (p_b >= 0).all()
    assert (np.diff(p_a) > 0).all() and (np.diff(p_b) < 0).all()
    assert np.allclose(p_tie, p_tie[::-1]) and p_tie.argmax() == 120 and p_tie[120] == pytest.approx(0.2)
    assert np.allclose(p_a, p_b[::-1])  # swapping a and b swaps the outcomes
    # empirically: the rate of "a" grows with the gap (neighbouring gaps differ by > 10 binomial SDs)
    n = 3000
    rates = [np.mean(np.array(r._decide(np.full(n, g), np.zeros(n))) == "a") for g in (-2, -1, 0, 1, 2)]
    assert all(x + 0.08 < y for x, y in zip(rates, rates[1:])), rates
    # no overflow or NaN at huge gaps, and the exact rater's limits
    p = r.outcome_probabilities(np.array([-1e6, 1e6]), 0.0)
    assert np.allclose(np.stack(p), [[0, 1], [0, 0], [1, 0]])
    p = SimulatedRater(agreement=1.0).outcome_probabilities(np.array([-0.01, 0.0, 0.01]), 0.0)
    assert np.allclose(np.stack(p), [[0, 0.4, 1], [0, 0.2, 0], [1, 0.4, 0]])


def test_bradley_terry_fit_recovers_the_tie_parameter():
    from rewardmodels import fit

    rng = np.random.default_rng(7)
    u = rng.normal(0, 1, 60)
    u[:10] = INVALID  # a block of equal utilities, as invalid samples give
    r = SimulatedRater(agreement=0.75, seed=7)
    pairs = np.array([rng.choice(60, 2, replace=False) for _ in range(8000)])
    out = np.array(r._decide(u[pairs[:, 0]], u[pairs[:, 1]]))
    wins = np.where((out == "a")[:, None], pairs, pairs[:, ::-1])[out != "tie"]
    scores = fit(wins, 60, ties=pairs[out == "tie"], prior_sd=10.0)
    assert scores.tie == pytest.approx(r.nu, rel=0.15)  # ν = 0.5; ~1,400 ties give a few % error
    # items of equal utility get nearly equal scores; the others are ordered like the utility
    assert np.std(scores.mean[:10]) < 0.5 * np.std(scores.mean[10:])
    assert np.corrcoef(scores.mean[10:], u[10:])[0, 1] > 0.9


class _RecordingPool:
    """A serial stand-in for domains.ProcessPool that records what it was asked to map."""

    def __init__(self):
        self.calls = []

    def map(self, fn, items):
        self.calls.append(list(items))
        return [fn(x) for x in items]


def test_utility_through_a_pool_and_known_verdicts():
    from domains import Validity, validate_abc

    pool, checked = _RecordingPool(), {}
    r = SimulatedRater()
    u = r.utility([GOOD, BAD, GOOD, BROKEN], pool=pool, checked=checked)
    assert u.tolist() == SimulatedRater().utility([GOOD, BAD, GOOD, BROKEN]).tolist()
    assert [t for t, *_ in pool.calls[0]] == [GOOD, BAD, BROKEN]  # each missing text once, in order
    assert checked == {t: validate_abc(t) for t in (GOOD, BAD, BROKEN)}  # verdicts recorded for the caller
    r.utility([BAD, GOOD], pool=pool)
    assert len(pool.calls) == 1  # all cached: nothing more to map
    # a verdict the caller already has is used, not checked again (an invalid one gives INVALID)
    known = {GOOD: Validity(False, "known bad")}
    assert SimulatedRater().utility([GOOD], checked=known)[0] == INVALID
    assert music_features(GOOD, Validity(True)) == music_features(GOOD)


def test_repetition_target_follows_length_not_a_fixed_ratio(fiddle_pieces):
    # zlib's ratio falls with length whatever the music; the target must absorb that, the old one did not.
    from rewardmodels import abc_body, compression_ratio
    from rewardmodels._simulated import repeat_target

    bodies = [abc_body(p.text) for p in fiddle_pieces[::10]]
    log_len = np.log([len(b.encode()) for b in bodies])
    ratio = np.array([compression_ratio(b) for b in bodies])
    aware = ratio - np.array([repeat_target(len(b.encode())) for b in bodies])
    fixed = ratio - np.array([repeat_target(len(b.encode()), length_aware=False) for b in bodies])
    assert abs(np.corrcoef(aware, log_len)[0, 1]) < 0.15
    assert np.corrcoef(fixed, log_len)[0, 1] < -0.5
    assert abs(aware.mean()) < 0.02  # the fit is centred on corpus tunes


def test_length_aware_repeat_term_and_the_old_rater(small_texts):
    from rewardmodels import abc_body, compression_ratio
    from rewardmodels._simulated import REPEAT_WIDTH, repeat_target

    text = small_texts[0]
    body = abc_body(text)
    for aware in (True, False):
        f = music_features(text, length_aware=aware)
        target = repeat_target(len(body.encode()), aware)
        assert f["repeat"] == pytest.approx(-(((compression_ratio(body) - target) / REPEAT_WIDTH) ** 2))
    new, old = SimulatedRater(), SimulatedRater(length_aware=False)
    assert old.name != new.name
    u_new, u_old = new.utility(small_texts[:12]), old.utility(small_texts[:12])
    assert not np.allclose(u_new, u_old)
    through_pool = SimulatedRater(length_aware=False).utility(small_texts[:12], pool=_RecordingPool())
    assert through_pool.tolist() == u_old.tolist()  # worker processes score with the rater's own target


def test_unclipped_utility_orders_tunes_the_clip_ties():
    from rewardmodels import unclipped_utility

    r = SimulatedRater()
    assert r.utility([BAD])[0] == FLOOR  # clipped: every tune this bad ties at the floor
    assert unclipped_utility(BAD) < FLOOR and unclipped_utility(GOOD) == pytest.approx(r.utility([GOOD])[0])
    assert unclipped_utility(BROKEN) == -np.inf < unclipped_utility(BAD)
