"""The likelihood floor (`ObjectiveWeights.lm_floor`): an edit pays for lowering the generator's
mean log-likelihood below the input's, and earns nothing for raising it."""

import numpy as np
import pytest
import torch

from ascent_doubles import TEXTS, encode, tiny_setup
from gradopt import (AscentConfig, ObjectiveWeights, PolishConfig, discrete_terms, edit_sites, exact_deltas,
                     exact_scores, hill_climb, optimize, pad_batch, score_sequences)

FLOOR = ObjectiveWeights(lm_weight=50.0, lm_floor=True)


@pytest.fixture(scope="module")
def setup():
    tok, gen, rm = tiny_setup()
    return tok, gen, rm, encode(tok, TEXTS + ["X:3\nK:A\nABcd|efga|\n"])


def test_the_floor_charges_drops_below_the_reference_and_ignores_rises():
    from gradopt._objective import Terms
    t = Terms(reward=torch.tensor([1.0, 1.0]), loglik=torch.tensor([-2.0, -3.0]), kl=torch.zeros(2),
              entropy=torch.zeros(2), loglik_ref=torch.tensor([-2.5, -2.5]))
    assert t.total(ObjectiveWeights(lm_weight=4.0, lm_floor=True), 1.0).tolist() == [1.0, 1.0 - 4.0 * 0.5]
    assert t.total(ObjectiveWeights(lm_weight=4.0), 1.0).tolist() == [1.0 - 8.0, 1.0 - 12.0]
    with pytest.raises(ValueError, match="loglik_ref"):
        Terms(reward=t.reward, loglik=t.loglik, kl=t.kl, entropy=t.entropy).total(FLOOR, 1.0)


def test_exact_scores_with_a_floor(setup):
    tok, gen, rm, starts = setup
    ids, mask = pad_batch(starts, tok.pad_token_id)
    r, mean_ll, _ = score_sequences(rm, gen, ids, mask)
    floor = mean_ll.double().numpy() + np.array([0.1, -0.1, 0.2, -0.2])[: len(starts)]
    _, _, j = exact_scores(rm, gen, starts, tok.pad_token_id, 3.0, floor=floor)
    want = r.double().numpy() + 3.0 * np.minimum(mean_ll.double().numpy() - floor, 0.0)
    np.testing.assert_allclose(j, want, rtol=1e-12)


def test_engine_objective_is_the_reward_while_the_input_stays_as_likely(setup):
    """With a floor the input's objective is its reward, and every returned row's objective is its
    reward minus the weighted drop of its mean log-likelihood below the input's (none above it)."""
    tok, gen, rm, starts = setup
    cfg = AscentConfig(trust=None, steps=6, check_every=2, objective=FLOOR,
                       polish=PolishConfig(rounds=2, top_k=4, candidates=6))
    res = optimize(starts, rm, gen, cfg, tokenizer=tok)
    n = [len(s) - 1 for s in starts]  # predicted tokens per row
    for row, k in zip(res.rows, n):
        assert row.objective_before == pytest.approx(row.reward_before, abs=1e-9)
        drop = max(0.0, (row.loglik_before - row.loglik_after) / k)
        assert row.objective_after == pytest.approx(row.reward_after - FLOOR.lm_weight * drop, abs=1e-9)
        assert row.objective_after >= row.objective_before - 1e-9
    assert any(r.changed for r in res.rows)


def test_first_order_and_exact_deltas_see_the_floor(setup):
    tok, gen, rm, starts = setup
    sites = edit_sites(starts[:2], rm, gen, FLOOR, tokenizer=tok)
    assert sites.loglik_ref is not None
    other = (int(sites.ids[1, 4]) + 1) % len(tok)
    edits = torch.tensor([[1, 4, other]])
    d = float(exact_deltas(sites, rm, gen, FLOOR, edits)[0])
    edited = sites.ids.clone()
    edited[1, 4] = other
    r0, ll0, _ = score_sequences(rm, gen, sites.ids, sites.mask)
    r1, ll1, _ = score_sequences(rm, gen, edited, sites.mask)
    want = float(r1[1] - r0[1]) + FLOOR.lm_weight * min(0.0, float(ll1[1] - ll0[1]))
    assert d == pytest.approx(want, abs=1e-9)
    terms, _ = discrete_terms(rm, gen, sites.ids, sites.mask, sites.start, sites.free, FLOOR,
                              loglik_ref=sites.loglik_ref)
    assert torch.allclose(terms.total(FLOOR, 1.0), terms.reward)


def test_hill_climb_with_a_floor_climbs_the_floored_objective(setup):
    tok, gen, rm, starts = setup
    kw = dict(evals_per_slot=30, cpu_budget=0.0, lm_weight=50.0, seed=4)
    ids, mask = pad_batch(starts, tok.pad_token_id)
    floor = score_sequences(rm, gen, ids, mask)[1].double().numpy()
    floored = hill_climb(starts, rm, gen, tok, lm_floor=True, **kw)["evals"]
    j0 = exact_scores(rm, gen, starts, tok.pad_token_id, 50.0, floor=floor)[2]
    j = exact_scores(rm, gen, floored.rows, tok.pad_token_id, 50.0, floor=floor)[2]
    assert np.all(j >= j0 - 1e-12) and np.any(j > j0)
    plain = hill_climb(starts, rm, gen, tok, **kw)["evals"]
    assert plain.rows != floored.rows  # the bonus for likelier rows steers the plain climb elsewhere
