"""A rating session: one named person judging pairs of a rating store, one pair at a time (no UI).

The terminal (`gradopt rate`) and the browser (`gradopt serve-ratings`) are thin shells over it:

    session = RatingSession(store, "ann")
    pair = session.next_pair()            # queued pairs first (harvested blind spots), then active selection
    session.record(pair, "first")         # "first" | "second" | "tie" | "skip"; on disk when it returns
    session.undo()                        # retracts ann's last rating or skip (appended, never rewritten)

Which pair comes next: the store's pending queue in queue order, then the pair the active-selection
strategy (`next_pairs`) picks from a Bradley-Terry fit of every comparison; never a pair this rater
has already rated or skipped unless every pair is, and an undone pair is offered again at once.
The two items are shown in an order drawn from the seed, so the strategy's favourite is not always
first. Everything follows from the store, so a new session on the same store carries on where the
last one stopped.

Several raters at once: sessions of one process that share a `RatingStore` object share its lock
and its fit; sessions in other processes append to the same files. Every read and write holds an
exclusive lock on ``<store>/.lock`` and first reads the store again when its files changed since
this process last saw them (and on first use), so a rating id is stored once however many
processes retry it, and each process sees the others' ratings. `session.store` is the store as
last read (the object passed in is not updated). Each record is appended with one write and
fsynced before `record` returns. Writers that take no lock (`gradopt ratings add`) append whole
lines too; a session sees them at the next change it notices.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._active import STRATEGIES, next_pairs
from ._records import Comparison, Item, Skip
from ._store import RatingStore
from ._workflow import fit_store

try:  # POSIX; elsewhere the in-process lock alone guards the store
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SESSION_VERDICTS = {"first": "a", "second": "b", "tie": "tie", "skip": None}  # what a rater says -> stored winner
LOCK_FILE = ".lock"


@dataclass(frozen=True, kw_only=True)
class RatingPair:
    """Two items to show side by side, `a` first."""

    a: Item
    b: Item
    source: str  # "queue", the active-selection strategy that chose it, "again" (undone) or "repeat"

    @property
    def id(self) -> str:
        """``"<a id>:<b id>"``: what a client sends back with its verdict."""
        return f"{self.a.id}:{self.b.id}"


def split_pair_id(pair_id) -> tuple[str, str]:
    """(a, b) item ids of a pair id ``"<a id>:<b id>"``; ValueError naming the input otherwise."""
    parts = pair_id.split(":") if isinstance(pair_id, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"pair id must be '<item id>:<item id>' as given by the next pair, got {pair_id!r}")
    return parts[0], parts[1]


def check_rater(rater) -> str:
    """The rater's name, stripped; ValueError unless it is 1-100 printable characters."""
    name = rater.strip() if isinstance(rater, str) else ""
    if not name or len(name) > 100 or not name.isprintable():
        raise ValueError(f"rater must be a name of 1 to 100 printable characters, got {rater!r}")
    return name


