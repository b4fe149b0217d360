"""Training a `RewardModel`: regression on Bradley-Terry latents, or the pairwise baseline.

Legend: b batch, t time. Both routes use the same network and the same cost per step (`batch_size`
sequences through the network), so they can be compared at equal compute.

    bt_regression_loss  = Σ_i w_i (r_i - θ_i)² / Σ_i w_i        w_i = 1 / sd_i² (posterior precision)
    bradley_terry_loss  = mean_k -log σ(r_win,k - r_lose,k)     (ties: -½[log σ(Δ) + log σ(-Δ)])
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._model import RewardModel


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How long and how fast to train a reward model."""

    steps: int = 200  # optimizer steps
    batch_size: int = 32  # sequences per step (the pairwise route uses batch_size // 2 pairs)
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup: int = 10  # steps of linear learning-rate warm-up
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    max_seconds: float = 0.0  # stop early after this wall time; 0 = off
    seed: int = 0  # seeds batch order

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size < 2:
            raise ValueError(f"steps must be > 0 and batch_size >= 2: {self}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup < 0:
            raise ValueError(f"lr must be > 0, weight_decay and warmup >= 0: {self}")
        if self.grad_clip < 0 or self.max_seconds < 0:
            raise ValueError(f"grad_clip and max_seconds must be >= 0: {self}")


def bt_regression_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Precision-weighted squared error: pred, target, weight (b,) -> scalar."""
    err = (pred - target.to(pred.dtype)) ** 2
    if weight is None:
        return err.mean()
    w = weight.to(pred.dtype)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, tie: torch.Tensor | None = None) -> torch.Tensor:
    """-log σ(r_chosen - r_rejected), averaged; rows with `tie` (b,) bool count half each way."""
    d = r_chosen - r_rejected
    loss = -F.logsigmoid(d)
    if tie is not None:
        loss = torch.where(tie, -0.5 * (F.logsigmoid(d) + F.logsigmoid(-d)), loss)
    return loss.mean()


def _batches(n: int, size: int, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    order, k = rng.permutation(n), 0
    for _ in range(steps):
        if k + size > n:
            order, k = rng.permutation(n), 0
        idx = order[k : k + min(size, n)]
        k += size
        yield torch.as_tensor(idx)


def _trimmed(ids: torch.Tensor, mask: torch.Tensor, idx: torch.Tensor):
    m = mask[idx]
    t = int(m.sum(1).max())
    return ids[idx, :t], m[:, :t]


def _loop(model: RewardModel, cfg: TrainConfig, n: int, per_step: int, step_loss, progress: bool) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (cfg.warmup + 1)))
    torch.manual_seed(cfg.seed)
    model.train()
    start, losses = time.perf_counter(), []
    bar = tqdm(total=cfg.steps, disable=not progress, desc="train reward model", unit="step")
    for idx in _batches(n, per_step, cfg.steps, cfg.seed):
        loss = step_loss(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if cfg.max_seconds and time.perf_counter() - start > cfg.max_seconds:
            break
    bar.close()
    model.eval()
    return losses


def train_reward_model(
    model: RewardModel,
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets,
    weights=None,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = False,
) -> list[float]:
    """Regress the model on latent scores: ids, attention_mask (n, t); targets, weights (n,).

    `targets` are Bradley-Terry posterior means, `weights` their precisions 1/sd². Output
    normalisation is reset before and re-calibrated on these items after. Returns step losses.
    """
    n = ids.shape[0]
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    w = None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if y.shape != (n,) or (w is not None and w.shape != (n,)):
        raise ValueError(f"targets/weights must have shape ({n},)")
    if w is not None and bool((w < 0).any()):
        raise ValueError("weights must be non-negative")
    model.reset_normalization()

    def step_loss(idx):
        x, m = _trimmed(ids, attention_mask, idx)
        return bt_regression_loss(model.score(x, m), y[idx], None if w is None else w[idx])

    losses = _loop(model, cfg, n, cfg.batch_size, step_loss, progress)
    model.calibrate(ids, attention_mask)
    return losses


def train_pairwise(
    model: RewardModel,
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pairs,
    ties=None,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = False,
) -> list[float]:
    """Christiano-style baseline: -log σ(r_w - r_l) on raw pairs.

    ids, attention_mask (n, t); pairs (m, 2) [winner, loser] row indices; ties (m_t, 2) or None.
    Each step scores batch_size // 2 pairs (batch_size sequences). Calibrates on all rows after.
    """
    wins = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    tie_pairs = np.asarray([] if ties is None else ties, dtype=np.int64).reshape(-1, 2)
    both = torch.as_tensor(np.concatenate([wins, tie_pairs]))
    is_tie = torch.cat([torch.zeros(len(wins), dtype=torch.bool), torch.ones(len(tie_pairs), dtype=torch.bool)])
    if len(both) == 0:
        raise ValueError("no pairs to train on")
    if int(both.max()) >= ids.shape[0] or int(both.min()) < 0:
        raise ValueError("pair index out of range")
    model.reset_normalization()

    def step_loss(idx):
        k = len(idx)
        rows = torch.cat([both[idx, 0], both[idx, 1]])
        x, m = _trimmed(ids, attention_mask, rows)
        r = model.score(x, m)
        return bradley_terry_loss(r[:k], r[k:], is_tie[idx])

    losses = _loop(model, cfg, len(both), max(1, cfg.batch_size // 2), step_loss, progress)
    model.calibrate(ids, attention_mask)
    return losses
