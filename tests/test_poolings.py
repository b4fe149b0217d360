"""The attention and per-bar poolings of the reward model: one code path for ids / probabilities /
embeddings, gradients through the soft bar positions, what each bar slot reads, save/load, probes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config

from rewardmodels import (BAR_POOLINGS, RewardEnsemble, RewardModel, bar_pool, bar_token_ids, fit_ensemble,
                          fit_head, load_reward_model)

torch.set_num_threads(1)

BAR = 3  # the bar-line token of the tiny vocabulary
NEW = ["attention", "bars", "mean+last+bars"]


def _config():
    return GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _model(pooling, seed=0, cls=RewardModel, **kw):
    torch.manual_seed(seed)
    m = cls(_config(), pooling, bar_ids=[BAR] if pooling in BAR_POOLINGS else None, **kw)
    with torch.no_grad():
        m.head.weight.normal_()
        if pooling == "attention":
            m.query.normal_()  # away from 0, where attention pooling is plain mean pooling
    return m.eval()


def _batch():
    """Rows <bos> bar | bar | bar <eos>, right-padded; the third row has no bar line at all."""
    ids = torch.tensor([[1, 5, 6, 3, 7, 8, 3, 9, 4, 3, 2],
                        [1, 4, 3, 5, 5, 3, 2, 0, 0, 0, 0],
                        [1, 4, 5, 6, 2, 0, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    return ids, mask


@pytest.mark.parametrize("pooling", NEW)
def test_three_routes_agree(pooling):
    m = _model(pooling)
    ids, mask = _batch()
    r_ids = m.score(ids, mask)
    torch.testing.assert_close(m.score_probs(F.one_hot(ids, 11).float(), mask), r_ids, atol=1e-5, rtol=0)
    torch.testing.assert_close(m.score_embeds(m.embedding_matrix()[ids], mask), r_ids, atol=1e-5, rtol=0)
    torch.testing.assert_close(m.predict(ids, mask, batch_size=2), r_ids.detach(), atol=1e-5, rtol=0)
    alone = torch.stack([m.score(ids[i : i + 1, : int(mask[i].sum())]) for i in range(3)])[:, 0]
    torch.testing.assert_close(alone, r_ids, atol=1e-5, rtol=0)  # padding is ignored


@pytest.mark.parametrize("pooling", NEW)
def test_gradient_reaches_the_neighbours_of_a_bar_line(pooling):
    m = _model(pooling)
    ids, mask = _batch()
    p = F.one_hot(ids, 11).float().requires_grad_()
    m.score_probs(p, mask).sum().backward()
    assert torch.isfinite(p.grad).all()
    for t in (2, 4, 8, 10):  # either side of the bar lines at 3 and 9 of the first row
        assert p.grad[0, t].abs().sum() > 0, t
    assert p.grad[1, 8].abs().sum() == 0  # padding gets no gradient


@pytest.mark.parametrize("pooling", BAR_POOLINGS)
def test_soft_bar_positions_are_differentiable(pooling):
    """score_probs reads the bar positions from p itself: its gradient on the bar-token column
    differs from that of the same model with the bars held fixed, and it passes gradcheck."""
    m = _model(pooling).double()
    ids, mask = _batch()
    p = F.one_hot(ids, 11).double().requires_grad_()
    m.score_probs(p, mask).sum().backward()
    q = p.detach().clone().requires_grad_()
    m.score_embeds(q @ m.embedding_matrix(), mask, bars=m.bars_from_ids(ids)).sum().backward()
    assert not torch.allclose(p.grad[..., BAR], q.grad[..., BAR])
    torch.testing.assert_close(p.grad[..., 4], q.grad[..., 4])  # other columns: only through p @ E
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: m.score_probs(torch.softmax(z, -1), mask[:2, :6]), (logits,))


def test_attention_gradcheck_and_mean_at_zero_query():
    m = _model("attention").double()
    ids, mask = _batch()
    torch.manual_seed(0)
    e = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: m.score_embeds(x, mask[:2, :6]), (e,))
    with torch.no_grad():
        m.query.zero_()
    h = m.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    mean = torch.stack([h[i, : int(n)].mean(0) for i, n in enumerate(mask.sum(1))])
    torch.testing.assert_close(m.pool_hidden(h, mask), mean)


def test_bar_slots_read_their_own_bars():
    """"bars" features = [mean over bars, last bar, first bar]; the last bar is the one its last bar
    line closes, with what follows it (newline, EOS); a row without bar lines is one bar."""
    torch.manual_seed(0)
    ids, mask = _batch()
    h = torch.randn(3, 11, 4, dtype=torch.float64)
    feats = bar_pool(h, mask, (ids == BAR).double())
    segments = [[range(0, 4), range(4, 7), range(7, 11)], [range(0, 3), range(3, 7)], [range(0, 5)]]
    for i, bars in enumerate(segments):
        means = [h[i, list(r)].mean(0) for r in bars]
        torch.testing.assert_close(feats[i], torch.cat([torch.stack(means).mean(0), means[-1], means[0]]))
    # Changing the hidden states of the first bar moves the first-bar slot, never the last-bar one.
    h2 = h.clone()
    h2[:2, :3] += 1.0
    feats2 = bar_pool(h2, mask, (ids == BAR).double())
    torch.testing.assert_close(feats2[:2, 4:8], feats[:2, 4:8])
    assert (feats2[:2, 8:] - feats[:2, 8:]).abs().min() > 0.1


def test_a_change_in_the_last_bar_moves_only_the_last_bar_slot():
    m = _model("bars")
    ids, mask = _batch()
    changed = ids.clone()
    changed[0, 7] = 5  # a note of the last bar
    d = 8
    a, b = m.features(ids, mask), m.features(changed, mask)
    assert (a[0, d : 2 * d] - b[0, d : 2 * d]).abs().max() > 1e-4  # the last bar's slot moves
    torch.testing.assert_close(a[0, 2 * d :], b[0, 2 * d :])  # the first bar's does not (causal backbone)
    torch.testing.assert_close(a[1:], b[1:])


@pytest.mark.parametrize("pooling", NEW)
def test_save_load_round_trip(tmp_path, pooling):
    m = _model(pooling)
    ids, mask = _batch()
    m.calibrate(ids, mask)
    m.save_pretrained(tmp_path / "rm")
    back = load_reward_model(tmp_path / "rm")
    assert type(back) is RewardModel and back.pooling == pooling
    assert back.bar_ids == ([BAR] if pooling in BAR_POOLINGS else [])
    torch.testing.assert_close(back.score(ids, mask), m.score(ids, mask), atol=0, rtol=0)


@pytest.mark.parametrize("pooling", NEW)
def test_ensemble_round_trip(tmp_path, pooling):
    ens = _model(pooling, cls=RewardEnsemble, members=3, pessimism=0.5)
    ids, mask = _batch()
    ens.calibrate(ids, mask)
    r = ens.score(ids, mask)
    torch.testing.assert_close(ens.score_probs(F.one_hot(ids, 11).float(), mask), r, atol=1e-5, rtol=0)
    ens.save_pretrained(tmp_path / "ens")
    back = load_reward_model(tmp_path / "ens")
    assert isinstance(back, RewardEnsemble) and back.pooling == pooling and back.members == 3
    torch.testing.assert_close(back.score(ids, mask), r, atol=0, rtol=0)
    torch.testing.assert_close(back.predict_members(ids, mask), ens.predict_members(ids, mask), atol=0, rtol=0)


def test_bar_poolings_need_bar_ids_and_have_no_hidden_route():
    with pytest.raises(ValueError, match="bar_token_ids"):
        RewardModel(_config(), "bars")
    with pytest.raises(ValueError, match="out of range"):
        RewardModel(_config(), "bars", bar_ids=[11])
    m = _model("bars")
    assert not hasattr(m, "score_hidden")  # the engine then scores through score_probs / score_embeds
    assert hasattr(_model("attention"), "score_hidden") and hasattr(_model("mean"), "score_hidden")
    h = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="bar positions"):
        m.pool_hidden(h, torch.ones(1, 4))


def test_bar_token_ids_lists_tokens_with_a_bar_line():
    from domains import build_char_tokenizer

    tok = build_char_tokenizer(["X:1\nK:G\nGA|Bc:|\n"])
    assert [tok.decode([i]) for i in bar_token_ids(tok)] == ["|"]


def _attention_data(n=40, seed=0):
    """Targets that count token 4 in a row: mean pooling blurs them, attention can pick them out."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 11, (n, 9), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2
    return ids, torch.ones_like(ids), (ids == 4).sum(1).double().numpy()


