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

from ._abc_constraint import _tuplet

MAX_CHARS = 20_000
MAX_DIGITS = 4
MAX_NOTE_BARS = 4
MIN_NOTE = 1 / 512  # whole notes
MAX_TUPLET = 16
MAX_CHORD = 16
_MAX_SLASHES = 9  # G///////// is 1/512 of the unit

_FIELD_LINE = re.compile(r"^[A-Za-z+]:")
# one outer named group per alternative: `lastgroup` names the kind of token
_TOKEN = re.compile(
    r"""(?P<comment>%.*)
    |(?P<skip>"[^"]*"|![^!\s]*!|\+[^+\s]*\+)
    |(?P<field>\[(?P<fname>[A-Za-z]):(?P<fvalue>[^\]]*)\])
    |(?P<tuplet>\((?P<tspec>\d+(?::\d*){0,2}))
    |(?P<note>[\^_=]*[A-Ga-gzx][,']*(?P<len>\d*/*\d*))
    |(?P<multirest>[ZX](?P<bars>\d*))
    |(?P<chord>\[)(?=[\^_=A-Ga-gzx[])
    |(?P<chord_end>\](?P<clen>\d*/*\d*))
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


def _length(spec: str, what: str) -> float:
    """Multiplier of an ABC length: "" 1, "3" 3, "/" 1/2, "//" 1/4, "3/2" 3/2 (floats: the bounds
    are coarse, and Fractions made this walk ten times slower)."""
    if not spec:
        return 1.0
    num, slashes, den = _LENGTH.fullmatch(spec).groups()
    value = float(_number(num, what)) if num else 1.0
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


def _meter(value: str) -> float | None:
    """Bar length in whole notes of an ``M:`` value; None for "none" or a value music21 must judge."""
    value = value.split("%")[0].strip()
    if value in ("C", "C|"):
        return 1.0
    m = re.fullmatch(r"(\d+(?:\+\d+)*)/(\d+)", value)
    if m is None:
        return None
    num = sum(_number(d, f"meter {value!r}") for d in m.group(1).split("+"))
    den = _number(m.group(2), f"meter {value!r}")
    bar = num / den if den else 0.0
    if not 1 / 64 <= bar <= 16:
        raise _Reject(f"meter {value!r} gives a bar of {bar:g} whole notes (1/64 to 16 allowed)")
    return bar


def _unit(value: str) -> float | None:
    """Unit length of an ``L:`` value; None for a value music21 must judge."""
    value = value.split("%")[0].strip()
    m = re.fullmatch(r"(\d+)/(\d+)", value)
    if m is None:
        return None
    num, den = (_number(g, f"unit length {value!r}") for g in m.groups())
    unit = num / den if den else 0.0
    if not MIN_NOTE <= unit <= 4:
        raise _Reject(f"unit length {value!r} is out of range (1/512 to 4 whole notes allowed)")
    return unit


class _Scan:
    """Walks the body of one tune, keeping the meter, unit length, open tuplet, chord and grace group."""

    def __init__(self, bar: float, unit: float, meter_text: str) -> None:
        self.bar, self.unit, self.meter_text = bar, unit, meter_text
        self.tuplet_left, self.tuplet_ratio = 0, 1.0
        self.chord: list[float] | None = None  # multipliers of the notes of an open chord
        self.grace = False  # inside {..}

    def field(self, name: str, value: str) -> None:
        if name == "M":
            bar = _meter(value)
            if bar is not None:
                self.bar, self.meter_text = bar, value.strip()
        elif name == "L":
            self.unit = _unit(value) or self.unit

    def duration(self, multiplier: float, what: str) -> None:
        """Check one note or chord (it consumes a tuplet note): its whole notes are
        multiplier x unit x tuplet ratio."""
        whole = multiplier * self.unit
        if self.tuplet_left > 0:
            whole *= self.tuplet_ratio
            self.tuplet_left -= 1
        if whole > MAX_NOTE_BARS * self.bar:
            raise _Reject(f"{what} lasts {whole / self.bar:.4g} bars of M:{self.meter_text} (at most {MAX_NOTE_BARS})")
        if 0 < whole < MIN_NOTE:
            raise _Reject(f"{what} lasts 1/{1 / whole:.4g} of a whole note (at least 1/{1 / MIN_NOTE:g})")

    def grace_note(self, multiplier: float, what: str) -> None:
        """Grace notes take no time in the bar, but music21 still builds them at their length."""
        left = self.tuplet_left
        self.tuplet_left = 0
        self.duration(multiplier, what)
        self.tuplet_left = left

    def line(self, line: str) -> None:
        """Check one body line (chords and grace groups may continue on the next line)."""
        for m in _TOKEN.finditer(line):
            kind = m.lastgroup
            if kind == "note":
                what = f"note {m.group(0)!r}"
                mult = _length(m.group("len"), what)
                if self.chord is not None:
                    self.chord.append(mult)
                    if len(self.chord) > MAX_CHORD:
                        raise _Reject(f"a chord holds more than {MAX_CHORD} notes")
                elif self.grace:
                    self.grace_note(mult, what)
                else:
                    self.duration(mult, what)
            elif kind == "comment":
                break
            elif kind == "field":
                self.field(m.group("fname"), m.group("fvalue"))
            elif kind == "tuplet":
                self.tuplet(m.group("tspec"))
            elif kind == "multirest" and m.group("bars"):
                _number(m.group("bars"), f"rest {m.group(0)!r}")
            elif kind == "chord":
                if self.chord is not None:
                    raise _Reject(f"a chord opens inside a chord at {line[m.start():m.start() + 20]!r}")
                self.chord = []
            elif kind == "chord_end" and self.chord is not None:
                what = f"chord ending {m.group(0)!r}"
                mult = max(self.chord, default=1.0) * _length(m.group("clen"), what)
                self.chord = None
                (self.grace_note if self.grace else self.duration)(mult, what)
            elif kind == "grace":
                if self.grace or self.chord is not None:
                    raise _Reject(f"a grace group opens inside a {'grace group' if self.grace else 'chord'} "
                                  f"at {line[m.start():m.start() + 20]!r}")
                self.grace = True
            elif kind == "grace_end":
                self.grace = False

    def tuplet(self, spec: str) -> None:
        p, q, r = (_number(x, f"tuplet '({spec}'") if x else None for x in (spec.split(":") + ["", ""])[:3])
        if not (1 <= p <= MAX_TUPLET and (q is None or 1 <= q <= MAX_TUPLET) and (r is None or r <= 4 * MAX_TUPLET)):
            raise _Reject(f"tuplet '({spec}' is out of range (1 <= p, q <= {MAX_TUPLET}, r <= {4 * MAX_TUPLET})")
        left, ratio = _tuplet(spec, compound=True)  # compound: the larger default q, an upper bound
        self.tuplet_left, self.tuplet_ratio = left, float(ratio)

    def end(self) -> None:
        if self.chord is not None:
            raise _Reject("a chord '[' is never closed")
        if self.grace:
            raise _Reject("a grace group '{' is never closed")


def screen_abc(text: str) -> str | None:
    """The first reason `text` is too pathological to hand to music21, or None (see the module
    docstring for the checks). The body starts after the first ``K:`` line."""
    if len(text) > MAX_CHARS:
        return f"the tune has {len(text)} characters (at most {MAX_CHARS}; split long files into tunes at X: lines)"
    lines = text.splitlines()
    try:
        meter_text, bar, unit = "4/4", 1.0, None
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
            unit = 1 / 16 if bar < 3 / 4 else 1 / 8
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
