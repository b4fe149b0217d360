"""Store-level steps of the rating loop, shared by the CLI, the demo and the benchmarks.

fit the store -> save scores -> pick pairs -> rate them (simulated rater / auto-checks) -> train a
reward model on the scores (or on the raw pairs, the baseline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._active import next_pairs
from ._bradley_terry import Scores, fit
from ._judges import JudgeConfig, auto_compare
from ._simulated import SimulatedRater
from ._store import KINDS, Comparison, RatingStore, item_id


def fit_store(store: RatingStore, kinds: Sequence[str] = KINDS, prior_sd: float = 1.0,
              covariates=None, prior_mean=None) -> Scores:
    """Bradley-Terry posterior for every item of `store`, from comparisons of the given kinds."""
    if len(store) == 0:
        raise ValueError(f"the store at {store.directory} holds no items")
    wins, ties = store.pairs(kinds)
    return fit(wins, len(store), prior_mean=prior_mean, prior_sd=prior_sd, ties=ties, covariates=covariates)


def save_scores(scores: Scores, ids: Sequence[str], path: str | Path) -> None:
    """Write ``{"ids", "mean", "sd", "coef", "tie", "converged", "n_iter", "reason"}`` as JSON."""
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids for {len(scores)} scores")
    Path(path).write_text(json.dumps({
        "ids": list(ids), "mean": scores.mean.tolist(), "sd": scores.sd.tolist(),
        "coef": scores.coef.tolist(), "tie": scores.tie, "converged": scores.converged,
        "n_iter": scores.n_iter, "reason": scores.reason,
    }))


def load_scores(path: str | Path, store: RatingStore | None = None) -> tuple[Scores, list[str]]:
    """Scores written by `save_scores`; with `store`, reordered to the store's items
    (items added since get the prior N(0, 1))."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no scores at {path}; run `gradopt fit-bt` first")
    d = json.loads(path.read_text())
    ids, mean, sd = d["ids"], np.asarray(d["mean"], float), np.asarray(d["sd"], float)
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


def rate_pairs(store: RatingStore, pairs: Sequence[tuple[str, str]], rater: SimulatedRater,
               judge: JudgeConfig | None = None, name: str = "simulated") -> list[Comparison]:
    """Rate id pairs: auto-checks first (if `judge`), then the simulated rater; all recorded."""
    out = []
    for a, b in pairs:
        if judge is not None:
            c = auto_compare(store, a, b, judge)
            if c is not None:
                out.append(c)
                continue
        winner = rater.compare(store[a].text, store[b].text)
        out.append(store.add_comparison(a, b, winner, rater=f"{name}@{rater.agreement:g}", kind="simulated"))
    return out


def training_rows(store: RatingStore, scores: Scores, rated_only: bool = True):
    """(texts, targets, precisions) for regression: items with at least one comparison by default."""
    rated = {k for c in store.comparisons for k in (c.a, c.b)}
    rows = [i for i, k in enumerate(store.ids) if not rated_only or k in rated]
    if not rows:
        raise ValueError("no rated items to train on; record some comparisons first")
    texts = [store.items[i].text for i in rows]
    return texts, scores.mean[rows], 1.0 / scores.sd[rows] ** 2


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
    from domains import encode_batch

    from ._ensemble import RewardEnsemble, fit_ensemble
    from ._model import RewardModel
    from ._train import TrainConfig, fit_head, train_pairwise, train_reward_model

    cfg = cfg or TrainConfig()
    if probe and pairwise:
        raise ValueError("the probe regresses on Bradley-Terry scores; it cannot be combined with pairwise")
    if members and (members < 2 or not probe):
        raise ValueError(f"an ensemble needs --probe and at least 2 members, got members={members}"
                         + ("" if probe else " without --probe"))
    with torch.random.fork_rng():  # the head's initial weights, without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = (RewardEnsemble.from_generator(generator, pooling, members) if members
                 else RewardModel.from_generator(generator, pooling=pooling))
    if pairwise:
        wins, ties = store.pairs(kinds)
        if len(wins) + len(ties) == 0:
            raise ValueError("no comparisons of the requested kinds to train on")
        used = np.unique(np.concatenate([wins.reshape(-1), ties.reshape(-1)]))
        remap = np.full(len(store), -1)
        remap[used] = np.arange(len(used))
        ids, mask = encode_batch(tokenizer, [store.items[i].text for i in used], generator)
        losses = train_pairwise(model, ids, mask, remap[wins], remap[ties], cfg, progress)
    else:
        if scores is None:
            raise ValueError("regression needs Bradley-Terry scores; run `gradopt fit-bt` first")
        texts, targets, weights = training_rows(store, scores)
        ids, mask = encode_batch(tokenizer, texts, generator)
        if probe:  # cross-validation folds keep every item with its edits (same root parent)
            roots = [store.root(item_id(t)) for t in texts]
            fit = fit_ensemble if members else fit_head
            info = fit(model, ids, mask, targets, weights, folds=min(5, len(set(roots))), seed=cfg.seed, groups=roots)
            losses = [float(v) for v in info["cv_loss"].values()]
        else:
            losses = train_reward_model(model, ids, mask, targets, weights, cfg, progress)
    return model, losses
