"""ABC tune bodies as bars of timed items: the one reader the structural edits (`_abc_moves`,
`_abc_edits`) share.

`read_bars(text)` splits a tune's body into bars and, inside each bar, into *items* with their
position in the text and their duration in whole notes: notes and rests (with accidentals,
octave marks, a length, broken rhythm ``>``/``<`` and tuplets ``(3`` applied), chords ``[CEG]2``,
and zero-length ornaments (grace groups ``{g}``, ``"..."`` annotations, ``!...!`` decorations,
slurs, ties, spaces). A bar ends at a bar line (``|``, ``||``, ``:|``, ``|:``, ``::``, ``|]``,
``[|``, with volta numbers ``|1`` / ``:|2`` / ``[2``).

The reader is deliberately strict: a body it does not fully understand (an ``M:``/``L:`` change,
multiple voices, a character it does not know) gives ``None``, and the structural edits then offer
nothing, rather than guess. Notes that take part in a tie, a tuplet, a chord or a broken rhythm are
marked not `plain`, so edits that rewrite a note's length leave them alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from ._abc_constraint import meter_length
from ._abc_text import HEADER_LINE, length_value

_NOTE = re.compile(r"(?P<pitch>(?:\^\^|__|\^|_|=)?[A-Ga-g][,']*|z)(?P<len>\d*(?:/+\d*)?)")
_OPAQUE = re.compile(r'"[^"\n]*"|![^!\s]*!|\+[^+\s]*\+|\{[^}\n]*\}|%[^\n]*')
_BAR = re.compile(r"(?:\[\||::|:*\|+\]?:*|:+)(?:\[?\d(?:[,-]\d)*)?|\[\d(?:[,-]\d)*")
_CHORD = re.compile(r"\[(?P<notes>(?:(?:\^\^|__|\^|_|=)?[A-Ga-g][,']*\d*(?:/+\d*)?)+)\](?P<len>\d*(?:/+\d*)?)")
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:")
_TUPLET = re.compile(r"\((\d)(?::(\d)?(?::(\d))?)?")
_DECORATIONS = frozenset(".~THLMOPSuv")
_INERT = frozenset(" `()-\t") | _DECORATIONS


def length_spec(mult: Fraction) -> str | None:
    """The shortest ABC length for a multiplier (``1`` -> ``""``, ``1/2`` -> ``"/"``, ``3/2`` ->
    ``"3/2"``); None when its denominator is not a power of two up to 16 (not writable plainly)."""
    if mult <= 0 or mult.denominator not in (1, 2, 4, 8, 16):
        return None
    if mult.denominator == 1:
        return "" if mult == 1 else str(mult.numerator)
    num = "" if mult.numerator == 1 else str(mult.numerator)
    return num + ("/" if mult.denominator == 2 else f"/{mult.denominator}")


@dataclass
class Item:
    """A timed (or zero-length) piece of a bar: text[start:end]."""

    start: int
    end: int
    kind: str  # "note", "rest", "chord", "broken" (the > / < marks) or "inert"
    duration: Fraction = Fraction(0)  # in whole notes, broken rhythm and tuplets applied
    pitch: str = ""  # a note's accidentals, letter and octave marks
    mult: Fraction = Fraction(0)  # a note's written length multiplier (before broken rhythm / tuplets)
    plain: bool = False  # a note whose written length alone gives its duration (no tie/tuplet/broken)


@dataclass
class Bar:
    """The items between two bar lines; `line` is the bar line that closes it ('' at the end)."""

    start: int
    end: int  # end of the content (the closing bar line starts here)
    items: list[Item] = field(default_factory=list)
    line: str = ""

    @property
    def duration(self) -> Fraction:
        return sum((i.duration for i in self.items), Fraction(0))

    def notes(self) -> list[Item]:
        return [i for i in self.items if i.kind in ("note", "chord")]


@dataclass
class Body:
    """A tune's body read into bars; `meter` is the bar length in whole notes (None: free meter)."""

    bars: list[Bar]
    meter: Fraction | None
    unit: Fraction


def _header_value(text: str, tag: str) -> str | None:
    m = re.search(rf"^{tag}:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def body_start(text: str) -> int:
    """Offset of the first body character (after the ``K:`` line); len(text) when there is none."""
    m = re.search(r"^K:.*(\n|$)", text, re.MULTILINE)
    return m.end() if m else len(text)


@dataclass
class _Reading:
    """What `read_bars` carries from one item to the next."""

    unit: Fraction  # the L: length in whole notes
    compound: bool  # 6/8, 9/8, 12/8: a tuplet's default ratio differs
    bar: Bar  # the bar being read
    bars: list[Bar] = field(default_factory=list)
    tup_left: int = 0  # notes still inside the current tuplet
    tup_ratio: Fraction = Fraction(1)
    pending_broken: Fraction | None = None  # factor for the next timed item
    tied: bool = False  # the next timed item is the end of a tie
    decorated: bool = False  # the next timed item carries a decoration (music21 misreads some lengths then)

    def last_timed(self, skip: tuple[str, ...] = ("inert",)) -> Item | None:
        return next((it for it in reversed(self.bar.items) if it.kind not in skip), None)


_FAIL = -1  # an item reader's answer when the body is one `read_bars` does not follow


def _meter_and_unit(text: str) -> tuple[Fraction | None, Fraction] | None:
    """(bar length, unit length) in whole notes from the M: and L: fields (L: defaults by the
    meter, as in the ABC standard); None when L: is not 1/n."""
    meter_field = _header_value(text, "M")
    meter = meter_length(meter_field) if meter_field not in (None, "none") else None
    unit_field = _header_value(text, "L")
    if unit_field is None:
        return meter, Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)
    m = re.fullmatch(r"1/(\d+)", unit_field)
    if not m or int(m.group(1)) == 0:
        return None
    return meter, Fraction(1, int(m.group(1)))


