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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from ._store import RatingStore, StoreError


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
    with open(path, "w", encoding="utf-8") as f:
        if jsonl:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            json.dump(records, f, ensure_ascii=False, indent=1)


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


def import_openai(store: RatingStore, path: str | Path, *, rater: str = "openai", kind: str = "human",
                  **item_meta) -> int:
    """Add lm-human-preferences records; n samples give n-1 comparisons (best vs each other)."""
    n = 0
    for no, rec in enumerate(_load_records(path), 1):
        query = _field(path, no, rec, "query")
        best = _field(path, no, rec, "best")
        samples = [rec[f"sample{i}"] for i in range(len(rec)) if f"sample{i}" in rec]
        if len(samples) < 2 or not isinstance(best, int) or not 0 <= best < len(samples):
            raise StoreError(f"{path}: record {no}: need sample0, sample1, ... and 0 <= best < n_samples")
        ids = [store.add_item(query + s, **item_meta).id for s in samples]
        for i, other in enumerate(ids):
            if i != best and other != ids[best]:
                store.add_comparison(ids[best], other, "a", rater=rater, kind=kind)
                n += 1
    return n


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
    """Add TRL preference records (standard, not conversational); `margin` is read but not stored."""
    n = 0
    for no, rec in enumerate(_load_records(path), 1):
        prompt = rec.get("prompt", "") if isinstance(rec, dict) else ""
        chosen, rejected = _field(path, no, rec, "chosen"), _field(path, no, rec, "rejected")
        if not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
            raise StoreError(f"{path}: record {no}: only the standard (string) TRL format is supported, "
                             "not the conversational (list of messages) one")
        a = store.add_item(prompt + chosen, **item_meta).id
        b = store.add_item(prompt + rejected, **item_meta).id
        if a == b:
            raise StoreError(f"{path}: record {no}: chosen and rejected are the same text")
        store.add_comparison(a, b, "a", rater=rater, kind=kind)
        n += 1
    return n


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
    """Add ``[winner, loser]`` pairs; indices refer to `texts` (added first), the file's ``ids``,
    or else the store's current item order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if texts is not None:
        ids = [store.add_item(t, **item_meta).id for t in texts]
    elif isinstance(data, dict) and "ids" in data:
        ids = list(data["ids"])
        missing = [k for k in ids if k not in store]
        if missing:
            raise StoreError(f"{path}: {len(missing)} id(s) not in the store, e.g. {missing[0][:16]}...; "
                             "import the items first")
    else:
        ids = store.ids
    pairs = data.get("pairs", []) if isinstance(data, dict) else data
    ties = data.get("ties", []) if isinstance(data, dict) else []
    n = 0
    for winner, rows in (("a", pairs), ("tie", ties)):
        for no, row in enumerate(rows, 1):
            if not (isinstance(row, (list, tuple)) and len(row) == 2
                    and all(isinstance(i, int) and 0 <= i < len(ids) for i in row)):
                raise StoreError(f"{path}: pair {no}: expected [i, j] with 0 <= i, j < {len(ids)}, got {row!r}")
            if row[0] == row[1]:
                raise StoreError(f"{path}: pair {no}: item {row[0]} compared with itself")
            store.add_comparison(ids[row[0]], ids[row[1]], winner, rater=rater, kind=kind)
            n += 1
    return n
