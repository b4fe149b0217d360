"""The do-no-harm guard: an edit replaces the input only with a confident gain within the edit budget."""

import dataclasses
import math

import pytest
import torch

from ascent_doubles import encode, tiny_setup
from gradopt import AscentConfig, ObjectiveWeights, PolishConfig, TrustConfig, edit_budget, gain_stats, optimize, verdict
from gradopt._moves import MoveResult, vet_moves
from gradopt._objective import discrete_log_likelihood

TUNES = ["X:1\nK:G\nGABc|dedB|", "X:2\nM:6/8\nK:D\nFAd fed|"]
ENGINE = dict(steps=8, check_every=2, polish=PolishConfig(rounds=3, top_k=4, candidates=6))
OPEN = TrustConfig(max_changed=1.0, pessimism=0.0, margin=-1e9, single_model=True)  # a guard that lets everything through


class ScaledMembers(torch.nn.Module):
    """An ensemble double: member k scores `scales[k] * inner`. Its score is the members' mean, so
    two doubles whose scales have the same mean drive an identical ascent; only their disagreement
    (the spread of the scales) differs."""

    def __init__(self, inner, scales):
        super().__init__()
        self.inner, self.config = inner, inner.config
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float64))

    def embedding_matrix(self):
        return self.inner.embedding_matrix()

    def score_members(self, ids, attention_mask=None):
        return self.inner.score(ids, attention_mask)[:, None] * self.scales

    def score(self, ids, attention_mask=None):
        return self.inner.score(ids, attention_mask) * self.scales.mean()

    def score_probs(self, p, attention_mask=None):
        return self.inner.score_probs(p, attention_mask) * self.scales.mean()

    def score_embeds(self, e, attention_mask=None):
        return self.inner.score_embeds(e, attention_mask) * self.scales.mean()


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def test_verdict_rules():
    cfg = TrustConfig(max_changed=0.5, pessimism=1.0, margin=0.1)
    assert verdict(1.0, 0.2, changed=3, budget=5, free=10, cfg=cfg) is None
    why = verdict(0.12, 0.30, changed=3, budget=5, free=10, cfg=cfg)
    assert why.startswith("no confident improvement") and "0.12 ± 0.30" in why
    assert "edit budget" in verdict(5.0, 0.0, changed=6, budget=5, free=10, cfg=cfg)
    single = TrustConfig(max_changed=0.5, pessimism=1.0, margin=0.1, single_model=True)
    assert verdict(0.2, math.nan, 1, 5, 10, single) is None  # a trusted single model: the plain gain vs the margin
    assert "needs > 0.10" in verdict(0.05, math.nan, 1, 5, 10, single)
    assert verdict(5.0, math.nan, 1, 5, 10, cfg).startswith("unsure: one reward model")  # by default: not trusted
    assert "not finite" in verdict(math.nan, math.nan, 1, 5, 10, cfg)
    assert edit_budget(torch.tensor([10, 7, 0]), TrustConfig(max_changed=0.3)).tolist() == [3, 2, 0]
    assert edit_budget(torch.tensor([10]), None).tolist() == [10]
    mean, sd = gain_stats(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]))
    assert mean.tolist() == [1.0, 1.0] and sd.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="max_changed"):
        TrustConfig(max_changed=1.5)
    with pytest.raises(ValueError, match="pessimism"):
        TrustConfig(pessimism=-1.0)


def test_verdict_refuses_an_edit_the_generator_finds_much_less_likely():
    cfg = TrustConfig(max_changed=0.5, pessimism=1.0, margin=0.1, max_loglik_drop=0.05)
    assert verdict(1.0, 0.2, 3, 5, 10, cfg, loglik_drop=0.04) is None
    assert verdict(1.0, 0.2, 3, 5, 10, cfg, loglik_drop=-2.0) is None  # more like the training music: fine
    why = verdict(1.0, 0.2, 3, 5, 10, cfg, loglik_drop=0.06)
    assert why is not None and why.startswith("less like the training music") and "0.060" in why
    assert verdict(1.0, 0.2, 3, 5, 10, cfg, loglik_drop=math.nan) is not None
    single = TrustConfig(margin=0.1, single_model=True, max_loglik_drop=0.05)  # the rule holds for one model too
    assert verdict(1.0, math.nan, 1, 5, 10, single, loglik_drop=0.06).startswith("less like")
    assert verdict(1.0, 0.2, 3, 5, 10, TrustConfig(max_changed=0.5), loglik_drop=50.0) is None  # inf: no limit
    rise = TrustConfig(margin=0.1, max_loglik_drop=-0.05)  # a negative limit demands a rise
    assert verdict(1.0, 0.2, 1, 5, 10, rise, loglik_drop=-0.06) is None
    assert verdict(1.0, 0.2, 1, 5, 10, rise, loglik_drop=-0.04).startswith("less like")
    with pytest.raises(ValueError, match="max_loglik_drop"):
        TrustConfig(max_loglik_drop=math.nan)