def _read_tuplet(m: re.Match, r: _Reading) -> int:
    """A tuplet mark ``(p:q:r``: the next r (default p) notes last q/p of their length (p or q 0:
    no tuplet)."""
    p = int(m.group(1))
    q = int(m.group(2)) if m.group(2) else {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if r.compound else 2)
    if p and q:  # "(0" or "(3:0" is no tuplet (a free edit can write one): the mark changes nothing
        r.tup_left, r.tup_ratio = int(m.group(3)) if m.group(3) else p, Fraction(q, p)
    r.bar.items.append(Item(m.start(), m.end(), "inert"))
    return m.end()


def _read_timed(chord: re.Match | None, note: re.Match | None, r: _Reading) -> int:
    """A note, rest or chord with its duration (broken rhythm and tuplets applied)."""
    m = chord or note
    try:
        if chord:
            first = _NOTE.match(chord.group("notes"))
            mult = length_value(first.group("len")) * length_value(chord.group("len"))
            kind, pitch = "chord", ""
        else:
            mult = length_value(note.group("len"))
            kind, pitch = ("rest" if note.group("pitch") == "z" else "note"), note.group("pitch")
    except ValueError:
        return _FAIL
    dur = r.unit * mult
    plain, r.tied, r.decorated = kind == "note" and not (r.tied or r.decorated), False, False
    if r.pending_broken is not None:
        dur, plain, r.pending_broken = dur * r.pending_broken, False, None
    if r.tup_left:
        dur, plain, r.tup_left = dur * r.tup_ratio, False, r.tup_left - 1
    r.bar.items.append(Item(m.start(), m.end(), kind, dur, pitch, mult, plain))
    return m.end()


def _read_broken(text: str, i: int, r: _Reading) -> int:
    """Broken rhythm ``>`` / ``<`` (up to three): the previous item lengthens (shortens) by k, the
    next one the other way."""
    ch, j = text[i], i
    while j < len(text) and text[j] == ch:
        j += 1
    prev = r.last_timed()
    if prev is None or prev.kind == "broken" or j - i > 3:
        return _FAIL
    k = Fraction(2 ** (j - i) - 1, 2 ** (j - i))  # > : 1/2, >> : 3/4, >>> : 7/8
    prev.duration *= (1 + k) if ch == ">" else (1 - k)
    prev.plain = False
    r.pending_broken = (1 - k) if ch == ">" else (1 + k)
    r.bar.items.append(Item(i, j, "broken"))
    return j


def _read_inert(ch: str, i: int, r: _Reading) -> int:
    """A zero-length character: space, backquote, slur, tie or decoration."""
    if ch == "-":  # a tie: the notes on either side keep their lengths
        prev = r.last_timed(skip=("inert",))
        if prev is not None:
            prev.plain = False
        r.tied = True
    r.decorated = r.decorated or ch in _DECORATIONS
    r.bar.items.append(Item(i, i + 1, "inert"))
    return i + 1


def _read_item(text: str, i: int, r: _Reading) -> int:
    """Read the body item at `i` (not a line start) into `r` -> the index after it, or `_FAIL`."""
    ch = text[i]
    if ch == "\n":
        r.bar.items.append(Item(i, i + 1, "inert"))
        return i + 1
    if m := _OPAQUE.match(text, i):
        r.decorated = r.decorated or ch in "!+"
        r.bar.items.append(Item(i, m.end(), "inert"))
        return m.end()
    if ch == "[" and _INLINE_FIELD.match(text, i):
        return _FAIL  # inline field
    if (m := _BAR.match(text, i)) and m.end() > i:
        r.bar.end, r.bar.line = i, m.group()
        r.bars.append(r.bar)
        r.bar = Bar(start=m.end(), end=m.end())
        return m.end()
    if m := _TUPLET.match(text, i):
        return _read_tuplet(m, r)
    chord = _CHORD.match(text, i)
    note = _NOTE.match(text, i) if chord is None else None
    if chord or note:
        return _read_timed(chord, note, r)
    if ch in "<>":
        return _read_broken(text, i, r)
    if ch in _INERT:
        return _read_inert(ch, i, r)
    return _FAIL


def read_bars(text: str) -> Body | None:
    """The tune's body as bars of timed items, or None when the reader cannot follow it (see the
    module docstring)."""
    lengths = _meter_and_unit(text)
    if lengths is None:
        return None
    meter, unit = lengths
    compound = meter is not None and meter.denominator == 8 and meter.numerator in (6, 9, 12)
    i = body_start(text)
    r = _Reading(unit=unit, compound=compound, bar=Bar(start=i, end=i))
    line_start = True
    while i < len(text):
        if line_start and HEADER_LINE.match(text, i):
            if text[i] in "MLVP":  # meter / unit / voice / parts change: not followed
                return None
            j = text.find("\n", i)
            j = len(text) if j < 0 else j + 1
            r.bar.items.append(Item(i, j, "inert"))
            i = j
            continue
        line_start = text[i] == "\n"
        i = _read_item(text, i, r)
        if i == _FAIL:
            return None
    if r.bar.items:
        r.bar.end = len(text)
        r.bars.append(r.bar)
    return Body(bars=r.bars, meter=meter, unit=unit)


def bar_durations(text: str) -> list[Fraction] | None:
    """Duration of every bar holding notes or rests, in whole notes (None: see `read_bars`)."""
    body = read_bars(text)
    if body is None:
        return None
    return [b.duration for b in body.bars if any(i.kind in ("note", "rest", "chord") for i in b.items)]
