"""The rating store: a directory of append-only JSONL files of items, comparisons and the rating queue.

The directory holds ``items.jsonl``, ``comparisons.jsonl`` and ``queue.jsonl``; the records and
their JSON layout are in `_records`.

Every batch of records is written with one ``write`` and then flushed and fsynced, so a killed
writer can only leave a *torn last line*. Reading skips such a line with a warning naming file
and line; opening the store for writing moves the fragment to ``<file>.torn`` so later appends
start on a clean line. Any other bad record (malformed JSON before the end, an unknown item id,
an item compared with itself, a bad winner) raises `StoreError` naming file and line.

A comparison's identity is (a, b, winner, rater, source): `add_batch` and `add_comparison` do not
write an imported one that is already stored, so importing a file twice stores its comparisons
once. Comparisons without a source (live ratings) are never deduplicated: rating a pair twice is
two judgements.

A record with a rating id that is stored is not written again, so a retried request cannot rate
twice. `retract` undoes one by appending a retraction record (nothing is rewritten): the rating
leaves `comparisons` and `pairs`, the skip leaves `skips`, and the id stays used.

The rating queue holds pairs waiting for a rater (harvested blind spots, actively selected
pairs): `enqueue` appends, `pending` lists those not yet rated (no comparison of the pair in
either order, not taken off with `mark_rated`), in queue order. Old stores (no queue file, no
``source`` or ``time`` fields) load unchanged.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._jsonl import StoreError, read_jsonl
from ._jsonl import append as _append
from ._jsonl import repair_tail as _repair_tail
from ._records import KINDS, Comparison, Item, QueueEntry, Skip, _now, _parse

ITEMS_FILE = "items.jsonl"
COMPARISONS_FILE = "comparisons.jsonl"
QUEUE_FILE = "queue.jsonl"


class RatingStore:
    """Items, comparisons and the rating queue in a directory; loads everything on open, appends durably."""

    def __init__(self, directory: str | Path, *, create: bool = True) -> None:
        self.directory = Path(directory)
        if not self.directory.exists():
            if not create:
                raise FileNotFoundError(f"no rating store at {self.directory}")
            self.directory.mkdir(parents=True)
        self.items_path = self.directory / ITEMS_FILE
        self.comparisons_path = self.directory / COMPARISONS_FILE
        self.queue_path = self.directory / QUEUE_FILE
        self._items: dict[str, Item] = {}
        self._comparisons: list[Comparison] = []
        self._by_key: dict[tuple, Comparison] = {}  # imported comparisons by identity
        self._by_id: dict[str, Comparison | Skip] = {}  # every record with a rating id, retracted or not, in order
        self._retracted: set[str] = set()
        self._queue: list[QueueEntry] = []
        self._marked: set[frozenset[str]] = set()  # pairs taken off the queue by `mark_rated`
        for no, rec in read_jsonl(self.items_path):
            item = _parse(self.items_path, no, Item, rec)
            self._items.setdefault(item.id, item)
        for no, rec in read_jsonl(self.comparisons_path):
            if "retract" in rec:
                self._load_retraction(no, rec)
                continue
            is_skip = rec.get("skip") is True
            comp = _parse(self.comparisons_path, no, Skip, {k: v for k, v in rec.items() if k != "skip"}) \
                if is_skip else _parse(self.comparisons_path, no, Comparison, rec)
            self._known(self.comparisons_path, no, comp.a, comp.b)
            if comp.id is not None and comp.id in self._by_id:  # written twice by writers without the lock
                try:
                    self._same(comp)
                except ValueError as err:
                    raise StoreError(f"{self.comparisons_path}:{no}: {err}") from None
                continue
            self._remember(comp)
        for no, rec in read_jsonl(self.queue_path):
            if rec.get("rated") is True:
                if not (isinstance(rec.get("a"), str) and isinstance(rec.get("b"), str)):
                    raise StoreError(f"{self.queue_path}:{no}: a 'rated' record needs string ids 'a' and 'b'")
                self._known(self.queue_path, no, rec["a"], rec["b"])
                self._marked.add(frozenset((rec["a"], rec["b"])))
                continue
            entry = _parse(self.queue_path, no, QueueEntry, rec)
            self._known(self.queue_path, no, entry.a, entry.b)
            self._queue.append(entry)
        self._repaired = False

    def _load_retraction(self, no: int, rec: dict) -> None:
        key, rater = rec["retract"], rec.get("rater")
        target = self._by_id.get(key) if isinstance(key, str) else None
        if target is None:
            raise StoreError(f"{self.comparisons_path}:{no}: retraction of unknown rating id {key!r}; "
                             "a retraction must follow the rating it undoes")
        if rater != target.rater:
            raise StoreError(f"{self.comparisons_path}:{no}: {rater!r} retracts a rating by {target.rater!r}")
        self._forget(key)

    def _known(self, path: Path, no: int, *keys: str) -> None:
        for key in keys:
            if key not in self._items:
                raise StoreError(f"{path}:{no}: unknown item id {str(key)[:16]}...; "
                                 f"add the item to {ITEMS_FILE} first")

    def _writable(self) -> None:
        if not self._repaired:
            _repair_tail(self.items_path)
            _repair_tail(self.comparisons_path)
            _repair_tail(self.queue_path)
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

    def root(self, key: str) -> str:
        """The id of item `key`'s oldest ancestor along `parent` links (`key` itself if it has no
        parent; a parent missing from the store ends the chain). Edits of one tune share a root."""
        seen = {key}
        while (parent := self._items[key].parent) is not None and parent in self._items and parent not in seen:
            key = parent
            seen.add(key)
        return key

    # --- comparisons -----------------------------------------------------------------------
    @property
    def comparisons(self) -> list[Comparison]:
        return list(self._comparisons)

    def add_comparison(self, a: str, b: str, winner: str, **meta) -> Comparison:
        """Record a judgement; `meta` holds rater, kind, broken, time, source. A comparison with a
        `source` that is already stored (same a, b, winner, rater, source) is returned, not rewritten."""
        for key in (a, b):
            if key not in self._items:
                raise ValueError(f"unknown item id {key[:16]}...; add the item first")
        comp = Comparison(a=a, b=b, winner=winner, **meta)
        if comp.key in self._by_key:
            return self._by_key[comp.key]
        if comp.id is not None and comp.id in self._by_id:
            return self._same(comp)
        self._writable()
        _append(self.comparisons_path, comp.as_json())
        self._remember(comp)
        return comp

    def _remember(self, comp: Comparison | Skip) -> None:
        if comp.id is not None:
            self._by_id[comp.id] = comp
        if isinstance(comp, Skip):
            return
        self._comparisons.append(comp)
        if comp.key is not None:
            self._by_key.setdefault(comp.key, comp)

    def _same(self, record: Comparison | Skip) -> Comparison | Skip:
        """The stored record with `record`'s id, which must say the same thing (a retried request)."""
        old = self._by_id[record.id]
        fields = lambda r: (type(r), r.a, r.b, r.rater, getattr(r, "winner", None))  # noqa: E731
        if fields(old) != fields(record):
            raise ValueError(f"rating id {record.id!r} is already used for another rating; make up a new id "
                             "for each rating (and reuse it only to retry the same one)")
        return old

    def _forget(self, key: str) -> None:
        self._retracted.add(key)
        target = self._by_id[key]
        if isinstance(target, Comparison):
            self._comparisons = [c for c in self._comparisons if c is not target]

    # --- rating sessions: ids, skips, retractions ------------------------------------------
    def add_skip(self, a: str, b: str, *, id: str, rater: str = "anonymous") -> Skip:  # noqa: A002
        """Record that `rater` passed on the pair (a, b); an id already stored is returned, not rewritten."""
        for key in (a, b):
            if key not in self._items:
                raise ValueError(f"unknown item id {key[:16]}...; add the item first")
        skip = Skip(id=id, a=a, b=b, rater=rater)
        if skip.id in self._by_id:
            return self._same(skip)
        self._writable()
        _append(self.comparisons_path, skip.as_json())
        self._remember(skip)
        return skip

    @property
    def skips(self) -> list[Skip]:
        """Skips not retracted, in the order recorded."""
        return [r for k, r in self._by_id.items() if isinstance(r, Skip) and k not in self._retracted]

    def rating(self, rating_id: str) -> Comparison | Skip | None:
        """The comparison or skip with this rating id (retracted or not), or None."""
        return self._by_id.get(rating_id)

    def is_retracted(self, rating_id: str) -> bool:
        return rating_id in self._retracted

    def history(self, rater: str) -> list[Comparison | Skip]:
        """`rater`'s comparisons and skips that carry a rating id and are not retracted, oldest first."""
        return [r for k, r in self._by_id.items() if r.rater == rater and k not in self._retracted]

    def retract(self, rating_id: str, *, rater: str) -> bool:
        """Undo `rater`'s rating or skip `rating_id` by appending a retraction record. Returns False
        (and writes nothing) when it is already retracted, so a retried undo is harmless."""
        target = self._by_id.get(rating_id)
        if target is None:
            raise ValueError(f"no rating with id {rating_id!r} in {self.directory}")
        if target.rater != rater:
            raise ValueError(f"rating {rating_id!r} is by {target.rater!r}, not {rater!r}; a rater can undo only "
                             "their own ratings")
        if rating_id in self._retracted:
            return False
        self._writable()
        _append(self.comparisons_path, {"retract": rating_id, "rater": rater, "time": _now()})
        self._forget(rating_id)
        return True

    def add_batch(self, items: Sequence[Item], comparisons: Sequence[Comparison]) -> tuple[int, int]:
        """Check every record first, then write the new ones: all or nothing for bad input.

        Items already stored are skipped (content hash), so are comparisons whose identity
        (`Comparison.key`) is stored or repeated in the batch. Parents and compared ids must be
        in the store or among `items`. Returns (items written, comparisons written).
        """
        known = set(self._items)
        new_items: dict[str, Item] = {}
        for item in items:
            if item.parent is not None and item.parent not in known:
                raise ValueError(f"parent {item.parent[:16]}... of item {item.id[:16]}... is neither in the "
                                 "store nor in the batch; add the parent first")
            if item.id not in known:
                new_items[item.id] = item
                known.add(item.id)
        new_comps: list[Comparison] = []
        seen = set(self._by_key)
        seen_ids: set[str] = set()
        for comp in comparisons:
            for key in (comp.a, comp.b):
                if key not in known:
                    raise ValueError(f"comparison refers to unknown item id {key[:16]}...; "
                                     "add the item in the same batch or before")
            if comp.id is not None:
                if comp.id in self._by_id:
                    self._same(comp)  # raises if the id is used for another rating
                elif comp.id not in seen_ids:
                    new_comps.append(comp)
                    seen_ids.add(comp.id)
            elif comp.key is None or comp.key not in seen:
                new_comps.append(comp)
                if comp.key is not None:
                    seen.add(comp.key)
        self._writable()
        _append(self.items_path, *(asdict(it) for it in new_items.values()))
        self._items.update(new_items)
        _append(self.comparisons_path, *(c.as_json() for c in new_comps))
        for comp in new_comps:
            self._remember(comp)
        return len(new_items), len(new_comps)

    # --- rating queue ----------------------------------------------------------------------
    @property
    def queue(self) -> list[QueueEntry]:
        """Every queued entry in the order queued, rated or not."""
        return list(self._queue)

    def enqueue(self, pairs: Iterable[tuple[str, str]], *, strategy: str = "") -> list[QueueEntry]:
        """Queue id pairs for rating (`rank` = position in `pairs`); pairs already pending are skipped.

        All pairs are checked before anything is written. Returns the entries written.
        """
        pairs = [tuple(p) for p in pairs]
        for no, pair in enumerate(pairs):
            if len(pair) != 2:
                raise ValueError(f"pair {no}: expected (a, b), got {pair!r}")
            for key in pair:
                if key not in self._items:
                    raise ValueError(f"pair {no}: unknown item id {str(key)[:16]}...; add the item first")
        waiting = {frozenset((e.a, e.b)) for e in self.pending()}
        entries = []
        for rank, (a, b) in enumerate(pairs):
            entry = QueueEntry(a=a, b=b, rank=rank, strategy=strategy)
            if frozenset((a, b)) not in waiting:
                entries.append(entry)
                waiting.add(frozenset((a, b)))
        self._writable()
        _append(self.queue_path, *(asdict(e) for e in entries))
        self._queue.extend(entries)
        return entries

    def pending(self) -> list[QueueEntry]:
        """Queued pairs not yet rated, first queued first: a comparison of the pair (either order)
        or `mark_rated` takes a pair off the queue; a pair queued twice is listed once."""
        done = {frozenset((c.a, c.b)) for c in self._comparisons} | self._marked
        out = []
        for e in self._queue:
            pair = frozenset((e.a, e.b))
            if pair not in done:
                out.append(e)
                done.add(pair)
        return out

    def mark_rated(self, a: str, b: str) -> None:
        """Take a queued pair off the queue without recording a comparison in this store (it was
        rated elsewhere, or the rater skipped it). Recording a comparison needs no mark."""
        pair = frozenset((a, b))
        if not any(frozenset((e.a, e.b)) == pair for e in self._queue):
            raise ValueError(f"the pair ({a[:12]}..., {b[:12]}...) is not in the queue of {self.directory}")
        self._writable()
        _append(self.queue_path, {"a": a, "b": b, "rated": True, "time": _now()})
        self._marked.add(pair)

    def add_comparisons(self, comparisons: Sequence[Comparison]) -> list[Comparison]:
        """Record many judgements with one append and one fsync instead of one per record
        (`add_batch`: every id is checked before anything is written; an imported comparison
        already stored is skipped). Returns the comparisons given."""
        comparisons = list(comparisons)
        for c in comparisons:
            if not isinstance(c, Comparison):
                raise ValueError(f"add_comparisons takes Comparison records, got {type(c).__name__}")
        self.add_batch([], comparisons)
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
            "queue_pending": len(self.pending()),
        }
