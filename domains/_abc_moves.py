"""Whole-tune moves for ABC: rhythm changes and bar insert/delete/swap that keep every bar full.

A one-token swap can change a note's pitch but almost never its rhythm without breaking a bar, so
these edits are proposed as whole candidate tunes, to be scored exactly by the engine (see
`gradopt.move_search`). Every candidate is checked against the reader of `_abc_bars`: a rhythm move
keeps the duration of every bar exactly; a bar move changes the sequence of bar durations only by
the bar it inserts, deletes or swaps, and only full bars (duration = the meter) are touched, so the
tune's pickups, endings and repeats stay where they were.

Rhythm moves, inside one bar, on notes whose written length alone gives their duration (no tie,
tuplet, decoration or broken rhythm on them; see `Item.plain`):

- split ``A2`` -> ``AA`` (two notes of half the length, same pitch; not below a quarter unit);
- merge ``AA`` -> ``A2`` (two adjacent equal notes of the same pitch);
- dot ``AB`` -> ``A>B`` / ``A<B`` (two adjacent notes of equal length become a broken rhythm);
- undot ``A>B`` -> ``AB`` and flip ``A>B`` <-> ``A<B`` (an existing broken rhythm);
- swap lengths ``A2B`` -> ``AB2`` (two adjacent notes of different lengths).

Bar moves, on full bars closed by a plain ``|`` that lie on one line with balanced slurs, no
decorations and no tie into or out of them: duplicate (``X|`` -> ``X|X|``), delete, and swap two bars at most
`max_distance` bars apart.

Candidates are deduplicated and in a fixed order (position in the tune, then move kind); with
`limit`, a subsample drawn with `seed` (order kept), so the moves are deterministic given a seed.
Moves never call `validate_abc` (about 0.1 s a tune); the engine validates what it keeps.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from ._abc_bars import Bar, Item, body_start, length_spec, read_bars

MIN_LENGTH = Fraction(1, 4)  # shortest written length a split may produce (a quarter of L:)
_DECORATED = re.compile(r"[.~THLMOPSuv!+]")
_GAP = re.compile(r"[ `]*")  # what may separate two notes that a move joins


def _subsample(cands: list[str], limit: int | None, seed: int) -> list[str]:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if limit is None or len(cands) <= limit:
        return cands
    keep = sorted(random.Random(seed).sample(range(len(cands)), limit))
    return [cands[i] for i in keep]


def _dedupe(text: str, cands: list[str]) -> list[str]:
    seen, out = {text}, []
    for c in cands:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _splice(text: str, start: int, end: int, new: str) -> str:
    if text.startswith("::", end) and not new[-1:].isdigit():
        new += " "  # music21 misreads a note letter right before "::"
    return text[:start] + new + text[end:]


def _note(it: Item, mult: Fraction) -> str | None:
    spec = length_spec(mult)
    return None if spec is None or mult < MIN_LENGTH else it.pitch + spec


def _timed(bar: Bar) -> list[Item]:
    return [i for i in bar.items if i.kind in ("note", "rest", "chord", "broken")]


def _adjacent(text: str, a: Item, b: Item) -> bool:
    m = _GAP.fullmatch(text, a.end, b.start)
    return m is not None


def _bar_rhythm(text: str, bar: Bar) -> list[str]:
    out: list[str] = []
    timed = _timed(bar)
    for it in timed:  # split
        if it.kind == "note" and it.plain and (half := _note(it, it.mult / 2)) is not None:
            out.append(_splice(text, it.start, it.end, half + half))
    for a, b in zip(timed, timed[1:]):
        if not (a.kind == b.kind == "note" and a.plain and b.plain and _adjacent(text, a, b)):
            continue
        if a.pitch == b.pitch and a.mult == b.mult and (whole := _note(a, 2 * a.mult)) is not None:
            out.append(_splice(text, a.start, b.end, whole))  # merge
        if a.mult == b.mult:  # dot, both ways
            sa, sb = text[a.start:a.end], text[b.start:b.end]
            out += [_splice(text, a.start, b.end, sa + mark + sb) for mark in (">", "<")]
        elif (na := _note(a, b.mult)) is not None and (nb := _note(b, a.mult)) is not None:
            out.append(_splice(text, a.start, b.end, na + text[a.end:b.start] + nb))  # swap lengths
    for a, m, b in zip(timed, timed[1:], timed[2:]):  # undot / flip an existing broken rhythm
        if m.kind == "broken" and a.kind == b.kind == "note" and m.end - m.start == 1:
            flip = "<" if text[m.start] == ">" else ">"
            out += [_splice(text, m.start, m.end, ""), _splice(text, m.start, m.end, flip)]
    return out


def rhythm_moves(text: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Whole-tune candidates, each one rhythm move away from `text`, keeping every bar's duration
    (see the module docstring); [] when the tune's body cannot be read.

    Each move rewrites one bar, so it is built and checked on that bar alone (the header plus the
    bar and its closing bar line, re-read), which is what keeps this fast; a bar that does not read
    the same alone (a tuplet running into it) is skipped."""
    body = read_bars(text)
    if body is None:
        return []
    head = text[:body_start(text)]
    cands = []
    for bar in body.bars:
        local = head + text[bar.start:bar.end + len(bar.line)]
        alone = read_bars(local)
        if alone is None or [b.duration for b in alone.bars] != [bar.duration]:
            continue
        plain = {it.start - bar.start + len(head) for it in bar.items if it.plain}  # ties across bar lines
        for it in alone.bars[0].items:
            it.plain = it.plain and it.start in plain
        for new in _bar_rhythm(local, alone.bars[0]):
            if _durations(new) == [bar.duration]:
                cands.append(text[:bar.start] + new[len(head):] + text[bar.end + len(bar.line):])
    return _subsample(_dedupe(text, cands), limit, seed)


