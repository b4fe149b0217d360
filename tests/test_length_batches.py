"""Exact scoring skips the padding: rows grouped by length give the scores each row gets alone."""

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
