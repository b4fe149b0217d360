"""The `Domain` protocol: what every kind of sequence (ABC, MIDI, text) provides."""

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
    """A kind of sequence: corpus, tokenizer, decode, validate, render."""

    name: str

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