def test_probe_trains_the_attention_query():
    ids, mask, y = _attention_data()
    torch.manual_seed(0)
    att = RewardModel(_config(), "attention").eval()
    backbone = {k: v.clone() for k, v in att.transformer.state_dict().items()}
    fit_head(att, ids, mask, y, l2=1.0)
    assert att.query.abs().sum() > 0 and att.query.grad is None
    for k, v in att.transformer.state_dict().items():
        assert torch.equal(v, backbone[k]), k
    torch.manual_seed(0)
    mean = RewardModel(_config(), "mean").eval()
    fit_head(mean, ids, mask, y, l2=1.0)
    err = lambda m: float(np.mean((m.predict(ids, mask, raw=True).numpy() - y) ** 2))  # noqa: E731
    assert err(att) < err(mean)  # q = 0 is the mean probe; the trained query fits better
    fit_head(att, ids, mask, y, l2=1.0, query_steps=0)  # query_steps=0: the head only, at the learned query
    ens = RewardEnsemble(_config(), "attention", members=3).eval()
    fit_ensemble(ens, ids, mask, y, l2=1.0)
    assert ens.query.abs().sum() > 0


@pytest.mark.parametrize("members", [0, 3])
def test_train_from_store_gives_bar_poolings_their_bar_ids(tmp_path, members):
    """The store-level trainer builds bar-pooled models (single and ensemble) with the tokenizer's
    bar-line ids; without them the bar poolings cannot be built at all."""
    import domains
    import rewardmodels as rm
    from ascent_doubles import TEXTS, save_tiny_models

    tok = domains.build_char_tokenizer(TEXTS)
    gen = save_tiny_models(tmp_path, tok, 64)
    store = rm.RatingStore(tmp_path / "store")
    items = store.add_items(TEXTS + ["X:3\nM:4/4\nK:G\nGABc|dedB|\n"], origin="corpus")
    rm.rate_pairs(store, [(items[0].id, items[1].id), (items[1].id, items[2].id)], rm.SimulatedRater())
    model, _ = rm.train_from_store(store, gen, tok, rm.fit_store(store), probe=True, pooling="bars", members=members)
    assert model.pooling == "bars" and list(model.bar_ids) == rm.bar_token_ids(tok)
