"""The rating store: append-only JSONL files of items and of pairwise comparisons.

A store is a directory holding ``items.jsonl`` and ``comparisons.jsonl``::

    {"id": sha256(text), "text": ..., "domain": "abc", "origin": "corpus|sample|optimized|harvested",
     "iteration": 0, "parent": null}
    {"a": id, "b": id, "winner": "a"|"b"|"tie", "rater": "gwern", "kind": "human|auto|simulated",
     "broken": [ids], "time": "2026-01-01T00:00:00+00:00"}

Every record is written with one ``write`` and then flushed and fsynced, so a killed writer can
only leave a *torn last line*. Reading skips such a line with a warning naming file and line;
opening the store for writing moves the fragment to ``<file>.torn`` so later appends start on a
clean line. Any other bad record (malformed JSON before the end, an unknown item id, an item
compared with itself, a bad winner) raises `StoreError` naming file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

ORIGINS = ("corpus", "sample", "optimized", "harvested")
KINDS = ("human", "auto", "simulated")
WINNERS = ("a", "b", "tie")
ITEMS_FILE = "items.jsonl"
COMPARISONS_FILE = "comparisons.jsonl"


class StoreError(ValueError):
    """A ratings file holds a record that cannot be used (the message names file and line)."""


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

    def __post_init__(self) -> None:
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

    def as_json(self) -> dict:
        d = asdict(self)
        d["broken"] = list(self.broken)
        return d


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(1-based line number, text, ends with newline) for each non-blank line."""
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            complete = raw.endswith(b"\n")
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                yield no, text, complete


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """Records of a JSONL file with their line numbers; a torn last line is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[tuple[int, dict]] = []
    rows = list(_lines(path))
    for k, (no, text, complete) in enumerate(rows):
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as err:
            if k == len(rows) - 1 and not complete:
                warnings.warn(f"{path}:{no}: skipping torn last line (a writer was killed mid-record)")
                continue
            raise StoreError(f"{path}:{no}: malformed JSON ({err.msg}); fix or delete that line") from None
        if not isinstance(rec, dict):
            raise StoreError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
        out.append((no, rec))
    return out


def _repair_tail(path: Path) -> None:
    """Before appending: move a torn last line to `<path>.torn`, or end a complete one with '\\n'."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail.decode("utf-8"))
        torn = False
    except (json.JSONDecodeError, UnicodeDecodeError):
        torn = tail.strip() != b""
    line_no = data[:cut].count(b"\n") + 1
    with open(path, "r+b") as f:
        if torn:
            with open(path.with_name(path.name + ".torn"), "ab") as side:
                side.write(tail + b"\n")
            f.truncate(cut)
            warnings.warn(f"{path}:{line_no}: moved torn last line to {path.name}.torn")
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def _append(path: Path, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _append_many(path: Path, records: Sequence[dict]) -> None:
    """Append records as JSON lines with one write and one fsync (a kill can tear only the last)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _parse(path: Path, no: int, cls, rec: dict):
    try:
        if cls is Comparison:
            rec = {**rec, "broken": tuple(rec.get("broken", ()))}
        return cls(**rec)
    except (TypeError, ValueError) as err:
        raise StoreError(f"{path}:{no}: bad {cls.__name__.lower()} record: {err}") from None


class RatingStore:
    """Items and comparisons in a directory; loads everything on open, appends durably."""

    def __init__(self, directory: str | Path, *, create: bool = True) -> None:
        self.directory = Path(directory)
        if not self.directory.exists():
            if not create:
                raise FileNotFoundError(f"no rating store at {self.directory}")
            self.directory.mkdir(parents=True)
        self.items_path = self.directory / ITEMS_FILE
        self.comparisons_path = self.directory / COMPARISONS_FILE
        self._items: dict[str, Item] = {}
        self._comparisons: list[Comparison] = []
        for no, rec in read_jsonl(self.items_path):
            item = _parse(self.items_path, no, Item, rec)
            self._items.setdefault(item.id, item)
        for no, rec in read_jsonl(self.comparisons_path):
            comp = _parse(self.comparisons_path, no, Comparison, rec)
            for key in (comp.a, comp.b):
                if key not in self._items:
                    raise StoreError(
                        f"{self.comparisons_path}:{no}: unknown item id {key[:16]}...; "
                        f"add the item to {ITEMS_FILE} first"
                    )
            self._comparisons.append(comp)
        self._repaired = False

    def _writable(self) -> None:
        if not self._repaired:
            _repair_tail(self.items_path)
            _repair_tail(self.comparisons_path)
            self._repaired = True

    # --- items -----------------------------------------------------------------------------
    @property
    def items(self) -> list[Item]:
        """Items in the order they were first added."""
        return list(self._items.values())

    @property
    def ids(self) -> list[str]:
        return list(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __getitem__(self, key: str) -> Item:
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def add_item(self, text: str, **meta) -> Item:
        """Store `text` (domain/origin/iteration/parent in `meta`); an existing item is returned as is."""
        item = Item.new(text, **meta)
        if item.id in self._items:
            return self._items[item.id]
        if item.parent is not None and item.parent not in self._items:
            raise ValueError(f"parent {item.parent[:16]}... is not in the store")
        self._writable()
        _append(self.items_path, asdict(item))
        self._items[item.id] = item
        return item

    def add_items(self, texts: Iterable[str], **meta) -> list[Item]:
        return [self.add_item(t, **meta) for t in texts]

    # --- comparisons -----------------------------------------------------------------------
    @property
    def comparisons(self) -> list[Comparison]:
        return list(self._comparisons)

    def add_comparison(self, a: str, b: str, winner: str, **meta) -> Comparison:
        """Record a judgement; `meta` holds rater, kind, broken, time."""
        for key in (a, b):
            if key not in self._items:
                raise ValueError(f"unknown item id {key[:16]}...; add the item first")
        comp = Comparison(a=a, b=b, winner=winner, **meta)
        self._writable()
        _append(self.comparisons_path, comp.as_json())
        self._comparisons.append(comp)
        return comp

    def add_comparisons(self, comparisons: Sequence[Comparison]) -> list[Comparison]:
        """Record many judgements with one append and one fsync instead of one per record; every
        id is checked before anything is written."""
        comparisons = list(comparisons)
        for c in comparisons:
            if not isinstance(c, Comparison):
                raise ValueError(f"add_comparisons takes Comparison records, got {type(c).__name__}")
            for key in (c.a, c.b):
                if key not in self._items:
                    raise ValueError(f"unknown item id {key[:16]}...; add the item first")
        if comparisons:
            self._writable()
            _append_many(self.comparisons_path, [c.as_json() for c in comparisons])
            self._comparisons.extend(comparisons)
        return comparisons

    def index(self) -> dict[str, int]:
        """Item id -> position in `items` (the index used by `pairs` and the BT fit)."""
        return {k: i for i, k in enumerate(self._items)}

    def pairs(self, kinds: Sequence[str] = KINDS) -> tuple[np.ndarray, np.ndarray]:
        """Comparisons of the given kinds as index arrays: ([winner, loser] (m, 2), ties (m_t, 2))."""
        pos = self.index()
        wins, ties = [], []
        for c in self._comparisons:
            if c.kind not in kinds:
                continue
            if c.winner == "tie":
                ties.append((pos[c.a], pos[c.b]))
            else:
                wins.append((pos[c.a], pos[c.b]) if c.winner == "a" else (pos[c.b], pos[c.a]))
        as_arr = lambda x: np.asarray(x, dtype=np.int64).reshape(-1, 2)  # noqa: E731
        return as_arr(wins), as_arr(ties)

    def stats(self) -> dict:
        """Counts for a person: items by origin, comparisons by kind and outcome, raters, coverage."""
        by_origin: dict[str, int] = {}
        for it in self._items.values():
            by_origin[it.origin] = by_origin.get(it.origin, 0) + 1
        by_kind: dict[str, int] = {}
        raters: dict[str, int] = {}
        ties = broken = 0
        rated: set[str] = set()
        for c in self._comparisons:
            by_kind[c.kind] = by_kind.get(c.kind, 0) + 1
            raters[c.rater] = raters.get(c.rater, 0) + 1
            ties += c.winner == "tie"
            broken += bool(c.broken)
            rated.update((c.a, c.b))
        return {
            "items": len(self._items), "items_by_origin": by_origin,
            "comparisons": len(self._comparisons), "comparisons_by_kind": by_kind,
            "ties": ties, "with_broken": broken, "raters": raters,
            "items_never_compared": len(self._items) - len(rated),
        }
