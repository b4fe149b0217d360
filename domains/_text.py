"""The text domain: any plain-text corpus file (poems, lyrics, prose), one piece per paragraph.

Pieces are the blank-line-separated paragraphs of the file (or its lines), lightly normalised
(line endings unified, trailing spaces dropped), deduplicated, and checked by `validate_text`:
non-empty, printable, and not degenerate — a long run of one character, or text so repetitive
that zlib shrinks it below `min_compression` of its size, is what a looping sampler produces.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ._abc_corpus import CorpusError, CorpusReport
from ._files import write_atomic
from ._protocol import FreeTokenEdits, Piece, Validity
from ._tokenizer import build_tokenizer, decode

_COMPRESSION_MIN_CHARS = 128  # below this, zlib's header dominates and the ratio says nothing


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """How a text file is cut into pieces and which pieces count as valid."""

    by: str = "paragraph"  # "paragraph" (split at blank lines) or "line"
    min_chars: int = 1  # shorter pieces are invalid
    max_chars: int = 2000  # longer pieces are invalid (and dropped from the corpus)
    max_run: int = 16  # longest allowed run of one repeated character
    min_compression: float = 0.2  # zlib size / raw size below this = degenerate repetition

    def __post_init__(self) -> None:
        if self.by not in ("paragraph", "line"):
            raise ValueError(f"by={self.by!r}: use 'paragraph' or 'line'")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 1 <= min_chars ({self.min_chars}) <= max_chars ({self.max_chars})")
        if self.max_run < 2:
            raise ValueError(f"max_run={self.max_run} must be >= 2")
        if not 0.0 <= self.min_compression < 1.0:
            raise ValueError(f"min_compression={self.min_compression} must be in [0, 1)")


def split_text(raw: str, by: str = "paragraph") -> list[tuple[int, str]]:
    """(first line number, piece) for the paragraphs or non-blank lines of `raw`, normalised:
    ``\\r\\n`` and ``\\r`` become ``\\n``, trailing spaces go, leading/trailing blank lines go."""
    if by not in ("paragraph", "line"):
        raise ValueError(f"by={by!r}: use 'paragraph' or 'line'")
    lines = [line.rstrip() for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for i, line in enumerate(lines, 1):
        if line and by == "line":
            out.append((i, line))
        elif line:
            start = start if current else i
            current.append(line)
        elif current:
            out.append((start, "\n".join(current)))
            current = []
    if current:
        out.append((start, "\n".join(current)))
    return out


def _printable(ch: str) -> bool:
    return ch in "\n\t" or not unicodedata.category(ch).startswith("C")


def validate_text(text: str, cfg: TextConfig = TextConfig()) -> Validity:
    """Non-empty, within the length bounds, printable, and not degenerate (see module doc)."""
    if not isinstance(text, str) or not text.strip():
        return Validity(False, "empty text")
    if len(text) < cfg.min_chars:
        return Validity(False, f"shorter than {cfg.min_chars} characters")
    if len(text) > cfg.max_chars:
        return Validity(False, f"longer than {cfg.max_chars} characters")
    bad = sorted({ch for ch in text if not _printable(ch)})
    if bad:
        return Validity(False, f"non-printable character(s) {[f'U+{ord(c):04X}' for c in bad[:5]]}")
    if not any(ch.isalnum() for ch in text):
        return Validity(False, "no letters or digits")
    run = max(len(m.group(0)) for m in re.finditer(r"(.)\1*", text, re.DOTALL))
    if run > cfg.max_run:
        return Validity(False, f"one character repeated {run} times in a row (max {cfg.max_run})")
    if len(text) >= _COMPRESSION_MIN_CHARS:
        ratio = len(zlib.compress(text.encode("utf-8"), 9)) / len(text.encode("utf-8"))
        if ratio < cfg.min_compression:
            return Validity(False, f"degenerate repetition (compresses to {ratio:.2f} of its size)")
    return Validity(True)


def load_text_corpus(
    path: str | Path, cfg: TextConfig = TextConfig(), report: CorpusReport | None = None, distinct: bool = True
) -> list[Piece]:
    """Distinct (or, without `distinct`, all) valid pieces of the UTF-8 text file at `path`, in file order.

    Raises `CorpusError` naming the path if it is missing, not a file, not UTF-8, empty, or has
    no valid piece; invalid pieces are otherwise counted in `report.skipped` by reason.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CorpusError(f"text corpus file {path} does not exist")
    if not path.is_file():
        raise CorpusError(f"text corpus {path} is not a file")
    data = path.read_bytes()
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"text corpus file {path} is not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); "
            "convert it, e.g. with iconv -t UTF-8"
        ) from err
    if not raw.strip():
        raise CorpusError(f"text corpus file {path} is empty")
    report = report if report is not None else CorpusReport()
    collection = path.stem
    seen: set[str] = set()
    pieces: list[Piece] = []
    for line_no, text in split_text(raw, cfg.by):
        report.raw[collection] += 1
        ok = validate_text(text, cfg)
        if not ok:
            report.skipped[re.sub(r"\d+", "N", ok.reason)] += 1  # group reasons by kind
            continue
        key = hashlib.sha256(text.encode()).hexdigest() if distinct else f"{line_no}"
        if report.admit(seen, key, collection):
            pieces.append(Piece(text=text, collection=collection, source=f"{path.name}:{line_no}"))
    if not pieces:
        raise CorpusError(f"no usable piece in text corpus file {path}: {dict(report.skipped)}")
    return pieces


