"""Training a `RewardModel`: regression on Bradley-Terry latents, or the pairwise baseline, or a
closed-form linear probe of the head on the frozen backbone.

Legend: b batch, t time, n items, d width. The two gradient routes use the same network and the
same cost per step (`batch_size` sequences through the network), so they compare at equal compute.

    bt_regression_loss  = Σ_i w_i (r_i - θ_i)² / Σ_i w_i        w_i = 1 / sd_i² (posterior precision)
    bradley_terry_loss  = mean_k -log σ(r_win,k - r_lose,k)     (ties: -½[log σ(Δ) + log σ(-Δ)])
    fit_head            = argmin_β Σ_i w_i (θ_i - b - z_iᵀβ)² + λ |β|²   z_i: standardised pooled features
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from domains import lr_schedule

from ._model import RewardModel

DEFAULT_L2 = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, cfg: "RewardTrainConfig") -> float:
    """Learning-rate multiplier at 0-based `step`: linear warm-up reaching 1 on the first step after
    it, then constant or cosine to 0."""
    return lr_schedule(step, total=cfg.steps, warmup=cfg.warmup, ramp=cfg.warmup + 1,
                       floor=1.0 if cfg.schedule == "constant" else 0.0)


@dataclass(frozen=True, kw_only=True)
class RewardTrainConfig:
    """How long and how fast to train a reward model."""

    steps: int = 200  # optimizer steps
    batch_size: int = 32  # sequences per step (the pairwise route uses batch_size // 2 pairs)
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup: int = 10  # steps of linear learning-rate warm-up
    schedule: str = "constant"  # after warm-up: "constant", or "cosine" decay to 0 at `steps`
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    max_seconds: float = 0.0  # stop early after this wall time; 0 = off
    seed: int = 0  # seeds batch order

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size < 2:
            raise ValueError(f"steps must be > 0 and batch_size >= 2: {self}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup < 0:
            raise ValueError(f"lr must be > 0, weight_decay and warmup >= 0: {self}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {SCHEDULES}")
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


def _check_finite(name: str, values: np.ndarray) -> None:
    """Raise a ValueError naming how many entries of `values` (n,) are NaN or infinite, and which."""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        shown = ", ".join(str(int(i)) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ValueError(f"{name} has {len(bad)} non-finite value(s) (NaN or inf) at item(s) {shown}; "
                         "drop those items or fix their scores (an infinite weight means a zero posterior SD)")


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


def _loop(model: RewardModel, cfg: RewardTrainConfig, n: int, per_step: int, step_loss, progress: bool) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
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
    cfg: RewardTrainConfig = RewardTrainConfig(),
    progress: bool = False,
) -> list[float]:
    """Regress the model on latent scores: ids, attention_mask (n, t); targets, weights (n,).

    `targets` are Bradley-Terry posterior means, `weights` their precisions 1/sd². Output
    normalisation is reset before and re-calibrated on these items after. Returns step losses.
    NaN or infinite targets or weights raise a ValueError naming the items (they would turn
    every weight of the model into NaN).
    """
    n = ids.shape[0]
    y64 = np.asarray(targets, dtype=np.float64)
    w64 = None if weights is None else np.asarray(weights, dtype=np.float64)
    if y64.shape != (n,) or (w64 is not None and w64.shape != (n,)):
        raise ValueError(f"targets/weights must have shape ({n},)")
    _check_finite("targets", y64)
    if w64 is not None:
        _check_finite("weights", w64)
        if bool((w64 < 0).any()):
            raise ValueError("weights must be non-negative")
    y = torch.as_tensor(y64, dtype=torch.float32)
    w = None if w64 is None else torch.as_tensor(w64, dtype=torch.float32)
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
    cfg: RewardTrainConfig = RewardTrainConfig(),
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


def _ridge(Z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weighted ridge on centred features: Z (n, d), y, w (n,) -> (β (d,), intercept)."""
    mz, my = w @ Z / w.sum(), w @ y / w.sum()
    Zc = Z - mz
    beta = np.linalg.solve(Zc.T @ (w[:, None] * Zc) + l2 * np.eye(Z.shape[1]), Zc.T @ (w * (y - my)))
    return beta, float(my - mz @ beta)


