import numpy as np
import pytest
import torch
from ascent_doubles import TEXTS, encode, tiny_setup

from gradopt import ObjectiveWeights, edit_sites, exact_deltas, first_order_deltas, rank_agreement


class LinearReward(torch.nn.Module):
    """R(x) = sum over non-padded positions of w . E[x_t]: linear in the one-hots, so a first-order
    estimate of any single edit is exact."""

    def __init__(self, vocab: int, d: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Parameter(torch.randn(vocab, d, generator=g, dtype=torch.float64))
        self.w = torch.nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))

    def embedding_matrix(self):
        return self.emb

    def score_embeds(self, e, attention_mask=None):
        m = torch.ones(e.shape[:2], dtype=e.dtype) if attention_mask is None else attention_mask.to(e.dtype)
        return ((e @ self.w) * m).sum(-1)

    def score_probs(self, p, attention_mask=None):
        return self.score_embeds(p @ self.emb, attention_mask)

    def score(self, ids, attention_mask=None):
        return self.score_embeds(self.emb[ids], attention_mask)


@pytest.fixture(scope="module")
def linear():
    tok, gen, _ = tiny_setup()
    return tok, gen, LinearReward(len(tok))


def test_first_order_is_exact_when_the_objective_is_linear_in_the_one_hots(linear):
    tok, gen, rm = linear
    w = ObjectiveWeights(lm_weight=0.0)
    # distinct tokens per row: no two edits change J by exactly the same amount (ties rank arbitrarily)
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    body = [i for i in range(len(tok)) if i not in specials]
    ids = [[tok.bos_token_id, *body[:10], tok.eos_token_id], [tok.bos_token_id, *body[-7:], tok.eos_token_id]]
    est = first_order_deltas(ids, rm, gen, w, tokenizer=tok)
    agree = rank_agreement(ids, rm, gen, w, max_exact=None, tokenizer=tok)
    sites = edit_sites(ids, rm, gen, w, tokenizer=tok)
    for r in range(2):
        assert len(agree.exact[r]) == int(torch.isfinite(est[r]).sum() - sites.free[r].sum())  # every edit
        np.testing.assert_allclose(agree.first_order[r], agree.exact[r], rtol=0, atol=1e-9)
        assert agree.spearman[r] == pytest.approx(1.0, abs=1e-12)
        pos, tokv = agree.edits[r][:, 0], agree.edits[r][:, 1]
        np.testing.assert_allclose(est[r, pos, tokv].numpy(), agree.exact[r], rtol=0, atol=1e-9)


def test_frozen_disallowed_and_special_entries_are_minus_inf_and_the_current_token_zero(linear):
    tok, gen, rm = linear
    ids = encode(tok, [TEXTS[0][:10]])
    t, v = len(ids[0]), len(tok)
    freeze = torch.zeros(1, t, dtype=torch.bool)
    freeze[0, 3] = True
    allowed = torch.ones(1, t, v, dtype=torch.bool)
    banned = (ids[0][5] + 1) % v
    allowed[0, 5, banned] = False
    est = first_order_deltas(ids, rm, gen, ObjectiveWeights(lm_weight=0.0), freeze, allowed, tokenizer=tok)
    assert torch.isneginf(est[0, [0, 3, t - 1]]).all()  # BOS, frozen, EOS
    assert torch.isneginf(est[0, 5, banned])
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id} - {None}
    for special in specials:
        assert torch.isneginf(est[0, 1:-1, special]).all()
    here = est[0, 1:-1].gather(-1, torch.tensor(ids[0][1:-1])[:, None])
    assert (here[[i - 1 for i in range(1, t - 1) if i != 3]] == 0).all()
    assert torch.isfinite(est[0, 4]).sum() == v - len(specials)  # every non-special token at a free position


def test_exact_delta_of_the_current_token_is_zero_and_of_an_edit_matches_a_rescore():
    tok, gen, rm = tiny_setup()
    w = ObjectiveWeights(lm_weight=1.0)
    ids = encode(tok, [TEXTS[0][:12], TEXTS[1][:8]])
    sites = edit_sites(ids, rm, gen, w, tokenizer=tok)
    other = (int(sites.ids[1, 4]) + 1) % len(tok)
    edits = torch.tensor([[0, 3, int(sites.ids[0, 3])], [1, 4, int(sites.ids[1, 4])], [1, 4, other]])
    d = exact_deltas(sites, rm, gen, w, edits, batch_size=2)
    assert d[0] == 0 and d[1] == 0 and d[2] != 0
    from gradopt import discrete_terms
    edited = sites.ids.clone()
    edited[1, 4] = other
    j = [discrete_terms(rm, gen, x, sites.mask, sites.start, sites.free, w)[0].total(w, 1.0)
         for x in (sites.ids, edited)]
    assert float(d[2]) == pytest.approx(float(j[1][1] - j[0][1]), abs=1e-12)


def test_rank_agreement_caps_the_exact_evaluations_and_is_a_correlation_on_a_transformer():
    tok, gen, rm = tiny_setup()
    ids = encode(tok, [TEXTS[0][:14], TEXTS[1][:14]])
    agree = rank_agreement(ids, rm, gen, ObjectiveWeights(lm_weight=1.0), max_exact=40, seed=3, tokenizer=tok)
    assert [len(x) for x in agree.exact] == [40, 40]
    assert all(len({tuple(e) for e in edits}) == 40 for edits in agree.edits)  # no edit scored twice
    assert np.all(np.abs(agree.spearman) <= 1)
    again = rank_agreement(ids, rm, gen, ObjectiveWeights(lm_weight=1.0), max_exact=40, seed=3, tokenizer=tok)
    assert np.array_equal(agree.spearman, again.spearman)
    with pytest.raises(ValueError, match="max_exact"):
        rank_agreement(ids, rm, gen, max_exact=1, tokenizer=tok)
