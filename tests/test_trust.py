"""The do-no-harm guard: an edit replaces the input only with a confident gain within the edit budget."""

import math

import pytest
import torch

from ascent_doubles import encode, tiny_setup
from gradopt import AscentConfig, PolishConfig, TrustConfig, edit_budget, gain_stats, optimize, verdict

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