def group_folds(groups, folds: int, seed: int = 0) -> np.ndarray:
    """Cross-validation fold (n,) of each item such that items of one group share a fold.

    groups (n,): any hashable labels, e.g. each item's root parent id, so that an item and its
    edits are never split between training and held-out data (the edit would leak its parent's
    target). Groups go, largest first (random order among equal sizes), to the fold holding the
    fewest items so far. With one item per group this is ``permutation(n) % folds``.
    """
    labels = list(groups)
    uniq: dict = {}
    member = np.array([uniq.setdefault(g, len(uniq)) for g in labels], dtype=np.int64)
    if not 2 <= folds <= len(uniq):
        raise ValueError(f"cross-validation needs 2 <= folds <= number of groups, got folds={folds} "
                         f"for {len(uniq)} group(s) of {len(labels)} item(s)")
    size = np.bincount(member, minlength=len(uniq))
    key = np.random.default_rng(seed).permutation(len(uniq))
    load = np.zeros(folds, dtype=np.int64)
    fold_of = np.empty(len(uniq), dtype=np.int64)
    for g in np.lexsort((key, -size)):
        k = int(np.argmin(load))
        fold_of[g] = k
        load[k] += size[g]
    return fold_of[member]


def standardise(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features X (n, d) divided by their weighted SD -> (Z (n, d), sd (d,)); a head fitted on Z
    reads X with weights β / sd."""
    sd = np.sqrt(w @ (X - w @ X / w.sum()) ** 2 / w.sum()) + 1e-8
    return X / sd, sd


def choose_l2(Z: np.ndarray, y: np.ndarray, w: np.ndarray, grid: tuple[float, ...], folds: int, seed: int,
              groups=None) -> tuple[float, dict[float, float]]:
    """Ridge λ from `grid` by `folds`-fold cross-validation (groups share a fold, `group_folds`)
    -> (λ, {λ: precision-weighted squared error}); a single value is returned as is."""
    if len(grid) == 1:
        return float(grid[0]), {}
    n = len(y)
    fold = group_folds(range(n) if groups is None else groups, folds, seed)
    cv: dict[float, float] = {}
    for lam in grid:
        err = 0.0
        for k in range(folds):
            tr, te = fold != k, fold == k
            beta, b = _ridge(Z[tr], y[tr], w[tr], lam)
            err += float(w[te] @ (y[te] - b - Z[te] @ beta) ** 2)
        cv[float(lam)] = err / w.sum()
    return min(cv, key=cv.get), cv


def check_probe_inputs(n: int, targets, weights, l2, groups) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Validated (targets (n,), weights (n,) rescaled to mean 1, λ grid) of a probe fit."""
    y = np.asarray(targets, dtype=np.float64)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.shape != (n,) or w.shape != (n,):
        raise ValueError(f"targets/weights must have shape ({n},)")
    _check_finite("targets", y)
    _check_finite("weights", w)
    if groups is not None and len(groups) != n:
        raise ValueError(f"groups must have one label per item ({n}), got {len(groups)}")
    if bool((w < 0).any()) or w.sum() <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    grid = (l2,) if np.isscalar(l2) else tuple(l2)
    if not grid or min(grid) < 0:
        raise ValueError(f"l2 must be one value >= 0 or a non-empty sequence of them, got {l2}")
    return y, w / w.mean(), grid


QUERY_STEPS = 100  # Adam steps on the attention query (and head) in a probe fit
QUERY_LR = 0.02  # their learning rate


def fit_attention_query(model: RewardModel, ids: torch.Tensor, attention_mask: torch.Tensor, y: np.ndarray,
                        w: np.ndarray, l2: float, sd: np.ndarray, steps: int = QUERY_STEPS,
                        lr: float = QUERY_LR, batch_size: int = 64) -> list[float]:
    """Train an "attention" model's query q, with a head, on the frozen backbone's hidden states.

    Minimises the probe's objective jointly in q and the head (β, b), by full-batch Adam from the
    ridge solution at the current q:  Σ_i w_i (y_i - b - z_i(q)ᵀβ)² + λ|β|²  over Σ_i w_i, with
    z_i(q) = attention-pooled features of item i divided by `sd` (d,), y, w (n,) as in `fit_head`.
    The hidden states are computed once (no gradient reaches the backbone). Sets `model.query`
    (the head is left to the caller, who refits it in closed form at the new q). Returns the losses.
    """
    if model.pooling != "attention":
        raise ValueError(f"fit_attention_query needs an 'attention' model, got pooling {model.pooling!r}")
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, ids.shape[0], batch_size):
            m = attention_mask[i : i + batch_size]
            t = int(m.sum(1).max())
            h = model.hidden_states(ids[i : i + batch_size, :t], m[:, :t])
            chunks.append((h, m[:, :t]))
    dtype = model.query.dtype
    scale = torch.as_tensor(sd, dtype=dtype)
    yt, wt = torch.as_tensor(y, dtype=dtype), torch.as_tensor(w, dtype=dtype)
    with torch.no_grad():
        Z = (torch.cat([model.pool_hidden(h, m) for h, m in chunks]) / scale).double().numpy()
    beta0, b0 = _ridge(Z, y, w, l2)
    beta = torch.nn.Parameter(torch.as_tensor(beta0, dtype=dtype))
    bias = torch.nn.Parameter(torch.tensor(b0, dtype=dtype))
    opt = torch.optim.Adam([model.query, beta, bias], lr=lr)
    losses = []
    for _ in range(steps):
        z = torch.cat([model.pool_hidden(h, m) for h, m in chunks]) / scale  # (n, d)
        loss = ((wt * (yt - bias - z @ beta) ** 2).sum() + l2 * (beta ** 2).sum()) / wt.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.query.grad = None
    model.train(was_training)
    return losses


