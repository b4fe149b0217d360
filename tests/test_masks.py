import pytest
import torch

from ascent_doubles import encode, tiny_setup
from gradopt import bar_of_chars, freeze_bars, freeze_positions, freeze_prefix, freeze_special, pad_batch, parse_bars


def test_parse_bars():
    assert parse_bars("1-3,7") == {1, 2, 3, 7}
    assert parse_bars("header,2") == {0, 2}
    with pytest.raises(ValueError, match="bad bar range"):
        parse_bars("x")
    with pytest.raises(ValueError, match="empty"):
        parse_bars("4-2")


def test_bar_of_chars_counts_bars_after_the_header():
    text = "X:1\nK:G\nAB|cd||ef|\n"
    bars = bar_of_chars(text)
    assert len(bars) == len(text)
    body = text.index("AB")
    assert set(bars[:body]) == {0}
    assert [bars[body + i] for i in range(len("AB|cd||ef|"))] == [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]


def test_freeze_bars_marks_the_tokens_of_those_bars():
    tok, _, _ = tiny_setup()
    text = "X:1\nK:G\nAB|cd|ef|\n"
    ids, _ = pad_batch(encode(tok, [text, "K:G\nGA|B|"]), tok.pad_token_id)
    mask = freeze_bars(ids, tok, "2")
    row = ids[0].tolist()
    frozen_text = "".join(tok.decode([row[i]]) for i in range(len(row)) if mask[0, i])
    assert frozen_text == "cd|"
    assert "".join(tok.decode([t]) for t, m in zip(ids[1].tolist(), mask[1].tolist()) if m) == "B|"
    assert not mask[:, 0].any()  # BOS is the driver's business


def test_prefix_positions_special():
    ids = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
    assert freeze_prefix(ids, 2).sum() == 4
    assert freeze_positions(ids, [0, 4, 99]).tolist()[0] == [True, False, False, False, True]
    assert freeze_special(ids, [0, 1, 2, None]).tolist()[1] == [True, False, True, True, True]