def _durations(text: str) -> list[Fraction] | None:
    body = read_bars(text)
    return None if body is None else [b.duration for b in body.bars]


def _movable(text: str, head: str, bars: list[Bar], k: int, meter: Fraction | None) -> bool:
    """A full bar, closed by a plain ``|``, on one line, with balanced slurs, no tie into or out of
    it, that reads the same alone (no tuplet running into it): moving it moves exactly its notes."""
    bar = bars[k]
    content = text[bar.start:bar.end]
    if meter is None or bar.duration != meter or bar.line != "|" or "\n" in content or not bar.notes():
        return False
    if content.count(")") != len(re.findall(r"\((?!\d)", content)) or content.rstrip().endswith("-"):
        return False
    if _DECORATED.search(content):  # music21 misreads some decorated notes' lengths: keep such bars put
        return False
    prev = text[bars[k - 1].start:bars[k - 1].end] if k > 0 else ""
    if prev.rstrip().endswith("-") or content.lstrip().startswith(("-", ")")):
        return False
    return _durations(head + content + "|") == [meter]


def bar_moves(text: str, limit: int | None = None, seed: int = 0, max_distance: int = 4) -> list[str]:
    """Whole-tune candidates that duplicate, delete or swap full bars (see the module docstring);
    [] when the tune's body cannot be read or has no meter. Each moved bar is checked alone
    (`_movable`), so the candidates need no re-reading."""
    if max_distance < 1:
        raise ValueError(f"max_distance must be >= 1, got {max_distance}")
    body = read_bars(text)
    if body is None or body.meter is None:
        return []
    bars, head = body.bars, text[:body_start(text)]
    ok = [k for k in range(len(bars)) if _movable(text, head, bars, k, body.meter)]
    cands: list[str] = []
    for k in ok:
        b = bars[k]
        content = text[b.start:b.end]
        cands.append(text[:b.end + 1] + content + "|" + text[b.end + 1:])  # duplicate
        cands.append(text[:b.start] + text[b.end + 1:])  # delete
        for j in ok:
            if k < j <= k + max_distance:
                c = bars[j]
                cands.append(text[:b.start] + text[c.start:c.end] + text[b.end:c.start] + content + text[c.end:])
    return _subsample(_dedupe(text, cands), limit, seed)


MOVES = {"rhythm": (rhythm_moves,), "bars": (bar_moves,), "any": (rhythm_moves, bar_moves)}


def abc_moves(text: str, kind: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Whole-tune candidates of an edit kind: ``rhythm``, ``bars`` or ``any`` (both); the token
    kinds (``pitch``, ``ending``, ``cadence``) have none."""
    if kind in ("pitch", "ending", "cadence"):
        return []
    if kind not in MOVES:
        raise ValueError(f"unknown edit kind {kind!r}; choose from any, bars, cadence, ending, pitch, rhythm")
    cands = _dedupe(text, [c for fn in MOVES[kind] for c in fn(text)])
    return _subsample(cands, limit, seed)
