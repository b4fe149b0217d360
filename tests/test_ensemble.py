"""Reward ensemble: K bootstrap probes on one backbone, their mean, sd and pessimistic score."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

import gradopt
from rewardmodels import DEFAULT_MEMBERS, RewardEnsemble, RewardModel, bootstrap_heads, fit_ensemble, load_reward_model

torch.set_num_threads(1)


def _config():
    return GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _batch():
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 2, 0, 0, 0], [1, 4, 4, 4, 4, 4, 2]])
    mask = (torch.arange(7)[None] < torch.tensor([5, 4, 7])[:, None]).long()
    return ids, mask


def _items(n=40, seed=0):
    """Random sequences of tokens 3..10 and a target that counts token 5."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.ones(n, 1, dtype=torch.long), torch.randint(3, 11, (n, 8), generator=g),
                     torch.full((n, 1), 2)], 1)
    y = (ids == 5).sum(1).double().numpy() + 0.3 * torch.randn(n, generator=g, dtype=torch.float64).numpy()
    return ids, torch.ones_like(ids), y


def _fitted(members=5, pessimism=0.0):
    torch.manual_seed(0)
    m = RewardEnsemble(_config(), "mean", members, pessimism).double().eval()
    ids, mask, y = _items()
    fit_ensemble(m, ids, mask, y, l2=1.0)
    return m


def test_members_differ_and_the_score_is_their_aggregate():
    m = _fitted()
    ids, mask = _batch()
    members = m.score_members(ids, mask).detach()
    assert members.shape == (3, 5)
    assert float(members.std(-1).min()) > 1e-6  # bootstrap resamples give different heads
    mean, sd = m.mean_sd(members)
    torch.testing.assert_close(m.score(ids, mask).detach(), mean)
    torch.testing.assert_close(m.aggregate(members, pessimism=2.0), mean - 2.0 * sd)
    m.pessimism = 1.5
    torch.testing.assert_close(m.score(ids, mask).detach(), mean - 1.5 * sd)
    with pytest.raises(ValueError, match="pessimism"):
        m.aggregate(members, pessimism=-1.0)


def test_sd_is_zero_when_members_are_equal():
    m = _fitted()
    with torch.no_grad():
        m.head.weight.copy_(m.head.weight[:1].expand_as(m.head.weight))
        m.head.bias.fill_(0.3)
        m.norm_mean.fill_(0.1)
        m.norm_std.fill_(2.0)
    ids, mask = _batch()
    mean, sd = m.mean_sd(m.score_members(ids, mask))
    assert torch.equal(sd, torch.zeros_like(sd))
    m.pessimism = 3.0
    torch.testing.assert_close(m.score(ids, mask), mean)


def test_three_routes_agree_and_gradients_reach_probs_and_embeds():
    m = _fitted(pessimism=1.0)
    ids, mask = _batch()
    p = F.one_hot(ids, 11).double().requires_grad_(True)
    e = m.embedding_matrix()[ids].detach().clone().requires_grad_(True)
    r_probs, r_emb = m.score_probs(p, mask), m.score_embeds(e, mask)
    torch.testing.assert_close(r_probs, m.score(ids, mask))
    torch.testing.assert_close(r_emb, m.score(ids, mask))
    (gp,) = torch.autograd.grad(r_probs.sum(), p)
    (ge,) = torch.autograd.grad(r_emb.sum(), e)
    assert gp.abs().sum() > 0 and ge.abs().sum() > 0 and torch.isfinite(gp).all() and torch.isfinite(ge).all()
    torch.testing.assert_close(m.members_probs(F.one_hot(ids, 11).double(), mask), m.score_members(ids, mask))
    torch.testing.assert_close(m.predict_members(ids, mask, batch_size=2), m.score_members(ids, mask))


def test_save_load_round_trip(tmp_path):
    m = _fitted(members=3, pessimism=0.5)
    m.save_pretrained(tmp_path / "ens")
    back = load_reward_model(tmp_path / "ens")
    assert isinstance(back, RewardEnsemble) and back.members == 3 and back.pessimism == 0.5
    ids, mask = _batch()
    torch.testing.assert_close(back.score_members(ids, mask), m.score_members(ids, mask))
    with pytest.raises(ValueError, match="ensemble"):
        RewardModel.from_pretrained(tmp_path / "ens")
    single = RewardModel(_config(), "mean")
    single.save_pretrained(tmp_path / "one")
    assert type(load_reward_model(tmp_path / "one")) is RewardModel
    with pytest.raises(ValueError, match="single reward model"):
        RewardEnsemble.from_pretrained(tmp_path / "one")


