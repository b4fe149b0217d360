"""The `Domain` protocol: what every kind of sequence (ABC, MIDI, text) provides.

Besides corpus, tokenizer, decode, validity and rendering, a domain offers the hooks the jobs
need, so the command line and the engine never branch on a domain's name:

- `read(path)` / `write(texts, path)`: a user's pieces in and out, in the domain's own files
  (an ``.abc`` file; a ``.mid`` folder; a text file with one piece per line), whose `suffixes`
  say which files of a folder are pieces;
- `title(text)`: a short label for tables;
- the edit space: `edit_kinds` (token masks, `token_edits`), `move_kinds` (whole-piece moves,
  `moves`) and `has_bars` (header lines and bar lines that ``--freeze`` can name);
- `constraint(tokenizer)`: a sampling grammar, or None.

Domains without a structured edit space share `FreeTokenEdits`: every token may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Validity:
    """Outcome of a domain's validity check; `reason` is empty when `ok`."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Piece:
    """One item of a corpus: normalised text plus where it came from."""

    text: str
    collection: str  # e.g. "oneills1850"
    source: str = ""  # file (and tune number) it was read from


@runtime_checkable
class Domain(Protocol):
    """A kind of sequence: corpus, tokenizer, decode, validate, render, and the jobs' hooks."""

    name: str
    edit_kinds: tuple[str, ...]  # token edit kinds `token_edits` knows; "any" (every token free) always
    move_kinds: tuple[str, ...]  # edit kinds that come with whole-piece moves (`moves`); () for none
    has_bars: bool  # header lines and "|" bar lines: bars can be frozen by number, the header kept
    suffixes: tuple[str, ...]  # file suffixes `read` takes from a folder (lower case); the first names `write`'s file

    def corpus(self) -> list[Piece]:
        """The default training corpus, normalised and deduplicated."""
        ...

    def build_tokenizer(self, texts: Sequence[str], kind: str = "char", vocab_size: int = 1024):
        """A `PreTrainedTokenizerFast` with BOS/EOS/PAD fitted on `texts`."""
        ...

    def decode(self, tokenizer, ids) -> str:
        """Token ids (with or without specials) back to the domain's text."""
        ...

    def validate(self, text: str) -> Validity:
        """Is `text` a usable piece of this domain?"""
        ...

    def render(self, text: str, path: str | Path) -> Path:
        """Write `text` as a file a person can open/listen to; returns the path."""
        ...

    def read(self, path: str | Path, distinct: bool = False) -> list[Piece]:
        """A user's pieces from `path` (a file or folder in the domain's format), in order; with
        `distinct`, copies are dropped. Raises `CorpusError` naming the path if none is usable."""
        ...

    def write(self, texts: Sequence[str], path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
        """Write pieces at `path` in the format `read` reads (`names`: file stems where the
        format has one file per piece); returns the files written."""
        ...

    def title(self, text: str) -> str:
        """A short human label of a piece ('' if it has none)."""
        ...

    def token_edits(self, kind: str, ids, tokenizer):
        """(freeze (b,t) bool | None, allowed (b,t,v) bool | None) of edit kind `kind` (one of
        `edit_kinds`) for a padded batch of ids."""
        ...

    def moves(self, text: str, kind: str, limit: int | None = None, seed: int = 0) -> list[str]:
        """Whole-piece candidates one move of `kind` away from `text` ([] if none)."""
        ...

    def constraint(self, tokenizer, texts: Sequence[str] = ()):
        """A sampling constraint for `domains.sample` (`texts`: a corpus to take its allowed
        values from), or None when the domain has none."""
        ...


class FreeTokenEdits:
    """The edit space of a domain without structure the engine could use: any token may change,
    no whole-piece moves, no bars, no sampling grammar."""

    edit_kinds: tuple[str, ...] = ("any",)
    move_kinds: tuple[str, ...] = ()
    has_bars = False

    def token_edits(self, kind: str, ids, tokenizer):
        if kind != "any":
            raise ValueError(f"the {self.name} domain has only free token edits (kind 'any'), not {kind!r}")
        return None, None

    def moves(self, text: str, kind: str, limit: int | None = None, seed: int = 0) -> list[str]:
        return []

    def constraint(self, tokenizer, texts: Sequence[str] = ()):
        return None
