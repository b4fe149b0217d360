"""Store-level steps of the rating loop, shared by the CLI, the demo and the benchmarks.

fit the store -> save scores -> pick pairs -> rate them (simulated rater / auto-checks) -> train a
reward model on the scores (or on the raw pairs, the baseline).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from domains import read_json_object, write_atomic

from ._active import next_pairs
from ._bradley_terry import Scores, fit
from ._judges import JudgeConfig
from ._raters import JudgeRater, Rater, judge_pairs
from ._simulated import SimulatedRater
from ._records import KINDS, Comparison, item_id
from ._store import RatingStore


def fit_store(store: RatingStore, kinds: Sequence[str] = KINDS, prior_sd: float = 1.0,
              covariates=None, prior_mean=None) -> Scores:
    """Bradley-Terry posterior for every item of `store`, from comparisons of the given kinds."""
    if len(store) == 0:
        raise ValueError(f"the store at {store.directory} holds no items")
    wins, ties = store.pairs(kinds)
    return fit(wins, len(store), prior_mean=prior_mean, prior_sd=prior_sd, ties=ties, covariates=covariates)


def save_scores(scores: Scores, ids: Sequence[str], path: str | Path) -> None:
    """Write ``{"ids", "mean", "sd", "coef", "tie", "converged", "n_iter", "reason"}`` as JSON
    (atomically: an interrupted write leaves the previous file)."""
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids for {len(scores)} scores")
    write_atomic(path, json.dumps({
        "ids": list(ids), "mean": scores.mean.tolist(), "sd": scores.sd.tolist(),
        "coef": scores.coef.tolist(), "tie": scores.tie, "converged": scores.converged,
        "n_iter": scores.n_iter, "reason": scores.reason,
    }))


def load_scores(path: str | Path, store: RatingStore | None = None) -> tuple[Scores, list[str]]:
    """Scores written by `save_scores`; with `store`, reordered to the store's items
    (items added since get the prior N(0, 1)).

    ``ids``, ``mean`` and ``sd`` are required; the other keys default as before they existed
    (no ties, converged), and keys this version does not know are ignored. A file that cannot be
    used raises a ValueError naming it and saying to fit again."""
    path = Path(path)
    hint = "run `gradopt fit-bt --out FILE` to write it afresh"
    d = read_json_object(path, required=("ids", "mean", "sd"), what="scores file", hint=hint)
    try:
        ids, mean, sd = [str(k) for k in d["ids"]], np.asarray(d["mean"], float), np.asarray(d["sd"], float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: 'ids', 'mean' and 'sd' must be lists (of ids and numbers): {err}; {hint}") from None
    if not (mean.ndim == sd.ndim == 1 and len(ids) == len(mean) == len(sd)):
        raise ValueError(f"{path}: 'ids', 'mean' and 'sd' must be lists of one length, got {len(ids)}, "
                         f"{mean.size} and {sd.size}; {hint}")
    if store is not None:
        pos = {k: i for i, k in enumerate(ids)}
        idx = np.array([pos.get(k, -1) for k in store.ids])
        mean = np.where(idx >= 0, mean[idx], 0.0)
        sd = np.where(idx >= 0, sd[idx], 1.0)
        ids = store.ids
    return Scores(mean=mean, sd=sd, coef=np.asarray(d.get("coef", []), float), tie=float(d.get("tie", 0.0)),
                  converged=bool(d.get("converged", True)), n_iter=int(d.get("n_iter", 0)),
                  reason=str(d.get("reason", ""))), list(ids)


def propose_pairs(store: RatingStore, scores: Scores, k: int, strategy: str = "racing", seed: int = 0,
                  allow_repeats: bool = False) -> list[tuple[str, str]]:
    """`k` pairs of item ids to rate next; already-rated pairs are skipped unless `allow_repeats`."""
    exclude = None
    if not allow_repeats:
        pos = store.index()
        exclude = [(pos[c.a], pos[c.b]) for c in store.comparisons]
    ids = store.ids
    return [(ids[i], ids[j]) for i, j in next_pairs(scores, k, strategy, seed, exclude=exclude)]


def rate_pairs(store: RatingStore, pairs: Sequence[tuple[str, str]], rater: Rater,
               judge: JudgeConfig | None = None, name: str | None = None) -> list[Comparison]:
    """Rate id pairs: auto-checks first (if `judge`), then `rater` (any `Rater`); all recorded.

    The cost scales with the distinct items, not the pairs: each item is judged once (the
    validity check parses the tune), and a rater with a batched route (the simulated rater
    computes each utility once) decides every remaining pair in one call; the comparisons are
    appended in pair order with one fsync. A pair the rater gives no verdict (None) is not
    recorded. `name` overrides the rater's recorded name (default `rater.name`).
    """
    pairs = [(a, b) for a, b in pairs]
    for a, b in pairs:
        for key in (a, b):
            if key not in store:
                raise ValueError(f"unknown item id {key[:16]}... in the pairs to rate; add the item first")
    ids = list(dict.fromkeys(k for pair in pairs for k in pair))
    other = next((store[k] for k in ids if store[k].domain != "abc"), None)
    if other is not None and (judge is not None or isinstance(rater, SimulatedRater)):
        raise ValueError(f"item {other.id[:16]}... is {other.domain!r}; the simulated rater and the auto-checks "
                         "judge ABC tunes only (rate other domains by hand: store.add_comparison)")
    pos = {k: i for i, k in enumerate(ids)}
    texts = [store[k].text for k in ids]
    auto = JudgeRater(judge) if judge is not None else None
    out: list[Comparison | None] = [None] * len(pairs)
    to_rate = []
    for n, (a, b) in enumerate(pairs):
        winner = auto.compare(texts[pos[a]], texts[pos[b]]) if auto is not None else None
        if winner is None:
            to_rate.append(n)
        else:
            out[n] = Comparison(a=a, b=b, winner=winner, rater=auto.name, kind=auto.kind,
                                broken=[k for k in (a, b) if auto.broken(texts[pos[k]])])
    winners = judge_pairs(rater, texts, [(pos[pairs[n][0]], pos[pairs[n][1]]) for n in to_rate])
    for n, winner in zip(to_rate, winners):
        if winner is not None:
            a, b = pairs[n]
            out[n] = Comparison(a=a, b=b, winner=winner, rater=name or rater.name, kind=rater.kind)
    return store.add_comparisons([c for c in out if c is not None])


def training_rows(store: RatingStore, scores: Scores, rated_only: bool = True, keep=None):
    """(texts, targets, precisions) for regression: items with at least one comparison by default,
    and only those where the boolean mask `keep` (n,) is true if given."""
    rated = {k for c in store.comparisons for k in (c.a, c.b)}
    rows = [i for i, k in enumerate(store.ids) if (not rated_only or k in rated) and (keep is None or keep[i])]
    if not rows:
        if keep is not None and not all(keep):
            raise ValueError("no rated item fits the generator's context; use a generator with a longer context")
        raise ValueError("no rated items to train on; record some comparisons first")
    texts = [store.items[i].text for i in rows]
    return texts, scores.mean[rows], 1.0 / scores.sd[rows] ** 2


def _fits_context(store: RatingStore, tokenizer, n_positions: int) -> np.ndarray:
    """Which items fit a context of `n_positions` tokens (BOS and EOS included) -> bool (n,).

    Stores collect whole tunes of any length, and a reward model reads at most the generator's
    context, so longer items are left out of training with a warning instead of failing the run."""
    texts = [it.text for it in store.items]
    lengths = np.array([len(x) for x in tokenizer(texts)["input_ids"]]) if texts else np.zeros(0, int)
    fits = lengths <= n_positions
    if not fits.all():
        warnings.warn(f"{int((~fits).sum())} of {len(fits)} items in {store.directory} are longer than the "
                      f"generator's context ({n_positions} tokens, longest {int(lengths.max())}) and are left "
                      "out of training")
    return fits


def train_from_store(store: RatingStore, generator, tokenizer, scores: Scores | None = None, *,
                     pairwise: bool = False, kinds: Sequence[str] = KINDS, cfg=None, progress: bool = False,
                     pooling: str = "last", probe: bool = False, members: int = 0):
    """A `RewardModel` initialised from `generator`, trained on the store's ratings.

    Regression on `scores` (posterior means, precision-weighted) by default; with `pairwise`,
    the baseline on the raw [winner, loser] pairs of the given kinds. With `probe`, only the
    linear head is fitted in closed form on the frozen generator's features (`fit_head`; best
    with ``pooling="mean"`` and a few thousand items, see benchmarks/reward_fidelity.py).
    With ``members = K >= 2`` (needs `probe`) a `RewardEnsemble` of K probes on bootstrap resamples
    of the rated items is fitted instead (`fit_ensemble`).
    Returns (model, losses); a probe's "losses" are its cross-validation losses.
    """
    from domains import context_length, encode_batch

    from ._ensemble import RewardEnsemble, fit_ensemble
    from ._model import RewardModel
    from ._train import RewardTrainConfig, fit_head, train_pairwise, train_reward_model

    cfg = cfg or RewardTrainConfig()
    if probe and pairwise:
        raise ValueError("the probe regresses on Bradley-Terry scores; it cannot be combined with pairwise")
    if members and (members < 2 or not probe):
        raise ValueError(f"an ensemble needs --probe and at least 2 members, got members={members}"
                         + ("" if probe else " without --probe"))
    with torch.random.fork_rng():  # the head's initial weights, without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        from ._model import BAR_POOLINGS, bar_token_ids

        bar_ids = bar_token_ids(tokenizer) if pooling in BAR_POOLINGS else None  # the bar poolings read bar lines
        model = (RewardEnsemble.from_generator(generator, pooling, members, bar_ids=bar_ids) if members
                 else RewardModel.from_generator(generator, pooling=pooling, bar_ids=bar_ids))
    fits = _fits_context(store, tokenizer, context_length(generator))
    if pairwise:
        wins, ties = store.pairs(kinds)
        if len(wins) + len(ties) == 0:
            raise ValueError("no comparisons of the requested kinds to train on")
        wins, ties = wins[fits[wins].all(1)], ties[fits[ties].all(1)]
        if len(wins) + len(ties) == 0:
            raise ValueError(f"every comparison involves an item longer than the generator's context "
                             f"({context_length(generator)} tokens); use a generator with a longer context")
        used = np.unique(np.concatenate([wins.reshape(-1), ties.reshape(-1)]))
        remap = np.full(len(store), -1)
        remap[used] = np.arange(len(used))
        ids, mask = encode_batch(tokenizer, [store.items[i].text for i in used], generator)
        losses = train_pairwise(model, ids, mask, remap[wins], remap[ties], cfg, progress)
    else:
        if scores is None:
            raise ValueError("regression needs Bradley-Terry scores; run `gradopt fit-bt` first")
        texts, targets, weights = training_rows(store, scores, keep=fits)
        ids, mask = encode_batch(tokenizer, texts, generator)
        if probe:  # cross-validation folds keep every item with its edits (same root parent)
            roots = [store.root(item_id(t)) for t in texts]
            fit = fit_ensemble if members else fit_head
            info = fit(model, ids, mask, targets, weights, folds=min(5, len(set(roots))), seed=cfg.seed, groups=roots)
            losses = [float(v) for v in info["cv_loss"].values()]
        else:
            losses = train_reward_model(model, ids, mask, targets, weights, cfg, progress)
    return model, losses