def probe_features(model: RewardModel, ids: torch.Tensor, attention_mask: torch.Tensor, y: np.ndarray,
                   w: np.ndarray, grid: tuple[float, ...], folds: int, seed: int, groups=None,
                   query_steps: int = QUERY_STEPS) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """(Z (n, d') standardised features, sd (d',), λ, {λ: cv loss}) of a probe fit: features of the
    frozen backbone, λ by cross-validation (`choose_l2`). For "attention" pooling the query is then
    trained (`fit_attention_query`, `query_steps` Adam steps at that λ) and the features recomputed
    at the new query, so that the closed-form head that follows reads the attended vector."""
    X = model.features(ids, attention_mask).double().numpy()  # (n, d')
    Z, sd = standardise(X, w)
    best, cv = choose_l2(Z, y, w, grid, folds, seed, groups)
    if model.pooling == "attention" and query_steps:
        fit_attention_query(model, ids, attention_mask, y, w, best, sd, query_steps)
        Z = model.features(ids, attention_mask).double().numpy() / sd
    return Z, sd, best, cv


def fit_head(
    model: RewardModel,
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets,
    weights=None,
    l2: float | tuple[float, ...] = DEFAULT_L2,
    folds: int = 5,
    seed: int = 0,
    groups=None,
    query_steps: int = QUERY_STEPS,
) -> dict:
    """Linear probe: set the head by weighted ridge regression on the frozen backbone's features.

    ids, attention_mask (n, t); targets, weights (n,) as in `train_reward_model`. The backbone is
    not changed, so this costs one forward pass over the items instead of a training run; it
    generalises better than fine-tuning when there are only a few thousand rated items. With
    several `l2` values, λ is chosen by `folds`-fold cross-validation (precision-weighted squared
    error on the targets). `groups` (n,) labels items that must share a fold (`group_folds`):
    pass each item's root parent id so that edits of a rated item do not sit in the training
    folds while the item itself is held out; None = every item its own group. Features are
    standardised (scale folded back into the head), weights rescaled to mean 1. Re-calibrates on
    these items. NaN or infinite targets or weights raise a ValueError naming the items.
    With "attention" pooling the query is trained too (`probe_features`, `query_steps`), the head
    then refitted in closed form at the learned query. Returns {"l2": λ, "cv_loss": {λ: loss}}.
    """
    y, w, grid = check_probe_inputs(ids.shape[0], targets, weights, l2, groups)
    Z, sd, best, cv = probe_features(model, ids, attention_mask, y, w, grid, folds, seed, groups, query_steps)
    beta, b = _ridge(Z, y, w, best)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(beta / sd, dtype=model.head.weight.dtype)[None])
        model.head.bias.fill_(b)
    model.reset_normalization()
    model.calibrate(ids, attention_mask)
    return {"l2": best, "cv_loss": cv}


