"""Per-position allowed tokens in `optimize`: every scored sequence keeps to them, whatever the part."""

import math

import pytest
import torch

from ascent_doubles import encode, tiny_setup
from gradopt import (
    AscentConfig, EmbeddingPEZ, GumbelSoftmax, ObjectiveWeights, PolishConfig, SimplexEntropy, SimplexLogits,
    StraightThrough, optimize, pad_batch,
)
from gradopt._ascent import _perturb

TUNES = ["X:1\nK:G\nGABc|dedB|", "K:D\nFA|", "X:2\nM:6/8\nK:D\nFAd fed|"]
RELAXATIONS = [SimplexEntropy(init_smoothing=0.1), SimplexLogits(), GumbelSoftmax(hard=True), StraightThrough(),
               EmbeddingPEZ()]
NOISY = dict(trust=None, steps=8, check_every=2, restarts=3, restart_noise=0.6, seed=1,
             polish=PolishConfig(rounds=3, top_k=6, candidates=8))


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


class SpyReward(torch.nn.Module):
    """Records every token sequence the engine scores exactly (checks, polish candidates, final)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.seen = inner, inner.config, []

    def embedding_matrix(self):
        return self.inner.embedding_matrix()

    def score(self, ids, attention_mask=None):
        self.seen.append(ids.clone())
        return self.inner.score(ids, attention_mask)

    def score_probs(self, p, attention_mask=None):
        return self.inner.score_probs(p, attention_mask)

    def score_embeds(self, e, attention_mask=None):
        return self.inner.score_embeds(e, attention_mask)


def random_allowed(ids: torch.Tensor, v: int, seed: int, p: float = 0.3, single: float = 0.2) -> torch.Tensor:
    """(b,t,v): each token allowed with probability p, the current token always; a fraction of
    positions allow only their current token."""
    g = torch.Generator().manual_seed(seed)
    onehot = torch.nn.functional.one_hot(ids, v).bool()
    allowed = (torch.rand((*ids.shape, v), generator=g) < p) | onehot
    only = torch.rand(ids.shape, generator=g) < single
    return torch.where(only[..., None], onehot, allowed)


@pytest.mark.parametrize("relax", RELAXATIONS, ids=lambda r: type(r).__name__)
def test_every_scored_sequence_keeps_to_the_allowed_tokens(setup, relax):
    tok, gen, rm = setup
    init = encode(tok, TUNES[:1])
    ids = torch.tensor(init)
    allowed = random_allowed(ids, len(tok), seed=len(type(relax).__name__))
    spy = SpyReward(rm)
    res = optimize(init, spy, gen, AscentConfig(relaxation=relax, **NOISY), tokenizer=tok, allowed=allowed)
    seen = torch.cat(spy.seen)  # (n, t): every restart's checks, every polish candidate, the final rows
    ok = allowed[0, torch.arange(ids.shape[1]), seen]  # (n, t)
    assert ok.all(), f"{int((~ok).sum())} disallowed placements"
    single = allowed[0].sum(-1) == 1
    assert (seen[:, single] == ids[0, single]).all()  # single-token sets never change
    assert (seen != ids).any()  # restarts with noise did move tokens (the check is not vacuous)
    assert (seen == torch.tensor(res.rows[0].tokens)).all(-1).any()  # the returned row was among them


@pytest.mark.parametrize("relax", [SimplexEntropy(init_smoothing=0.1), GumbelSoftmax(), EmbeddingPEZ()],
                         ids=lambda r: type(r).__name__)
def test_an_all_true_mask_gives_the_same_results_as_none(setup, relax):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    ids, _ = pad_batch(init, tok.pad_token_id)
    cfg = AscentConfig(relaxation=relax, objective=ObjectiveWeights(kl_weight=0.2, entropy_weight=0.1), **NOISY)
    a = optimize(init, rm, gen, cfg, tokenizer=tok)
    b = optimize(init, rm, gen, cfg, tokenizer=tok, allowed=torch.ones((*ids.shape, len(tok)), dtype=torch.bool))
    for x, y in zip(a.rows, b.rows):
        assert x.tokens == y.tokens and x.restart == y.restart
        # The two routes run different (but mathematically identical) masking code, so scores may
        # differ in the last bits across BLAS builds; 1e-9 relative is far below any real change.
        assert x.reward_after == pytest.approx(y.reward_after, rel=1e-9, abs=1e-12)
        assert x.objective_after == pytest.approx(y.objective_after, rel=1e-9, abs=1e-12)
        assert [s["soft"] for s in x.trajectory] == pytest.approx([s["soft"] for s in y.trajectory], rel=1e-9, abs=1e-12)


def test_single_token_sets_behave_as_frozen_positions(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    ids, _ = pad_batch(init, tok.pad_token_id)
    freeze = torch.zeros(ids.shape, dtype=torch.bool)
    freeze[:, 2:6] = True
    allowed = torch.ones((*ids.shape, len(tok)), dtype=torch.bool)
    allowed[:, 2:6] = torch.nn.functional.one_hot(ids[:, 2:6], len(tok)).bool()
    cfg = AscentConfig(relaxation=GumbelSoftmax(), objective=ObjectiveWeights(lm_weight=0.0, kl_weight=0.01), **NOISY)
    a = optimize(init, rm, gen, cfg, tokenizer=tok, freeze=freeze)
    b = optimize(init, rm, gen, cfg, tokenizer=tok, allowed=allowed)
    for start, x, y in zip(init, a.rows, b.rows):
        assert x.tokens == y.tokens and x.objective_after == y.objective_after
        assert y.tokens[2:6] == start[2:6]
    assert any(row.changed for row in b.rows)


def test_batched_equals_one_by_one_with_per_row_masks(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    ids, _ = pad_batch(init, tok.pad_token_id)
    allowed = random_allowed(ids, len(tok), seed=5, p=0.5)
    cfg = AscentConfig(relaxation=SimplexLogits(), **NOISY)
    batched = optimize(init, rm, gen, cfg, tokenizer=tok, allowed=allowed)
    for i, row in enumerate(init):
        alone = optimize([row], rm, gen, cfg, tokenizer=tok, allowed=allowed[i : i + 1, : len(row)]).rows[0]
        assert alone.tokens == batched.rows[i].tokens and alone.restart == batched.rows[i].restart
        assert math.isclose(alone.objective_after, batched.rows[i].objective_after, abs_tol=1e-9)


def test_bad_masks_are_clear_errors(setup):
    tok, gen, rm = setup
    init = encode(tok, TUNES)
    ids, _ = pad_batch(init, tok.pad_token_id)
    v = len(tok)
    cfg = AscentConfig(steps=1, polish=PolishConfig(rounds=0))
    expected = rf"allowed mask has shape \(3, 11, {v}\), expected \(b, t, v\) = \(3, {ids.shape[1]}, {v}\)"
    with pytest.raises(ValueError, match=expected):
        optimize(init, rm, gen, cfg, tokenizer=tok, allowed=torch.ones(3, 11, v, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor"):
        optimize(init, rm, gen, cfg, tokenizer=tok, allowed=torch.ones(3, ids.shape[1], v))
    allowed = torch.ones((*ids.shape, v), dtype=torch.bool)
    allowed[1, 3, ids[1, 3]] = False
    with pytest.raises(ValueError, match=r"row 1, position 3: its current token \d+ \('D'\) is not in"):
        optimize(init, rm, gen, cfg, tokenizer=tok, allowed=allowed)
    freeze = torch.zeros(ids.shape, dtype=torch.bool)
    freeze[1, 3] = True  # a frozen position may hold a token outside its set: it never changes
    optimize(init, rm, gen, cfg, tokenizer=tok, allowed=allowed, freeze=freeze)


def test_restart_noise_draws_each_position_from_its_own_set():
    g = torch.Generator().manual_seed(0)
    b, t, v = 4, 30, 12
    allowed = torch.rand(b, t, v, generator=g) < 0.25
    allowed[..., 0] = True
    ids = torch.zeros(b, t, dtype=torch.long)  # token 0 is allowed everywhere
    free = torch.rand(b, t, generator=g) < 0.7
    gens = [torch.Generator().manual_seed(i) for i in range(b)]
    out = _perturb(ids, free, allowed, gens, 1.0)
    assert allowed.gather(-1, out[..., None]).all()
    assert torch.equal(out[~free], ids[~free]) and (out[free] != 0).any()
