"""Cheap checks that turn away pathological ABC before music21 sees it.

music21 takes time that grows with a note's length when it re-bars a note longer than a bar
followed by a partial bar: ``G2222222|2d/-^eB2|`` (one note of 2,222,222 eighths) ran for over 15
minutes and 4 GB. The ascent engine edits digits freely, so such candidates are common. These
checks walk the tune once with a regular expression (well under a millisecond for a corpus tune)
and name the first problem; the parse worker's time limit (`validate_abc`'s `timeout`) stays the
guarantee for whatever they miss. Every bound is far outside the bundled corpus (its longest note
lasts 2 bars, its shortest 1/128 of a whole note, its longest tune 1,935 characters):

- the tune has at most `MAX_CHARS` characters;
- every number in a length, tuplet, ``L:`` or ``M:`` has at most `MAX_DIGITS` digits;
- a note, rest or chord lasts at most `MAX_NOTE_BARS` bars of the meter in force and at least
  `MIN_NOTE` of a whole note (``L:`` unit x length x active tuplet ratio);
- ``L:`` and ``M:`` values give a unit of `MIN_NOTE`..4 and a bar of 1/64..16 whole notes;
- a tuplet ``(p:q:r`` has 1 <= p, q <= `MAX_TUPLET` and r <= 4 * `MAX_TUPLET`;
- chords ``[..]`` and grace groups ``{..}`` close (the corpus breaks lines inside chords), neither
  opens inside itself nor a grace group inside a chord, and a chord holds at most `MAX_CHORD` notes.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ._abc_constraint import _tuplet

MAX_CHARS = 20_000
MAX_DIGITS = 4
MAX_NOTE_BARS = 4
MIN_NOTE = Fraction(1, 512)
MAX_TUPLET = 16
MAX_CHORD = 16
_MAX_SLASHES = 9  # G///////// is 1/512 of the unit

_FIELD_LINE = re.compile(r"^[A-Za-z+]:")
_TOKEN = re.compile(
    r"""(?P<comment>%.*)
    |(?P<quote>"[^"]*")
    |(?P<deco>![^!\s]*!|\+[^+\s]*\+)
    |(?P<field>\[(?P<fname>[A-Za-z]):(?P<fvalue>[^\]]*)\])
    |\((?P<tuplet>\d+(?::\d*){0,2})
    |(?P<note>[\^_=]*[A-Ga-gzx][,']*)(?P<len>\d*/*\d*)
    |(?P<multirest>[ZX])(?P<bars>\d*)
    |(?P<chord>\[)(?=[\^_=A-Ga-gzx[])
    |\](?P<clen>\d*/*\d*)
    |(?P<grace>\{)
    |(?P<grace_end>\})
    """,
    re.VERBOSE,
)
_LENGTH = re.compile(r"(\d*)(/*)(\d*)")


class _Reject(Exception):
    """The tune fails a check; the message is the reason."""


def _number(digits: str, what: str) -> int:
    if len(digits) > MAX_DIGITS:
        raise _Reject(f"{what} has a {len(digits)}-digit number (at most {MAX_DIGITS} digits)")
    return int(digits)


def _length(spec: str, what: str) -> Fraction:
    """Multiplier of an ABC length: "" 1, "3" 3, "/" 1/2, "//" 1/4, "3/2" 3/2."""
    num, slashes, den = _LENGTH.fullmatch(spec).groups()
    value = Fraction(_number(num, what) if num else 1)
    if len(slashes) > _MAX_SLASHES:
        raise _Reject(f"{what} has {len(slashes)} slashes (at most {_MAX_SLASHES})")
    if not slashes:
        return value
    if den:
        d = _number(den, what)
        if d == 0:
            raise _Reject(f"{what} divides by zero")
        return value / (d * 2 ** (len(slashes) - 1))
    return value / 2 ** len(slashes)


def _meter(value: str) -> Fraction | None:
    """Bar length in whole notes of an ``M:`` value; None for "none" or a value music21 must judge."""
    value = value.split("%")[0].strip()
    if value in ("C", "C|"):
        return Fraction(1)
    m = re.fullmatch(r"(\d+(?:\+\d+)*)/(\d+)", value)
    if m is None:
        return None
    num = sum(_number(d, f"meter {value!r}") for d in m.group(1).split("+"))
    den = _number(m.group(2), f"meter {value!r}")
    bar = Fraction(num, den) if den else Fraction(0)
    if not Fraction(1, 64) <= bar <= 16:
        raise _Reject(f"meter {value!r} gives a bar of {float(bar):g} whole notes (1/64 to 16 allowed)")
    return bar


def _unit(value: str) -> Fraction | None:
    """Unit length of an ``L:`` value; None for a value music21 must judge."""
    value = value.split("%")[0].strip()
    m = re.fullmatch(r"(\d+)/(\d+)", value)
    if m is None:
        return None
    num, den = (_number(g, f"unit length {value!r}") for g in m.groups())
    unit = Fraction(num, den) if den else Fraction(0)
    if not MIN_NOTE <= unit <= 4:
        raise _Reject(f"unit length {value!r} is out of range (1/512 to 4 whole notes allowed)")
    return unit


class _Scan:
    """Walks the body of one tune, keeping the meter, unit length and open tuplet."""

    def __init__(self, bar: Fraction, unit: Fraction, meter_text: str) -> None:
        self.bar, self.unit, self.meter_text = bar, unit, meter_text
        self.tuplet_left, self.tuplet_ratio = 0, Fraction(1)
        self.chord: list[Fraction] | None = None  # multipliers of the notes of an open chord
        self.grace = False  # inside {..}

    def field(self, name: str, value: str) -> None:
        if name == "M":
            bar = _meter(value)
            if bar is not None:
                self.bar, self.meter_text = bar, value.strip()
        elif name == "L":
            self.unit = _unit(value) or self.unit

    def duration(self, multiplier: Fraction, what: str) -> Fraction:
        """Whole notes of one note or chord (consumes a tuplet note); raises on absurd lengths."""
        ratio = self.tuplet_ratio if self.tuplet_left > 0 else Fraction(1)
        self.tuplet_left -= 1
        whole = multiplier * self.unit * ratio
        if whole > MAX_NOTE_BARS * self.bar:
            raise _Reject(f"{what} lasts {float(whole / self.bar):.4g} bars of M:{self.meter_text} "
                          f"(at most {MAX_NOTE_BARS})")
        if 0 < whole < MIN_NOTE:
            raise _Reject(f"{what} lasts 1/{float(1 / whole):.4g} of a whole note (at least 1/{1 / MIN_NOTE})")
        return whole

    def line(self, line: str) -> None:
        """Check one body line (chords and grace groups may continue on the next line)."""
        for m in _TOKEN.finditer(line):
            if m.group("comment") is not None:
                break
            if m.group("quote") is not None or m.group("deco") is not None:
                continue
            if m.group("field") is not None:
                self.field(m.group("fname"), m.group("fvalue"))
            elif m.group("tuplet") is not None:
                spec = m.group("tuplet")
                parts = [_number(p, f"tuplet '({spec}'") if p else None for p in (spec.split(":") + [None, None])[:3]]
                p, q, r = parts
                if not (1 <= p <= MAX_TUPLET and (q is None or 1 <= q <= MAX_TUPLET) and (r is None or r <= 4 * MAX_TUPLET)):
                    raise _Reject(f"tuplet '({spec}' is out of range (1 <= p, q <= {MAX_TUPLET}, r <= {4 * MAX_TUPLET})")
                self.tuplet_left, self.tuplet_ratio = _tuplet(spec, compound=True)
            elif m.group("note") is not None:
                what = f"note {m.group(0)!r}"
                mult = _length(m.group("len"), what)
                if self.chord is not None:
                    self.chord.append(mult)
                    if len(self.chord) > MAX_CHORD:
                        raise _Reject(f"a chord holds more than {MAX_CHORD} notes")
                elif self.grace:
                    self.check_grace(mult, what)
                else:
                    self.duration(mult, what)
            elif m.group("multirest") is not None:
                if m.group("bars"):
                    _number(m.group("bars"), f"rest {m.group(0)!r}")
            elif m.group("chord") is not None:
                if self.chord is not None:
                    raise _Reject(f"a chord opens inside a chord at {line[m.start():m.start() + 20]!r}")
                self.chord = []
            elif m.group("clen") is not None and self.chord is not None:
                what = f"chord ending {m.group(0)!r}"
                mult = max(self.chord, default=Fraction(1)) * _length(m.group("clen"), what)
                self.chord = None
                if self.grace:
                    self.check_grace(mult, what)
                else:
                    self.duration(mult, what)
            elif m.group("grace") is not None:
                if self.grace or self.chord is not None:
                    raise _Reject(f"a grace group opens inside a {'grace group' if self.grace else 'chord'} "
                                  f"at {line[m.start():m.start() + 20]!r}")
                self.grace = True
            elif m.group("grace_end") is not None:
                self.grace = False

    def end(self) -> None:
        if self.chord is not None:
            raise _Reject("a chord '[' is never closed")
        if self.grace:
            raise _Reject("a grace group '{' is never closed")

    def check_grace(self, mult: Fraction, what: str) -> None:
        """Grace notes take no time in the bar, but music21 still builds them at their length."""
        left, ratio = self.tuplet_left, self.tuplet_ratio
        self.tuplet_left = 0
        self.duration(mult, what)
        self.tuplet_left, self.tuplet_ratio = left, ratio


def screen_abc(text: str) -> str | None:
    """The first reason `text` is too pathological to hand to music21, or None (see the module
    docstring for the checks). Assumes a ``K:`` line (the body starts after the first one)."""
    if len(text) > MAX_CHARS:
        return f"the tune has {len(text)} characters (at most {MAX_CHARS}; split long files into tunes at X: lines)"
    lines = text.splitlines()
    try:
        meter_text, bar, unit = "4/4", Fraction(1), None
        start = 0
        for i, line in enumerate(lines):
            if line.startswith("M:"):
                bar = _meter(line[2:]) or bar
                meter_text = line[2:].strip()
            elif line.startswith("L:"):
                unit = _unit(line[2:]) or unit
            elif line.startswith("K:"):
                start = i + 1
                break
        if unit is None:  # the ABC standard's default
            unit = Fraction(1, 16) if bar < Fraction(3, 4) else Fraction(1, 8)
        scan = _Scan(bar, unit, meter_text)
        for line in lines[start:]:
            if _FIELD_LINE.match(line):
                scan.field(line[0], line[2:])
            else:
                scan.line(line)
        scan.end()
    except _Reject as err:
        return str(err)
    return None
