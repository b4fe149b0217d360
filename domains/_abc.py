"""The ABC domain: music21's bundled folk tunes, validity checks, rendering."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ._abc_corpus import FIDDLE, CorpusError, NormaliseConfig, load_abc_corpus, load_abc_file, music_key
from ._abc_edits import KINDS as EDIT_KINDS
from ._abc_moves import MOVES
from ._abc_screen import screen_abc
from ._files import write_atomic
from ._protocol import Piece, Validity
from ._render import abc_to_midi, midi_to_wav
from ._timed_worker import TimedWorker, WorkerError
from ._abc_text import abc_title
from ._tokenizer import build_tokenizer, decode

_KEY = re.compile(
    r"^(none|HP|Hp|[A-G][#b]?\s*(m|min|minor|maj|major|ion|ionian|mix|mixolydian|dor|dorian|phr|phrygian"
    r"|lyd|lydian|loc|locrian|aeo|aeolian)?)(\s+(exp\s+)?([_=^][A-Ga-g]\s*)*)?(\s*clef=\S+)?$",
    re.IGNORECASE,
)
_METER = re.compile(r"^(none|C\|?|\d+(\+\d+)*/\d+)$")
PARSE_TIMEOUT = 10.0  # CPU seconds for one music21 parse; the slowest corpus tune takes 3.4 s
_PARSER = TimedWorker(Path(__file__).with_name("_abc_parse.py"))
VERDICTS_CACHED = 8192  # verdicts `validate_abc` remembers per process (a few MB of tunes)
_EXAMPLE_TUNE = "X:1\nT:Name\nM:6/8\nL:1/8\nK:G\nGAB cde|"


def _header(text: str, tag: str) -> str | None:
    m = re.search(rf"^{tag}:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def validate_abc(text: str, max_overlong_bars: int = 0, timeout: float = PARSE_TIMEOUT) -> Validity:
    """Is `text` a playable tune? It must have a known meter and key, pass `screen_abc`'s cheap
    checks (no absurd lengths, tuplets or brackets), parse with music21 within `timeout` seconds
    of CPU time (and 6 x `timeout` of wall time), contain notes, have a finite positive duration,
    and no bar may be longer than the meter (`max_overlong_bars` allows a few).

    The parse runs in a persistent worker process (`TimedWorker`) that is killed and replaced when
    it overruns; the tune is then invalid ("validation timed out: ..."), so a call never hangs. The
    worker adds about a tenth of a millisecond per call; the first call in a process waits a few
    seconds for it to import music21. The parse's verdicts are remembered per process (the last
    `VERDICTS_CACHED`), so asking again about a tune costs no parse; a timeout is not remembered.
    Never raises on any text."""
    if not timeout > 0:
        raise ValueError(f"validate_abc: timeout must be > 0 seconds, got {timeout}")
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
    problem = screen_abc(text)
    if problem is not None:
        return Validity(False, problem)
    try:
        return _parsed_verdict(text, max_overlong_bars, timeout, meter)
    except _Unfinished as err:  # not remembered: the next call parses again
        return Validity(False, str(err))


class _Unfinished(Exception):
    """The parse gave no verdict on the text itself (it timed out, or its process died)."""


@lru_cache(maxsize=VERDICTS_CACHED)
def _parsed_verdict(text: str, max_overlong_bars: int, timeout: float, meter: str | None) -> Validity:
    """`validate_abc`'s verdict from music21's parse, remembered per process: the engine, the
    simulated rater and the corpus job ask about the same tunes again and again (an input, its
    kept copy, a candidate met twice), and a parse costs about 50 ms. A verdict is a function of
    its arguments, except when the parse timed out or crashed (on a busy machine, not because of
    the text): those raise `_Unfinished`, which `lru_cache` does not remember."""
    try:
        facts = _PARSER.call(text, timeout)
    except TimeoutError as err:
        raise _Unfinished(f"validation timed out: {err}") from None
    except WorkerError as err:  # the parse crashed its process (e.g. out of memory)
        raise _Unfinished(f"validation failed: {str(err)[:120]}") from None
    if isinstance(facts, str):
        return Validity(False, f"does not parse: {facts}")
    n_notes, length, over = facts
    if n_notes == 0:
        return Validity(False, "no notes")
    if not (length > 0 and length < float("inf")):
        return Validity(False, f"duration {length} is not finite and positive")
    if over > max_overlong_bars:
        return Validity(False, f"{over} bar(s) longer than the meter {meter or '4/4'}")
    return Validity(True)


class ABCDomain:
    """ABC tunes from music21's corpus; character tokenizer by default.

    A user's tunes (`read`) are normalised with `normalise`, like the corpus a generator was
    trained on (`load_normalisation`)."""

    name = "abc"
    edit_kinds = EDIT_KINDS  # token masks of `domains.token_edits` (rhythm/bars freeze every token)
    move_kinds = tuple(MOVES)  # kinds with whole-tune moves (`domains.abc_moves`)
    has_bars = True
    suffixes = (".abc",)

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

    def read(self, path: str | Path, distinct: bool = False) -> list[Piece]:
        """The normalised tunes of an .abc file, or of every .abc file under a folder (sorted), in
        order; with `distinct`, tunes with the same music (`music_key`) after the first are dropped.
        Tunes without a K: line or notes are skipped with a warning naming them (`load_abc_file`);
        a file with none raises `CorpusError` naming it."""
        seen: set[str] = set()
        pieces = []
        for f in _abc_files(Path(path).expanduser()):
            try:
                tunes = load_abc_file(f, self.normalise)
            except CorpusError as err:
                raise CorpusError(f"{err}; an ABC file needs tunes with a K: line and notes, e.g. {_EXAMPLE_TUNE!r}") from err
            for i, text in enumerate(tunes):
                key = music_key(text)
                if not distinct or key not in seen:
                    seen.add(key)
                    pieces.append(Piece(text=text, collection=f.stem, source=f"{f.name}#{i + 1}"))
        return pieces

    def write(self, texts: Sequence[str], path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
        """One .abc file, each tune ending in a newline and followed by a blank line but the last;
        written atomically (`write_atomic`), so a failed write leaves the old file whole."""
        return [write_atomic(path, "\n".join(t.rstrip("\n") + "\n" for t in texts))]

    def title(self, text: str) -> str:
        return abc_title(text)

    def token_edits(self, kind: str, ids, tokenizer):
        """Masks of an edit kind (see `domains.token_edits`); move-only kinds freeze every token."""
        from ._abc_edits import token_edits

        return token_edits(kind, ids, tokenizer)

    def edit_space(self, text: str, tokenizer, kind: str, limit: int | None = None, seed: int = 0):
        """Token masks and whole-tune moves of an edit kind (see `domains.edit_space`)."""
        from ._abc_edits import edit_space

        return edit_space(text, tokenizer, kind, limit, seed)

    def moves(self, text: str, kind: str, limit: int | None = None, seed: int = 0) -> list[str]:
        """Whole-tune candidates one move away from `text` (see `domains.abc_moves`)."""
        from ._abc_moves import abc_moves

        return abc_moves(text, kind, limit, seed)

    def constraint(self, tokenizer, texts: Sequence[str] = ()):
        """`ABCConstraint`: bars never overrun the meter; header values from `texts` if given,
        else its defaults."""
        from ._abc_constraint import ABCConstraint

        return ABCConstraint.from_texts(tokenizer, texts) if texts else ABCConstraint(tokenizer)

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


def _abc_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the .abc files under the folder `path`, sorted."""
    if not path.exists():
        raise CorpusError(f"{path} does not exist; give an .abc file or a folder of .abc files")
    if path.is_file():
        return [path]
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() == ".abc" and f.is_file())
    if not files:
        raise CorpusError(f"{path} holds no .abc file (it is a folder: give an .abc file, or put tunes in "
                          "files named *.abc in it)")
    return files
