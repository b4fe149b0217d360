import math

import pytest
import torch
from ascent_doubles import TEXTS, encode, tiny_setup
from test_first_order import LinearReward

from gradopt import EditProblem, GWGConfig, ObjectiveWeights, edit_sites, gibbs_with_gradients, run_sampler


def _gens(n, seed=0):
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


class TableToy:
    """J and a deliberately inexact "gradient" tabulated over every state of a short sequence (t
    positions, v tokens): the MH correction must make the chain exact anyway."""

    def __init__(self, t=2, v=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.t, self.v = t, v
        self.j = torch.randn(v**t, generator=g, dtype=torch.float64)
        self.g = torch.randn(v**t, t, v, generator=g, dtype=torch.float64)

    def index(self, ids):
        return sum(ids[:, i] * self.v ** (self.t - 1 - i) for i in range(self.t))

    def grad_fn(self, ids):
        return self.g[self.index(ids)]

    def score_fn(self, ids, rows):
        return self.j[self.index(ids)]


def test_mh_acceptance_probability_matches_a_hand_computation():
    toy = TableToy(t=1, v=3, seed=8)  # one proposal accepted for sure, the other with probability < 1
    tau, n = 0.7, 40
    ids = torch.zeros(n, 1, dtype=torch.long)
    run = run_sampler(EditProblem(ids, toy.j[ids[:, 0]], torch.ones(n, 1, dtype=torch.bool),
                                  torch.ones(3, dtype=torch.bool), toy.grad_fn, toy.score_fn, None),
                      GWGConfig(steps=1, temperature=tau), _gens(n))

    def q(x, y):  # probability of proposing y from x under the gradient at x (changes only)
        g = toy.g[x, 0]
        w = {u: math.exp((float(g[u]) - float(g[x])) / (2 * tau)) for u in range(3) if u != x}
        return w[y] / sum(w.values())

    seen = set()
    for rec in (traj[0] for traj in run.trajectory):
        y = int((toy.j - rec["proposed"]).abs().argmin())
        seen.add(y)
        hand = min(1.0, math.exp((float(toy.j[y]) - float(toy.j[0])) / tau) * q(y, 0) / q(0, y))
        assert rec["accept_prob"] == pytest.approx(hand, rel=1e-12)
        assert rec["value"] == pytest.approx(float(toy.j[y] if rec["accepted"] else toy.j[0]))
    assert seen == {1, 2}
    assert {0 < r[0]["accept_prob"] < 1 for r in run.trajectory} == {True, False}


@pytest.mark.parametrize("cfg", [GWGConfig(proposal="gwg", sites=1), GWGConfig(proposal="gwg", sites=2),
                                 GWGConfig(proposal="dlp", step_size=0.7)], ids=["gwg", "gwg_path2", "dlp"])
def test_mh_chains_sample_the_target_despite_an_inexact_gradient(cfg):
    toy = TableToy(t=2, v=3, seed=1)
    tau, n, steps, burn = 1.0, 300, 30, 10
    cfg = GWGConfig(**{**cfg.__dict__, "steps": steps, "temperature": tau})
    ids = torch.zeros(n, 2, dtype=torch.long)
    run = run_sampler(EditProblem(ids, toy.score_fn(ids, None), torch.ones(n, 2, dtype=torch.bool),
                                  torch.ones(3, dtype=torch.bool), toy.grad_fn, toy.score_fn, None), cfg, _gens(n, 7))
    states = [int((toy.j - rec["value"]).abs().argmin()) for traj in run.trajectory for rec in traj[burn:]]
    freq = torch.bincount(torch.tensor(states), minlength=9).double() / len(states)
    target = torch.softmax(toy.j / tau, 0)
    assert 0.5 * (freq - target).abs().sum() < 0.06, (freq, target)


def test_greedy_never_lowers_the_exact_objective_and_returns_exact_scores():
    tok, gen, rm = tiny_setup()
    ids = encode(tok, [TEXTS[0][:16], TEXTS[1][:12]])
    w = ObjectiveWeights(lm_weight=1.0)
    for cfg in (GWGConfig(steps=6, acceptance="greedy", sites=2, temperature=1.0),
                GWGConfig(steps=6, acceptance="greedy", proposal="dlp", temperature=1.0, step_size=2.0)):
        run = gibbs_with_gradients(ids, rm, gen, cfg, w, tokenizer=tok)
        start = gibbs_with_gradients(ids, rm, gen, GWGConfig(steps=0), w, tokenizer=tok).value
        for r, traj in enumerate(run.trajectory):
            values = [float(start[r])] + [rec["value"] for rec in traj]
            assert all(b >= a for a, b in zip(values, values[1:]))
            assert all(rec["accepted"] == (rec["proposed"] is not None and rec["proposed"] > v)
                       for rec, v in zip(traj, values))
        sites = edit_sites(ids, rm, gen, w, tokenizer=tok)
        from gradopt import discrete_terms
        rescored = discrete_terms(rm, gen, run.ids, sites.mask, sites.start, sites.free, w)[0].total(w, 1.0)
        assert torch.allclose(rescored, run.value, atol=1e-12, rtol=0)
        assert (run.value >= start).all()


@pytest.mark.parametrize("cfg", [GWGConfig(sites=3), GWGConfig(proposal="dlp", step_size=5.0)], ids=["gwg", "dlp"])
def test_frozen_positions_and_disallowed_tokens_are_never_proposed(cfg):
    toy_b, t, v = 6, 8, 7
    g = torch.Generator().manual_seed(0)
    table = torch.randn(t, v, generator=g, dtype=torch.float64)
    ids = torch.randint(1, v, (toy_b, t), generator=g)
    free = torch.ones(toy_b, t, dtype=torch.bool)
    free[:, [0, 3, 7]] = False
    allowed = torch.ones(v, dtype=torch.bool)
    allowed[0] = False  # a "special" token
    seen = []

    def score_fn(cand, rows):
        seen.append((cand.clone(), rows.clone()))
        return table[torch.arange(t), cand].sum(-1)

    cfg = GWGConfig(**{**cfg.__dict__, "steps": 12, "temperature": 5.0})
    run = run_sampler(EditProblem(ids, table[torch.arange(t), ids].sum(-1), free, allowed,
                                  lambda x: table.expand(len(x), t, v), score_fn, None), cfg, _gens(toy_b))
    props, rows = torch.cat([c for c, _ in seen]), torch.cat([r for _, r in seen])
    assert len(props) > toy_b
    assert torch.equal(props[:, [0, 3, 7]], ids[rows][:, [0, 3, 7]])
    assert not (props == 0).any()
    assert torch.equal(run.ids[:, [0, 3, 7]], ids[:, [0, 3, 7]])
    assert sum(rec["accepted"] for traj in run.trajectory for rec in traj) > 0


def test_greedy_gwg_reaches_the_optimum_of_a_linear_objective_in_at_most_n_free_steps():
    tok, gen, _ = tiny_setup()
    rm = LinearReward(len(tok), seed=2)
    w = ObjectiveWeights(lm_weight=0.0)
    ids = encode(tok, [TEXTS[0][:10], TEXTS[1][:7]])
    sites = edit_sites(ids, rm, gen, w, tokenizer=tok)
    per_token = (rm.emb @ rm.w).detach()
    allowed = sites.allowed.expand(*sites.ids.shape, -1)
    best_tok = per_token.masked_fill(~allowed, -torch.inf).argmax(-1)
    optimum = torch.where(sites.free, best_tok, sites.ids)
    n_free = int(sites.free.sum(-1).max())
    run = gibbs_with_gradients(ids, rm, gen, GWGConfig(steps=n_free, acceptance="greedy", temperature=1e-4), w,
                               tokenizer=tok)
    assert torch.equal(run.ids, optimum)
    for r in range(2):
        k = int(sites.free[r].sum())
        j_opt = float(rm.score(optimum[r:r + 1], sites.mask[r:r + 1]).detach())
        assert run.trajectory[r][k - 1]["best"] == pytest.approx(j_opt, abs=1e-9)


def test_seeds_make_runs_reproducible_and_batched_equals_one_by_one():
    tok, gen, rm = tiny_setup()
    ids = encode(tok, [TEXTS[0][:14], TEXTS[1][:11]])
    cfg = GWGConfig(steps=4, sites=2, temperature=0.5)
    a = gibbs_with_gradients(ids, rm, gen, cfg, tokenizer=tok)
    b = gibbs_with_gradients(ids, rm, gen, cfg, tokenizer=tok)
    c = gibbs_with_gradients(ids, rm, gen, GWGConfig(**{**cfg.__dict__, "seed": 1}), tokenizer=tok)
    assert torch.equal(a.ids, b.ids) and a.trajectory == b.trajectory
    assert a.trajectory != c.trajectory
    one = gibbs_with_gradients(ids[1:], rm, gen, cfg, tokenizer=tok)  # the shorter row, alone (no padding)
    n = len(ids[1])
    assert torch.equal(one.ids[0, :n], a.ids[1, :n])
    assert [(x["accepted"], x["sites"]) for x in one.trajectory[0]] == [(x["accepted"], x["sites"])
                                                                          for x in a.trajectory[1]]
    assert [x["value"] for x in one.trajectory[0]] == pytest.approx([x["value"] for x in a.trajectory[1]], abs=1e-9)


def test_validate_keeps_a_valid_start_valid_and_bad_configs_raise():
    tok, gen, rm = tiny_setup()
    ids = encode(tok, [TEXTS[0][:14]])
    keep = tok.decode(ids[0][1:4])
    run = gibbs_with_gradients(ids, rm, gen, GWGConfig(steps=6, temperature=5.0), tokenizer=tok,
                               validate=lambda text: text.startswith(keep))
    assert torch.equal(run.ids[0, 1:4], torch.tensor(ids[0][1:4]))
    with pytest.raises(ValueError, match="tokenizer"):
        gibbs_with_gradients(ids, rm, gen, validate=lambda text: True)
    for bad in ({"sites": 0}, {"temperature": 0.0}, {"step_size": -1.0}, {"proposal": "gcg"},
                {"acceptance": "always"}, {"steps": -1}):
        with pytest.raises(ValueError, match="GWGConfig"):
            GWGConfig(**bad)


def test_the_engine_polish_runs_the_sampler_when_asked_and_keeps_frozen_positions():
    from gradopt import AscentConfig, PolishConfig, optimize

    tok, gen, _ = tiny_setup()
    rm = LinearReward(len(tok), seed=2)
    w = ObjectiveWeights(lm_weight=0.0)
    ids = encode(tok, [TEXTS[0][:10], TEXTS[1][:7]])
    freeze = torch.zeros(2, len(ids[0]), dtype=torch.bool)
    freeze[:, 2] = True
    sites = edit_sites(ids, rm, gen, w, freeze, tokenizer=tok)
    per_token = (rm.emb @ rm.w).detach()
    optimum = torch.where(sites.free, per_token.masked_fill(~sites.allowed, -torch.inf).argmax(-1), sites.ids)
    n_free = int(sites.free.sum(-1).max())
    # one gradient-ranked swap per gcg round at a random position: it cannot reach the optimum in n_free rounds
    polish = PolishConfig(rounds=n_free, top_k=1, candidates=1, combine=1, proposal="gwg",
                          sampler=GWGConfig(acceptance="greedy", temperature=1e-4))
    res = optimize(ids, rm, gen, AscentConfig(steps=0, objective=w, polish=polish, trust=None), tokenizer=tok,
                   freeze=freeze)
    for r, row in enumerate(res.rows):
        assert row.tokens == optimum[r, : len(ids[r])].tolist()
        assert row.tokens[2] == ids[r][2]
        assert row.objective_after == pytest.approx(float(rm.score(optimum[r:r + 1], sites.mask[r:r + 1]).detach()))
    with pytest.raises(ValueError, match="proposal"):
        PolishConfig(proposal="langevin")
    mh = optimize(ids, rm, gen, AscentConfig(steps=0, objective=w, trust=None, polish=PolishConfig(
        rounds=3, proposal="dlp", sampler=GWGConfig(temperature=0.5))), tokenizer=tok, freeze=freeze)
    assert all(row.objective_after >= row.objective_before for row in mh.rows)
    assert all(row.tokens[2] == ids[r][2] for r, row in enumerate(mh.rows))
