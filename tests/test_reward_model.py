"""Reward model: one code path for ids / probabilities / embeddings, gradients, save/load, training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from hypothesis import given, settings
from hypothesis import strategies as st

from rewardmodels import (
    RewardModel, RewardTrainConfig, bradley_terry_loss, bt_regression_loss, fit_head, group_folds, train_pairwise,
    train_reward_model,
)
from rewardmodels._train import lr_factor

torch.set_num_threads(1)  # tiny models: threading overhead dominates on a shared 2-core machine


def _config(**kw):
    base = dict(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2Config(**{**base, **kw})


def _model(seed=0, pooling="last"):
    torch.manual_seed(seed)
    return RewardModel(_config(), pooling).eval()


def _batch():
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 2, 0, 0, 0], [1, 4, 4, 4, 4, 4, 2]])
    mask = (torch.arange(7)[None] < torch.tensor([5, 4, 7])[:, None]).long()
    return ids, mask


@pytest.mark.parametrize("pooling", ["last", "mean", "mean+last"])
def test_three_routes_agree(pooling):
    m = _model(pooling=pooling)
    ids, mask = _batch()
    r_ids = m.score(ids, mask)
    r_probs = m.score_probs(F.one_hot(ids, 11).float(), mask)
    r_emb = m.score_embeds(m.embedding_matrix()[ids], mask)
    assert r_ids.shape == (3,)
    torch.testing.assert_close(r_ids, r_probs)
    torch.testing.assert_close(r_ids, r_emb)
    assert m.embedding_matrix().shape == (11, 8)


@pytest.mark.parametrize("pooling", ["last", "mean", "mean+last"])
def test_padding_is_ignored(pooling):
    m = _model(pooling=pooling)
    ids, mask = _batch()
    alone = torch.stack([m.score(ids[i : i + 1, : int(mask[i].sum())]) for i in range(3)])[:, 0]
    torch.testing.assert_close(m.score(ids, mask), alone)
    changed = ids.clone()
    changed[0, 6] = 9  # a different token under the padding
    torch.testing.assert_close(m.score(changed, mask), m.score(ids, mask))
    batched = m.predict(ids, mask, batch_size=2)
    torch.testing.assert_close(batched, m.score(ids, mask).detach())


def test_pooling_reads_the_right_positions():
    ids, mask = _batch()
    for pooling in ("last", "mean", "mean+last"):
        m = _model(pooling=pooling)
        h = m.transformer(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, t, d)
        rows = []
        for i, n in enumerate(mask.sum(1).tolist()):
            pooled = {"last": h[i, n - 1], "mean": h[i, :n].mean(0)}
            rows.append(torch.cat([pooled["mean"], pooled["last"]]) if pooling == "mean+last" else pooled[pooling])
        torch.testing.assert_close(m.features(ids, mask), torch.stack(rows).detach())
    with pytest.raises(ValueError, match="pooling"):
        RewardModel(_config(), pooling="max")


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_gradcheck_soft_inputs_float64(pooling):
    m = _model(pooling=pooling).double()
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


@pytest.mark.parametrize("pooling", ["last", "mean", "mean+last"])
def test_save_load_round_trip(tmp_path, pooling):
    m = _model(pooling=pooling)
    ids, mask = _batch()
    m.calibrate(ids, mask)
    m.save_pretrained(tmp_path / "rm")
    back = RewardModel.from_pretrained(tmp_path / "rm")
    assert back.pooling == pooling
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
                                RewardTrainConfig(steps=80, batch_size=12, lr=5e-3, warmup=5))
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
    losses = train_pairwise(m, ids, mask, pairs, cfg=RewardTrainConfig(steps=80, batch_size=16, lr=5e-3, warmup=5))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    r = m.score(ids, mask).detach()
    assert np.mean((r[pairs[:, 0]] > r[pairs[:, 1]]).numpy()) > 0.75


def test_train_config_validates():
    with pytest.raises(ValueError):
        RewardTrainConfig(steps=0)
    with pytest.raises(ValueError):
        RewardTrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="schedule"):
        RewardTrainConfig(schedule="linear")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    cfg = RewardTrainConfig(steps=50, warmup=5, schedule="cosine")
    f = np.array([lr_factor(s, cfg) for s in range(cfg.steps + 1)])
    assert np.all(np.diff(f[:6]) > 0) and f[5] == pytest.approx(1.0)
    assert np.all(np.diff(f[5:]) <= 1e-12)
    assert f[-1] == pytest.approx(0.0, abs=1e-12)
    const = RewardTrainConfig(steps=50, warmup=5)
    assert [lr_factor(s, const) for s in range(5, 50)] == [1.0] * 45


def _linear_target_data(seed=0, n=40):
    """Toy items whose target is an exact linear function of the mean-pooled features."""
    ids, mask, _ = _toy_data(seed, n)
    m = _model(pooling="mean").double()
    X = m.features(ids, mask).numpy()
    beta = np.random.default_rng(seed).normal(size=X.shape[1])
    return m, ids, mask, X, X @ beta + 0.5


def test_fit_head_matches_least_squares_and_leaves_backbone_alone():
    m, ids, mask, X, y = _linear_target_data()
    before = {k: v.clone() for k, v in m.transformer.state_dict().items()}
    info = fit_head(m, ids, mask, y, l2=1e-9)
    assert info == {"l2": 1e-9, "cv_loss": {}}
    raw = m.predict(ids, mask, raw=True).numpy()
    A = np.c_[X, np.ones(len(X))]
    reference = A @ np.linalg.lstsq(A, y, rcond=None)[0]  # float64 least squares
    np.testing.assert_allclose(raw, reference, atol=1e-5)
    np.testing.assert_allclose(raw, y, atol=1e-4)
    for k, v in m.transformer.state_dict().items():
        assert torch.equal(v, before[k])
    r = m.predict(ids, mask)  # re-calibrated: mean 0 / SD 1 on the fitted items
    assert float(r.mean()) == pytest.approx(0.0, abs=1e-6) and float(r.std()) == pytest.approx(1.0, abs=1e-6)


def test_fit_head_cross_validation_picks_from_the_grid():
    m, ids, mask, X, y = _linear_target_data(seed=1)
    noisy = y + np.random.default_rng(0).normal(scale=0.1 * y.std(), size=len(y))
    info = fit_head(m, ids, mask, noisy, l2=(1e-6, 1e4))
    assert set(info["cv_loss"]) == {1e-6, 1e4}
    assert info["l2"] == 1e-6  # a near-exact linear target wants (almost) no shrinkage
    with pytest.raises(ValueError, match="shape"):
        fit_head(m, ids, mask, noisy[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        fit_head(m, ids, mask, noisy, -np.ones(len(y)))


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.01, 100.0), shift=st.floats(-5.0, 5.0))
def test_fit_head_scores_are_invariant_to_weight_scale_and_target_shift(scale, shift):
    m, ids, mask, X, y = _linear_target_data(seed=2)
    w = np.linspace(0.5, 2.0, len(y))
    fit_head(m, ids, mask, y, w, l2=10.0)
    a = m.predict(ids, mask).numpy()
    fit_head(m, ids, mask, y + shift, scale * w, l2=10.0)
    np.testing.assert_allclose(m.predict(ids, mask).numpy(), a, atol=1e-6)


# --- bad targets and cross-validation groups -------------------------------------------------

@pytest.mark.parametrize("route", ["fit_head", "train_reward_model"])
def test_non_finite_targets_or_weights_are_named(route):
    ids, mask, u = _toy_data(n=8)
    y, w = u.double().numpy(), np.ones(8)
    fit = (lambda m, y, w: fit_head(m, ids, mask, y, w, l2=1.0)) if route == "fit_head" else (
        lambda m, y, w: train_reward_model(m, ids, mask, y, w, RewardTrainConfig(steps=2, batch_size=4)))
    bad_y = y.copy()
    bad_y[[2, 5]] = [np.nan, np.inf]
    m = _model(pooling="mean")
    head = m.head.weight.detach().clone()
    with pytest.raises(ValueError, match=r"targets has 2 non-finite value\(s\) \(NaN or inf\) at item\(s\) 2, 5"):
        fit(m, bad_y, w)
    bad_w = w.copy()
    bad_w[7] = np.inf  # a zero posterior SD
    with pytest.raises(ValueError, match=r"weights has 1 non-finite value\(s\) .* item\(s\) 7"):
        fit(m, y, bad_w)
    assert torch.equal(m.head.weight, head)  # nothing was changed


def _families(n_families=12, size=3, n_embd=32, seed=0):
    """Rated items in families (an item and exact copies standing in for its edits), targets pure
    noise: a model that memorises looks perfect when a family straddles the folds."""
    rng = np.random.default_rng(seed)
    ids = torch.as_tensor(rng.integers(3, 11, size=(n_families, 6)))
    ids[:, 0], ids[:, -1] = 1, 2
    ids = ids.repeat_interleave(size, 0)
    torch.manual_seed(seed)
    m = RewardModel(_config(n_embd=n_embd), "mean").double().eval()
    y = np.repeat(rng.normal(size=n_families), size)
    return m, ids, torch.ones_like(ids), y, np.repeat(np.arange(n_families), size)


def test_fit_head_folds_keep_families_together():
    m, ids, mask, y, groups = _families()
    leaky = fit_head(m, ids, mask, y, l2=(1e-6, 1e4))  # every item its own group
    assert leaky["l2"] == 1e-6 and leaky["cv_loss"][1e-6] < 1e-6  # copies in training fit the held-out one
    info = fit_head(m, ids, mask, y, l2=(1e-6, 1e4), groups=[f"root{g}" for g in groups])
    assert info["l2"] == 1e4  # held-out families are noise: shrink
    assert info["cv_loss"][1e-6] > info["cv_loss"][1e4]
    with pytest.raises(ValueError, match="one label per item"):
        fit_head(m, ids, mask, y, l2=(1e-6, 1e4), groups=groups[:-1])
    with pytest.raises(ValueError, match=r"folds <= number of groups, got folds=5 for 2 group"):
        fit_head(m, ids, mask, y, l2=(1e-6, 1e4), groups=groups % 2)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=3, max_size=20), folds=st.integers(2, 3), seed=st.integers(0, 99))
def test_group_folds_never_split_a_group(sizes, folds, seed):
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))  # members scattered
    fold = group_folds(groups, folds, seed)
    for g in range(len(sizes)):
        assert len(set(fold[groups == g].tolist())) == 1
    assert set(fold.tolist()) == set(range(folds))
    load = np.bincount(fold, minlength=folds)
    assert load.max() - load.min() <= max(sizes)  # greedy: folds differ by at most one group
    singletons = group_folds(range(len(groups)), folds, seed)
    np.testing.assert_array_equal(singletons, np.random.default_rng(seed).permutation(len(groups)) % folds)


def test_probe_from_store_groups_folds_by_root_parent(tmp_path, monkeypatch, char_tokenizer, tiny_generator):
    import rewardmodels
    from rewardmodels import _train

    store = rewardmodels.RatingStore(tmp_path / "s")
    roots = {}
    for k, key in enumerate("CDEFGA"):
        parent = store.add_item(f"X:{k}\nK:C\n{key}DEF|GABc|")
        child = store.add_item(f"X:{k}\nK:C\n{key}DEF|GABd|", origin="optimized", parent=parent.id)
        grandchild = store.add_item(f"X:{k}\nK:C\n{key}DEF|GAcd|", origin="optimized", parent=child.id)
        roots.update({parent.id: parent.id, child.id: parent.id, grandchild.id: parent.id})
    ids = store.ids
    for i in range(len(ids) - 1):
        store.add_comparison(ids[i], ids[i + 1], "a", kind="simulated")
    seen = {}
    real = _train.fit_head

    def spy(model, ids_, mask, targets, weights=None, **kw):
        seen.update(kw)
        return real(model, ids_, mask, targets, weights, **kw)

    monkeypatch.setattr(_train, "fit_head", spy)
    rewardmodels.train_from_store(store, tiny_generator, char_tokenizer, rewardmodels.fit_store(store),
                                  probe=True, pooling="mean")
    assert seen["groups"] == [roots[k] for k in ids]
    fold = group_folds(seen["groups"], seen["folds"], seen["seed"])
    for root in set(roots.values()):
        assert len({int(f) for f, g in zip(fold, seen["groups"]) if g == root}) == 1
