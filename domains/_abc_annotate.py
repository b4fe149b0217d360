"""Musical annotations of an ABC tune, one vector per character: what a musician reads off the page
and a character-level network cannot (that 'F' under ``K:D`` sounds F#, that two letters are a
seventh apart, that a bar is one beat short).

`annotate_abc(text)` -> float32 array (len(text), len(ABC_CHANNELS)). Channels, all 0 except:

  on the character carrying a note's letter
    note            1
    pc0 .. pc11     one-hot pitch class relative to the declared key's tonic (``K:``, default C;
                    key signature, explicit accidentals and their carry to the end of the bar applied)
    in_scale        1 when that pitch class is in the key's mode (major, minor, dorian, ...)
    unison, step_up, step_down, third_up, third_down, fourth_fifth_up, fourth_fifth_down,
    wide_up, wide_down
                    the interval from the previous note in semitones, bucketed: 0 | 1-2 | 3-4 |
                    5-7 | > 7 (beyond a fifth), by direction; nothing on the first note
  on a note's letter, a rest's ``z`` or a chord's ``[``
    dur_short, dur_eighth, dur_dotted, dur_quarter, dur_long
                    duration (broken rhythm and tuplets applied) < 1/8 | = 1/8 | between | = 1/4 | > 1/4
                    of a whole note
    downbeat        onset at the start of the bar;  on_beat: onset on a beat (a dotted quarter in
                    6/8, 9/8, 12/8, else 1/denominator of the meter);  bar_position: onset / bar length
    rest, chord     1 on a rest / a chord
  on the first character of a bar line that closes a bar holding notes or rests
    bar_line        1;  bar_full / bar_short / bar_long: the bar's duration equals / falls short of /
                    exceeds the meter (all 0 without a meter)
  last_note         1 on the letter of the tune's last note
  unread            1 on every body character when the bar reader (`read_bars`) cannot follow the body
                    (then every other channel is 0)

These are token-level descriptors, not judgements: which matter, and how, a reward model must learn
from ratings. They overlap what `rewardmodels.SimulatedRater` scores (key fit, steps, leaps, full
bars, the last note), so a reward model's agreement with that rater is an optimistic figure for
agreement with people, whose taste these channels may not cover. A ``K:`` change inside the body
is not followed (the first key holds). Reading is pure Python and cached by text; the rhythm's part is
cached by the text with every note letter read as C (`read_bars` treats all letters alike), so the
pitch variants an editor scores read their body once and add only the pitch channels.

`token_annotations(pieces)` maps the text of a token sequence (its token strings in order, "" for
special tokens) to one row per token: the sum of its characters' rows (one character per token
with the char tokenizer).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np

from ._abc_bars import body_start, read_bars

_INTERVALS = ("unison", "step_up", "step_down", "third_up", "third_down", "fourth_fifth_up",
              "fourth_fifth_down", "wide_up", "wide_down")
_DURATIONS = ("dur_short", "dur_eighth", "dur_dotted", "dur_quarter", "dur_long")
ABC_CHANNELS = (("note",) + tuple(f"pc{k}" for k in range(12)) + ("in_scale",) + _INTERVALS + _DURATIONS
                + ("downbeat", "on_beat", "bar_position", "rest", "chord", "bar_line", "bar_full", "bar_short",
                   "bar_long", "last_note", "unread"))
"""Names of the channels of `annotate_abc`, in order (module docstring: what each says)."""
CH = {name: i for i, name in enumerate(ABC_CHANNELS)}
POOL_CHANNELS = ("note", "bar_line", "last_note")
"""Indicator channels a reward model pools annotations over: means over notes, over bar lines, and
the last note's row (`rewardmodels.RewardModel`'s annotation features)."""

_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LETTERS = "CDEFGAB"
_MODES = {"maj": (0, 2, 4, 5, 7, 9, 11), "ion": (0, 2, 4, 5, 7, 9, 11), "dor": (0, 2, 3, 5, 7, 9, 10),
          "phr": (0, 1, 3, 5, 7, 8, 10), "lyd": (0, 2, 4, 6, 7, 9, 11), "mix": (0, 2, 4, 5, 7, 9, 10),
          "min": (0, 2, 3, 5, 7, 8, 10), "aeo": (0, 2, 3, 5, 7, 8, 10), "loc": (0, 1, 3, 5, 6, 8, 10)}
_KEY = re.compile(r"\s*([A-G])([#b]?)\s*([A-Za-z]*)")
_PITCH = re.compile(r"(\^\^|__|\^|_|=)?([A-Ga-g])([,']*)")
_ACCIDENTAL = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}


def read_key(text: str) -> tuple[int, tuple[int, ...], dict[str, int]]:
    """(tonic pitch class, the mode's scale as semitones above the tonic, key signature: letter ->
    alteration) of the tune's first ``K:`` field; C major when there is none or it is not a key
    (``K:none``, bagpipe keys). The signature spells the scale one letter per degree, so F# major
    gives E# and D#, never a second F."""
    m = re.search(r"^K:(.*)$", text, re.MULTILINE)
    k = _KEY.match(m.group(1)) if m else None
    if k is None:
        return 0, _MODES["maj"], {}
    letter, acc, mode = k.group(1), k.group(2), k.group(3).lower()
    mode = "min" if mode == "m" else mode[:3] or "maj"
    scale = _MODES.get(mode, _MODES["maj"])
    tonic = (_NATURAL[letter] + {"#": 1, "b": -1, "": 0}[acc]) % 12
    signature = {}
    for degree, step in enumerate(scale):
        name = _LETTERS[(_LETTERS.index(letter) + degree) % 7]
        signature[name] = (tonic + step - _NATURAL[name] + 6) % 12 - 6
    return tonic, scale, signature


