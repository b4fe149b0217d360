"""The pairwise probe (rewardmodels._train: pairwise_logistic, fit_pairwise_head): a logistic
regression of comparison outcomes on frozen features, the baseline that skips Bradley-Terry scores."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from transformers import GPT2Config

from rewardmodels import RewardModel, fit_pairwise_head, pairwise_logistic

torch.set_num_threads(1)


def _comparisons(score: np.ndarray, m: int, seed: int = 0, tie_band: float = 0.1):
    """(wins [winner, loser], ties) of m random pairs judged by Bradley-Terry on `score`; pairs whose
    scores differ by less than `tie_band` are ties."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(score), m)
    j = (i + rng.integers(1, len(score), m)) % len(score)
    d = score[i] - score[j]
    tie = np.abs(d) < tie_band
    a_wins = rng.random(m) < 1 / (1 + np.exp(-d))
    pairs = np.stack([i, j], 1)
    wins = np.where(a_wins[:, None], pairs, pairs[:, ::-1])[~tie]
    return wins, pairs[tie]


def test_pairwise_logistic_recovers_the_order_of_a_known_linear_score():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(150, 6))
    truth = Z @ np.array([1.5, -1.0, 0.5, 0.0, 2.0, -0.5])
    wins, ties = _comparisons(truth, 3000)
    assert len(ties) > 0  # the tie term is exercised
    rho = spearmanr(Z @ pairwise_logistic(Z, wins, ties, l2=1.0), truth).statistic
    assert rho > 0.9
    # outcomes read the other way round (winner and loser swapped) give the reverse order
    rho_flipped = spearmanr(Z @ pairwise_logistic(Z, wins[:, ::-1], ties, l2=1.0), truth).statistic
    assert rho_flipped < -0.9


def test_pairwise_logistic_ties_alone_pull_towards_equal_scores():
    Z = np.random.default_rng(1).normal(size=(20, 3))
    wins = np.array([[0, 1]])
    ties = np.array([[i, j] for i in range(20) for j in range(i + 1, 20)])
    few_ties = np.linalg.norm(pairwise_logistic(Z, wins, ties[:1], l2=0.1))
    many_ties = np.linalg.norm(pairwise_logistic(Z, wins, ties, l2=0.1))
    assert many_ties < 0.5 * few_ties


def _tiny_model():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return RewardModel(cfg, "mean").double().eval()


def test_fit_pairwise_head_orders_items_by_a_linear_score_of_the_model_features():
    m = _tiny_model()
    rng = np.random.default_rng(2)
    lengths = rng.integers(4, 15, 120)
    ids = torch.as_tensor(rng.integers(3, 11, (120, 15)))
    mask = (torch.arange(15)[None] < torch.as_tensor(lengths)[:, None]).long()
    ids = ids * mask
    X = m.features(ids, mask).numpy()
    truth = (X - X.mean(0)) / X.std(0) @ rng.normal(size=X.shape[1])
    wins, ties = _comparisons(truth, 2500, seed=3)
    before = {k: v.clone() for k, v in m.transformer.state_dict().items()}
    info = fit_pairwise_head(m, ids, mask, wins, ties, l2=(0.1, 1e5), folds=3)
    assert set(info["cv_loss"]) == {0.1, 1e5} and info["l2"] == 0.1  # huge λ flattens the scores: worse
    r = m.predict(ids, mask)
    assert spearmanr(r.numpy(), truth).statistic > 0.9
    Z = X / X.std(0)  # the head reads the raw features with the logistic weights of the standardised ones
    np.testing.assert_allclose(m.predict(ids, mask, raw=True).numpy(), Z @ pairwise_logistic(Z, wins, ties, 0.1),
                               rtol=1e-5, atol=1e-6)
    assert float(r.mean()) == pytest.approx(0.0, abs=1e-6) and float(r.std()) == pytest.approx(1.0, abs=1e-6)
    for k, v in m.transformer.state_dict().items():
        assert torch.equal(v, before[k])


def test_fit_pairwise_head_names_bad_pairs():
    m = _tiny_model()
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    mask = (ids != 0).long()
    with pytest.raises(ValueError, match="pair indices"):
        fit_pairwise_head(m, ids, mask, np.array([[0, 2]]))
    with pytest.raises(ValueError, match="at least one decided comparison"):
        fit_pairwise_head(m, ids, mask, np.zeros((0, 2)), np.array([[0, 1]]))
