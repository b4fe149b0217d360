"""Import and export of comparisons in other projects' formats.

- OpenAI lm-human-preferences: ``{"query", "sample0", "sample1", ..., "best"}`` where ``best`` is
  the index of the preferred sample. An item's text is ``query + sample``; on export the query is
  the longest common prefix of the two texts cut after a newline (for ABC: the shared header).
- TRL preference records: ``{"prompt", "chosen", "rejected", "margin"?}``; text is
  ``prompt + chosen``; exported with the same prefix split, and ``margin`` when scores are given.
- Index pairs: ``{"ids": [item ids], "pairs": [[winner, loser], ...], "ties": [[i, j], ...]}``
  (choix's data layout); a bare ``[[winner, loser], ...]`` list indexes the store's items.

Files are a JSON array or JSON lines. Ties cannot be written in the first two formats; exporters
skip them and return how many they wrote.

Imports check every record before writing anything, so a bad record (named by file and record
number) leaves the store as it was; fix the file and import it again. Each imported comparison
carries ``source``, the hash of the record it came from, and the store does not write a comparison
whose (a, b, winner, rater, source) it already holds: importing the same file twice (or a file
that repeats records of an earlier one) adds each comparison once. Importers return the number of
comparisons written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

from domains import write_atomic

from ._jsonl import StoreError
from ._records import Comparison, Item
from ._store import RatingStore


def _load_records(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
        if not isinstance(data, list):
            raise StoreError(f"{path}: expected a JSON array of records")
        return data
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}:{no}: malformed JSON ({err.msg})") from None
    return out


def _write_records(path: str | Path, records: list, jsonl: bool) -> None:
    """All records at once (`domains.write_atomic`): a failed export leaves the old file whole."""
    if jsonl:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=1)
    write_atomic(path, text)


def split_prefix(a: str, b: str) -> tuple[str, str, str]:
    """(prefix, rest_a, rest_b): the longest common prefix of `a` and `b` ending in a newline."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    cut = a.rfind("\n", 0, n) + 1
    return a[:cut], a[cut:], b[cut:]


def _field(path, no: int, rec: dict, key: str):
    if not isinstance(rec, dict) or key not in rec:
        raise StoreError(f"{path}: record {no}: missing field {key!r}")
    return rec[key]


def _source_keys(records: Sequence) -> list[str]:
    """The `source` of each record: sha256 of its canonical JSON, ``#k`` for the k-th identical copy."""
    seen: dict[str, int] = {}
    out = []
    for rec in records:
        h = hashlib.sha256(json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                           .encode("utf-8")).hexdigest()
        k = seen.get(h, 0)
        seen[h] = k + 1
        out.append(h if k == 0 else f"{h}#{k}")
    return out


class _Batch:
    """Items and comparisons of one import, checked as they are built and written together."""

    def __init__(self, store: RatingStore, path, item_meta: dict, rater: str, kind: str) -> None:
        Item.new("", **item_meta)  # a bad origin etc. is the caller's mistake, not the file's
        Comparison(a="a", b="b", winner="a", rater=rater, kind=kind)
        self.store, self.path, self.meta, self.rater, self.kind = store, path, item_meta, rater, kind
        self.items: dict[str, Item] = {}
        self.comparisons: list[Comparison] = []

    def item(self, text: str) -> str:
        item = Item.new(text, **self.meta)
        self.items.setdefault(item.id, item)
        return item.id

    def compare(self, where: str, a: str, b: str, winner: str, source: str) -> None:
        try:
            self.comparisons.append(Comparison(a=a, b=b, winner=winner, rater=self.rater, kind=self.kind,
                                               source=source))
        except ValueError as err:
            raise StoreError(f"{self.path}: {where}: {err}") from None

    def write(self) -> int:
        try:
            return self.store.add_batch(list(self.items.values()), self.comparisons)[1]
        except ValueError as err:
            raise StoreError(f"{self.path}: {err}") from None


def import_openai(store: RatingStore, path: str | Path, *, rater: str = "openai", kind: str = "human",
                  **item_meta) -> int:
    """Add lm-human-preferences records; n samples give n-1 comparisons (best vs each other).

    Every record is checked before anything is written (a bad one raises `StoreError` naming
    file and record, and the store is unchanged); comparisons already imported from an identical
    record are not written again. Returns the number of comparisons written.
    """
    records = _load_records(path)
    batch = _Batch(store, path, item_meta, rater, kind)
    for no, (rec, source) in enumerate(zip(records, _source_keys(records)), 1):
        query = _field(path, no, rec, "query")
        best = _field(path, no, rec, "best")
        samples = [rec[f"sample{i}"] for i in range(len(rec)) if f"sample{i}" in rec]
        if len(samples) < 2 or isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < len(samples):
            raise StoreError(f"{path}: record {no}: need sample0, sample1, ... and 0 <= best < n_samples")
        if not all(isinstance(x, str) for x in (query, *samples)):
            raise StoreError(f"{path}: record {no}: query and samples must be strings")
        ids = [batch.item(query + s) for s in samples]
        for i, other in enumerate(ids):
            if i != best and other != ids[best]:
                batch.compare(f"record {no}", ids[best], other, "a", source)
    return batch.write()