def _mean_ll_drop(start, row) -> float:
    """The generator's mean log-likelihood per token of `start` minus that of `row.tokens`."""
    return row.loglik_before / (len(start) - 1) - row.loglik_after / (len(row.tokens) - 1)


def test_the_engine_keeps_inputs_whose_edit_lowers_the_generators_likelihood(setup):
    """Members that agree on a clear gain: every edit passes the gain rule, so only the
    log-likelihood limit decides. With a limit between the raw edits' drops, the edits dropping
    more are refused (the input is kept, saying why) and the others taken; with no limit all are
    taken. The ascent ignores the generator here (lm_weight 0), so its edits' likelihoods vary."""
    tok, gen, rm = setup
    engine = {**ENGINE, "objective": ObjectiveWeights(lm_weight=0.0)}
    init = encode(tok, TUNES + ["X:1\nK:D\nFAdc|BAGF|", "X:2\nK:G\nDEFG|AdcB|"])
    agree = ScaledMembers(rm, [10.0, 10.0, 10.0, 10.0])
    raw = optimize(init, agree, gen, AscentConfig(trust=None, **engine), tokenizer=tok)
    assert all(r.changed > 0 and r.gain_mean > 0.05 for r in raw.rows), "the test needs a clear raw gain"
    drops = [_mean_ll_drop(s, r) for s, r in zip(init, raw.rows)]
    limit = (min(drops) + max(drops)) / 2
    assert min(drops) < limit - 1e-3 and max(drops) > limit + 1e-3, f"the test needs edits that differ: {drops}"
    guard = TrustConfig(max_changed=1.0, pessimism=1.0, margin=0.05, max_loglik_drop=limit)
    out = optimize(init, agree, gen, AscentConfig(trust=guard, **engine), tokenizer=tok)
    for start, a, b, d in zip(init, raw.rows, out.rows, drops):
        if d > limit:
            assert b.kept and b.tokens == start and b.status.startswith("kept the input: less like the training")
        else:
            assert not b.kept and b.tokens == a.tokens and b.status == "ok"
    free = optimize(init, agree, gen, AscentConfig(trust=dataclasses.replace(guard, max_loglik_drop=math.inf),
                                                   **engine), tokenizer=tok)
    assert [r.tokens for r in free.rows] == [r.tokens for r in raw.rows]


def test_vet_moves_applies_the_likelihood_limit(setup):
    """A moved sequence is judged against its input by the same rule: refused when the generator
    finds it less likely than the limit allows; the generator is required to judge it."""
    tok, gen, rm = setup
    a, b = encode(tok, ["X:1\nK:G\nGABc|dedB|", "X:1\nK:G\nGABc|dedc|"])
    mean_ll = lambda x: float(discrete_log_likelihood(gen, torch.tensor([x]), torch.ones(1, len(x)))[0][0].detach())  # noqa: E731
    start, moved = (a, b) if mean_ll(a) > mean_ll(b) else (b, a)  # the move lowers the log-likelihood
    drop = mean_ll(start) - mean_ll(moved)
    assert drop > 1e-3
    mv = MoveResult(text="", tokens=moved, reward_before=0.0, reward_after=0.0, loglik_before=0.0, loglik_after=0.0,
                    objective_before=0.0, objective_after=0.0, moves=1, valid_after=None)
    members = ScaledMembers(rm, [1.0, 2.0, 3.0])
    guard = lambda limit: TrustConfig(max_changed=1.0, pessimism=1.0, margin=-1e9, max_loglik_drop=limit)  # noqa: E731
    assert vet_moves([start], [mv], members, tok.pad_token_id, guard(drop * 1.01), gen) == [None]
    assert vet_moves([start], [mv], members, tok.pad_token_id, guard(drop * 0.99), gen)[0].startswith("less like")
    assert vet_moves([start], [mv], members, tok.pad_token_id, guard(math.inf)) == [None]  # off: no generator needed
    with pytest.raises(ValueError, match="generator"):
        vet_moves([start], [mv], members, tok.pad_token_id, guard(drop))


