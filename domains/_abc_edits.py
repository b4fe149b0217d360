"""Edit spaces of ABC tunes: which tokens the ascent may change, and which whole-tune moves to try.

Legend: b batch, t time, v vocab.

Token edits are ``(freeze (b,t) bool, allowed (b,t,v) bool)`` masks for
`gradopt.optimize(freeze=, allowed=)`; each free position takes only tokens of its own *class*, so
a one-token swap never changes a note's length and no bar can grow (needs a character tokenizer):

- ``pitch``: every note letter of the body may become any note letter ``A-G a-g`` (`note_letters`).
- ``ending``: the notes of the last bar that holds notes (or the last `last_notes` notes) change
  pitch freely: letters to letters, a single accidental among ``^ _ =``, a single octave mark
  between ``,`` and ``'``. The ending is where the simulated rater's cadence term sits, and the best
  single pitch edit of a tune is usually its last note.
- ``cadence``: the same on the final note alone (its letter to any letter): the smallest space that
  can reach the tonic.

Whole-tune moves (`_abc_moves`): ``rhythm`` (split, merge, dot, undot, swap lengths inside a bar)
and ``bars`` (duplicate, delete, swap full bars); for these kinds every token is frozen and the
engine scores the candidate tunes exactly (`gradopt.move_search`). ``any`` frees every token and
offers both kinds of moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from ._abc_bars import read_bars
from ._abc_moves import abc_moves
from ._abc_text import HEADER_LINE, NOTE_LETTERS

ACCIDENTAL_MARKS = frozenset("^_=")
OCTAVE_MARKS = frozenset(",'")
CLASSES = {"letter": NOTE_LETTERS, "accidental": ACCIDENTAL_MARKS, "octave": OCTAVE_MARKS}
KINDS = ("any", "bars", "cadence", "ending", "pitch", "rhythm")

# Spans of a body line whose letters are not notes: a "chord symbol or annotation", an
# !decoration! or +decoration+ (a name without spaces; a lone "!" is an old-style line break),
# an inline field [K:...], and a % comment. Unterminated quotes and inline fields run to the end
# of the line, so an unclosed span freezes more, never less.
_NOT_NOTES = re.compile(r'"[^"\n]*"?|![^!\s]*!|\+[^+\s]*\+|\[[A-Za-z]:[^\]\n]*\]?|%[^\n]*')


def note_letters(text: str) -> list[bool]:
    """For every character of an ABC text: is it the letter of a real note?

    True exactly at ``A-G a-g`` in the tune body, outside field lines (``X:``, ``K:``..., applied
    to every line so a ``K:`` change in the body counts too), ``"..."`` chord symbols and
    annotations, ``!...!`` / ``+...+`` decorations, inline fields ``[K:...]`` and ``%`` comments.
    Notes of chords ``[CEG]`` and grace notes ``{g}`` are real notes. Rests (``z x``) and shorthand
    decorations (``T H ~ u v``) are not letters A-G, so they are never free.
    """
    out: list[bool] = []
    for line in text.splitlines(keepends=True):
        if HEADER_LINE.match(line):
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


def ending_classes(text: str, last_notes: int | None = None, cadence: bool = False) -> list[str]:
    """For every character: the class of tokens it may become (``"letter"``, ``"accidental"``,
    ``"octave"``) or ``""`` (frozen). Free: the pitch characters of the notes of the last bar that
    holds notes, of the last `last_notes` notes, or (`cadence`) of the final note only. Double
    accidentals and stacked octave marks stay frozen (no single swap keeps them well formed).
    Tunes the bar reader cannot follow (`_abc_bars.read_bars`) get nothing free."""
    if last_notes is not None and last_notes < 1:
        raise ValueError(f"last_notes must be >= 1 or None, got {last_notes}")
    out = [""] * len(text)
    body = read_bars(text)
    if body is None:
        return out
    notes = [i for bar in body.bars for i in bar.items if i.kind == "note"]
    if not notes:
        return out
    if cadence:
        chosen = notes[-1:]
    elif last_notes is not None:
        chosen = notes[-last_notes:]
    else:
        last = next(b for b in reversed(body.bars) if any(i.kind == "note" for i in b.items))
        chosen = [i for i in last.items if i.kind == "note"]
    for it in chosen:
        pitch = it.pitch
        n_acc = len(pitch) - len(pitch.lstrip("^_="))
        n_oct = len(pitch) - len(pitch.rstrip(",'"))
        for j, ch in enumerate(pitch):
            if ch in NOTE_LETTERS:
                out[it.start + j] = "letter"
            elif ch in ACCIDENTAL_MARKS and n_acc == 1:
                out[it.start + j] = "accidental"
            elif ch in OCTAVE_MARKS and n_oct == 1:
                out[it.start + j] = "octave"
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
                f"pitch, ending and cadence edits need a character-level tokenizer (one character per token), "
                f"but token {i} is {piece!r}; use domains.build_char_tokenizer, or edit with --edit any / freeze masks"
            )
        pieces.append(piece)
    return pieces


def class_masks(ids: torch.Tensor, tokenizer, classes_of: Callable[[str], list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(freeze (b,t), allowed (b,t,v)) from a per-character class function: a position whose
    character has class c may take every token of class c (`CLASSES`); one with class ``""`` and
    every special token keeps its own token."""
    if ids.dim() != 2:
        raise ValueError(f"ids must be (b, t) token ids, got shape {tuple(ids.shape)}")
    pieces = char_pieces(tokenizer)
    v = len(pieces)
    sets = {c: torch.tensor([p in chars for p in pieces]) for c, chars in CLASSES.items()}  # (v,) each
    if len(ids) and (int(ids.max()) >= v or int(ids.min()) < 0):
        r = int(((ids >= v) | (ids < 0)).any(-1).nonzero()[0, 0])
        raise ValueError(f"row {r} holds token ids outside the tokenizer's {v} tokens")
    allowed = torch.nn.functional.one_hot(ids, v).bool()
    free = torch.zeros(ids.shape, dtype=torch.bool)
    for r, row in enumerate(ids.tolist()):
        chars = [pieces[tok] for tok in row]
        classes = iter(classes_of("".join(chars)))
        for i, ch in enumerate(chars):
            if ch and (c := next(classes)):  # one class per character; specials have none
                allowed[r, i], free[r, i] = sets[c], True
    return ~free, allowed


