"""Random variants of ABC tunes, to fill rating pools with near neighbours of real tunes.

A reward model learns little from pairs of unrelated tunes; it learns where it will be used from a
tune next to a slightly changed copy. Three kinds of copy, each drawn from a numpy Generator so
a seed fixes the pool:

    pitch_edit   k note letters changed to other note letters (rhythm, accidentals, octave marks
                 and bar lines kept): the edits the ascent engine makes with ``--edit pitch``
    char_edit    k random single-character substitutions in the body: often invalid tunes
    corrupt      k random musical damages (a wrong note, a stray accidental, a case swap, a
                 deleted character, a repeated bar): a mix of valid and broken tunes

Header lines (up to ``K:``) are never changed.
"""

from __future__ import annotations

import numpy as np

from ._abc_edits import NOTE_LETTERS, note_letters

_NOTES = "ABCDEFGabcdefg"  # corrupt's note alphabet, in this order (its draws depend on it)


def _body_start(text: str) -> int:
    """Index of the first character after the ``K:`` line (0 when the text has none)."""
    return text.find("\n", text.find("\nK:") + 1) + 1


def pitch_edit(text: str, k: int, rng: np.random.Generator) -> str:
    """`text` with min(k, number of note letters) distinct note letters (`note_letters`) changed,
    each to a different note letter A-G a-g drawn uniformly; every other character is kept."""
    if k < 0:
        raise ValueError(f"pitch_edit: k (the number of note letters to change) must be >= 0, got {k}")
    free = np.flatnonzero(note_letters(text))
    chars = list(text)
    for pos in rng.choice(free, min(k, len(free)), replace=False):
        others = [c for c in sorted(NOTE_LETTERS) if c != chars[pos]]  # a set: sorted for reproducibility
        chars[pos] = others[int(rng.integers(len(others)))]
    return "".join(chars)


def char_edit(text: str, k: int, rng: np.random.Generator) -> str:
    """`text` with `k` random single-character substitutions in the body (the lines after ``K:``),
    each position and replacement drawn uniformly (replacements from the body's own characters,
    the line break included, and ``A-G a-g | 2 / space``); a drawn line break is left alone, and a
    position drawn twice or a character replaced by itself changes less, so up to `k` characters
    differ."""
    if k < 0:
        raise ValueError(f"char_edit: k (the number of substitutions) must be >= 0, got {k}")
    start = _body_start(text)
    alphabet = sorted(set(text[start:]) | set("ABCDEFGabcdefg|2/ "))
    chars = list(text)
    for pos in rng.integers(start, max(len(text) - 1, start + 1), k):
        if chars[pos] != "\n":
            chars[pos] = alphabet[int(rng.integers(len(alphabet)))]
    return "".join(chars)


def corrupt(text: str, rng: np.random.Generator, n_edits: int) -> str:
    """`text` with `n_edits` random musical damages to its body (lines after the first ``K:``
    line kept as they are): each picks a note letter and changes it, puts a ``^``/``_`` before
    it, swaps its case, deletes it or one of the two characters before it, or repeats a random
    bar 2-3 times. Stops early when the body has no note letter left."""
    if n_edits < 0:
        raise ValueError(f"corrupt: n_edits must be >= 0, got {n_edits}")
    lines = text.splitlines(keepends=True)
    n_head = next((i + 1 for i, line in enumerate(lines) if line.startswith("K:")), 0)
    head, body = "".join(lines[:n_head]), list("".join(lines[n_head:]))
    for _ in range(n_edits):
        notes = [i for i, c in enumerate(body) if c in _NOTES]
        if not notes:
            break
        i = int(rng.choice(notes))
        op = int(rng.integers(5))
        if op == 0:
            body[i] = str(rng.choice(list(_NOTES)))
        elif op == 1:
            body.insert(i, str(rng.choice(["^", "_"])))
        elif op == 2:
            body[i] = body[i].swapcase()
        elif op == 3:
            del body[max(0, i - int(rng.integers(0, 3)))]
        else:
            s = "".join(body)
            bars = [b for b in s.split("|") if b.strip()]
            if bars:
                bar = str(rng.choice(bars))
                s = s.replace(bar + "|", (bar + "|") * int(rng.integers(2, 4)), 1)
                body = list(s)
    return head + "".join(body)