def export_openai(store: RatingStore, path: str | Path, *, jsonl: bool = False) -> int:
    records = []
    for c in store.comparisons:
        if c.winner == "tie":
            continue
        query, s0, s1 = split_prefix(store[c.a].text, store[c.b].text)
        records.append({"query": query, "sample0": s0, "sample1": s1, "best": 0 if c.winner == "a" else 1})
    _write_records(path, records, jsonl)
    return len(records)


def import_trl(store: RatingStore, path: str | Path, *, rater: str = "trl", kind: str = "human",
               **item_meta) -> int:
    """Add TRL preference records (standard, not conversational); `margin` is read but not stored.

    All or nothing and deduplicated like `import_openai`; returns the number of comparisons written.
    """
    records = _load_records(path)
    batch = _Batch(store, path, item_meta, rater, kind)
    for no, (rec, source) in enumerate(zip(records, _source_keys(records)), 1):
        prompt = rec.get("prompt", "") if isinstance(rec, dict) else ""
        chosen, rejected = _field(path, no, rec, "chosen"), _field(path, no, rec, "rejected")
        if not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
            raise StoreError(f"{path}: record {no}: only the standard (string) TRL format is supported, "
                             "not the conversational (list of messages) one")
        a, b = batch.item(prompt + chosen), batch.item(prompt + rejected)
        if a == b:
            raise StoreError(f"{path}: record {no}: chosen and rejected are the same text")
        batch.compare(f"record {no}", a, b, "a", source)
    return batch.write()


def export_trl(store: RatingStore, path: str | Path, *, margin: Callable[[str, str], float] | None = None,
               jsonl: bool = True) -> int:
    """Write TRL records; `margin(chosen_id, rejected_id)` (e.g. a BT score gap) adds ``margin``."""
    records = []
    for c in store.comparisons:
        if c.winner == "tie":
            continue
        w, l = (c.a, c.b) if c.winner == "a" else (c.b, c.a)
        prompt, chosen, rejected = split_prefix(store[w].text, store[l].text)
        rec = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if margin is not None:
            rec["margin"] = float(margin(w, l))
        records.append(rec)
    _write_records(path, records, jsonl)
    return len(records)


def export_index_pairs(store: RatingStore, path: str | Path, kinds: Sequence[str] | None = None) -> int:
    """Write ``{"ids", "pairs", "ties"}`` with indices into the store's item order."""
    wins, ties = store.pairs() if kinds is None else store.pairs(kinds)
    _write_records(path, {"ids": store.ids, "pairs": wins.tolist(), "ties": ties.tolist()}, jsonl=False)
    return len(wins) + len(ties)


def import_index_pairs(store: RatingStore, path: str | Path, *, rater: str = "import", kind: str = "human",
                       texts: Sequence[str] | None = None, **item_meta) -> int:
    """Add ``[winner, loser]`` pairs; indices refer to `texts` (added with the pairs), the file's
    ``ids``, or else the store's current item order.

    All or nothing and deduplicated like `import_openai` (a pair's source is its two item ids and
    outcome); returns the number of comparisons written.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StoreError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(data, (dict, list)):
        raise StoreError(f"{path}: expected {{\"ids\", \"pairs\", \"ties\"}} or a list of [winner, loser] pairs")
    batch = _Batch(store, path, item_meta, rater, kind)
    if texts is not None:
        ids = [batch.item(t) for t in texts]
    elif isinstance(data, dict) and "ids" in data:
        ids = list(data["ids"])
        missing = [k for k in ids if k not in store]
        if missing:
            raise StoreError(f"{path}: {len(missing)} id(s) not in the store, e.g. {str(missing[0])[:16]}...; "
                             "import the items first")
    else:
        ids = store.ids
    pairs = data.get("pairs", []) if isinstance(data, dict) else data
    ties = data.get("ties", []) if isinstance(data, dict) else []
    for winner, rows, label in (("a", pairs, "pair"), ("tie", ties, "tie")):
        resolved = []
        for no, row in enumerate(rows, 1):
            if not (isinstance(row, (list, tuple)) and len(row) == 2
                    and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(ids) for i in row)):
                raise StoreError(f"{path}: {label} {no}: expected [i, j] with 0 <= i, j < {len(ids)}, got {row!r}")
            if row[0] == row[1]:
                raise StoreError(f"{path}: {label} {no}: item {row[0]} compared with itself")
            resolved.append([ids[row[0]], ids[row[1]], winner])
        for no, ((a, b, w), source) in enumerate(zip(resolved, _source_keys(resolved)), 1):
            batch.compare(f"{label} {no}", a, b, w, source)
    return batch.write()
