"""Scores written to disk come back with everything the solver said."""

import numpy as np

from rewardmodels import fit, load_scores, save_scores


def test_scores_round_trip_keeps_the_solver_verdict(tmp_path):
    s = fit([[0, 1], [1, 2], [0, 2]], 3, max_iter=1, tol=1e-12)
    assert not s.converged
    save_scores(s, ["a", "b", "c"], tmp_path / "scores.json")
    back, ids = load_scores(tmp_path / "scores.json")
    assert ids == ["a", "b", "c"]
    np.testing.assert_array_equal(back.mean, s.mean)
    np.testing.assert_array_equal(back.sd, s.sd)
    assert (back.converged, back.n_iter, back.reason) == (s.converged, s.n_iter, s.reason)
