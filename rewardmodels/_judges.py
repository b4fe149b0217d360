"""Auto-checks that judge a piece broken without asking a person, and the ratings they produce.

A piece is broken when it does not parse (the domain's validity check), has too few notes, is too
short, repeats itself degenerately (zlib compression ratio below a floor: compressed/raw bytes),
or contains a blacklisted substring. Comparing a broken piece with a sound one needs no human:
the sound one wins, recorded as ``kind="auto"`` with the broken ids listed, so such ratings stay
distinguishable from human ones (and can be filtered out of a fit with ``kinds=``).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Callable

from domains import NOTE_LETTERS, abc_body

from ._records import Comparison
from ._store import RatingStore

AUTO_RATER = "autocheck"  # the rater name recorded with auto-check verdicts


@dataclass(frozen=True, kw_only=True)
class JudgeConfig:
    """Thresholds of the auto-checks."""

    min_chars: int = 20  # a body (non-header text) shorter than this is broken
    min_notes: int = 8  # fewer note letters than this in the body is broken
    min_compression: float = 0.15  # zlib(body)/body below this = degenerate repetition
    blacklist: tuple[str, ...] = ()  # substrings that mark a piece broken
    check_validity: bool = True  # run the domain's (slower) validity check, e.g. a music21 parse

    def __post_init__(self) -> None:
        if self.min_chars < 0 or self.min_notes < 0:
            raise ValueError("min_chars and min_notes must be >= 0")
        if not 0.0 <= self.min_compression < 1.0:
            raise ValueError(f"min_compression must be in [0, 1), got {self.min_compression}")
        if any(not s for s in self.blacklist):
            raise ValueError("blacklist entries must be non-empty strings")
        object.__setattr__(self, "blacklist", tuple(self.blacklist))


def compression_ratio(text: str) -> float:
    """len(zlib(text)) / len(text) in bytes; small = repetitive (1.0 for empty text)."""
    raw = text.encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0


def _default_validator() -> Callable | None:
    try:
        from domains import validate_abc
    except ImportError:  # pragma: no cover - the domains package ships it
        return None
    return validate_abc


def broken_reasons(text: str, cfg: JudgeConfig = JudgeConfig(), validator: Callable | None = None) -> list[str]:
    """Why `text` is broken (empty list: not broken). `validator(text)` -> truthy/`Validity`."""
    reasons = [f"contains blacklisted {s!r}" for s in cfg.blacklist if s in text]
    body = abc_body(text)
    if len(body.strip()) < cfg.min_chars:
        reasons.append(f"too short ({len(body.strip())} < {cfg.min_chars} characters of body)")
    n_notes = sum(ch in NOTE_LETTERS for ch in re.sub(r'"[^"]*"', "", body))
    if n_notes < cfg.min_notes:
        reasons.append("no notes" if n_notes == 0 else f"too few notes ({n_notes} < {cfg.min_notes})")
    if body.strip() and len(body) >= 64 and compression_ratio(body) < cfg.min_compression:
        reasons.append(f"degenerate repetition (compression ratio {compression_ratio(body):.2f})")
    if cfg.check_validity and not reasons:
        validator = validator or _default_validator()
        if validator is not None:
            v = validator(text)
            if not v:
                reasons.append(f"does not parse: {getattr(v, 'reason', '') or 'invalid'}")
    return reasons


def auto_winner(a_broken: bool, b_broken: bool) -> str | None:
    """The verdict without a human: sound beats broken, two broken pieces tie, else None."""
    if a_broken and b_broken:
        return "tie"
    if a_broken or b_broken:
        return "b" if a_broken else "a"
    return None


def auto_compare(store: RatingStore, a: str, b: str, cfg: JudgeConfig = JudgeConfig(), *,
                 rater: str = AUTO_RATER, validator: Callable | None = None) -> Comparison | None:
    """Record an auto-rating of items `a`, `b` if either is broken; None when a person must judge."""
    broken = {k: bool(broken_reasons(store[k].text, cfg, validator)) for k in (a, b)}
    winner = auto_winner(broken[a], broken[b])
    if winner is None:
        return None
    return store.add_comparison(a, b, winner, rater=rater, kind="auto",
                                broken=[k for k in (a, b) if broken[k]])
