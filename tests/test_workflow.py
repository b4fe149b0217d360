"""Store-level rating steps: rate_pairs costs per item, not per pair, and matches one-by-one rating."""

import os
from collections import Counter

import pytest

import rewardmodels as rm

GOOD = "X:1\nT:a\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|\n"
OTHER = "X:1\nT:b\nM:4/4\nL:1/8\nK:G\nGFGA B2dB|c2ec B2dB|GFGA B2dB|A2F2 G4:|\n"
THIRD = "X:1\nT:c\nM:4/4\nL:1/8\nK:D\nd2fd A2FA|d2fd e2ce|d2fd A2FA|B2e2 d4:|\n"
OVERLONG = "X:1\nT:d\nM:4/4\nL:1/8\nK:G\nGABcdedBGABc|dedB dedB|\n"  # first bar 12 eighths in 4/4: broken


@pytest.fixture()
def store(tmp_path):
    s = rm.RatingStore(tmp_path / "s")
    s.add_items([GOOD, OTHER, THIRD, OVERLONG], origin="corpus")
    return s


def _pairs(store, repeats=5):
    ids = store.ids
    return [(ids[i], ids[j]) for _ in range(repeats) for i in range(4) for j in range(4) if i < j]


def test_rate_pairs_judges_and_scores_each_item_once(store, monkeypatch):
    import domains

    validated = Counter()
    real_validate = domains.validate_abc

    def counting_validate(text, *args, **kwargs):
        validated[text] += 1
        return real_validate(text, *args, **kwargs)

    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(domains, "validate_abc", counting_validate)
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    pairs = _pairs(store)  # 30 pairs, every item in 15 of them
    done = rm.rate_pairs(store, pairs, rm.SimulatedRater(seed=0), rm.JudgeConfig())
    # each tune parsed once by the auto-checks and once for its utility, however many pairs it is in
    assert set(validated) == {GOOD, OTHER, THIRD, OVERLONG} and max(validated.values()) <= 2, validated
    assert len(fsyncs) == 1  # one durable append for the whole batch
    assert [(c.a, c.b) for c in done] == pairs  # recorded in pair order
    overlong = rm.item_id(OVERLONG)
    for c in done:
        if overlong in (c.a, c.b):
            assert c.kind == "auto" and c.broken == (overlong,) and c.loser == overlong
        else:
            assert c.kind == "simulated" and c.rater == "simulated@0.75"
    reopened = rm.RatingStore(store.directory)
    assert [c.as_json() for c in reopened.comparisons] == [c.as_json() for c in done]


def test_rate_pairs_draws_like_one_by_one(store):
    pairs = [p for p in _pairs(store, repeats=20) if rm.item_id(OVERLONG) not in p]
    batched = [c.winner for c in rm.rate_pairs(store, pairs, rm.SimulatedRater(agreement=0.6, seed=3))]
    one_by_one = rm.SimulatedRater(agreement=0.6, seed=3)
    expected = [one_by_one.compare(store[a].text, store[b].text) for a, b in pairs]
    assert batched == expected and len(set(batched)) == 3  # wins both ways and ties


def test_rate_pairs_refuses_bad_input_before_writing(store):
    ids = store.ids
    with pytest.raises(ValueError, match="unknown item id"):
        rm.rate_pairs(store, [(ids[0], ids[1]), (ids[0], "f" * 64)], rm.SimulatedRater())
    text = store.add_item("a line of text", domain="text", origin="sample")
    with pytest.raises(ValueError, match="ABC tunes only"):
        rm.rate_pairs(store, [(ids[0], text.id)], rm.SimulatedRater())
    with pytest.raises(ValueError, match="itself"):
        rm.rate_pairs(store, [(ids[0], ids[1]), (ids[2], ids[2])], rm.SimulatedRater())
    assert rm.RatingStore(store.directory).comparisons == []


def test_add_comparisons_checks_every_id_first(store):
    ids = store.ids
    good = rm.Comparison(a=ids[0], b=ids[1], winner="a", kind="human")
    with pytest.raises(ValueError, match="unknown item id"):
        store.add_comparisons([good, rm.Comparison(a=ids[0], b="e" * 64, winner="tie")])
    assert store.comparisons == [] and rm.RatingStore(store.directory).comparisons == []
    assert store.add_comparisons([good, good]) == [good, good]
    assert store.add_comparisons([]) == []
    assert len(rm.RatingStore(store.directory).comparisons) == 2


def test_scores_round_trip_keeps_the_solver_verdict(tmp_path):
    import numpy as np

    s = rm.fit([[0, 1], [1, 2], [0, 2]], 3, max_iter=1, tol=1e-12)
    assert not s.converged
    rm.save_scores(s, ["a", "b", "c"], tmp_path / "scores.json")
    back, ids = rm.load_scores(tmp_path / "scores.json")
    assert ids == ["a", "b", "c"]
    np.testing.assert_array_equal(back.mean, s.mean)
    np.testing.assert_array_equal(back.sd, s.sd)
    assert (back.converged, back.n_iter, back.reason) == (s.converged, s.n_iter, s.reason)
