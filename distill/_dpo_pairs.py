"""Preference pairs for the DPO methods (`_dpo`): (prompt, chosen, rejected) texts from a rating
store or given by the caller, checked against the tokenizer, and encoded as token rows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from domains import check_in_vocab

Pair = tuple[str, str, str]  # (prompt, chosen completion, rejected completion)
Row = list[int]  # token ids: BOS, prompt, completion (EOS when reached)


def pairs_from_store(store, scores=None) -> list[Pair]:
    """Preference pairs from the rated comparisons of a `rewardmodels.RatingStore`.

    Each comparison with a winner gives (shared prefix, winner's rest, loser's rest), the prefix
    being the texts' common start up to a newline (`rewardmodels.split_prefix`; for ABC the shared
    header). Ties are skipped. scores: optional per-item scores in the store's item order (a
    `rewardmodels.Scores` or an array, e.g. a Bradley-Terry fit): then each compared pair is
    oriented by the scores instead of the single verdict, which smooths contradicting ratings,
    and pairs whose scores are equal are skipped.
    """
    from rewardmodels import Scores, split_prefix

    values = None
    if scores is not None:
        values = np.asarray(scores.mean if isinstance(scores, Scores) else scores, dtype=float)
        if values.shape != (len(store),):
            raise ValueError(f"pairs_from_store: scores must hold one value per store item ({len(store)}); "
                             f"got shape {values.shape}; fit them on this store")
    pos = store.index()
    out = []
    for c in store.comparisons:
        if c.winner == "tie":
            continue
        win, lose = (c.a, c.b) if c.winner == "a" else (c.b, c.a)
        if values is not None:
            if values[pos[win]] == values[pos[lose]]:
                continue
            if values[pos[win]] < values[pos[lose]]:
                win, lose = lose, win
        out.append(split_prefix(store[win].text, store[lose].text))
    return out


def check_pairs(pairs, tokenizer) -> list[Pair]:
    out = []
    for i, p in enumerate(pairs):
        if isinstance(p, dict):
            p = (p.get("prompt", ""), p.get("chosen"), p.get("rejected"))
        if len(p) != 3 or not all(isinstance(x, str) for x in p):
            raise ValueError(f"pairs[{i}] must be (prompt, chosen, rejected) strings or a dict with those keys; got {p!r}")
        if p[1] == p[2]:
            raise ValueError(f"pairs[{i}]: chosen and rejected are the same text; drop the pair")
        for x in p:
            check_in_vocab(tokenizer, x)
        out.append(tuple(p))
    if not out:
        raise ValueError("dpo: pairs= is empty; pass at least one (prompt, chosen, rejected) triple")
    return out


def encode_pairs(tokenizer, pairs: Sequence[Pair]) -> tuple[list[Row], list[Row], list[int]]:
    """Text pairs -> (chosen rows, rejected rows, prompt lengths): each row BOS, prompt,
    completion, EOS (the completion includes stopping), prompt length counting BOS."""
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    chosen, rejected, plens = [], [], []
    for prompt, c, r in pairs:
        head = [tokenizer.bos_token_id] + enc(prompt)
        chosen.append(head + enc(c) + [tokenizer.eos_token_id])
        rejected.append(head + enc(r) + [tokenizer.eos_token_id])
        plens.append(len(head))
    return chosen, rejected, plens