def _interval_channel(d: int) -> str:
    size = abs(d)
    if size == 0:
        return "unison"
    kind = "step" if size <= 2 else "third" if size <= 4 else "fourth_fifth" if size <= 7 else "wide"
    return f"{kind}_{'up' if d > 0 else 'down'}"


def _duration_channel(d: Fraction) -> str:
    if d < Fraction(1, 8):
        return "dur_short"
    if d == Fraction(1, 8):
        return "dur_eighth"
    if d < Fraction(1, 4):
        return "dur_dotted"
    return "dur_quarter" if d == Fraction(1, 4) else "dur_long"


def _beat(meter: Fraction) -> Fraction:
    compound = meter.denominator == 8 and meter.numerator in (6, 9, 12)
    return Fraction(3, 8) if compound else Fraction(1, meter.denominator)


_MASK = str.maketrans("ABDEFGabcdefg", "CCCCCCCCCCCCC")  # every note letter to C: the same rhythm


class _Timing(NamedTuple):
    """What a tune's rhythm alone decides: the rows of every channel but the pitch ones, and its
    notes as (bar index, start of the note's text) in order."""

    rows: np.ndarray
    notes: tuple[tuple[int, int], ...]


@lru_cache(maxsize=1024)
def _timing(skeleton: str) -> _Timing | None:
    """`_Timing` of a tune whose body's note letters are all C (`_MASK`): `read_bars` treats
    every note letter alike, so all pitch variants of a tune share this reading (an editor's
    candidates read the body once). None when `read_bars` cannot follow the body."""
    body = read_bars(skeleton)
    if body is None:
        return None
    out = np.zeros((len(skeleton), len(ABC_CHANNELS)), dtype=np.float32)
    notes = []
    for b, bar in enumerate(body.bars):
        onset = Fraction(0)
        for item in bar.items:
            if item.kind not in ("note", "rest", "chord"):
                continue
            row = out[item.start]  # a note's own row is its letter's, filled with the pitch channels
            if item.kind == "note":
                notes.append((b, item.start))
                row = out[item.start + len(item.pitch) - len(item.pitch.lstrip("^_="))]
            else:
                row[CH[item.kind]] = 1.0
            row[CH[_duration_channel(item.duration)]] = 1.0
            if body.meter is not None:
                row[CH["downbeat"]] = float(onset == 0)
                row[CH["on_beat"]] = float(onset % _beat(body.meter) == 0)
                row[CH["bar_position"]] = float(onset / body.meter)
            onset += item.duration
        if bar.line and any(i.kind in ("note", "rest", "chord") for i in bar.items):
            row = out[bar.end]
            row[CH["bar_line"]] = 1.0
            if body.meter is not None:
                total = bar.duration
                row[CH["bar_full" if total == body.meter else "bar_short" if total < body.meter else "bar_long"]] = 1.0
    out.setflags(write=False)
    return _Timing(out, tuple(notes))


