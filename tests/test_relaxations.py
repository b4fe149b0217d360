import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ascent_doubles import encode, tiny_setup
from gradopt import (
    EmbeddingPEZ, GumbelSoftmax, ObjectiveWeights, RelaxContext, Relaxed, SimplexEntropy, SimplexLogits,
    StraightThrough, discrete_terms, make_relaxation, pad_batch, relaxed_terms, smoothed_start,
)
from gradopt._models import frozen_models
from gradopt._relax import masked_softmax


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_temperature_to_zero_gives_one_hot(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    top2 = logits.topk(2, -1).values
    assume(float((top2[..., 0] - top2[..., 1]).min()) > 1e-3)  # no near-ties
    allowed = torch.ones(6, dtype=torch.bool)
    p = masked_softmax(logits, allowed, 1e-5)
    assert torch.allclose(p, F.one_hot(logits.argmax(-1), 6).double(), atol=1e-8)


def test_logits_relaxation_end_temperature_sharpens():
    ctx = RelaxContext(allowed=torch.ones(5, dtype=torch.bool), embedding=torch.eye(5, dtype=torch.float64))
    logits = torch.tensor([[[0.3, 0.1, 0.0, -0.2, 0.25]]], dtype=torch.float64)
    hot = SimplexLogits(tau_start=1.0, tau_end=1e-4).relax(logits, ctx, 1.0).probs
    assert torch.allclose(hot, F.one_hot(torch.tensor([[0]]), 5).double(), atol=1e-8)


@pytest.fixture(scope="module")
def setup():
    tok, gen, rm = tiny_setup()
    ids, mask = pad_batch(encode(tok, ["X:1\nK:G\nGABc|", "K:D\nFA|"]), tok.pad_token_id)
    return tok, gen, rm, ids, mask


def _vertex_param(relax, onehot, ctx):
    if isinstance(relax, (SimplexLogits, GumbelSoftmax, StraightThrough)):
        return onehot * 1e4  # softmax of such logits is exactly one-hot in float64
    return relax.init(onehot, ctx)


@pytest.mark.parametrize("relax", [SimplexEntropy(), SimplexLogits(), StraightThrough(), EmbeddingPEZ(),
                                   GumbelSoftmax(hard=True)])
def test_relaxed_objective_equals_discrete_at_vertices(setup, relax):
    tok, gen, rm, ids, mask = setup
    v = len(tok)
    emb = rm.embedding_matrix().detach()
    ctx = RelaxContext(allowed=torch.ones(v, dtype=torch.bool), embedding=emb,
                       noise=lambda: torch.full((*ids.shape, v), 0.5, dtype=torch.float64))
    onehot = F.one_hot(ids, v).double()
    w = ObjectiveWeights(lm_weight=0.7, kl_weight=0.3)
    free = mask.bool()
    start = smoothed_start(onehot, ctx.allowed, w.kl_smoothing)
    param = _vertex_param(relax, onehot, ctx)
    assert torch.equal(relax.discretize(param, ctx), ids)
    soft = relaxed_terms(rm, gen, relax.relax(param, ctx, 1.0), mask, start, free, w).total(w, 1.0)
    exact, _ = discrete_terms(rm, gen, ids, mask, start, free, w)
    assert torch.allclose(soft, exact.total(w, 1.0), atol=1e-10)


@pytest.mark.parametrize("name", ["simplex", "logits", "gumbel", "straight-through", "embedding"])
def test_gradients_reach_the_parameter_through_both_models(setup, name):
    tok, gen, rm, ids, mask = setup
    v = len(tok)
    g = torch.Generator().manual_seed(0)
    ctx = RelaxContext(allowed=torch.ones(v, dtype=torch.bool), embedding=rm.embedding_matrix().detach(),
                       noise=lambda: torch.rand((*ids.shape, v), generator=g, dtype=torch.float64))
    relax = make_relaxation(name)
    param = relax.init(F.one_hot(ids, v).double(), ctx).requires_grad_(True)
    w_lm = ObjectiveWeights(lm_weight=1.0)
    start = smoothed_start(F.one_hot(ids, v).double(), ctx.allowed, 0.1)
    # As in the engine, both models are frozen while the objective is built and differentiated.
    with frozen_models(gen, rm):
        rel = relax.relax(param, ctx, 0.5)
        # LM term alone must move the parameter (the PPLM gradient is not detached from the input).
        lm = relaxed_terms(rm, gen, rel, mask, start, mask.bool(), w_lm).loglik.sum()
        (grad,) = torch.autograd.grad(lm, param, retain_graph=True)
        lm.backward()  # fills param.grad with the same gradient, and no model weight's .grad
    assert grad.shape == param.shape
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.allclose(param.grad, grad)
    for m in (gen, rm):
        assert all(w.grad is None for w in m.parameters())
    # Every real position is moved (as a predicted token or as context); padding is not part of
    # the sequence and gets exactly zero.
    moved = grad.abs().flatten(2).sum(-1) > 0  # (b, t)
    assert torch.equal(moved, mask.bool()), moved


def test_simplex_constrain_lands_on_simplex_and_respects_allowed():
    allowed = torch.tensor([False, True, True, True])
    ctx = RelaxContext(allowed=allowed, embedding=torch.eye(4, dtype=torch.float64))
    x = torch.tensor([[[0.5, 0.4, 0.35, 0.3]]], dtype=torch.float64)
    relax = SimplexEntropy(entropy_start=0.2, entropy_end=0.0)
    p = relax.constrain(x, ctx, 0.0)
    assert p[..., 0] == 0 and torch.allclose(p.sum(-1), torch.ones(1, 1, dtype=torch.float64))
    assert float(1 - (p * p).sum()) <= 0.2 + 1e-9
    assert torch.allclose(relax.constrain(x, ctx, 1.0), F.one_hot(torch.tensor([[1]]), 4).double())


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError):
        SimplexLogits(tau_end=0.0)
    with pytest.raises(ValueError):
        SimplexEntropy(entropy_start=1.5)
    with pytest.raises(ValueError):
        make_relaxation("nope")
    with pytest.raises(ValueError):
        GumbelSoftmax().relax(torch.zeros(1, 1, 2), RelaxContext(allowed=torch.ones(2, dtype=torch.bool),
                                                                  embedding=torch.eye(2)), 0.0)


