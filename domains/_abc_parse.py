"""music21's view of one ABC tune: note count, length and over-long bars.

This file runs inside the parse worker (see `_timed_worker`), a separate process, so it imports
only the standard library and music21, never the `domains` package (which loads torch). The
verdict (valid or not, and why) is made by `validate_abc` in the calling process from these facts.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import music21
from music21 import abcFormat

_BAR_TOLERANCE = 1e-6


def bar_overruns(text: str) -> tuple[int, int]:
    """(number of bars, number of bars longer than the meter) by summing note durations.

    music21 silently accepts over-long bars when it builds a score, so this walks its ABC
    tokens instead: grace notes do not count, tuplets scale their notes, M: changes apply.
    """
    handler = abcFormat.ABCHandler()
    handler.process(text)
    bar_len: Fraction | None = None
    n_bars = over = 0
    current = Fraction(0)
    for tok in handler.tokens:
        if isinstance(tok, abcFormat.ABCMetadata) and tok.isMeter():
            ts = tok.getTimeSignatureObject()
            bar_len = Fraction(ts.barDuration.quarterLength).limit_denominator(64) if ts else None
        elif isinstance(tok, abcFormat.ABCBar):
            if current > 0:
                n_bars += 1
                if bar_len is not None and current > bar_len + _BAR_TOLERANCE:
                    over += 1
            current = Fraction(0)
        elif isinstance(tok, (abcFormat.ABCNote, abcFormat.ABCChord)) and not getattr(tok, "inGrace", False):
            ql = Fraction(tok.quarterLength).limit_denominator(96)
            if tok.activeTuplet is not None:
                ql *= Fraction(tok.activeTuplet.tupletMultiplier()).limit_denominator(96)
            current += ql
    if current > 0:
        n_bars += 1
        if bar_len is not None and current > bar_len + _BAR_TOLERANCE:
            over += 1
    return n_bars, over


def parse_facts(text: str) -> tuple[int, float, int] | str:
    """(number of notes, length in quarter notes, number of bars longer than the meter), or the
    reason music21 could not parse `text` ("ExceptionType: message")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = music21.converter.parse(text, format="abc")
            n_notes = len(score.recurse().notes)
            length = float(score.highestTime)
            _, over = bar_overruns(text)
        except Exception as err:  # music21 raises many types on malformed ABC
            return f"{type(err).__name__}: {str(err)[:80]}"
    return n_notes, length, over


handle = parse_facts  # the function the worker serves


def warm_up() -> None:
    """One small parse, so music21's lazy set-up is not charged to the first timed call."""
    parse_facts("X:1\nM:2/4\nL:1/8\nK:G\nGA Bc|d2 B2|\n")
