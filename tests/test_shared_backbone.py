"""A reward model that is a probe on the frozen generator shares its transformer: the engine then
runs one forward pass for both, and must get what two separate passes give."""

import pytest
import torch

import gradopt
import rewardmodels
from ascent_doubles import TEXTS, encode, tiny_setup


@pytest.fixture(scope="module")
def probe_setup():
    tok, gen, _ = tiny_setup()
    torch.manual_seed(3)
    rm = rewardmodels.RewardModel.from_generator(gen, pooling="mean").double().eval()
    torch.nn.init.normal_(rm.head.weight, std=1.0)
    return tok, gen, rm


def test_detects_shared_weights(probe_setup):
    tok, gen, rm = probe_setup
    assert gradopt.shared_backbone(rm, gen)
    other = rewardmodels.RewardModel.from_generator(gen).double()
    with torch.no_grad():
        other.transformer.h[0].mlp.c_fc.weight[0, 0] += 1e-3
    assert not gradopt.shared_backbone(other, gen)
    assert not gradopt.shared_backbone(tiny_setup()[2], gen)  # a reward model without score_hidden


def test_one_pass_equals_two(probe_setup):
    tok, gen, rm = probe_setup
    ids, mask = gradopt.pad_batch(encode(tok, TEXTS), tok.pad_token_id)
    one = gradopt.score_sequences(rm, gen, ids, mask, shared=True)
    two = gradopt.score_sequences(rm, gen, ids, mask, shared=False)
    for a, b in zip(one, two):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.allclose(one[0], rm.score(ids, mask), atol=1e-10)
    # the relaxed objective and its gradient, at a soft point
    torch.manual_seed(0)
    _soft_pass_equals_two(rm, gen, mask, torch.softmax(torch.randn(*ids.shape, len(tok), dtype=torch.float64) * 3, -1))


def _soft_pass_equals_two(rm, gen, mask, probs):
    """relaxed_terms at probs: reward, likelihood and the gradient in p agree with and without the
    shared pass."""
    v = probs.shape[-1]
    free, start = mask.bool(), torch.full_like(probs, 1.0 / v)
    w = gradopt.ObjectiveWeights(lm_weight=2.0)
    out = []
    for shared in (True, False):
        p = probs.clone().requires_grad_(True)
        terms = gradopt.relaxed_terms(rm, gen, gradopt.Relaxed(probs=p), mask, start, free, w, shared=shared)
        (g,) = torch.autograd.grad(terms.total(w, 1.0).sum(), p)
        out.append((terms.reward.detach(), terms.loglik.detach(), g))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_optimize_gives_the_same_result_with_and_without_the_shared_pass(probe_setup, monkeypatch):
    tok, gen, rm = probe_setup
    cfg = gradopt.AscentConfig(steps=4, check_every=2, polish=gradopt.PolishConfig(rounds=2, candidates=4))
    fast = gradopt.optimize(encode(tok, TEXTS), rm, gen, cfg, tokenizer=tok)
    monkeypatch.setattr(gradopt._ascent, "shared_backbone", lambda *a: False)
    slow = gradopt.optimize(encode(tok, TEXTS), rm, gen, cfg, tokenizer=tok)
    for a, b in zip(fast.rows, slow.rows):
        assert a.tokens == b.tokens
        assert a.reward_after == pytest.approx(b.reward_after, abs=1e-9)
        assert a.loglik_after == pytest.approx(b.loglik_after, abs=1e-9)


ABC_TUNES = ["X:1\nM:3/4\nL:1/8\nK:D\nF2 A2 d2|c4 B2|d6|\n", "X:1\nM:2/4\nL:1/8\nK:G\nGA Bc|d2 B2|\n",
             "X:1\nM:3/4\nL:1/8\nK:Am\nA2 ^G2 A2|e6|\n"]


def _abc_model(kind: str):
    """(tok, gen, reward model) on a tiny ABC generator: a probe-like model of `kind` whose transformer
    is the generator's and whose annotation channel W_a is zero (as after a probe fit)."""
    import domains

    tok = domains.build_tokenizer(ABC_TUNES, "char")
    torch.manual_seed(0)
    gen = domains.build_generator("tiny", tok).double().eval()
    music = {"annotations": "abc", "token_texts": rewardmodels.token_texts(tok), "annotation_features": True}
    if kind == "annotated":
        rm = rewardmodels.RewardModel.from_generator(gen, pooling="mean", **music)
    elif kind == "bars":
        rm = rewardmodels.RewardModel.from_generator(gen, pooling="bars", bar_ids=rewardmodels.bar_token_ids(tok))
    else:
        rm = rewardmodels.RewardEnsemble.from_generator(gen, pooling="mean", members=3, pessimism=0.5, **music)
    with torch.no_grad():
        torch.nn.init.normal_(rm.head.weight, std=1.0)
    return tok, gen, rm.double().eval()


@pytest.mark.parametrize("kind", ["annotated", "bars", "ensemble"])
def test_annotated_and_bar_models_share_the_pass_and_agree(kind):
    import domains

    tok, gen, rm = _abc_model(kind)
    assert gradopt.shared_backbone(rm, gen)
    ids, mask = domains.encode_batch(tok, ABC_TUNES)
    one = gradopt.score_sequences(rm, gen, ids, mask, shared=True)
    two = gradopt.score_sequences(rm, gen, ids, mask, shared=False)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    torch.testing.assert_close(one[0], rm.score(ids, mask), atol=1e-10, rtol=0)
    # soft point: reward, likelihood and the gradient (soft bars are differentiable in p)
    torch.manual_seed(1)
    v = len(tok)
    _soft_pass_equals_two(rm, gen, mask, torch.softmax(torch.nn.functional.one_hot(ids, v).double() * 4
                                                       + torch.randn(*ids.shape, v), -1))


def test_an_annotation_channel_in_use_keeps_the_passes_apart():
    import domains

    tok, gen, rm = _abc_model("annotated")
    with torch.no_grad():
        rm.annotation_proj.weight.normal_(std=0.3)  # the transformer now reads the annotations
    assert not rm.reads_plain_embeddings and not gradopt.shared_backbone(rm, gen)
    ids, mask = domains.encode_batch(tok, ABC_TUNES)
    h = gen.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    with pytest.raises(ValueError, match="W_a is not zero"):
        rm.score_from_hidden(h, mask, ids=ids)
    with pytest.raises(ValueError, match="exactly one"):
        rewardmodels.RewardModel.from_generator(gen).score_from_hidden(h, mask)
