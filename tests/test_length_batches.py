"""Exact scoring skips the padding: rows grouped by length give the scores each row gets alone."""

import pytest
import torch

import gradopt
from ascent_doubles import TEXTS, encode, tiny_setup
from gradopt._objective import LENGTH_CHUNK, LENGTH_GROUP, length_batches


def _mask(lengths, t):
    return (torch.arange(t) < torch.tensor(lengths)[:, None]).long()


def test_every_row_once_equal_lengths_together_chunks_cut_to_their_longest_row():
    lengths = [5] * LENGTH_GROUP + [3, 9, 4, 7] * 6 + [2]
    batches = length_batches(_mask(lengths, 12))
    rows = torch.cat([r for r, _ in batches]).tolist()
    assert sorted(rows) == list(range(len(lengths)))
    for r, cut in batches:
        assert cut == max(lengths[i] for i in r.tolist())
        if cut == 5:  # the group of LENGTH_GROUP rows of length 5: no padding
            assert {lengths[i] for i in r.tolist()} == {5} and len(r) == LENGTH_GROUP
        else:
            assert len(r) <= LENGTH_CHUNK
    assert length_batches(torch.tensor([[0, 1, 1], [1, 1, 1]])) is None  # left padding: not cut


def test_grouped_scores_equal_each_row_scored_alone():
    tok, gen, rm = tiny_setup()
    rows = encode(tok, TEXTS)
    rows = [r[:k] for r in rows for k in range(3, len(r) + 1, 2)] + [rows[0]] * LENGTH_GROUP
    ids, mask = gradopt.pad_batch(rows, tok.pad_token_id)
    assert len(length_batches(mask)) > 1
    together = gradopt.score_sequences(rm, gen, ids, mask)
    for i, r in enumerate(rows):
        alone = gradopt.score_sequences(rm, gen, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))
        for a, b in zip(together, alone):
            torch.testing.assert_close(a[i], b[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("probe", [False, True])
def test_relaxed_terms_and_gradient_do_not_change_when_the_padding_is_cut(probe, monkeypatch):
    import rewardmodels

    tok, gen, rm = tiny_setup()
    if probe:  # shares the generator's transformer: the one-pass route
        rm = rewardmodels.RewardModel.from_generator(gen, pooling="mean").double().eval()
        torch.nn.init.normal_(rm.head.weight, std=1.0)
    rows = encode(tok, TEXTS)
    rows = [r[:k] for r in rows for k in range(4, len(r) + 1, 3)]
    ids, mask = gradopt.pad_batch(rows, tok.pad_token_id)
    v = len(tok)
    torch.manual_seed(0)
    probs = torch.softmax(torch.nn.functional.one_hot(ids, v).double() * 3 + torch.randn(*ids.shape, v, dtype=torch.float64), -1)
    free, start = mask.bool(), torch.full_like(probs, 1.0 / v)
    w = gradopt.ObjectiveWeights(lm_weight=2.0, kl_weight=0.5)
    shared = gradopt.shared_backbone(rm, gen)
    assert shared == probe

    def run():
        p = probs.clone().requires_grad_(True)
        terms = gradopt.relaxed_terms(rm, gen, gradopt.Relaxed(probs=p), mask, start, free, w, shared=shared)
        (g,) = torch.autograd.grad(terms.total(w, 1.0).sum(), p)
        return terms.reward.detach(), terms.loglik.detach(), terms.kl.detach(), g

    cut = run()
    monkeypatch.setattr(gradopt._objective, "length_batches", lambda mask: None)
    whole = run()
    for a, b in zip(cut, whole):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_nothing_to_cut_scores_the_batch_as_it_is():
    assert length_batches(_mask([6, 6, 6], 6)) is None
    assert length_batches(_mask([6, 4], 6)) is not None
