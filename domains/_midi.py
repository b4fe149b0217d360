"""The MIDI domain: pieces are REMI token sequences, written as space-separated token names.

Default corpus: the ABC fiddle tunes rendered once with abc2midi and cached (see
`load_midi_corpus`); or any MIDI files (`files=`). The tokenizer is word-level over the whole
REMI vocabulary, so ids map one-to-one to REMI events and every sequence is ``<bos> ... <eos>``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from ._abc_corpus import FIDDLE, CorpusReport, NormaliseConfig, load_abc_corpus
from ._midi_corpus import default_cache_dir, load_midi_corpus, load_midi_files
from ._protocol import FreeTokenEdits, Piece, Validity
from ._remi import REMIConfig, REMIError, build_remi_tokenizer, midi_to_remi, remi_to_midi, validate_remi
from ._render import midi_to_wav
from ._tokenizer import decode


class MIDIDomain(FreeTokenEdits):
    """MIDI as REMI text (miditok); word-level tokenizer over REMI names.

    `cache_dir` holds the rendered MIDI files and the REMI texts (default
    ``~/.cache/gradopt/midi``); `limit` keeps only the first N source tunes or files (tests);
    `files` replaces the ABC-derived corpus by MIDI files or directories. After `corpus()`,
    `report` holds per-collection counts and the reasons tunes were skipped.
    """

    name = "midi"
    suffixes = (".mid", ".midi")

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        *,
        collections: Sequence[str] = FIDDLE,
        files: Sequence[str | Path] | None = None,
        limit: int | None = None,
        remi: REMIConfig = REMIConfig(),
        normalise: NormaliseConfig = NormaliseConfig(),
        progress: bool = True,
    ):
        if limit is not None and limit < 1:
            raise ValueError(f"limit={limit} must be a positive number of tunes (or None for all)")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.collections = tuple(collections)
        self.files = None if files is None else [Path(f) for f in files]
        self.limit = limit
        self.remi = remi
        self.normalise = normalise
        self.progress = progress
        self.report = CorpusReport()

    def corpus(self) -> list[Piece]:
        """Distinct REMI pieces; unusable tunes/files are counted in `self.report` and skipped."""
        self.report = CorpusReport()
        if self.files is not None:
            return load_midi_files(self.files, self.remi, self.report, self.cache_dir, self.progress, self.limit)
        abc = load_abc_corpus(self.collections, self.normalise)
        if self.limit is not None:
            abc = abc[: self.limit]
        return load_midi_corpus(abc, self.cache_dir, self.remi, self.report, self.progress)

    def build_tokenizer(self, texts: Sequence[str] = (), kind: str = "word", vocab_size: int = 1024):
        """Word-level tokenizer over the REMI vocabulary (``kind="word"``; `vocab_size` is unused
        because the vocabulary is fixed by `remi`). `texts` are checked to hold known names."""
        if kind not in ("word", "remi"):
            raise ValueError(
                f"the MIDI domain tokenizes REMI names one per token; kind={kind!r} is not supported, use 'word'"
            )
        return build_remi_tokenizer(self.remi, texts)

    def decode(self, tokenizer, ids) -> str:
        """Ids to REMI text (BOS/PAD dropped, cut at the first EOS)."""
        return decode(tokenizer, ids)

    def validate(self, text: str) -> Validity:
        return validate_remi(text, self.remi)

    def read(self, path: str | Path, distinct: bool = False) -> list[Piece]:
        """A MIDI file, or the .mid/.midi files under a folder, as REMI pieces (`load_midi_files`;
        copies are always dropped, `distinct` is accepted for the protocol). Unusable files are
        counted in `self.report` and skipped; the REMI cache is not used for a user's files."""
        self.report = CorpusReport()
        return load_midi_files([path], self.remi, self.report, None, self.progress)

    def write(self, texts: Sequence[str], path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
        """One ``<name>.mid`` per piece in the folder `path` (names default to 001, 002, ...). A
        text that does not decode (unknown token names) is written as ``<name>.remi.txt`` instead,
        with a warning, so no piece is lost."""
        path = Path(path)
        if path.suffix.lower() in (".mid", ".midi") or path.is_file():
            raise ValueError(f"{path}: MIDI pieces are written one file each into a folder; give a folder name")
        if names is not None and len(names) != len(texts):
            raise ValueError(f"{len(names)} names for {len(texts)} pieces")
        names = names if names is not None else [f"{i + 1:03d}" for i in range(len(texts))]
        path.mkdir(parents=True, exist_ok=True)
        out = []
        for name, text in zip(names, texts):
            try:
                out.append(remi_to_midi(text, path / f"{name}.mid", self.remi))
            except REMIError as err:
                warnings.warn(f"{name}: not written as MIDI ({err}); its REMI text is in {name}.remi.txt")
                out.append(path / f"{name}.remi.txt")
                out[-1].write_text(text + "\n", encoding="utf-8")
        return out

    def title(self, text: str) -> str:
        """Meter and note count, e.g. ``"6/8, 24 notes"`` (REMI text has no title)."""
        names = text.split()
        meter = next((n.split("_", 1)[1] for n in names if n.startswith("TimeSig_")), "")
        notes = sum(n.startswith("Pitch_") for n in names)
        return f"{meter}, {notes} notes" if meter else f"{notes} notes"

    def from_midi(self, path: str | Path) -> str:
        """A MIDI file as REMI text (all tracks merged; drums dropped)."""
        return midi_to_remi(Path(path), self.remi)

    def to_midi(self, text: str, path: str | Path) -> Path:
        """REMI text back to a MIDI file (`REMIError` on unknown token names)."""
        return remi_to_midi(text, path, self.remi)

    def to_wav(self, text: str, path: str | Path) -> Path:
        path = Path(path)
        mid = self.to_midi(text, path.with_suffix(".mid"))
        return midi_to_wav(mid, path)

    def render(self, text: str, path: str | Path) -> Path:
        """MIDI (``.mid``) or, when fluidsynth is installed, WAV (``.wav``) by suffix."""
        path = Path(path)
        if path.suffix == ".wav":
            return self.to_wav(text, path)
        return self.to_midi(text, path)
