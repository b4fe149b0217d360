"""The sample statistics of `distill.evaluate`, as pure functions of texts: diversity (distinct
n-grams, pairwise distance), novelty against the training corpus (copied character 8-grams) and
musical histograms (pitch class, melodic interval, note duration) compared by Jensen-Shannon
divergence.

The note reader (`abc_notes`) goes through `domains.read_bars` (the one reader of ABC bars) and
adds only what the histograms need: the key signature of the ``K:`` line and accidentals that
hold to the end of their bar, to give each note a MIDI pitch.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from fractions import Fraction
from itertools import combinations
from typing import Hashable, Iterable, Sequence

import numpy as np

# Semitones above C of the note letters, and the order sharps / flats enter a key signature.
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARPS, _FLATS = "FCGDAEB", "BEADGCF"
# Fifths of the major key on each tonic, and the shift of each mode relative to its major.
_MAJOR_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
                 "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7}
_MODE_SHIFT = {"": 0, "maj": 0, "ion": 0, "mix": -1, "dor": -2, "m": -3, "min": -3, "aeo": -3, "phr": -4,
               "loc": -5, "lyd": 1}
_KEY = re.compile(r"^\s*([A-G][#b]?)\s*([A-Za-z]*)")
_ACCIDENTAL = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
MAX_INTERVAL = 12  # intervals beyond an octave share the end bins


def distinct_ngrams(seqs: Iterable[Sequence[Hashable]], n: int) -> float:
    """distinct-n: unique n-grams / all n-grams over all sequences (units: characters of strings,
    tokens of id lists). 1.0 = no n-gram repeats anywhere; 0.0 when no sequence has n units."""
    if n <= 0:
        raise ValueError(f"distinct_ngrams needs n >= 1, got {n}")
    grams = [tuple(s[i : i + n]) for s in seqs for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def pairwise_distance(texts: Sequence[str], max_texts: int = 32) -> float | None:
    """Mean normalised edit distance over all pairs of the first `max_texts` texts (0 = all
    identical, 1 = nothing shared); None for fewer than two texts. Quadratic, hence the cap."""
    from gradopt import normalized_distance

    texts = list(texts)[:max_texts]
    pairs = list(combinations(texts, 2))
    if not pairs:
        return None
    return float(np.mean([normalized_distance(a, b) for a, b in pairs]))


def char_ngrams(text: str, n: int = 8) -> set[str]:
    """The set of character n-grams of `text` (empty when it is shorter than n)."""
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def copied_fraction(texts: Sequence[str], corpus: Sequence[str], n: int = 8) -> np.ndarray:
    """For each text, the share of its character n-grams that occur somewhere in `corpus`
    (1.0 = every 8 characters in a row were seen in training; nan for texts shorter than n)."""
    seen: set[str] = set()
    for c in corpus:
        seen |= char_ngrams(c, n)
    out = np.full(len(texts), np.nan)
    for i, t in enumerate(texts):
        grams = [t[j : j + n] for j in range(len(t) - n + 1)]
        if grams:
            out[i] = sum(g in seen for g in grams) / len(grams)
    return out


def js_divergence(p: Counter | dict, q: Counter | dict) -> float:
    """Jensen-Shannon divergence (bits, in [0, 1]) of two histograms given as counts over any keys:
    JS = H(m) - (H(p) + H(q)) / 2 with m = (p + q) / 2 after normalising each. nan when either
    histogram is empty."""
    keys = sorted(set(p) | set(q), key=str)
    a = np.array([float(p.get(k, 0)) for k in keys])
    b = np.array([float(q.get(k, 0)) for k in keys])
    if not a.sum() > 0 or not b.sum() > 0:
        return math.nan
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def h(x):
        x = x[x > 0]
        return float(-(x * np.log2(x)).sum())

    return max(h(m) - (h(a) + h(b)) / 2, 0.0)


def key_signature(text: str) -> dict[str, int]:
    """Accidental (semitones) of each note letter under the tune's first ``K:`` line: ``K:D`` ->
    {F: +1, C: +1}; ``K:Ador`` -> {F: +1}. Unknown or missing keys -> {} (C major)."""
    m = re.search(r"^K:(.*)$", text, re.MULTILINE)
    km = _KEY.match(m.group(1)) if m else None
    if km is None or km.group(1) not in _MAJOR_FIFTHS:
        return {}
    mode = km.group(2).lower()[:3]
    mode = "m" if mode in ("m", "mi") else mode
    if mode not in _MODE_SHIFT:
        return {}
    fifths = _MAJOR_FIFTHS[km.group(1)] + _MODE_SHIFT[mode]
    if fifths >= 0:
        return {c: 1 for c in _SHARPS[:fifths]}
    return {c: -1 for c in _FLATS[:-fifths]}


def _midi(pitch: str, sig: dict[str, int], bar_acc: dict[tuple[str, int], int]) -> int:
    """MIDI number of a note's pitch string (accidental, letter, octave marks); an explicit
    accidental holds for that letter and octave to the end of the bar (`bar_acc`)."""
    m = re.fullmatch(r"(\^\^|__|\^|_|=)?([A-Ga-g])([,']*)", pitch)
    acc, letter, marks = m.group(1), m.group(2), m.group(3)
    octave = (1 if letter.islower() else 0) + marks.count("'") - marks.count(",")
    up = letter.upper()
    if acc is not None:
        bar_acc[(up, octave)] = _ACCIDENTAL[acc]
    shift = bar_acc.get((up, octave), sig.get(up, 0))
    return 60 + 12 * octave + _LETTER[up] + shift


def abc_notes(text: str) -> list[tuple[int, Fraction]] | None:
    """The tune's single notes in order as (MIDI pitch, duration in whole notes), key signature
    and bar accidentals applied; rests and chords are skipped. None when `domains.read_bars`
    cannot follow the body (see its docstring)."""
    from domains import read_bars

    body = read_bars(text)
    if body is None:
        return None
    sig = key_signature(text)
    out = []
    for bar in body.bars:
        bar_acc: dict[tuple[str, int], int] = {}
        for item in bar.items:
            if item.kind == "note":
                out.append((_midi(item.pitch, sig, bar_acc), item.duration))
    return out


def music_histograms(texts: Sequence[str]) -> tuple[dict[str, Counter], int]:
    """Pooled histograms over the notes of `texts` -> ({"pitch_class", "interval", "duration"}, number
    of texts read). Intervals are semitones between consecutive notes of one tune, clipped to
    +-MAX_INTERVAL; durations are keyed by their fraction of a whole note ("1/8")."""
    hist = {"pitch_class": Counter(), "interval": Counter(), "duration": Counter()}
    read = 0
    for t in texts:
        notes = abc_notes(t)
        if notes is None:
            continue
        read += 1
        hist["pitch_class"].update(p % 12 for p, _ in notes)
        hist["duration"].update(str(d) for _, d in notes)
        hist["interval"].update(max(-MAX_INTERVAL, min(MAX_INTERVAL, b - a))
                                for (a, _), (b, _) in zip(notes, notes[1:]))
    return hist, read


def mean_se(x) -> tuple[float, float | None]:
    """(mean, standard error of the mean) over the finite entries of `x`; (nan, None) when empty,
    se None for a single value."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, None
    return float(x.mean()), (float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None)