def test_keeps_the_input_when_members_disagree_and_accepts_when_they_agree(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    guard = TrustConfig(max_changed=1.0, pessimism=1.0, margin=0.05)
    agree = ScaledMembers(rm, [10.0, 10.0, 10.0, 10.0])
    split = ScaledMembers(rm, [40.0, -20.0, 40.0, -20.0])  # same mean: the same ascent, members at odds
    raw = optimize(init, agree, gen, AscentConfig(trust=None, **ENGINE), tokenizer=tok)
    assert all(r.changed > 0 and r.gain_mean > 0.05 for r in raw.rows), "the test needs a clear raw gain"
    ok = optimize(init, agree, gen, AscentConfig(trust=guard, **ENGINE), tokenizer=tok)
    for a, b in zip(raw.rows, ok.rows):
        assert b.tokens == a.tokens and not b.kept and b.status == "ok"
        assert b.gain_sd == pytest.approx(0.0, abs=1e-12)
    no = optimize(init, split, gen, AscentConfig(trust=guard, **ENGINE), tokenizer=tok)
    for start, a, b in zip(init, raw.rows, no.rows):
        assert b.tokens == start and b.kept and b.changed == 0
        assert b.status.startswith("kept the input: no confident improvement")
        assert b.reward_after == b.reward_before and b.objective_after == b.objective_before
        assert b.gain_mean == pytest.approx(a.gain_mean) and b.gain_sd > b.gain_mean  # the candidate's gain, reported


def test_single_reward_model_needs_a_gain_above_the_margin(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    raw = optimize(init, rm, gen, AscentConfig(trust=None, **ENGINE), tokenizer=tok)
    top = max(r.gain_mean for r in raw.rows)
    single = lambda margin: TrustConfig(max_changed=1.0, margin=margin, single_model=True)  # noqa: E731
    high = optimize(init, rm, gen, AscentConfig(trust=single(top + 1.0), **ENGINE), tokenizer=tok)
    assert all(r.kept and r.tokens == s and math.isnan(r.gain_sd) for r, s in zip(high.rows, init))
    low = optimize(init, rm, gen, AscentConfig(trust=single(-1e9), **ENGINE), tokenizer=tok)
    assert [r.tokens for r in low.rows] == [r.tokens for r in raw.rows]


def test_a_single_reward_model_is_not_trusted_by_default(setup):
    """One model has no spread to measure its doubt: the default guard keeps every input and says why,
    even where the raw engine changed the tune and the model claims a large gain."""
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    raw = optimize(init, rm, gen, AscentConfig(trust=None, **ENGINE), tokenizer=tok)
    assert any(r.changed > 0 for r in raw.rows), "the test needs the raw engine to edit something"
    out = optimize(init, rm, gen, AscentConfig(trust=TrustConfig(max_changed=1.0, margin=-1e9), **ENGINE),
                   tokenizer=tok)
    for start, r in zip(init, out.rows):
        assert r.kept and r.tokens == start and r.changed == 0
        assert r.status.startswith("kept the input: unsure: one reward model") and "--ensemble" in r.status


def test_edit_budget_is_enforced(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    raw = optimize(init, rm, gen, AscentConfig(trust=None, **ENGINE), tokenizer=tok)
    free = [len(s) - 2 for s in init]  # BOS and EOS are frozen, every body character is free here
    cap = [int(0.15 * f) for f in free]
    assert any(r.changed > c for r, c in zip(raw.rows, cap)), "the test needs a run that edits more than the budget"
    guard = TrustConfig(max_changed=0.15, pessimism=0.0, margin=-1e9, single_model=True)
    res = optimize(init, rm, gen, AscentConfig(trust=guard,
                                               **ENGINE), tokenizer=tok)
    for r, c, s in zip(res.rows, cap, init):
        assert r.changed <= c
        assert sum(a != b for a, b in zip(r.tokens, s)) == r.changed
    assert any(r.changed > 0 for r in res.rows)  # the budget bounds the search; it does not just refuse


def test_switched_off_is_the_raw_engine(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    cfgs = [AscentConfig(trust=None, **ENGINE), AscentConfig(trust=TrustConfig(enabled=False), **ENGINE),
            AscentConfig(trust=OPEN, **ENGINE)]
    runs = [optimize(init, rm, gen, c, tokenizer=tok) for c in cfgs]
    for other in runs[1:]:
        assert [r.tokens for r in other.rows] == [r.tokens for r in runs[0].rows]
        assert [r.objective_after for r in other.rows] == [r.objective_after for r in runs[0].rows]
    assert not any(r.kept for r in runs[0].rows) and any(r.changed for r in runs[0].rows)
