import math
from dataclasses import replace

import pytest
import torch

from ascent_doubles import PoisonReward, encode, tiny_setup
from domains import decode
from gradopt import (
    AscentConfig, EmbeddingPEZ, GumbelSoftmax, ObjectiveWeights, PolishConfig, SimplexEntropy, SimplexLogits,
    discrete_log_likelihood, freeze_prefix, optimize, pad_batch,
)

TUNES = ["X:1\nK:G\nGABc|dedB|", "K:D\nFA|", "X:2\nM:6/8\nK:D\nFAd fed|"]
QUICK = AscentConfig(trust=None, steps=12, check_every=4, polish=PolishConfig(rounds=2, top_k=4, candidates=6))


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def test_batched_equals_one_by_one(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    cfg = AscentConfig(trust=None, steps=8, check_every=3, restarts=2, relaxation=GumbelSoftmax(),
                       polish=PolishConfig(rounds=2, top_k=4, candidates=5), seed=3)
    batched = optimize(init, rm, gen, cfg, tokenizer=tok)
    for i, row in enumerate(init):
        alone = optimize([row], rm, gen, cfg, tokenizer=tok).rows[0]
        assert alone.tokens == batched.rows[i].tokens
        assert alone.restart == batched.rows[i].restart
        assert math.isclose(alone.reward_after, batched.rows[i].reward_after, abs_tol=1e-9)
        assert math.isclose(alone.loglik_after, batched.rows[i].loglik_after, abs_tol=1e-9)


def test_deterministic_under_a_seed(setup):
    tok, gen, rm = setup
    cfg = AscentConfig(trust=None, steps=6, check_every=2, restarts=2, relaxation=GumbelSoftmax(), polish=PolishConfig(rounds=1))
    a = optimize(encode(tok, TUNES), rm, gen, cfg, tokenizer=tok)
    b = optimize(encode(tok, TUNES), rm, gen, cfg, tokenizer=tok)
    assert a.tokens == b.tokens and [r.reward_after for r in a.rows] == [r.reward_after for r in b.rows]


@pytest.mark.parametrize("relax", [SimplexEntropy(), SimplexLogits(), EmbeddingPEZ()])
def test_frozen_positions_never_change(setup, relax):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    ids, _ = pad_batch(init, tok.pad_token_id)
    freeze = freeze_prefix(ids, 6)
    cfg = AscentConfig(trust=None, steps=10, check_every=2, restarts=2, relaxation=relax,
                       optimizer=QUICK.optimizer.__class__(lr=0.5),
                       polish=PolishConfig(rounds=2, top_k=4, candidates=8))
    res = optimize(init, rm, gen, cfg, tokenizer=tok, freeze=freeze)
    for start, row in zip(init, res.rows):
        assert len(row.tokens) == len(start)
        assert row.tokens[:6] == start[:6]  # user-frozen prefix (BOS included)
        assert row.tokens[-1] == start[-1] == tok.eos_token_id
        assert tok.bos_token_id not in row.tokens[1:] and tok.pad_token_id not in row.tokens
    assert any(row.changed > 0 for row in res.rows)  # something was free to move and did


def test_returned_reward_equals_rescoring_returned_tokens(setup):
    tok, gen, rm = setup
    res = optimize(encode(tok, TUNES), rm, gen, QUICK, tokenizer=tok)
    for row in res.rows:
        ids = torch.tensor([row.tokens])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            rescored = float(rm.score(ids, attention_mask=mask))
            _, total = discrete_log_likelihood(gen, ids, mask)
        assert math.isclose(row.reward_after, rescored, abs_tol=1e-9)
        assert math.isclose(row.loglik_after, float(total), abs_tol=1e-9)
        assert row.text == decode(tok, row.tokens)


def test_result_is_never_worse_than_the_start_and_gap_is_zero_at_start(setup):
    tok, gen, rm = setup
    res = optimize(encode(tok, TUNES), rm, gen, QUICK, tokenizer=tok)
    for row in res.rows:
        assert row.objective_after >= row.objective_before - 1e-12
        assert row.trajectory[0]["step"] == 0 and abs(row.trajectory[0]["gap"]) < 1e-9  # simplex starts at a vertex
        assert len(row.trajectory) == 12 // 4 + 1
    summary = res.summary()
    assert summary["rows"] == 3 and summary["reward_evals"] == res.reward_evals > 0


@pytest.mark.parametrize("restarts", [1, 3])
def test_nonfinite_row_is_reported_and_the_rest_continue(setup, restarts):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    poison = init[1][1]  # the second tune's first body token
    assert init[0][1] != poison and init[2][1] != poison
    bad = PoisonReward(rm, poison)
    freeze = freeze_prefix(pad_batch(init, tok.pad_token_id)[0], 2)
    cfg = replace(QUICK, restarts=restarts)
    res = optimize(init, bad, gen, cfg, tokenizer=tok, freeze=freeze)
    assert res.rows[1].status != "ok" and "nonfinite" in res.rows[1].status
    assert res.rows[1].status.startswith("kept the input")  # no restart was ever scored finite
    assert res.rows[1].tokens == init[1] and res.rows[1].changed == 0
    clean = optimize([init[0], init[2]], rm, gen, cfg, tokenizer=tok, freeze=freeze[[0, 2]])
    for i, j in ((0, 0), (2, 1)):
        assert res.rows[i].status == "ok"
        assert res.rows[i].tokens == clean.rows[j].tokens
        assert math.isfinite(res.rows[i].reward_after)


def test_too_long_sequence_is_a_clear_error(setup):
    tok, gen, rm = setup
    long = encode(tok, ["GABc" * 40])
    with pytest.raises(ValueError, match="context is 64"):
        optimize(long, rm, gen, QUICK, tokenizer=tok)


def test_validator_vetoes_invalid_outputs(setup):
    tok, gen, rm = setup

    def validate(text):  # only the characters of the start are acceptable
        return set(text) <= set("".join(TUNES))

    cfg = AscentConfig(trust=None, steps=10, check_every=2, optimizer=QUICK.optimizer.__class__(lr=0.5),
                       polish=PolishConfig(rounds=2, top_k=4, candidates=8))
    res = optimize(encode(tok, TUNES), rm, gen, cfg, tokenizer=tok, validate=validate)
    assert all(row.valid_before for row in res.rows)
    assert all(row.valid_after for row in res.rows)


def _headers_then_one_bar_line(text):
    """A strict stand-in for a parse: every line but the last is a header (``X:``, ``M:``, ``K:``)
    and the last is a music line with a bar line and no ':'. Redrawing most free positions at
    random almost always breaks it, while single swaps often keep it."""
    *headers, music = text.split("\n")
    return all(len(h) > 2 and h[0] in "XMK" and h[1] == ":" for h in headers) and ":" not in music and "|" in music


def test_restarts_from_rejected_starts_never_reach_the_output(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    assert all(_headers_then_one_bar_line(t) for t in TUNES)
    winners = []
    for seed in (0, 1, 2):
        cfg = AscentConfig(trust=None, steps=4, check_every=2, restarts=4, restart_noise=1.0, seed=seed,
                           polish=PolishConfig(rounds=2, top_k=4, candidates=6))
        res = optimize(init, rm, gen, cfg, tokenizer=tok, validate=_headers_then_one_bar_line)
        for start, row in zip(init, res.rows):
            assert row.valid_before is True
            assert _headers_then_one_bar_line(row.text), (seed, row.restart, row.status, row.text)
            assert row.valid_after is True and row.status == "ok"
            assert row.objective_after >= row.objective_before - 1e-12  # restart 0 holds the input itself
            winners.append(row.restart)
    assert any(j > 0 for j in winners)  # restarts still win when they reach an accepted sequence


def test_gap_is_measured_before_the_final_projection(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    # A genuinely soft relaxation (a smoothed start, a loose entropy cap) and few steps: the cap is
    # still loose at the last gradient step; the update after it projects every row onto a vertex
    # (entropy_end = 0), where the soft and exact objectives agree by construction.
    relax = SimplexEntropy(init_smoothing=0.3, entropy_start=1.0)
    cfg = AscentConfig(trust=None, steps=5, check_every=5, relaxation=relax, polish=PolishConfig(rounds=0))  # checks at 0, 5
    res = optimize(init, rm, gen, cfg, tokenizer=tok)
    every = optimize(init, rm, gen, replace(cfg, check_every=1), tokenizer=tok)  # same path, checks every step
    for row, ref in zip(res.rows, every.rows):
        (last,) = [c for c in ref.trajectory if c["step"] == cfg.steps - 1]  # the last relaxed point
        assert row.gap == pytest.approx(last["soft"] - last["discrete"], abs=1e-9)
        assert abs(row.gap) > 1e-4
        assert row.trajectory[-1]["step"] == cfg.steps and abs(row.trajectory[-1]["gap"]) < 1e-9  # at the vertex


def test_before_scores_are_the_inputs_own_exact_scores(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)

    def has_key(text):
        return "K:" in text

    # init_smoothing = 1 starts every free position at the uniform distribution, whose projection
    # is one token repeated, not the input.
    cfg = AscentConfig(trust=None, steps=4, check_every=2, relaxation=SimplexEntropy(init_smoothing=1.0),
                       polish=PolishConfig(rounds=0))
    res = optimize(init, rm, gen, cfg, tokenizer=tok, validate=has_key)
    for start, row in zip(init, res.rows):
        ids = torch.tensor([start])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            reward = float(rm.score(ids, attention_mask=mask))
            mean_ll, total_ll = discrete_log_likelihood(gen, ids, mask)
        assert abs(row.trajectory[0]["reward"] - reward) > 1e-6  # the initial relaxation projects elsewhere
        assert math.isclose(row.reward_before, reward, abs_tol=1e-9)
        assert math.isclose(row.loglik_before, float(total_ll), abs_tol=1e-9)
        assert math.isclose(row.objective_before, reward + cfg.objective.lm_weight * float(mean_ll), abs_tol=1e-9)
        assert row.valid_before is True and has_key(decode(tok, start))
        assert row.valid_after is True
        assert row.objective_after >= row.objective_before - 1e-12


def test_the_input_competes_when_the_initial_relaxation_projects_elsewhere(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    # No steps, no polish: the only sequence the relaxation offers is the projection of its uniform
    # start (one token repeated), which the KL term to the start makes worse than the input; it is
    # kept only where it beats the input, never below it.
    cfg = AscentConfig(trust=None, steps=0, relaxation=SimplexEntropy(init_smoothing=1.0),
                       objective=ObjectiveWeights(kl_weight=1.0), polish=PolishConfig(rounds=0))
    res = optimize(init, rm, gen, cfg, tokenizer=tok)
    worse = 0
    for start, row in zip(init, res.rows):
        (first,) = row.trajectory
        assert row.objective_after == pytest.approx(max(row.objective_before, first["discrete"]), abs=1e-9)
        if first["discrete"] < row.objective_before:
            worse += 1
            assert row.tokens == start and row.changed == 0 and row.status == "ok"
    assert worse > 0


def test_torch_optim_backend_matches_torchopt(setup):
    tok, gen, rm = setup
    base = AscentConfig(trust=None, steps=6, check_every=2, polish=PolishConfig(rounds=0),
                        objective=ObjectiveWeights(lm_weight=0.5, kl_weight=0.1, entropy_weight=0.1),
                        relaxation=SimplexLogits())
    a = optimize(encode(tok, TUNES), rm, gen, base, tokenizer=tok)
    b = optimize(encode(tok, TUNES), rm, gen,
                 AscentConfig(**{**base.__dict__, "optimizer": base.optimizer.__class__(lr=0.5, backend="torch")}),
                 tokenizer=tok)
    for x, y in zip(a.rows, b.rows):
        assert [s["soft"] for s in x.trajectory] == pytest.approx([s["soft"] for s in y.trajectory], abs=1e-6)


def test_bad_config_and_inputs_raise(setup):
    tok, gen, rm = setup
    with pytest.raises(ValueError):
        AscentConfig(check_every=0)
    with pytest.raises(ValueError):
        optimize([[]], rm, gen, QUICK, tokenizer=tok)
    with pytest.raises(ValueError, match="freeze mask"):
        optimize(encode(tok, TUNES), rm, gen, QUICK, tokenizer=tok, freeze=torch.zeros(1, 2, dtype=torch.bool))