def pairwise_logistic(Z: np.ndarray, wins, ties=None, l2: float = 1.0) -> np.ndarray:
    """Weights β (d,) of a linear Bradley-Terry score s = Z β fitted directly on comparisons:
    minimises Σ_wins -log σ(β·(z_w - z_l)) + Σ_ties ½[-log σ(β·d) - log σ(-β·d)] + ½ l2 |β|²
    (a tie counts as half a win each way) by L-BFGS. Z (n, d) item features; wins (m, 2)
    [winner, loser] and ties (m_t, 2) row indices. No intercept: it cancels in every difference."""
    from scipy.optimize import minimize

    D = Z[wins[:, 0]] - Z[wins[:, 1]]
    T = Z[ties[:, 0]] - Z[ties[:, 1]] if ties is not None and len(ties) else np.zeros((0, Z.shape[1]))

    def loss_grad(beta):
        a, t = D @ beta, T @ beta
        loss = np.logaddexp(0, -a).sum() + 0.5 * (np.logaddexp(0, -t) + np.logaddexp(0, t)).sum()
        g = -D.T @ (1 / (1 + np.exp(a))) + T.T @ (1 / (1 + np.exp(-t)) - 0.5)  # d/dt of the tie term
        return loss + 0.5 * l2 * beta @ beta, g + l2 * beta

    res = minimize(loss_grad, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x


def _pair_log_loss(Z, beta, wins, ties) -> float:
    a = Z[wins[:, 0]] @ beta - Z[wins[:, 1]] @ beta
    t = Z[ties[:, 0]] @ beta - Z[ties[:, 1]] @ beta
    return float(np.logaddexp(0, -a).sum() + 0.5 * (np.logaddexp(0, -t) + np.logaddexp(0, t)).sum())


def fit_pairwise_head(model: RewardModel, ids: torch.Tensor, attention_mask: torch.Tensor, wins, ties=None,
                      l2: float | tuple[float, ...] = DEFAULT_L2, folds: int = 5, seed: int = 0) -> dict:
    """Pairwise probe: set the head by logistic regression of comparison outcomes on the frozen
    backbone's features (the same standardised features as `fit_head`), the baseline that skips
    Bradley-Terry scores. ids, attention_mask (n, t); wins (m, 2) [winner, loser], ties (m_t, 2)
    row indices (`pairwise_logistic`). With several `l2` values, λ is chosen by `folds`-fold
    cross-validation over the comparisons (held-out log loss). Calibrates on these items.
    Returns {"l2": λ, "cv_loss": {λ: mean held-out log loss per comparison}}."""
    n = ids.shape[0]
    wins = np.asarray(wins, dtype=np.int64).reshape(-1, 2)
    ties = np.asarray([] if ties is None else ties, dtype=np.int64).reshape(-1, 2)
    both = np.concatenate([wins, ties])
    if len(wins) == 0:
        raise ValueError("fit_pairwise_head needs at least one decided comparison (wins); got none")
    if int(both.max()) >= n or int(both.min()) < 0:
        raise ValueError(f"fit_pairwise_head: pair indices must lie in [0, {n}); got {int(both.min())}..{int(both.max())}")
    grid = (l2,) if np.isscalar(l2) else tuple(l2)
    if not grid or min(grid) < 0:
        raise ValueError(f"l2 must be one or more values >= 0, got {l2}")
    Z, sd = standardise(model.features(ids, attention_mask).double().numpy(), np.ones(n))
    cv: dict[float, float] = {}
    if len(grid) > 1:
        rng = np.random.default_rng(seed)
        fw, ft = rng.permutation(len(wins)) % folds, rng.permutation(len(ties)) % folds
        for lam in grid:
            err = sum(_pair_log_loss(Z, pairwise_logistic(Z, wins[fw != k], ties[ft != k], lam), wins[fw == k],
                                     ties[ft == k]) for k in range(folds))
            cv[float(lam)] = err / len(both)
    best = min(cv, key=cv.get) if cv else float(grid[0])
    beta = pairwise_logistic(Z, wins, ties, best)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(beta / sd, dtype=model.head.weight.dtype)[None])
        model.head.bias.fill_(0.0)
    model.reset_normalization()
    model.calibrate(ids, attention_mask)
    return {"l2": best, "cv_loss": cv}
