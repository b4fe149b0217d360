"""Harvesting: run the ascent from many starts and queue the reward model's likely blind spots.

A row's outcome is a *suspect* when the reward model likes it (reward after >= `min_reward`)
and at least one independent signal disagrees: the judges' auto-checks call it broken, the
generator finds it unlikely (mean per-token log-likelihood < `max_loglik_per_token`), or it is
far from every corpus text (normalised edit distance >= `min_novelty`). Suspects are deduplicated
by edit distance, added to the rating store as ``origin="harvested"`` items (their starts as
parents), and queued for rating in the order the active-selection strategy asks for them, in the
store's rating queue (`RatingStore.enqueue`; read it back with `RatingStore.pending`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from ._ascent import AscentConfig, optimize
from ._distance import dedup, nearest_distance


@dataclass(frozen=True, kw_only=True)
class HarvestConfig:
    """What counts as a likely blind spot, and how many to queue."""

    ascent: AscentConfig = field(default_factory=lambda: AscentConfig(require_valid=False))  # engine run (its trust
    # guard is ignored: harvesting wants the edits the reward model likes but cannot vouch for)
    min_reward: float = 0.0  # reward (after) a suspect must reach; the reward model is calibrated to corpus mean 0
    max_loglik_per_token: float = -2.5  # below this mean log-likelihood per token = "unlikely"
    min_novelty: float = 0.5  # normalised edit distance to the nearest corpus text = "far"
    dedup_distance: float = 0.1  # suspects closer than this (normalised) to a kept one are dropped
    max_items: int = 64  # queue at most this many
    strategy: str = "racing"  # active-selection strategy ordering the queue (rewardmodels.next_pairs)
    iteration: int = 0  # stamped on the stored items

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_novelty <= 1.0 or not 0.0 <= self.dedup_distance < 1.0:
            raise ValueError("min_novelty must be in [0, 1] and dedup_distance in [0, 1)")
        if self.max_items <= 0:
            raise ValueError(f"max_items must be > 0, got {self.max_items}")
        if self.strategy not in ("racing", "uncertainty", "random"):
            raise ValueError(f"unknown strategy {self.strategy!r}")


@dataclass
class Suspect:
    """One harvested sequence and why it looks like a blind spot."""

    text: str
    parent_text: str
    reward: float  # reward model on `text` (verified discrete)
    reward_before: float  # on the start
    loglik_per_token: float
    novelty: float  # normalised edit distance to the nearest corpus text
    broken: list[str]  # the auto-checks' reasons (empty = passes)
    reasons: list[str]  # why it is a suspect
    id: str = ""  # rating-store id once written
    rank: int = -1  # position in the rating queue


def suspect_reasons(reward, loglik_per_token, novelty, broken, cfg: HarvestConfig) -> list[str]:
    """Why a sequence is a likely blind spot (empty: it is not)."""
    if not math.isfinite(reward) or reward < cfg.min_reward:
        return []
    reasons = []
    if broken:
        reasons.append("fails auto-checks: " + "; ".join(broken))
    if loglik_per_token < cfg.max_loglik_per_token:
        reasons.append(f"unlikely under the generator ({loglik_per_token:.2f} nats/token)")
    if novelty >= cfg.min_novelty:
        reasons.append(f"far from the corpus (edit distance {novelty:.2f})")
    return reasons


def queue_order(rewards: Sequence[float], novelty: Sequence[float], strategy: str, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """Order items for rating by the active-selection strategy -> (item order, pairs (k, 2)).

    Items get a prior posterior from the reward model: mean = predicted reward, sd = 1 + novelty
    (the reward model knows least about what is far from its training data). Items appear in the
    order the strategy first pairs them; never-paired items follow by decreasing reward.
    """
    from rewardmodels import Scores, next_pairs

    n = len(rewards)
    if n == 0:
        return [], np.zeros((0, 2), dtype=np.int64)
    scores = Scores(mean=np.asarray(rewards, float), sd=1.0 + np.asarray(novelty, float), coef=np.zeros(0))
    pairs = next_pairs(scores, k=max(n - 1, 0), strategy=strategy, seed=seed)
    order: list[int] = []
    for i in pairs.reshape(-1).tolist():
        if i not in order:
            order.append(int(i))
    order += [i for i in np.argsort(-np.asarray(rewards), kind="stable").tolist() if i not in order]
    return order, pairs


def harvest(
    starts: list[list[int]],
    reward_model,
    generator,
    tokenizer,
    store=None,
    *,
    corpus: Sequence[str] = (),
    cfg: HarvestConfig = HarvestConfig(),
    judge: Callable[[str], list[str]] | None = None,
    start_origin: str = "sample",
    domain: str = "abc",
    freeze=None,
    allowed=None,
    progress: bool = False,
) -> list[Suspect]:
    """Run the engine from `starts`, keep likely blind spots, write them to `store` (a
    `rewardmodels.RatingStore` or a directory) in rating-queue order, and return them ranked.

    judge: text -> reasons it is broken (default: `rewardmodels.broken_reasons`).
    domain: the domain name stamped on the stored items ("abc", "midi", "text").
    freeze / allowed: as in `optimize` (e.g. `pitch_edits` to look for blind spots among
    rhythm-preserving edits only).
    The pairs to rate go to the store's rating queue (`RatingStore.enqueue`, strategy
    `cfg.strategy`, rank = queue order); pairs still pending from an earlier run are not queued twice.
    """
    if judge is None:
        from rewardmodels import broken_reasons as judge
    # The do-no-harm guard is off here: the edits it would refuse are the blind spots to rate.
    result = optimize(starts, reward_model, generator, dataclasses.replace(cfg.ascent, trust=None), tokenizer=tokenizer, freeze=freeze,
                      allowed=allowed, progress=progress)
    from domains import decode

    parents = [decode(tokenizer, s) for s in starts]
    texts = [r.text or "" for r in result.rows]
    novelty = nearest_distance(texts, list(corpus)) if corpus else [0.0] * len(texts)
    suspects: list[Suspect] = []
    for row, parent, text, nov in zip(result.rows, parents, texts, novelty):
        if row.status != "ok" or text == parent:
            continue
        llt = row.loglik_after / max(len(row.tokens) - 1, 1)
        broken = list(judge(text))
        reasons = suspect_reasons(row.reward_after, llt, nov, broken, cfg)
        if reasons:
            suspects.append(Suspect(text=text, parent_text=parent, reward=row.reward_after,
                                    reward_before=row.reward_before, loglik_per_token=llt, novelty=nov,
                                    broken=broken, reasons=reasons))
    suspects.sort(key=lambda s: -s.reward)
    suspects = [suspects[i] for i in dedup([s.text for s in suspects], cfg.dedup_distance)][: cfg.max_items]
    order, pairs = queue_order([s.reward for s in suspects], [s.novelty for s in suspects], cfg.strategy,
                               seed=cfg.ascent.seed)
    suspects = [suspects[i] for i in order]
    remap = {old: new for new, old in enumerate(order)}
    for rank, s in enumerate(suspects):
        s.rank = rank
    if store is not None:
        _write(store, suspects, [(remap[int(a)], remap[int(b)]) for a, b in pairs], cfg, start_origin, domain)
    return suspects


def _write(store, suspects: list[Suspect], pairs, cfg: HarvestConfig, start_origin: str, domain: str) -> None:
    """Suspects and their starts as items (one durable batch), then the pairs to the rating queue."""
    from rewardmodels import Item, RatingStore

    if not isinstance(store, RatingStore):
        store = RatingStore(store)
    items = []
    for s in suspects:
        parent = Item.new(s.parent_text, domain=domain, origin=start_origin, iteration=cfg.iteration)
        child = Item.new(s.text, domain=domain, origin="harvested", iteration=cfg.iteration, parent=parent.id)
        items += [parent, child]
        s.id = child.id
    store.add_batch(items, [])
    store.enqueue([(suspects[a].id, suspects[b].id) for a, b in pairs], strategy=cfg.strategy)


def suspects_as_dicts(suspects: list[Suspect]) -> list[dict]:
    return [asdict(s) for s in suspects]