@lru_cache(maxsize=8192)
def _annotate(text: str) -> np.ndarray:
    start = body_start(text)
    timing = _timing(text[:start] + text[start:].translate(_MASK))
    if timing is None:
        out = np.zeros((len(text), len(ABC_CHANNELS)), dtype=np.float32)
        out[start:, CH["unread"]] = 1.0
        out.setflags(write=False)
        return out
    out = timing.rows.copy()
    tonic, scale, signature = read_key(text)
    scale_set = set(scale)
    prev_midi, last_note, carried, bar = None, None, {}, -1
    for b, at in timing.notes:
        if b != bar:  # accidentals carry to the end of their bar
            carried, bar = {}, b
        last_note, prev_midi = _note(text, at, out, tonic, scale_set, signature, carried, prev_midi)
    if last_note is not None:
        last_note[CH["last_note"]] = 1.0
    out.setflags(write=False)
    return out


def _note(text, at, out, tonic, scale_set, signature, carried, prev_midi):
    """Fill the pitch channels of the note whose text starts at `at` into its letter's row of `out`
    -> (that row, the note's MIDI number, middle C = 60)."""
    m = _PITCH.match(text, at)
    acc, letter, marks = m.groups()
    name = letter.upper()
    octave = (4 if letter.isupper() else 5) + marks.count("'") - marks.count(",")
    if acc is not None:
        carried[(name, octave)] = _ACCIDENTAL[acc]
    midi = 12 * (octave + 1) + _NATURAL[name] + carried.get((name, octave), signature.get(name, 0))
    row = out[m.start(2)]
    pc = (midi - tonic) % 12
    row[CH["note"]] = 1.0
    row[CH[f"pc{pc}"]] = 1.0
    row[CH["in_scale"]] = float(pc in scale_set)
    if prev_midi is not None:
        row[CH[_interval_channel(midi - prev_midi)]] = 1.0
    return row, midi


def annotate_abc(text: str) -> np.ndarray:
    """Per-character musical annotations of an ABC tune -> read-only float32 (len(text), C), C =
    len(`ABC_CHANNELS`) (module docstring: the channels). Cached by text."""
    if not isinstance(text, str):
        raise ValueError(f"annotate_abc needs the tune's text (a str), got {type(text).__name__}")
    return _annotate(text)


def token_annotations(pieces: list[str]) -> np.ndarray:
    """Annotations of a token sequence given each token's text (`pieces`, "" for special tokens such
    as BOS, EOS and padding) -> float32 (len(pieces), C): each token's row is the sum of the rows of
    its characters in the concatenated text."""
    text = "".join(pieces)
    chars = annotate_abc(text)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    if int(lengths.max(initial=0)) <= 1:  # one character per token (or none): a scatter, no sums
        out = np.zeros((len(pieces), chars.shape[1]), dtype=np.float32)
        out[lengths == 1] = chars
        return out
    owner = np.repeat(np.arange(len(pieces)), lengths)
    out = np.zeros((len(pieces), chars.shape[1]), dtype=np.float32)
    np.add.at(out, owner, chars)
    return out


class Annotator(NamedTuple):
    """A named kind of token annotations a reward model can read (`ANNOTATORS`)."""

    tokens: Callable[[list[str]], np.ndarray]  # token texts -> (t, C) float32 rows
    channels: tuple[str, ...]  # the C channel names
    pool_channels: tuple[str, ...]  # indicator channels to pool annotations over


ANNOTATORS = {"abc": Annotator(token_annotations, ABC_CHANNELS, POOL_CHANNELS)}
"""Annotation kinds by name: what ``RewardModel(annotations=NAME)`` reads and saves."""
