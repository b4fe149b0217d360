"""Best-of-N and hill-climbing baselines (gradopt/_baselines.py) on tiny float64 models."""

import numpy as np
import pytest
import torch

from ascent_doubles import TEXTS, encode, tiny_setup
from gradopt import (best_of_n, edit_masks, exact_scores, hill_climb, memo_validate, pad_batch, score_sequences,
                     starts_from_generator)


@pytest.fixture(scope="module")
def setup():
    tok, gen, rm = tiny_setup()
    return tok, gen, rm, encode(tok, TEXTS + ["X:3\nK:A\nABcd|efga|\n"])


def test_exact_scores_are_reward_plus_weighted_mean_loglik(setup):
    tok, gen, rm, starts = setup
    reward, total, J = exact_scores(rm, gen, starts, tok.pad_token_id, lm_weight=0.3, batch_size=2)
    ids, mask = pad_batch(starts, tok.pad_token_id)
    r, mean_ll, total_ll = score_sequences(rm, gen, ids, mask)
    np.testing.assert_allclose(reward, r.numpy(), rtol=1e-12)
    np.testing.assert_allclose(total, total_ll.numpy(), rtol=1e-12)
    np.testing.assert_allclose(J, (r + 0.3 * mean_ll).numpy(), rtol=1e-12)


def test_best_of_n_picks_the_highest_reward_among_start_and_samples(setup):
    tok, gen, rm, starts = setup
    snaps = best_of_n(starts, rm, gen, tok, n_max=4, seed=11, temperature=1.0)
    assert [s.evals for s in snaps] == [3, 6, 9, 12] and snaps[0].rows == starts
    candidates = [starts] + [starts_from_generator(gen, tok, 3, seed=11 + n, temperature=1.0) for n in (2, 3, 4)]
    scores = np.stack([exact_scores(rm, gen, c, tok.pad_token_id, 0.0)[0] for c in candidates])  # (N, slots)
    for n, snap in enumerate(snaps, 1):
        best = scores[:n].argmax(0)  # the first maximum: the earlier sample wins a tie
        assert snap.rows == [candidates[best[i]][i] for i in range(3)]
    assert snaps[-1].rows != starts, "the tiny reward should prefer some sample to some start"


def test_best_of_n_stops_when_asked_and_is_deterministic(setup):
    tok, gen, rm, starts = setup
    a = best_of_n(starts, rm, gen, tok, n_max=6, seed=3, temperature=1.0, stop=lambda n, cpu: n >= 2)
    b = best_of_n(starts, rm, gen, tok, n_max=6, seed=3, temperature=1.0, stop=lambda n, cpu: n >= 2)
    assert len(a) == 2 and [s.rows for s in a] == [s.rows for s in b]
    with pytest.raises(ValueError, match="n_max"):
        best_of_n(starts, rm, gen, tok, n_max=0, seed=3, temperature=1.0)


def test_hill_climb_never_worsens_the_objective_and_is_deterministic(setup):
    tok, gen, rm, starts = setup
    kw = dict(evals_per_slot=25, cpu_budget=0.0, lm_weight=0.5, seed=4)
    snaps = hill_climb(starts, rm, gen, tok, **kw)
    again = hill_climb(starts, rm, gen, tok, **kw)
    assert snaps["evals"].rows == again["evals"].rows and snaps["evals"].evals == 25 * len(starts)
    j0 = exact_scores(rm, gen, starts, tok.pad_token_id, 0.5)[2]
    for snap in snaps.values():
        j = exact_scores(rm, gen, snap.rows, tok.pad_token_id, 0.5)[2]
        assert np.all(j >= j0 - 1e-12)
    assert snaps["evals"].rows != starts, "random mutations should improve some row in 24 tries"
    assert hill_climb(starts, rm, gen, tok, **{**kw, "seed": 5})["evals"].rows != snaps["evals"].rows


def test_hill_climb_changes_only_free_positions_to_allowed_tokens(setup):
    tok, gen, rm, starts = setup
    ids, mask = pad_batch(starts, tok.pad_token_id)
    freeze, allowed = edit_masks("pitch", ids, tok)
    allowed = allowed.clone()
    allowed[0, :, tok.convert_tokens_to_ids("A")] = False  # row 0 may not write an A anywhere: masks differ by row
    allowed[1, 1:12] = False  # row 1: a stretch of note letters may not change (no token allowed)
    snaps = hill_climb(starts, rm, gen, tok, evals_per_slot=40, cpu_budget=0.0, lm_weight=0.0, seed=0,
                       freeze=freeze, allowed=allowed)
    changed = 0
    for r, (row, start) in enumerate(zip(snaps["evals"].rows, starts)):
        assert len(row) == len(start)
        for p, (a, b) in enumerate(zip(start, row)):
            if a != b:
                changed += 1
                assert not freeze[r, p] and bool(allowed[r, p, b]), (r, p, tok.decode([b]))
    assert changed > 0


def test_hill_climb_keeps_valid_starts_valid(setup):
    tok, gen, rm, starts = setup
    validate = memo_validate()
    ok = [validate(tok.decode(s, skip_special_tokens=True)) for s in starts]
    assert any(ok)
    snaps = hill_climb(starts, rm, gen, tok, evals_per_slot=15, cpu_budget=0.0, lm_weight=0.0, seed=1,
                       validate=validate)
    for row, was_ok in zip(snaps["evals"].rows, ok):
        if was_ok:
            assert validate(tok.decode(row, skip_special_tokens=True))


def test_hill_climb_refuses_bad_budgets_and_masks(setup):
    tok, gen, rm, starts = setup
    with pytest.raises(ValueError, match="evals_per_slot"):
        hill_climb(starts, rm, gen, tok, evals_per_slot=0, cpu_budget=0.0, lm_weight=0.0, seed=0)
    with pytest.raises(ValueError, match="freeze has shape"):
        hill_climb(starts, rm, gen, tok, evals_per_slot=2, cpu_budget=0.0, lm_weight=0.0, seed=0,
                   freeze=torch.zeros(1, 3, dtype=torch.bool))