@pytest.mark.parametrize("relax", [SimplexEntropy(init_smoothing=0.2), SimplexLogits(), GumbelSoftmax(),
                                   GumbelSoftmax(hard=True), StraightThrough(), EmbeddingPEZ()])
def test_per_position_allowed_sets_hold_in_every_method(relax):
    g = torch.Generator().manual_seed(0)
    b, t, v, d = 2, 5, 7, 3
    ids = torch.randint(v, (b, t), generator=g)
    allowed = (torch.rand(b, t, v, generator=g) < 0.4) | F.one_hot(ids, v).bool()
    allowed[:, 0] = F.one_hot(ids[:, 0], v).bool()  # a single-token position
    ctx = RelaxContext(allowed=allowed, embedding=torch.randn(v, d, generator=g, dtype=torch.float64),
                       noise=lambda: torch.rand((b, t, v), generator=g, dtype=torch.float64))
    param = relax.init(F.one_hot(ids, v).double(), ctx)
    for step in range(3):  # random moves: the method, not the start, must keep to the sets
        param = param + torch.randn(param.shape, generator=g, dtype=torch.float64)
        param = relax.constrain(param, ctx, step / 2)
        probs = relax.relax(param, ctx, step / 2).probs
        assert torch.isfinite(probs).all() and (probs[~allowed] == 0).all()
        assert allowed.gather(-1, relax.discretize(param, ctx)[..., None]).all()