def test_calibration_is_per_member():
    m = _fitted()
    ids, mask, _ = _items()
    members = m.predict_members(ids, mask)
    torch.testing.assert_close(members.mean(0), torch.zeros(5, dtype=members.dtype), atol=1e-9, rtol=0)
    torch.testing.assert_close(members.std(0), torch.ones(5, dtype=members.dtype))


def test_disagreement_grows_away_from_the_rated_items():
    """Synthetic features: rated items in a small ball, far items well outside it. The bootstrap heads
    agree on the rated items and fan out where there was nothing to fit."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 4))
    y = Z @ np.array([1.0, -0.5, 0.2, 0.0]) + 0.5 * rng.normal(size=60)
    betas, b = bootstrap_heads(Z, y, np.ones(60), l2=1.0, members=8, seed=1)
    near = (Z @ betas.T + b).std(1, ddof=1).mean()
    far_points = 6.0 * rng.normal(size=(60, 4))
    far = (far_points @ betas.T + b).std(1, ddof=1).mean()
    assert far > 3 * near


def test_the_default_member_count_ranks_items_by_their_bootstrap_sd():
    """The SD over the default number of heads orders items as the SD over many heads does (the
    bootstrap's own SD); with 5 heads (Spearman about 0.8 here) or 16 (0.94) chance still shows."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 12))
    y = Z @ rng.normal(size=12) + rng.normal(size=80)
    X = rng.normal(size=(200, 12)) * rng.uniform(0.5, 3.0, size=(200, 1))  # near and far items
    sd = lambda k, seed: (X @ bootstrap_heads(Z, y, np.ones(80), 1.0, k, seed)[0].T).std(1, ddof=1)  # noqa: E731
    reference = sd(1000, 10_000)
    assert RewardEnsemble(_config(), "mean").members == DEFAULT_MEMBERS
    assert min(spearmanr(sd(DEFAULT_MEMBERS, s), reference).statistic for s in (0, 100, 200)) > 0.95


def test_groups_travel_together_in_the_bootstrap():
    """An item and its edits are drawn together: with two groups of identical items, each head sees
    either group once, twice or not at all, never a split."""
    Z = np.eye(4)
    y = np.array([1.0, 1.0, -1.0, -1.0])
    betas_g, _ = bootstrap_heads(Z, y, np.ones(4), 0.1, 6, seed=0, groups=["a", "a", "b", "b"])
    # columns 0 and 1 (group a) always receive the same weight, so their coefficients are equal
    np.testing.assert_allclose(betas_g[:, 0], betas_g[:, 1])
    np.testing.assert_allclose(betas_g[:, 2], betas_g[:, 3])


def test_shared_backbone_fast_path_holds_for_an_ensemble():
    torch.manual_seed(0)
    gen = GPT2LMHeadModel(_config()).double().eval()
    m = RewardEnsemble.from_generator(gen, "mean", members=4, pessimism=1.0).double().eval()
    torch.nn.init.normal_(m.head.weight, std=1.0)
    assert gradopt.shared_backbone(m, gen)
    ids, mask = _batch()
    one = gradopt.score_sequences(m, gen, ids, mask, shared=True)
    two = gradopt.score_sequences(m, gen, ids, mask, shared=False)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 members"):
        RewardEnsemble(_config(), "mean", members=1)
    with pytest.raises(ValueError, match="RewardEnsemble"):
        fit_ensemble(RewardModel(_config(), "mean"), *_items()[:2], _items()[2])


# -- an ensemble reading musical annotations ------------------------------------------------------

ABC = ["X:1\nM:3/4\nL:1/8\nK:D\nF2 A2 d2|c4 B2|d6|\n", "X:1\nM:2/4\nL:1/8\nK:G\nGA Bc|d2 B2|\n",
       "X:1\nM:3/4\nL:1/8\nK:Am\nA2 ^G2 A2|e6|\n", "X:1\nM:4/4\nL:1/8\nK:C\nCDEF GABc|c8|\n"]


def _abc_items(n=32):
    """Pitch variants of four short tunes; target: how many of the body's notes are A or a, plus noise."""
    import domains

    rng = np.random.default_rng(0)
    texts = ABC + [domains.pitch_edit(ABC[i % len(ABC)], int(rng.integers(1, 5)), rng) for i in range(n - len(ABC))]
    y = np.array([sum(c in "Aa" for c in t.split("K:")[1].split("\n", 1)[1]) for t in texts], dtype=float)
    return texts, y + 0.3 * rng.normal(size=n)


def _annotated(members=4, pessimism=0.0):
    """(tok, gen, fitted annotated ensemble, texts) on a tiny generator; groups keep a tune's variants together."""
    import domains
    import rewardmodels

    texts, y = _abc_items()
    tok = domains.build_tokenizer(texts, "char")
    torch.manual_seed(0)
    gen = domains.build_generator("tiny", tok).double().eval()
    m = RewardEnsemble.from_generator(gen, "mean", members, pessimism, annotations="abc",
                                      token_texts=rewardmodels.token_texts(tok), annotation_features=True)
    ids, mask = domains.encode_batch(tok, texts)
    fit_ensemble(m, ids, mask, y, l2=(0.3, 3.0), folds=3, groups=[i % len(ABC) for i in range(len(texts))])
    return tok, gen, m.eval(), texts


@pytest.fixture(scope="module")
def annotated():
    return _annotated()


def test_an_annotated_ensemble_reads_its_annotations_and_its_members_disagree(annotated):
    import domains

    tok, _, m, texts = annotated
    ids, mask = domains.encode_batch(tok, texts[:6])
    members = m.score_members(ids, mask).detach()
    assert members.shape == (6, 4) and float(members.std(-1).min()) > 1e-6
    p = F.one_hot(ids, len(tok)).double()
    torch.testing.assert_close(m.members_probs(p, mask), members)
    torch.testing.assert_close(m.members_embeds(m.embedding_matrix()[ids], mask), members)
    torch.testing.assert_close(m.predict_members(ids, mask, batch_size=4), members)
    blank = m.members_embeds(m.embedding_matrix()[ids], mask,
                             annots=torch.zeros_like(m.annotations_from_ids(ids, mask)))
    assert (blank - members).abs().max() > 1e-3  # the heads read the pooled annotations


def test_an_annotated_ensemble_saves_and_loads_with_its_annotations(annotated, tmp_path):
    import domains

    tok, _, m, texts = annotated
    m.pessimism = 0.5
    m.save_pretrained(tmp_path / "ens")
    m.pessimism = 0.0
    back = load_reward_model(tmp_path / "ens")
    assert isinstance(back, RewardEnsemble) and (back.members, back.pessimism) == (4, 0.5)
    assert (back.annotations, back.annotation_features) == ("abc", True)
    ids, mask = domains.encode_batch(tok, texts)
    torch.testing.assert_close(back.score_members(ids, mask), m.score_members(ids, mask))
    mean, sd = m.mean_sd(m.score_members(ids, mask))
    torch.testing.assert_close(back.score(ids, mask), mean - 0.5 * sd)


def test_a_recipe_with_annotations_fits_an_ensemble():
    import domains
    from rewardmodels import PRACTICAL_MUSIC, fit_model

    texts, y = _abc_items(16)
    tok = domains.build_tokenizer(texts, "char")
    torch.manual_seed(0)
    gen = domains.build_generator("tiny", tok).double().eval()
    ids, mask = domains.encode_batch(tok, texts)
    ens, info = fit_model(PRACTICAL_MUSIC, gen, tok, ids, mask, y, None, [i % 4 for i in range(16)], members=3,
                          folds=2)
    assert isinstance(ens, RewardEnsemble) and ens.members == 3 and ens.annotation_features
    assert info["probe_l2"] > 0


def test_the_default_guard_runs_with_an_annotated_ensemble(annotated):
    tok, gen, m, texts = annotated
    init = [tok(t)["input_ids"] for t in texts[:3]]
    cfg = gradopt.AscentConfig(steps=4, check_every=2, polish=gradopt.PolishConfig(rounds=1, top_k=3, candidates=4))
    assert cfg.trust == gradopt.TrustConfig()  # the library's default guard
    out = gradopt.optimize(init, m, gen, cfg, tokenizer=tok)
    for start, row in zip(init, out.rows):
        ids = torch.tensor([row.tokens])
        assert row.reward_after == pytest.approx(float(m.score(ids).detach()), abs=1e-9)  # verified exactly
        assert math.isfinite(row.gain_sd)  # the guard saw K members' gains, not one model's
        if row.kept:
            assert row.tokens == start and row.changed == 0
        else:
            assert row.gain_mean - cfg.trust.pessimism * row.gain_sd > cfg.trust.margin