def pitch_edits(ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Rhythm-preserving edits of ABC tunes -> (freeze (b,t), allowed (b,t,v)), v = len(tokenizer).

    A position is free iff its character is a note letter by `note_letters` (BOS/EOS/PAD/UNK never
    are); a free position may take any note letter ``A-G a-g`` in the vocabulary, a frozen one
    only its own token. Changing a letter changes a note's pitch step (and, by case, its octave),
    never its duration, accidental or octave marks.
    """
    return class_masks(ids, tokenizer, lambda text: ["letter" if f else "" for f in note_letters(text)])


def ending_edits(ids: torch.Tensor, tokenizer, last_notes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pitch edits of a tune's ending (see `ending_classes`) -> (freeze (b,t), allowed (b,t,v))."""
    return class_masks(ids, tokenizer, lambda text: ending_classes(text, last_notes))


def cadence_edits(ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Pitch edits of the final note alone (see `ending_classes`) -> (freeze (b,t), allowed (b,t,v))."""
    return class_masks(ids, tokenizer, lambda text: ending_classes(text, cadence=True))


def frozen_edits(ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor, None]:
    """No token edits (the move kinds ``rhythm`` and ``bars``): every position frozen."""
    return torch.ones(ids.shape, dtype=torch.bool), None


TOKEN_EDITS: dict[str, Callable | None] = {
    "any": None, "pitch": pitch_edits, "ending": ending_edits, "cadence": cadence_edits,
    "rhythm": frozen_edits, "bars": frozen_edits,
}


def token_edits(kind: str, ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(freeze (b,t), allowed (b,t,v)) of an edit kind for a padded batch; ``any`` gives (None, None)."""
    if kind not in TOKEN_EDITS:
        raise ValueError(f"unknown edit kind {kind!r}; choose from {', '.join(KINDS)}")
    fn = TOKEN_EDITS[kind]
    return (None, None) if fn is None else fn(ids, tokenizer)


@dataclass(frozen=True)
class EditSpace:
    """One tune's edit space: token masks over ``<bos> text <eos>`` and whole-tune moves."""

    freeze: torch.Tensor | None  # (t,) bool, True = keep the token; None = nothing frozen
    allowed: torch.Tensor | None  # (t, v) bool, tokens each position may take; None = any
    moves: list[str]  # whole-tune candidates, one move away from the text


def edit_space(text: str, tokenizer, kind: str, limit: int | None = None, seed: int = 0) -> EditSpace:
    """The edit space of `kind` (one of `KINDS`) for one ABC tune; `limit`/`seed` subsample moves."""
    if kind not in KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; choose from {', '.join(KINDS)}")
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    freeze, allowed = token_edits(kind, ids, tokenizer)
    return EditSpace(freeze=None if freeze is None else freeze[0], allowed=None if allowed is None else allowed[0],
                     moves=abc_moves(text, kind, limit, seed))
