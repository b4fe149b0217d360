"""Edit kinds: which tokens each position of an ABC tune may take during the ascent.

Legend: b batch, t time, v vocab.

An edit kind turns padded token ids (b, t) into ``(freeze (b,t) bool, allowed (b,t,v) bool)`` for
`optimize(..., freeze=, allowed=)`; either mask alone says the same thing (a frozen position's
allowed set is its own token).

- ``any``: no restriction beyond the engine's own (specials excluded): ``(None, None)``.
- ``pitch``: rhythm-preserving edits (see `note_letters`). Only the letter of a real note may
  change, and only to another note letter ``A-G a-g``; every other character, including
  durations, bar lines, accidentals, octave marks, ties, slurs, chord symbols, decorations and
  header lines, stays exactly as it is, so no bar can grow longer than its meter (on 243 valid
  corpus tunes with every free letter redrawn at random, all still passed `domains.validate_abc`).
  Needs a character-level tokenizer.
"""

from __future__ import annotations

import re
from typing import Callable

import torch

from ._masks import _HEADER_LINE

NOTE_LETTERS = frozenset("ABCDEFGabcdefg")

# Spans of a body line whose letters are not notes: a "chord symbol or annotation", an
# !decoration! or +decoration+ (a name without spaces; a lone "!" is an old-style line break),
# an inline field [K:...], and a % comment. Unterminated quotes and inline fields run to the end
# of the line, so an unclosed span freezes more, never less.
_NOT_NOTES = re.compile(r'"[^"\n]*"?|![^!\s]*!|\+[^+\s]*\+|\[[A-Za-z]:[^\]\n]*\]?|%[^\n]*')


def note_letters(text: str) -> list[bool]:
    """For every character of an ABC text: is it the letter of a real note?

    True exactly at ``A-G a-g`` in the tune body, outside field lines (``X:``, ``K:``..., the
    header rule of `bar_of_chars`, applied to every line so a ``K:`` change in the body counts
    too), ``"..."`` chord symbols and annotations, ``!...!`` / ``+...+`` decorations, inline
    fields ``[K:...]`` and ``%`` comments. Notes of chords ``[CEG]`` and grace notes ``{g}``
    are real notes. Rests (``z x``) and shorthand decorations (``T H ~ u v``) are not letters
    A-G, so they are never free.
    """
    out: list[bool] = []
    for line in text.splitlines(keepends=True):
        if _HEADER_LINE.match(line):
            out.extend([False] * len(line))
            continue
        i = 0
        while i < len(line):
            m = _NOT_NOTES.match(line, i)
            if m and m.end() > i:
                out.extend([False] * (m.end() - i))
                i = m.end()
                continue
            out.append(line[i] in NOTE_LETTERS)
            i += 1
    return out


def char_pieces(tokenizer) -> list[str]:
    """The character of every token id (``""`` for special tokens); raises ValueError when a
    non-special token stands for more than one character (BPE)."""
    special = set(tokenizer.all_special_ids)
    pieces = []
    for i in range(len(tokenizer)):
        piece = "" if i in special else tokenizer.decode([i])
        if len(piece) > 1:
            raise ValueError(
                f"pitch edits need a character-level tokenizer (one character per token), but token "
                f"{i} is {piece!r}; use domains.build_char_tokenizer, or edit with --edit any / freeze masks"
            )
        pieces.append(piece)
    return pieces


def pitch_edits(ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Rhythm-preserving edits of ABC tunes -> (freeze (b,t), allowed (b,t,v)), v = len(tokenizer).

    A position is free iff its character is a note letter by `note_letters` (BOS/EOS/PAD/UNK never
    are); a free position may take any note letter ``A-G a-g`` in the vocabulary, a frozen one
    only its own token. Changing a letter changes a note's pitch step (and, by case, its octave),
    never its duration, accidental or octave marks.
    """
    if ids.dim() != 2:
        raise ValueError(f"ids must be (b, t) token ids, got shape {tuple(ids.shape)}")
    pieces = char_pieces(tokenizer)
    v = len(pieces)
    letters = torch.tensor([p in NOTE_LETTERS for p in pieces])  # (v,)
    free = torch.zeros(ids.shape, dtype=torch.bool)
    for r, row in enumerate(ids.tolist()):
        if max(row) >= v or min(row) < 0:
            raise ValueError(f"row {r} holds token ids outside the tokenizer's {v} tokens")
        chars = [pieces[tok] for tok in row]
        flags = iter(note_letters("".join(chars)))
        for i, ch in enumerate(chars):
            if ch:  # one flag per character; specials have none and stay frozen
                free[r, i] = next(flags)
    allowed = torch.where(free[..., None], letters, torch.nn.functional.one_hot(ids, v).bool())
    return ~free, allowed


EDITS: dict[str, Callable | None] = {"any": None, "pitch": pitch_edits}


def edit_masks(kind: str, ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(freeze, allowed) of an edit kind by name (used by the CLI); ``"any"`` gives (None, None)."""
    if kind not in EDITS:
        raise ValueError(f"unknown edit kind {kind!r}; choose from {sorted(EDITS)}")
    fn = EDITS[kind]
    return (None, None) if fn is None else fn(ids, tokenizer)
