"""Bar-aware sampling for ABC: a streaming grammar that masks tokens which would break a tune.

A small generator learns what ABC looks like long before it learns to count: most invalid samples
are bars longer than the meter (see `validate_abc`). `ABCConstraint` follows a sample character by
character and, at every step, allows only the tokens after which the tune can still be valid:

- header: field lines ``X: T: M: L: K:``, X: first, each once; the values of ``M:``, ``L:``
  and ``K:`` must be ones the constraint knows (a built-in list, or those of a corpus with
  `from_texts`); ``K:`` needs ``M:`` and ``L:`` before it (no default unit length to guess)
  and ends the header;
- body: the running duration of the current bar (notes, rests, chords, broken rhythm ``>``/``<``,
  tuplets ``(3``, unit length ``L:``, inline ``[M:..]``/``[L:..]`` fields) may never exceed the
  meter; a note letter is allowed if it still fits once shortened (``A//``), a length character
  only if the note can still be completed to fit, so a full bar leaves the bar line, a tie, a
  closing slur or the end as the choices;
- chords ``[CEG]`` (at most 4 notes) and grace notes ``{ga}`` (at most 4: else a model that
  wants a bar line inside a grace group, where none may stand, writes notes until its context
  ends and the group never closes) must close before a line break or the end; a body ``M:``
  line or inline ``[M:..]`` only with a meter the current bar still fits (else a dead end);
  accidentals must precede a note, octave marks and lengths follow one, broken rhythm ``>``
  sits right after a note and before the next; at most 3 ornaments in a row;
  annotations ``"..."`` and ``!...!`` decorations are not produced (music21 reads stray ones as
  notes);
- the end token is allowed only in the body, after at least one note, with nothing left open.

Short bars stay allowed (pickups, last bars), as `validate_abc` allows them. Sampling under the
constraint is sampling from the model restricted to these continuations and renormalised; it is
an option of `sample_ids` (``constraint=``), off unless asked for.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from math import lcm
from typing import Iterable, Sequence

import torch

from ._abc_text import NOTE_LETTERS, length_value

RESTS = frozenset("z")  # music21 does not count invisible rests (x) in a bar
ACCIDENTALS = frozenset("^_=")
DECORATIONS = frozenset("THLMOPSuv.~")  # single-character ornaments; no duration
INERT = frozenset(" `)-")  # characters with no duration and no state
FIELD_NAMES = frozenset("XTMLK")

DEFAULT_METERS = ("2/4", "3/4", "4/4", "6/8", "9/8", "12/8", "3/8", "6/4", "3/2", "2/2", "C", "C|")
DEFAULT_UNITS = ("1/4", "1/8", "1/16")
DEFAULT_KEYS = tuple(
    f"{tonic}{mode}" for tonic in ("C", "G", "D", "A", "E", "B", "F", "Bb", "Eb", "Ab", "F#")
    for mode in ("", "m", "mix", "dor", "lyd", "phr", " Minor", " Mixolydian", " Dorian")
)
MAX_ORNAMENTS = 3  # ornaments / beam gaps in a row (small models loop on them)
MAX_CHORD = 4  # notes in a chord
MAX_GRACE = 4  # notes in a grace group (the fiddle corpus: 15 of 3,328 groups have more than 3)
_LENGTH = re.compile(r"(?:1[0-6]?|[2-9])(?:/(?:16?|2|4|8)?)?|/{1,2}|/(?:16?|2|4|8)")  # 3 / // 3/2 /4 3/


def meter_length(value: str) -> Fraction | None:
    """Bar length of an ``M:`` value in whole notes (``"6/8"`` -> 3/4, ``"C|"`` -> 1)."""
    value = value.strip()
    if value in ("C", "C|"):
        return Fraction(1)
    m = re.fullmatch(r"(\d+)/(\d+)", value)
    return Fraction(int(m.group(1)), int(m.group(2))) if m and int(m.group(2)) else None


def _unit_length(value: str) -> Fraction | None:
    m = re.fullmatch(r"1/(\d+)", value.strip())
    return Fraction(1, int(m.group(1))) if m and int(m.group(1)) else None


def _least(spec: str) -> Fraction:
    """The shortest length a partial length can still reach by appending slashes (``//`` quarters)."""
    if "/" not in spec:
        return length_value(spec) / 4
    return length_value(spec) / (2 if spec.endswith("/") and not spec.endswith("//") else 1)


@lru_cache(maxsize=None)
def _value_ratio(spec: str) -> tuple[int, int]:
    """`length_value` of a (possibly partial) length the grammar accepts, as (numerator, denominator)."""
    v = length_value(spec)
    return v.numerator, v.denominator


@lru_cache(maxsize=None)
def _least_ratio(spec: str) -> tuple[int, int]:
    """`_least` as (numerator, denominator)."""
    v = _least(spec)
    return v.numerator, v.denominator


def _tuplet(spec: str, compound: bool) -> tuple[int, Fraction]:
    """``(p:q:r`` -> (r notes affected, ratio q/p)."""
    parts = spec.split(":")
    p = int(parts[0])
    default_q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
    q = int(parts[1]) if len(parts) > 1 and parts[1] else default_q
    r = int(parts[2]) if len(parts) > 2 and parts[2] else p
    return r, Fraction(q, p)


def _scale(x, num: int, den: int):
    """``x * num / den`` exactly: a duration in integer ticks stays an integer (the tick, see
    `ticks_per_whole`, is chosen so that it divides), one held as a `Fraction` stays a fraction."""
    if type(x) is int:
        q, r = divmod(x * num, den)
        if r:
            raise ArithmeticError(f"{x} ticks x {num}/{den} is not a whole number of ticks; the tick is too coarse")
        return q
    return x * num / den


def ticks_per_whole(meters: Iterable[Fraction], units: Iterable[Fraction]) -> int:
    """Ticks in a whole note such that every duration the grammar forms is a whole number of
    ticks: bar lengths and unit lengths (their denominators), times broken rhythm (quarters of a
    length), tuplet ratios q/p (p <= 9), two length specs (a chord's and its notes', ``/16`` at
    the finest), the quarter a pending length may still shrink to (slashes, and once more in a
    chord) and the quarter of the last length that a second ``>`` moves."""
    base = lcm(8, 16, *(m.denominator for m in meters), *(u.denominator for u in units))
    return base * 4 * lcm(*range(2, 10)) * 16 * 16 * 16 * 4


# Modes in which a slot is read before it is overwritten (`_Tracker.live_key`).
_HEADER_MODES = frozenset({"hl", "hf0", "hf"})
_VALUE_MODES = frozenset({"bf0", "bf", "ifield", "tup"})  # `field` / `value` in the body
_CHORD_MODES = frozenset({"chord", "chord_len"})
_ITEM_MODES = frozenset({"note", "chord", "chord_len"})  # a pending item: `base`
_BRK_MODES = frozenset({"note", "chord", "chord_len", "brk"})
# Modes whose characters are read one by one (field values: any letter may or may not continue
# a key); in every other mode characters of one `_char_class` are interchangeable.
_SPELLED_MODES = frozenset({"hl", "hf0", "hf", "bf", "ifield"})


_NAMED = NOTE_LETTERS | RESTS | ACCIDENTALS | DECORATIONS | INERT | frozenset("0123456789/,'<>|:\n[](){}MLK")


def _char_class(piece: str) -> str:
    """Tokens of one class have the same effect on a body state, so `ABCConstraint.allowed` tries
    one of each: the grammar tests note letters, ornaments (but ``M``/``L``, also field names) and
    characters it never names only for membership in their set; every other character is its own
    class, and so is every piece longer than one character."""
    if len(piece) != 1 or piece.isdigit():
        return piece
    if piece in NOTE_LETTERS:
        return "note"
    if piece in DECORATIONS and piece not in "ML":
        return "ornament"
    return piece if piece in _NAMED else "unnamed"


class _Dead(Exception):
    """The character cannot follow; the token is masked."""


class _Tracker:
    """Mutable parse state of one sample; `key()` identifies states with the same future."""

    __slots__ = ("mode", "field", "value", "meter", "has_meter", "unit", "cur", "base", "spec",
                 "chord_spec", "chord_notes", "acc", "tup_left", "tup_ratio", "broken", "brk", "last", "inert", "rest",
                 "notes", "grace_notes", "one")

    def __init__(self, one: int | Fraction = Fraction(1)) -> None:
        # durations are numbers of `one` (a whole note): integer ticks, or fractions (one = 1)
        self.one = one
        self.mode = "hl"  # hl header line start | hf0/hf header field | bl body line start | b body ...
        self.field = self.value = ""
        self.meter: int | Fraction | None = None
        self.has_meter = False
        self.unit: int | Fraction | None = None
        self.cur = 0  # finished durations in the current bar
        self.base = 0  # the pending note/chord's length before its own length spec
        self.spec = ""  # the pending item's length characters
        self.chord_spec, self.chord_notes = "", 0
        self.acc = ""  # accidentals waiting for their note letter
        self.tup_left, self.tup_ratio = 0, (1, 1)  # ratio (q, p): q notes' time for p
        self.broken, self.brk, self.last = 4, "", 0  # broken: the next item's length factor, in quarters
        self.inert = 0  # ornaments in a row
        self.rest = False  # the pending item is a rest
        self.notes = self.grace_notes = 0

    def key(self) -> tuple:
        """The whole state (the reference path's cache key)."""
        return tuple(getattr(self, s) for s in self.__slots__[:-3]) + (self.notes > 0, self.grace_notes)

    def live_key(self) -> tuple:
        """The parts of the state that can still change what follows: two states with the same
        live key allow the same tokens. Leaves out what the next characters overwrite before
        reading it (a header title's text, the last item's length outside a broken rhythm, a
        finished chord's notes...), so that more states share one mask."""
        m = self.mode
        header = m in _HEADER_MODES
        if header:  # which fields were seen matters, not their order; of X: only the number's length,
            seen, _, value = self.value.partition("=")  # of a free text (T:) nothing
            value = (value if self.field in "MLK" else len(value) if self.field == "X" else "", "".join(sorted(seen)))
        else:
            value = self.value if m in _VALUE_MODES else ""
        chord = m in _CHORD_MODES
        return (m, self.field if header or m in _VALUE_MODES else "", value, self.meter, self.has_meter, self.unit,
                self.cur, self.base if m in _ITEM_MODES else 0, self.spec,
                self.chord_spec if chord else "", self.chord_notes if chord else 0, self.acc,
                self.tup_left, self.tup_ratio if self.tup_left else (1, 1), self.broken,
                self.brk if m in _BRK_MODES else "", self.last if m == "brk" else 0, self.inert,
                self.rest if m == "note" else False, self.notes > 0, self.grace_notes if m == "grace" else 0)

    def copy(self) -> "_Tracker":
        new = _new_tracker(_Tracker)
        new.mode, new.field, new.value = self.mode, self.field, self.value
        new.meter, new.has_meter, new.unit, new.cur = self.meter, self.has_meter, self.unit, self.cur
        new.base, new.spec, new.chord_spec, new.chord_notes = self.base, self.spec, self.chord_spec, self.chord_notes
        new.acc, new.tup_left, new.tup_ratio = self.acc, self.tup_left, self.tup_ratio
        new.broken, new.brk, new.last, new.inert = self.broken, self.brk, self.last, self.inert
        new.rest, new.notes, new.grace_notes, new.one = self.rest, self.notes, self.grace_notes, self.one
        return new

    # -- durations -------------------------------------------------------------------------------
    def pending(self):
        if self.mode == "note":
            return _scale(self.base, *_value_ratio(self.spec))
        if self.mode in ("chord", "chord_len"):
            chord = _scale(self.base, *_value_ratio(self.chord_spec))
            return _scale(chord, *_value_ratio(self.spec)) if self.mode == "chord_len" else chord
        return 0

    def lower_bound(self):
        """The shortest the pending item can still become (``A`` may still be ``A//``)."""
        if self.mode == "note":
            return _scale(self.base, *_least_ratio(self.spec))
        if self.mode == "chord":  # the outer length may still quarter it; the first note's own
            num, den = _least_ratio(self.chord_spec) if self.chord_notes < 2 else _value_ratio(self.chord_spec)
            return _scale(self.base, num, den * 4)  # length is fixed once a second note starts
        if self.mode == "chord_len":
            return _scale(_scale(self.base, *_value_ratio(self.chord_spec)), *_least_ratio(self.spec))
        return 0

    def _fits(self) -> None:
        if self.meter is not None and self.cur + self.lower_bound() > self.meter:
            raise _Dead

    def full(self) -> bool:
        """No note fits in the current bar any more."""
        if self.meter is None:
            return False
        base = _scale(self._unit(), self.broken, 4)
        if self.tup_left:
            base = _scale(base, *self.tup_ratio)
        return 4 * self.cur + base > 4 * self.meter

    def _room(self) -> None:
        """A note must follow (after an accidental or a broken rhythm): is there room for one?"""
        if self.full():
            raise _Dead

    def _unit(self):
        if self.unit is not None:
            return self.unit
        return _scale(self.one, 1, 16 if self.meter is not None and 4 * self.meter < 3 * self.one else 8)

    def _start_item(self) -> None:
        """A note, rest or chord begins: it takes the tuplet and broken-rhythm factors."""
        self.base = _scale(self._unit(), self.broken, 4)
        if self.tup_left:
            self.base = _scale(self.base, *self.tup_ratio)
            self.tup_left -= 1
        # "*" marks a note that is itself the short/long half of a broken rhythm (no chaining)
        self.brk = "*" if self.broken != 4 else ""
        self.broken, self.spec, self.rest = 4, "", False
        self.notes += 1

    def _finish(self) -> None:
        """Fold the pending item into the bar."""
        if self.mode in ("note", "chord_len"):
            d = self.pending()
            if self.meter is not None and self.cur + d > self.meter:
                raise _Dead
            self.cur += d
            self.last = d
            self.mode = "b"
            self.spec = ""

    # -- one character ---------------------------------------------------------------------------
    def feed(self, ch: str, c: "ABCConstraint") -> None:
        m = self.mode
        if m in ("hl", "hf0", "hf"):
            return self._header(ch, c)
        if m in ("bf0", "bf"):
            return self._body_field(ch, c)
        if m == "ifield":  # inline [M:6/8]
            return self._inline_field(ch, c)
        if m == "tup":  # (p:q:r, one digit each
            if (ch == ":" and self.value.count(":") < 2) or (ch in "23456789" and self.value[-1] == ":"):
                self.value += ch
                return
            self.tup_left, ratio = _tuplet(self.value, self._compound())
            self.tup_ratio = ratio.numerator, ratio.denominator
            self.mode = "b"
            return self.feed(ch, c)
        if m == "paren":
            self.mode = "b"
            if ch in "23456789" and not self.tup_left:
                self.mode, self.value = "tup", ch
                return
            return self.feed(ch, c)
        if m == "acc":
            return self._accidental(ch)
        if m == "deco" and not (ch in NOTE_LETTERS or ch in RESTS or ch in ACCIDENTALS or ch in DECORATIONS):
            raise _Dead
        if m in ("chord", "grace"):
            return self._inside(ch)
        if m in ("note", "chord_len"):
            if ch.isdigit() or ch == "/":
                if not self._extend_spec(ch):
                    raise _Dead
                return self._fits()
            if ch in ",'" and m == "note" and not self.spec:
                return
            if ch in "><" and not self.rest and not self.brk:
                return self._broken(ch)
            self._finish()
        if m == "brk":
            if ch in "><" and len(self.brk) < 2 and ch == self.brk[0]:
                return self._broken(ch)
            if not (ch in NOTE_LETTERS or ch in ACCIDENTALS or ch == "["):  # music21 misreads rests here
                raise _Dead
            self.mode = "b"
        if self.mode == "bl" and ch in "MLK":
            self.mode, self.field = "bf0", ch
            return
        if self.mode in ("lb", "lbb"):
            return self._after_bracket(ch, c)
        self._body(ch)

    def _body(self, ch: str) -> None:
        prev, self.mode = self.mode, "b"
        if ch not in INERT and ch not in DECORATIONS:
            self.inert = 0
        if ch in NOTE_LETTERS or ch in RESTS:
            self._start_item()
            self.mode, self.rest = "note", ch in RESTS
            return self._fits()
        if ch in ACCIDENTALS:
            self.mode, self.acc = "acc", ch
            return self._room()
        if ch == "|":
            self.cur, self.mode = 0, "bar"
            return
        if ch.isdigit():  # volta number right after a bar line: |1 :|2
            if prev == "bar" and ch in "123456789":
                self.mode = "volta"
                return
            raise _Dead
        if prev == "colon" and ch != "|":
            raise _Dead
        if ch == ":":  # :| and |: (a bare :: is not read as a bar line everywhere, so it is not written)
            self.mode = "bar" if prev == "bar" else "colon"
            return
        if ch == "\n":
            self.mode = "bl"
            return
        if self.full() and ch not in ")-\n `":
            raise _Dead  # a full bar: a bar line, the end, closing a slur / tie, or a gap
        simple = {"[": "lb", "(": "paren", "{": "grace"}
        if ch == "{" and self.tup_left:
            raise _Dead  # music21 counts grace notes into a tuplet
        if ch in simple:
            self.mode = "lbb" if ch == "[" and prev in ("bar", "bl") else simple[ch]
            if ch == "{":
                self.grace_notes = 0
            return
        if ch in DECORATIONS:  # music21 reads ornaments not followed by a note as a note
            self.inert += 1
            if self.inert > MAX_ORNAMENTS:
                raise _Dead
            self.mode = "deco"
            return self._room()
        if ch in INERT:
            self.inert += 1
            if self.inert > MAX_ORNAMENTS:
                raise _Dead
            return
        if ch == "]" and prev == "bar":
            return
        raise _Dead

    def _extend_spec(self, ch: str) -> bool:
        """Append a length character if the result is still a well-formed (partial) length."""
        spec = (self.chord_spec if self.mode == "chord" else self.spec) + ch
        if not _LENGTH.fullmatch(spec):
            return False
        if self.mode == "chord":
            self.chord_spec = spec
        else:
            self.spec = spec
        return True

    def _broken(self, ch: str) -> None:
        if self.mode in ("note", "chord_len"):
            self._finish()
            self.brk = ""
        step = 1 if self.brk else 2  # quarters: half the last length, then a quarter more (>>)
        if ch == ">":
            self.cur += _scale(self.last, step, 4)
            self.broken = self.broken - step if self.brk else 2
        else:
            self.cur -= _scale(self.last, step, 4)
            self.broken = self.broken + step if self.brk else 6
        self.brk += ch
        self.mode = "brk"
        self._fits()
        self._room()

    def _accidental(self, ch: str) -> None:
        if ch in NOTE_LETTERS:
            self.acc = ""
            self._start_item()
            self.mode = "note"
            return self._fits()
        if ch in "^_" and self.acc == ch:
            self.acc += ch
            return
        raise _Dead

    def _after_bracket(self, ch: str, c: "ABCConstraint") -> None:
        if ch in NOTE_LETTERS or ch in ACCIDENTALS:
            self._start_item()
            self.mode, self.chord_spec, self.chord_notes = "chord", "", 0
            self._fits()
            return self._inside(ch)
        if ch == "|":
            self.cur, self.mode = 0, "bar"
            return
        if ch in "1234" and self.mode == "lbb":  # [1 [2: endings, after a bar line or at a line start
            self.mode = "volta"
            return
        if ch in "ML":
            self.mode, self.field, self.value = "ifield", ch, ""
            return
        raise _Dead

    def _inline_field(self, ch: str, c: "ABCConstraint") -> None:
        if ch == "\n":
            raise _Dead
        if self.value == "":
            if ch != ":":
                raise _Dead
            self.value = ":"
            return
        if ch == "]":
            if not c.is_value(self.field, self.value[1:]):
                raise _Dead
            self._apply_field(self.field, self.value[1:], c)
            self.mode = "b"
            return
        if not self._field_prefix(self.field, self.value[1:] + ch, c):
            raise _Dead
        self.value += ch

    def _inside(self, ch: str) -> None:
        """Inside a chord ``[CEG]`` or grace group ``{ga}``: notes (each with accidentals, octave
        marks and a length); the first note's length is the chord's."""
        chord = self.mode == "chord"
        n = self.chord_notes if chord else self.grace_notes
        most = MAX_CHORD if chord else MAX_GRACE
        if ch in ACCIDENTALS:
            if (self.acc and not (ch in "^_" and self.acc == ch)) or n == most:
                raise _Dead
            if not self.acc:  # a new note starts: the previous one is complete, and must fit
                self._same_length()
                num, den = _value_ratio(self.chord_spec)
                fixed = _scale(self.base, num, den * 4)
                if chord and n and self.meter is not None and self.cur + fixed > self.meter:
                    raise _Dead
            self.acc += ch
            return
        if ch in NOTE_LETTERS:
            if n == most:
                raise _Dead
            self._same_length()
            self.acc, self.spec = "", ""
            if chord:
                self.chord_notes += 1
                return self._fits()
            self.grace_notes += 1
            return
        if self.acc or not n:
            raise _Dead
        if ch in ",'" and not self.spec:
            return
        if ch.isdigit() or ch == "/":
            if not _LENGTH.fullmatch(self.spec + ch) or (chord and n > 1 and not self.chord_spec.startswith(self.spec + ch)):
                raise _Dead  # all notes of a chord have the first one's length
            self.spec += ch
            if chord and n == 1:
                self.chord_spec = self.spec
                self._fits()
            return
        if chord and ch == "]":
            self._same_length()
            self.mode, self.spec = "chord_len", ""
            return self._fits()
        if not chord and ch == "}":
            self.mode, self.spec = "b", ""
            return
        raise _Dead

    def _same_length(self) -> None:
        if self.mode == "chord" and self.chord_notes > 1 and self.spec != self.chord_spec:
            raise _Dead

    def _compound(self) -> bool:
        meter = None if self.meter is None else Fraction(self.meter) / self.one
        return meter is not None and meter.denominator == 8 and meter.numerator in (6, 9, 12)

    # -- header and field lines --------------------------------------------------------------------
    def _header(self, ch: str, c: "ABCConstraint") -> None:
        if self.mode == "hl":
            if ch not in FIELD_NAMES or ch in self.value or (ch == "K" and not (self.has_meter and self.unit)) \
                    or (not self.value and ch != "X"):
                raise _Dead  # X: first (music21 starts a new tune there), each field once, K: after M: and L:
            self.value += ch  # while in the header, `value` remembers the fields already written
            self.mode, self.field = "hf0", ch
            return
        seen, _, value = self.value.partition("=")
        if self.mode == "hf0":
            if ch != ":":
                raise _Dead
            self.mode, self.value = "hf", seen + "="
            return
        if ch == "\n":
            if self.field in "MLK" and not c.is_value(self.field, value):
                raise _Dead
            if self.field == "X" and not value:
                raise _Dead
            self._apply_field(self.field, value, c)
            self.mode = "bl" if self.field == "K" else "hl"
            self.value = "" if self.field == "K" else seen
            return
        if self.field in "MLK":
            if not c.is_prefix(self.field, value + ch):
                raise _Dead
            self.value += ch
        elif self.field == "X":
            if not ch.isdigit() or len(value) >= 3:
                raise _Dead  # the reference number
            self.value += ch

    def _body_field(self, ch: str, c: "ABCConstraint") -> None:
        if self.mode == "bf0":  # a field letter at a body line start; or an ornament (T, H, M...)
            if ch == ":" and self.field in "MLK":
                self.mode, self.value = "bf", ""
                return
            self.mode = "b"
            if self.field not in DECORATIONS:
                raise _Dead
            return self.feed(ch, c)
        if ch == "\n":
            if not c.is_value(self.field, self.value):
                raise _Dead
            self._apply_field(self.field, self.value, c)
            self.mode, self.value = "bl", ""
            return
        if not self._field_prefix(self.field, self.value + ch, c):
            raise _Dead
        self.value += ch

    def _field_prefix(self, field: str, prefix: str, c: "ABCConstraint") -> bool:
        """Can a body field's value still become an allowed one? For ``M:``, one whose bar the
        current bar's duration fits (`_apply_field` refuses a shorter one mid-bar)."""
        if field != "M" or not self.cur:
            return c.is_prefix(field, prefix)
        for value in c.values["M"]:
            if value.startswith(prefix):
                meter = meter_length(value)
                if meter is None or _scale(self.one, meter.numerator, meter.denominator) >= self.cur:
                    return True
        return False

    def _apply_field(self, field: str, value: str, c: "ABCConstraint") -> None:
        if field == "M":
            meter = meter_length(value)
            meter = None if meter is None else _scale(self.one, meter.numerator, meter.denominator)
            if meter is not None and self.cur > meter:
                raise _Dead  # a shorter meter mid-bar: the bar would already be too long
            self.meter, self.has_meter = meter, True
        elif field == "L":
            unit = _unit_length(value)
            self.unit = None if unit is None else _scale(self.one, unit.numerator, unit.denominator)

    def can_end(self) -> bool:
        return (self.mode in ("b", "bl", "bar", "colon", "volta", "note", "chord_len") and self.notes > 0
                and self.broken == 4 and (self.meter is None or self.cur + self.pending() <= self.meter))


_new_tracker = object.__new__


class ABCConstraint:
    """Which tokens may come next in an ABC sample (see the module docstring).

    tokenizer: the generator's tokenizer (each token is followed through its decoded characters).
    meters / units / keys: allowed ``M:``, ``L:`` and ``K:`` values (`from_texts` takes them from a
    corpus).
    reference: compute masks the plain way, kept as the yardstick for the fast one (same masks,
    same samples; the tests and `benchmarks/throughput.py` compare them): every token tried on
    every new state, durations as exact fractions, masks cached by the whole state. The fast way
    tries one token per `_char_class`, counts durations in integer ticks and caches masks by the
    state's live parts (`_Tracker.live_key`).
    """

    def __init__(self, tokenizer, meters: Iterable[str] = DEFAULT_METERS, units: Iterable[str] = DEFAULT_UNITS,
                 keys: Iterable[str] = DEFAULT_KEYS, reference: bool = False) -> None:
        from ._tokenizer import decode

        self.values = {"M": frozenset(meters), "L": frozenset(units), "K": frozenset(keys)}
        for field, vals in self.values.items():
            if not vals:
                raise ValueError(f"ABCConstraint needs at least one allowed {field}: value")
        self.prefixes = {f: frozenset(v[:i] for v in vals for i in range(len(v) + 1)) for f, vals in self.values.items()}
        self.special = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id}
        self.eos, self.bos = tokenizer.eos_token_id, tokenizer.bos_token_id
        self.vocab_size = len(tokenizer)
        self.pieces = ["" if i in self.special or i == self.eos else decode(tokenizer, [i]) for i in range(self.vocab_size)]
        self.reference = reference
        self.one = Fraction(1) if reference else ticks_per_whole(
            [m for m in map(meter_length, self.values["M"]) if m is not None],
            [u for u in map(_unit_length, self.values["L"]) if u is not None])
        classes: dict[str, list[int]] = {}
        for i, piece in enumerate(self.pieces):
            if i not in self.special and i != self.eos:
                classes.setdefault(_char_class(piece), []).append(i)
        self._classes = list(classes.values())  # token ids, grouped by `_char_class`
        spelled: dict[str, list[int]] = {}  # in field values: characters no allowed value has are alike
        named = FIELD_NAMES | frozenset("0123456789:\n]").union(*(v for vals in self.values.values() for v in vals))
        for i, piece in enumerate(self.pieces):
            if i not in self.special and i != self.eos:
                spelled.setdefault(piece if len(piece) != 1 or piece in named or piece.isdigit() else "", []).append(i)
        self._spelled_classes = list(spelled.values())
        self._cache: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_texts(cls, tokenizer, texts: Sequence[str], min_count: int = 1, reference: bool = False) -> "ABCConstraint":
        """Allowed header values = those of `texts` (seen at least `min_count` times) that
        `validate_abc` accepts; `reference` as for the constructor."""
        from collections import Counter

        from ._abc import _KEY, _METER

        counts: dict[str, Counter] = {"M": Counter(), "L": Counter(), "K": Counter()}
        for text in texts:
            for line in text.splitlines():
                if len(line) > 2 and line[1] == ":" and line[0] in counts:
                    counts[line[0]][line[2:].strip()] += 1
        ok = {"M": lambda v: _METER.match(v) and meter_length(v) is not None,
              "L": lambda v: _unit_length(v) is not None, "K": lambda v: _KEY.match(v)}
        vals = {f: [v for v, n in cnt.items() if n >= min_count and ok[f](v)] for f, cnt in counts.items()}
        return cls(tokenizer, vals["M"] or DEFAULT_METERS, vals["L"] or DEFAULT_UNITS, vals["K"] or DEFAULT_KEYS,
                   reference=reference)

    def is_prefix(self, field: str, value: str) -> bool:
        return value in self.prefixes[field]

    def is_value(self, field: str, value: str) -> bool:
        return value in self.values[field]

    def accepts(self, text: str) -> bool:
        """True when the constraint would let a sampler write `text` whole (every character allowed,
        the end allowed after it). A fast screen (~1 ms for a short tune, against ~50 ms for
        `validate_abc`'s parse): what it accepts almost always passes `validate_abc` (see the tests),
        while it refuses some valid tunes (repeat marks ``::``, voices, ...)."""
        state = _Tracker(self.one)
        try:
            for ch in text:
                state.feed(ch, self)
        except _Dead:
            return False
        return state.can_end()

    # -- the sampler's interface ------------------------------------------------------------------
    def start(self, prefix_ids: Sequence[int]) -> _Tracker:
        """The state after `prefix_ids` (BOS, then a text prefix); raises if the prefix breaks the rules."""
        state = _Tracker(self.one)
        for tok in prefix_ids:
            if int(tok) == self.bos:
                continue
            nxt = self.advance(state, int(tok))
            if nxt is None:
                raise ValueError("the sampling prefix already breaks the ABC constraint "
                                 f"(at {self.pieces[int(tok)]!r}); start from a header such as 'X:1\\nT:...\\nM:6/8\\n'")
            state = nxt
        return state

    def advance(self, state: _Tracker, token: int) -> _Tracker | None:
        """The state after `token`, or None when the token is not allowed."""
        if token == self.eos:
            return state if state.can_end() else None
        if token in self.special or not 0 <= token < self.vocab_size:
            return None
        new = state.copy()
        try:
            for ch in self.pieces[token]:
                new.feed(ch, self)
        except _Dead:
            return None
        return new

    def allowed(self, state: _Tracker) -> torch.Tensor:
        """(v,) bool: the tokens that may follow `state` (at least the end token if nothing else)."""
        key = state.key() if self.reference else state.live_key()
        mask = self._cache.get(key)
        if mask is None:
            mask = self._reference_mask(state) if self.reference else self._mask(state)
            if not mask.any():
                mask[self.eos] = True  # a dead end: stop rather than write something invalid
            self._cache[key] = mask
        return mask

    def _reference_mask(self, state: _Tracker) -> torch.Tensor:
        return torch.tensor([self.advance(state, i) is not None for i in range(self.vocab_size)])

    def _mask(self, state: _Tracker) -> torch.Tensor:
        """The mask with one `advance` per token class: by `_char_class` in the body; where field
        values are spelled out, each character any allowed value (or field syntax) has is its own
        class and all others form one."""
        ok = [False] * self.vocab_size
        ok[self.eos] = state.can_end()
        for ids in self._spelled_classes if state.mode in _SPELLED_MODES else self._classes:
            if self.advance(state, ids[0]) is not None:
                for i in ids:
                    ok[i] = True
        return torch.tensor(ok)
