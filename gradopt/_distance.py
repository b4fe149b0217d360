"""Edit distances between texts: for deduplicating harvests and measuring distance to a corpus."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit insert/delete/substitute), one numpy pass per character of `a`.

    Row update: ``new[j] = min(old[j] + 1, old[j-1] + [a_i != b_j], new[j-1] + 1)``; the last
    (insertion) recurrence is ``j + cummin(tmp[k] - k)``, so each row is vectorised.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    j = np.arange(len(b) + 1)
    row = j.copy()
    aa = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    for i, ch in enumerate(aa, 1):
        tmp = np.empty_like(row)
        tmp[0] = i
        tmp[1:] = np.minimum(row[1:] + 1, row[:-1] + (bb != ch))
        row = j + np.minimum.accumulate(tmp - j)
    return int(row[-1])


def normalized_distance(a: str, b: str) -> float:
    """edit_distance / max(len): 0 for equal texts, 1 for entirely different ones."""
    n = max(len(a), len(b))
    return edit_distance(a, b) / n if n else 0.0


def _grams(text: str, n: int = 3) -> Counter:
    return Counter(text[i : i + n] for i in range(max(len(text) - n + 1, 1)))


def nearest_distance(texts: Sequence[str], corpus: Sequence[str], shortlist: int = 8) -> list[float]:
    """For each text, the normalised edit distance to its nearest corpus text.

    The exact distance is computed only for the `shortlist` corpus texts sharing the most
    character trigrams (a cheap prefilter), so this scales to corpora of thousands of tunes.
    """
    if not corpus:
        return [1.0] * len(texts)
    grams = [_grams(c) for c in corpus]
    out = []
    for t in texts:
        g = _grams(t)
        overlap = [sum((g & cg).values()) / max(sum((g | cg).values()), 1) for cg in grams]
        best = np.argsort(overlap)[::-1][:shortlist]
        out.append(min(normalized_distance(t, corpus[k]) for k in best))
    return out


def dedup(texts: Sequence[str], threshold: float) -> list[int]:
    """Indices of `texts` kept by a greedy pass in order: a text is dropped when its normalised
    edit distance to an already kept one is <= `threshold`."""
    kept: list[int] = []
    for i, t in enumerate(texts):
        if all(normalized_distance(t, texts[k]) > threshold for k in kept):
            kept.append(i)
    return kept
