"""Frozen-position masks: which tokens the ascent may not change ("automatic editing").

Legend: b batch, t time. A mask is a (b, t) bool tensor, True = frozen. BOS/EOS/PAD positions are
always frozen by the driver; these helpers build the user's part.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch

from domains import HEADER_LINE


def freeze_special(ids: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """True where `ids` (b,t) is one of `special_ids` (BOS, EOS, PAD...)."""
    special = torch.tensor(sorted({int(i) for i in special_ids if i is not None}), dtype=ids.dtype)
    return torch.isin(ids, special)


def freeze_prefix(ids: torch.Tensor, n: int) -> torch.Tensor:
    """Freeze the first `n` positions of every row (BOS counts as position 0)."""
    if n < 0:
        raise ValueError(f"prefix length must be >= 0, got {n}")
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    mask[:, :n] = True
    return mask


def freeze_positions(ids: torch.Tensor, positions: Iterable[int]) -> torch.Tensor:
    """Freeze the given positions in every row (out-of-range positions are ignored)."""
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    pos = [p for p in positions if 0 <= p < ids.shape[1]]
    mask[:, pos] = True
    return mask


def parse_bars(spec: str) -> set[int]:
    """``"1-4,7"`` -> {1, 2, 3, 4, 7}; ``"header"`` or ``"0"`` names the header lines."""
    bars: set[int] = set()
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "header":
            bars.add(0)
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad bar range {part!r} in {spec!r}; use e.g. '1-4,7' or 'header'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bar range {part!r} is empty (end before start)")
        bars.update(range(lo, hi + 1))
    return bars


def bar_of_chars(text: str) -> list[int]:
    """The bar number of every character of an ABC text.

    Header lines (``X:``, ``T:``, ``K:``...) before the first body line are bar 0. In the body,
    bars are delimited by ``|``: bar 1 runs up to and including the first ``|``, bar 2 up to the
    second, and so on (a bar line belongs to the bar it closes; ``||`` and ``|:`` close one bar).
    """
    out: list[int] = []
    bar, in_header, prev = 1, True, ""
    for line in text.splitlines(keepends=True):
        if in_header and HEADER_LINE.match(line):
            out.extend([0] * len(line))
            continue
        in_header = False
        for ch in line:
            if ch == "|" and prev == "|":  # second stroke of a double bar line: same bar line
                out.append(bar - 1)
            else:
                out.append(bar)
                bar += ch == "|"
            prev = ch
    return out


def freeze_bars(ids: torch.Tensor, tokenizer, bars: set[int] | str) -> torch.Tensor:
    """Freeze the tokens that fall in the given bars of each row's decoded ABC text.

    Each token is assigned the bar of its first character (tokens are decoded one by one, which
    is exact for character tokenizers and for BPE tokenizers whose decoder concatenates pieces).
    """
    if isinstance(bars, str):
        bars = parse_bars(bars)
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for r, row in enumerate(ids.tolist()):
        pieces = [("" if tok in special else tokenizer.decode([tok])) for tok in row]
        text = "".join(pieces)
        char_bar = bar_of_chars(text)
        offset = 0
        for i, piece in enumerate(pieces):
            if piece and char_bar[offset] in bars:
                mask[r, i] = True
            offset += len(piece)
    return mask
