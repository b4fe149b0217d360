"""The ABC domain: music21's bundled folk tunes, validity checks, rendering."""

from __future__ import annotations

import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from ._abc_corpus import FIDDLE, NormaliseConfig, load_abc_corpus
from ._protocol import Piece, Validity
from ._render import abc_to_midi, midi_to_wav
from ._tokenizer import build_tokenizer, decode

_KEY = re.compile(
    r"^(none|HP|Hp|[A-G][#b]?\s*(m|min|minor|maj|major|ion|ionian|mix|mixolydian|dor|dorian|phr|phrygian"
    r"|lyd|lydian|loc|locrian|aeo|aeolian)?)(\s+(exp\s+)?([_=^][A-Ga-g]\s*)*)?(\s*clef=\S+)?$",
    re.IGNORECASE,
)
_METER = re.compile(r"^(none|C\|?|\d+(\+\d+)*/\d+)$")
_BAR_TOLERANCE = 1e-6


def _header(text: str, tag: str) -> str | None:
    m = re.search(rf"^{tag}:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _bar_overruns(text: str) -> tuple[int, int]:
    """(number of bars, number of bars longer than the meter) by summing note durations.

    music21 silently accepts over-long bars when it builds a score, so this walks its ABC
    tokens instead: grace notes do not count, tuplets scale their notes, M: changes apply.
    """
    from music21 import abcFormat

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


def validate_abc(text: str, max_overlong_bars: int = 0) -> Validity:
    """Is `text` a playable tune? It must have a known meter and key, parse with music21,
    contain notes, have a finite positive duration, and no bar may be longer than the meter
    (`max_overlong_bars` allows a few)."""
    if not isinstance(text, str) or not text.strip():
        return Validity(False, "empty text")
    key = _header(text, "K")
    if key is None:
        return Validity(False, "no K: (key) header")
    if not _KEY.match(key):
        return Validity(False, f"unknown key {key!r}")
    meter = _header(text, "M")
    if meter is not None and not _METER.match(meter):
        return Validity(False, f"unknown meter {meter!r}")
    import music21

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = music21.converter.parse(text, format="abc")
            n_notes = len(score.recurse().notes)
            length = float(score.highestTime)
            _, over = _bar_overruns(text)
        except Exception as err:  # music21 raises many types on malformed ABC
            return Validity(False, f"does not parse: {type(err).__name__}: {str(err)[:80]}")
    if n_notes == 0:
        return Validity(False, "no notes")
    if not (length > 0 and length < float("inf")):
        return Validity(False, f"duration {length} is not finite and positive")
    if over > max_overlong_bars:
        return Validity(False, f"{over} bar(s) longer than the meter {meter or '4/4'}")
    return Validity(True)


class ABCDomain:
    """ABC tunes from music21's corpus; character tokenizer by default."""

    name = "abc"

    def __init__(self, collections: Sequence[str] = FIDDLE, normalise: NormaliseConfig = NormaliseConfig()):
        self.collections = tuple(collections)
        self.normalise = normalise

    def corpus(self) -> list[Piece]:
        return load_abc_corpus(self.collections, self.normalise)

    def build_tokenizer(self, texts: Sequence[str], kind: str = "char", vocab_size: int = 1024):
        return build_tokenizer(texts, kind, vocab_size)

    def decode(self, tokenizer, ids) -> str:
        return decode(tokenizer, ids)

    def validate(self, text: str) -> Validity:
        return validate_abc(text)

    def edit_space(self, text: str, tokenizer, kind: str, limit: int | None = None, seed: int = 0):
        """Token masks and whole-tune moves of an edit kind (see `domains.edit_space`)."""
        from ._abc_edits import edit_space

        return edit_space(text, tokenizer, kind, limit, seed)

    def moves(self, text: str, kind: str, limit: int | None = None, seed: int = 0) -> list[str]:
        """Whole-tune candidates one move away from `text` (see `domains.abc_moves`)."""
        from ._abc_moves import abc_moves

        return abc_moves(text, kind, limit, seed)

    def render(self, text: str, path: str | Path) -> Path:
        """MIDI (``.mid``) or, when fluidsynth is installed, WAV (``.wav``) by suffix."""
        path = Path(path)
        if path.suffix == ".wav":
            return self.to_wav(text, path)
        return self.to_midi(text, path)

    def to_midi(self, text: str, path: str | Path) -> Path:
        return abc_to_midi(text, path)

    def to_wav(self, text: str, path: str | Path) -> Path:
        path = Path(path)
        mid = abc_to_midi(text, path.with_suffix(".mid"))
        return midi_to_wav(mid, path)
