"""The records of a rating store (`_store`): items, comparisons, skips and queue entries.

One JSON object per line::

    {"id": sha256(text), "text": ..., "domain": "abc", "origin": "corpus|sample|optimized|harvested",
     "iteration": 0, "parent": null}
    {"a": id, "b": id, "winner": "a"|"b"|"tie", "rater": "gwern", "kind": "human|auto|simulated",
     "broken": [ids], "time": "2026-01-01T00:00:00+00:00", "source": "<sha256>"}   # source: imports only
    {"a": id, "b": id, "winner": ..., "rater": ..., "id": "<rating id>", ...}   # id: rating sessions only
    {"skip": true, "id": "<rating id>", "a": id, "b": id, "rater": ..., "time": ...}   # passed on a pair
    {"retract": "<rating id>", "rater": ..., "time": ...}   # undoes that rating or skip
    {"a": id, "b": id, "rank": 0, "strategy": "racing", "time": ...}     # queue: a pair to rate
    {"a": id, "b": id, "rated": true, "time": ...}                        # queue: taken off by hand

Imported comparisons carry ``source``, the sha256 of the record they came from (canonical JSON;
``#k`` appended for the k-th identical copy within one file). Ratings made in a rating session
carry a unique ``id`` (made up by the rater's client), and so do their skips.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ._jsonl import StoreError

ORIGINS = ("corpus", "sample", "optimized", "harvested")
KINDS = ("human", "auto", "simulated")
WINNERS = ("a", "b", "tie")


def item_id(text: str) -> str:
    """The content hash that identifies an item: sha256 of its UTF-8 text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Item:
    """One rated (or rateable) sequence."""

    id: str  # sha256 of `text`
    text: str  # the sequence as the domain's text (e.g. an ABC tune)
    domain: str = "abc"  # which `Domain` the text belongs to
    origin: str = "corpus"  # one of ORIGINS
    iteration: int = 0  # generator iteration that produced it (0 for the corpus)
    parent: str | None = None  # id of the item it was optimized/edited from

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"item text must be a string, got {type(self.text).__name__}")
        if self.id != item_id(self.text):
            raise ValueError(f"item id {self.id[:12]}... is not the sha256 of its text")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {self.origin!r}")
        if not isinstance(self.iteration, int) or self.iteration < 0:
            raise ValueError(f"iteration must be a non-negative int, got {self.iteration!r}")

    @classmethod
    def new(cls, text: str, *, domain: str = "abc", origin: str = "corpus", iteration: int = 0,
            parent: str | None = None) -> "Item":
        return cls(id=item_id(text), text=text, domain=domain, origin=origin, iteration=iteration,
                   parent=parent)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One judgement of item `a` against item `b`."""

    a: str  # id of the first item shown
    b: str  # id of the second item shown
    winner: str  # "a", "b" or "tie"
    rater: str = "anonymous"  # who judged (a person, a judge's name, "simulated")
    kind: str = "human"  # one of KINDS; "auto" marks judge verdicts such as broken pieces
    broken: tuple[str, ...] = ()  # ids (of a and/or b) an auto-check found broken
    time: str = field(default_factory=_now)  # ISO 8601, UTC
    source: str | None = None  # imports: sha256 of the source record (see module docstring)
    id: str | None = None  # rating sessions: a unique rating id (see module docstring)

    def __post_init__(self) -> None:
        _check_id(self.id, optional=True)
        if self.a == self.b:
            raise ValueError(f"an item cannot be compared with itself ({self.a[:12]}...)")
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, got {self.winner!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "broken", tuple(self.broken))
        if not set(self.broken) <= {self.a, self.b}:
            raise ValueError("broken ids must be among the two compared items")

    @property
    def loser(self) -> str | None:
        return None if self.winner == "tie" else (self.b if self.winner == "a" else self.a)

    @property
    def key(self) -> tuple | None:
        """Identity for deduplication: (a, b, winner, rater, source); None for live ratings."""
        return None if self.source is None else (self.a, self.b, self.winner, self.rater, self.source)

    def as_json(self) -> dict:
        d = asdict(self)
        d["broken"] = list(self.broken)
        for name in ("source", "id"):
            if d[name] is None:
                del d[name]  # other ratings keep the original record layout
        return d


def _check_id(rating_id, optional: bool = False) -> None:
    if rating_id is None and optional:
        return
    if not isinstance(rating_id, str) or not 0 < len(rating_id) <= 128:
        raise ValueError(f"a rating id must be a non-empty string of at most 128 characters, got {rating_id!r}")


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A rater passed on a pair without judging it (so a rating session does not ask again)."""

    id: str  # unique rating id, shared with comparisons
    a: str  # id of the first item shown
    b: str  # id of the second item shown
    rater: str = "anonymous"  # who passed
    time: str = field(default_factory=_now)  # ISO 8601, UTC

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.a == self.b:
            raise ValueError(f"an item cannot be compared with itself ({self.a[:12]}...)")

    def as_json(self) -> dict:
        return {"skip": True, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class QueueEntry:
    """A pair of items waiting to be rated."""

    a: str  # id of the first item to show
    b: str  # id of the second item to show
    rank: int = 0  # position within the batch it was queued in (0 = rate first)
    strategy: str = ""  # what chose the pair (e.g. an active-selection strategy)
    time: str = field(default_factory=_now)  # ISO 8601, UTC, when it was queued

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError(f"an item cannot be compared with itself ({self.a[:12]}...)")
        if not isinstance(self.rank, int) or self.rank < 0:
            raise ValueError(f"rank must be a non-negative int, got {self.rank!r}")


def _parse(path: Path, no: int, cls, rec: dict):
    try:
        if cls is Comparison:
            rec = {**rec, "broken": tuple(rec.get("broken", ()))}
        return cls(**rec)
    except (TypeError, ValueError) as err:
        name = {Item: "item", Comparison: "comparison", QueueEntry: "queue", Skip: "skip"}[cls]
        raise StoreError(f"{path}:{no}: bad {name} record: {err}") from None
