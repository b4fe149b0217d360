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
    r = SimulatedRater(agreement=0.75, seed=1)
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
    assert r.compare(BROKEN, BROKEN + "%") == "tie"
    assert r.simulate([GOOD, BAD, BROKEN], [[0, 1], [2, 1], [1, 0]]) == ["a", "b", "b"]
    assert r.simulate([GOOD], []) == []
    a, b = SimulatedRater(seed=5), SimulatedRater(seed=5)
    a.cache = b.cache = {}
    assert a.simulate([GOOD, BAD], [[0, 1]] * 20) == b.simulate([GOOD, BAD], [[0, 1]] * 20)
    with pytest.raises(ValueError, match="agreement"):
        SimulatedRater(agreement=0.3)
