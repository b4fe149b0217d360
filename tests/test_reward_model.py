"""Reward model: one code path for ids / probabilities / embeddings, gradients, save/load, training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from rewardmodels import (
    RewardModel, TrainConfig, bradley_terry_loss, bt_regression_loss, train_pairwise, train_reward_model,
)

torch.set_num_threads(1)  # tiny models: threading overhead dominates on a shared 2-core machine


def _config(**kw):
    base = dict(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2Config(**{**base, **kw})


def _model(seed=0):
    torch.manual_seed(seed)
    return RewardModel(_config()).eval()


def _batch():
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 2, 0, 0, 0], [1, 4, 4, 4, 4, 4, 2]])
    mask = (torch.arange(7)[None] < torch.tensor([5, 4, 7])[:, None]).long()
    return ids, mask


def test_three_routes_agree():
    m = _model()
    ids, mask = _batch()
    r_ids = m.score(ids, mask)
    r_probs = m.score_probs(F.one_hot(ids, 11).float(), mask)
    r_emb = m.score_embeds(m.embedding_matrix()[ids], mask)
    assert r_ids.shape == (3,)
    torch.testing.assert_close(r_ids, r_probs)
    torch.testing.assert_close(r_ids, r_emb)
    assert m.embedding_matrix().shape == (11, 8)


def test_pools_last_real_token_so_padding_is_ignored():
    m = _model()
    ids, mask = _batch()
    alone = torch.stack([m.score(ids[i : i + 1, : int(mask[i].sum())]) for i in range(3)])[:, 0]
    torch.testing.assert_close(m.score(ids, mask), alone)
    changed = ids.clone()
    changed[0, 6] = 9  # a different token under the padding
    torch.testing.assert_close(m.score(changed, mask), m.score(ids, mask))
    batched = m.predict(ids, mask, batch_size=2)
    torch.testing.assert_close(batched, m.score(ids, mask).detach())


def test_gradcheck_soft_inputs_float64():
    m = _model().double()
    ids, mask = _batch()
    logits = torch.randn(2, 5, 11, dtype=torch.float64, requires_grad=True)
    small_mask = mask[:2, :5]
    assert torch.autograd.gradcheck(lambda z: m.score_probs(torch.softmax(z, -1), small_mask), (logits,))
    e = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: m.score_embeds(x, small_mask), (e,))
    p = torch.softmax(logits.detach(), -1).requires_grad_()
    m.score_probs(p, small_mask).sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert p.grad[1, 4].abs().sum() == 0  # padding gets no gradient


def test_from_generator_copies_transformer():
    torch.manual_seed(1)
    gen = GPT2LMHeadModel(_config())
    m = RewardModel.from_generator(gen)
    for k, v in gen.transformer.state_dict().items():
        torch.testing.assert_close(m.transformer.state_dict()[k], v)


def test_save_load_round_trip(tmp_path):
    m = _model()
    ids, mask = _batch()
    m.calibrate(ids, mask)
    m.save_pretrained(tmp_path / "rm")
    back = RewardModel.from_pretrained(tmp_path / "rm")
    torch.testing.assert_close(back.score(ids, mask), m.score(ids, mask))
    assert float(back.norm_std) == pytest.approx(float(m.norm_std))
    with pytest.raises(FileNotFoundError, match="train-reward"):
        RewardModel.from_pretrained(tmp_path / "nothing")


def test_calibration_gives_mean0_sd1():
    m = _model()
    ids, mask = _batch()
    m.calibrate(ids, mask)
    r = m.score(ids, mask).detach()
    assert float(r.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(r.std()) == pytest.approx(1.0, abs=1e-4)


def test_clear_errors():
    m = _model()
    with pytest.raises(ValueError, match="context"):
        m.score(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        m.score(torch.full((1, 3), 11))
    with pytest.raises(ValueError, match="token classes"):
        m.score_probs(torch.rand(1, 3, 7))


def test_losses_match_naive():
    r_w, r_l = torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.0, 0.5, 0.2])
    naive = np.mean([np.log1p(np.exp(-(a - b))) for a, b in zip(r_w.tolist(), r_l.tolist())])
    assert float(bradley_terry_loss(r_w, r_l)) == pytest.approx(naive, rel=1e-6)
    tie = torch.tensor([False, False, True])
    assert float(bradley_terry_loss(r_w, r_l, tie)) == pytest.approx(
        (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(1.0)) + np.log(2)) / 3, rel=1e-6)
    w = torch.tensor([1.0, 3.0, 0.0])
    assert float(bt_regression_loss(r_w, r_l, w)) == pytest.approx((1 * 1 + 3 * 1) / 4)


def _toy_data(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 10, (n,), generator=g)
    ids = torch.randint(3, 11, (n, 10), generator=g)
    ids[:, 0] = 1
    mask = (torch.arange(10)[None] < lengths[:, None]).long()
    ids[torch.arange(n), lengths - 1] = 2
    ids = ids.masked_fill(mask == 0, 0)
    utility = ((ids == 5).sum(1) - (ids == 6).sum(1)).float()  # a learnable hidden score
    return ids, mask, utility


def test_regression_training_changes_every_parameter_and_fits():
    ids, mask, u = _toy_data()
    m = _model()
    before = {k: v.clone() for k, v in m.named_parameters()}
    losses = train_reward_model(m, ids, mask, u.numpy(), np.ones(len(u)),
                                TrainConfig(steps=80, batch_size=12, lr=5e-3, warmup=5))
    changed = [k for k, v in m.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    r = m.score(ids, mask).detach()
    assert np.corrcoef(r.numpy(), u.numpy())[0, 1] > 0.7


def test_pairwise_training_learns_order():
    ids, mask, u = _toy_data(seed=1)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 24, 300), rng.integers(0, 24, 300)
    keep = u[i] != u[j]
    pairs = np.where((u[i] > u[j]).numpy()[:, None], np.stack([i, j], 1), np.stack([j, i], 1))[keep.numpy()]
    m = _model()
    losses = train_pairwise(m, ids, mask, pairs, cfg=TrainConfig(steps=80, batch_size=16, lr=5e-3, warmup=5))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    r = m.score(ids, mask).detach()
    assert np.mean((r[pairs[:, 0]] > r[pairs[:, 1]]).numpy()) > 0.75


def test_train_config_validates():
    with pytest.raises(ValueError):
        TrainConfig(steps=0)
    with pytest.raises(ValueError):
        TrainConfig(lr=-1.0)