class _Shared:
    """One store as seen by this process: a lock, the files' last known state, the cached fit."""

    def __init__(self, store: RatingStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.signature = None  # unknown: `store` may have been read before another process wrote
        self.scores = None

    def _signature(self) -> tuple:
        out = []
        for path in (self.store.items_path, self.store.comparisons_path, self.store.queue_path):
            try:
                st = path.stat()
                out.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    @contextlib.contextmanager
    def locked(self):
        """The store, up to date and locked against this process's threads and other sessions."""
        with self.lock, open(self.store.directory / LOCK_FILE, "a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            seen = self._signature()
            if seen != self.signature:  # another process wrote: read everything again
                self.signature = seen  # before reading, so a line caught half-written is read next time
                self.store = RatingStore(self.store.directory)
                self.scores = None
                with _SHARED_LOCK:
                    _SHARED[self.store] = self  # sessions made from `session.store` share this state
            yield self.store
            after = self._signature()
            if after != self.signature:  # this process wrote
                self.signature = after
                self.scores = None


_SHARED: "weakref.WeakKeyDictionary[RatingStore, _Shared]" = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


class RatingSession:
    """`rater` judging pairs of `store` (a `RatingStore` or its directory); see the module docstring.

    strategy: active-selection strategy for pairs beyond the queue (one of `STRATEGIES`).
    seed: seeds the strategy's draws and the display order (mixed with the rater's progress).
    """

    def __init__(self, store: RatingStore | str | Path, rater: str, *, strategy: str = "racing",
                 seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
        self.rater = check_rater(rater)
        self.strategy = strategy
        self.seed = int(seed)
        if not isinstance(store, RatingStore):
            store = RatingStore(store, create=False)
        with _SHARED_LOCK:
            self._shared = _SHARED.get(store) or _SHARED.setdefault(store, _Shared(store))
        self._again: tuple[str, str] | None = None  # the pair last undone, offered again first

    @property
    def store(self) -> RatingStore:
        """The store as last read (reloaded when another process changes it)."""
        return self._shared.store

    def _done(self, store: RatingStore) -> set[frozenset]:
        """Pairs (either order) this rater has rated or skipped, retractions excepted."""
        done = {frozenset((c.a, c.b)) for c in store.comparisons if c.rater == self.rater}
        return done | {frozenset((s.a, s.b)) for s in store.skips if s.rater == self.rater}

    def next_pair(self) -> RatingPair | None:
        """The pair to show next (see the module docstring); None when the store has under 2 items."""
        with self._shared.locked() as store:
            done = self._done(store)
            if self._again is not None and frozenset(self._again) not in done:
                return RatingPair(a=store[self._again[0]], b=store[self._again[1]], source="again")
            for entry in store.pending():
                if frozenset((entry.a, entry.b)) not in done:
                    return RatingPair(a=store[entry.a], b=store[entry.b], source="queue")
            if len(store) < 2:
                return None
            if self._shared.scores is None:
                self._shared.scores = fit_store(store)
            pos, ids = store.index(), store.ids
            exclude = [tuple(pos[k] for k in pair) for pair in done]
            seed = self.seed + len(done)
            source, rows = "repeat", np.zeros((0, 2), dtype=np.int64)
            for strategy in dict.fromkeys((self.strategy, "uncertainty", "random")):
                rows = next_pairs(self._shared.scores, 1, strategy, seed, exclude=exclude)
                if len(rows):
                    source = strategy
                    break
            else:  # this rater has judged every pair: ask again
                rows = next_pairs(self._shared.scores, 1, "random", seed)
            i, j = (int(x) for x in rows[0])
            if np.random.default_rng([self.seed, len(done)]).random() < 0.5:
                i, j = j, i
            return RatingPair(a=store[ids[i]], b=store[ids[j]], source=source)

    def record(self, pair: RatingPair | str | tuple[str, str], verdict: str,
               rating_id: str | None = None) -> Comparison | Skip:
        """Store this rater's verdict on `pair` (a `RatingPair`, its id, or (a, b) item ids) and return the
        record; it is fsynced to disk before this returns. `rating_id` (default: a fresh uuid) makes
        a retry safe: a verdict whose id is stored is returned as stored, not written again."""
        if not isinstance(verdict, str) or verdict not in SESSION_VERDICTS:
            raise ValueError(f"verdict must be one of {tuple(SESSION_VERDICTS)}, got {verdict!r}")
        if isinstance(pair, RatingPair):
            a, b = pair.a.id, pair.b.id
        elif isinstance(pair, str):
            a, b = split_pair_id(pair)
        else:
            a, b = pair
        rating_id = uuid.uuid4().hex if rating_id is None else rating_id
        with self._shared.locked() as store:
            if verdict == "skip":
                rec = store.add_skip(a, b, id=rating_id, rater=self.rater)
            else:
                rec = store.add_comparison(a, b, SESSION_VERDICTS[verdict], rater=self.rater, kind="human", id=rating_id)
        if self._again is not None and frozenset(self._again) == frozenset((a, b)):
            self._again = None
        return rec

    def undo(self, rating_id: str | None = None) -> Comparison | Skip | None:
        """Retract this rater's last rating or skip (or the one with `rating_id`) and return it; its
        pair is offered again next. None when there is nothing to undo. Retracting the same id
        again writes nothing and returns the record, so a retried undo is harmless."""
        with self._shared.locked() as store:
            if rating_id is None:
                history = store.history(self.rater)
                if not history:
                    return None
                target = history[-1]
            else:
                target = store.rating(rating_id) if isinstance(rating_id, str) else None
                if target is None:
                    raise ValueError(f"no rating with id {rating_id!r} in {store.directory}")
            store.retract(target.id, rater=self.rater)
        self._again = (target.a, target.b)
        return target

    def progress(self) -> dict:
        """{"rated", "skipped"}: this rater's live comparisons and skips; "queue": queued pairs
        still waiting for this rater; "items"; "comparisons": everyone's."""
        with self._shared.locked() as store:
            done = self._done(store)
            return {
                "rated": sum(c.rater == self.rater for c in store.comparisons),
                "skipped": sum(s.rater == self.rater for s in store.skips),
                "queue": sum(frozenset((e.a, e.b)) not in done for e in store.pending()),
                "items": len(store), "comparisons": len(store.comparisons),
            }