class TextDomain(FreeTokenEdits):
    """A plain-text corpus file; character tokenizer by default, BPE as an option.

    After `corpus()` or `read()`, `report` holds the counts and the reasons pieces were skipped.
    `path` may be None for a domain that only reads and writes a user's files (no corpus).
    """

    name = "text"
    suffixes = (".txt",)

    def __init__(self, path: str | Path | None = None, cfg: TextConfig = TextConfig()):
        self.path = None if path is None else Path(path).expanduser()
        self.cfg = cfg
        self.report = CorpusReport()

    def corpus(self) -> list[Piece]:
        if self.path is None:
            raise CorpusError("the text domain has no bundled corpus; give it a text file (one piece per "
                              f"{self.cfg.by})")
        return self.read(self.path, distinct=True)

    def read(self, path: str | Path, distinct: bool = False) -> list[Piece]:
        """The valid pieces of a UTF-8 text file (paragraphs or lines, by `cfg.by`); see
        `load_text_corpus`."""
        self.report = CorpusReport()
        return load_text_corpus(path, self.cfg, self.report, distinct)

    def write(self, texts: Sequence[str], path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
        """One UTF-8 file in the layout `read` reads: one piece per line (a piece's own line breaks
        become spaces, since a line cannot hold them) or, by paragraph, pieces between blank lines;
        written atomically (`write_atomic`), so a failed write leaves the old file whole."""
        if self.cfg.by == "line":
            body = "".join(" ".join(t.splitlines()) + "\n" for t in texts)
        else:
            body = "\n".join(t.strip("\n") + "\n" for t in texts)
        return [write_atomic(path, body)]

    def title(self, text: str) -> str:
        """The first line."""
        return text.strip().split("\n", 1)[0] if text.strip() else ""

    def build_tokenizer(self, texts: Sequence[str], kind: str = "char", vocab_size: int = 1024):
        """``kind="char"`` (one token per character) or ``"bpe"`` (trained on `texts`)."""
        return build_tokenizer(texts, kind, vocab_size)

    def decode(self, tokenizer, ids) -> str:
        return decode(tokenizer, ids)

    def validate(self, text: str) -> Validity:
        return validate_text(text, self.cfg)

    def render(self, text: str, path: str | Path) -> Path:
        """Write `text` (newline-terminated, UTF-8) to `path`, normally a ``.txt`` file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return path
