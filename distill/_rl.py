"""Policy-gradient pieces shared by PPO and REINFORCE, and KL-regularised REINFORCE itself.

The objective of every method here is the KL-regularised reward of Ziegler et al. (2019):

    max_pi  E_{y ~ pi}[ score(y) ] - beta * KL(pi || ref)

estimated per sampled sequence y from per-token log-probs: KL(y) = sum_t (log pi(y_t) - log ref(y_t)).
Log-probs come only from `domains.sequence_log_probs` / `domains.token_log_probs`.

Legend: b batch, t time (the (b, t-1) frame of `sequence_log_probs`: entry i scores ids[:, i+1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from domains import decode, pad_ids, token_log_probs

from ._loop import LoopConfig, train_loop
from ._task import Budget, DistillRun, Task, register, sample_prompts


# ---------------------------------------------------------------------------------------------
# pure pieces

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the entries where `mask` is 1 (any shape, same for both)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; zero outside the mask (PPO's advantage
    normalisation)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) -> (advantages (b, t), returns (b, t)).

    rewards, values, mask: (b, t); mask is 1 on the actions of each row, right-padded (a row's
    episode ends at its last 1; the value after it is 0). With delta_t = r_t + gamma V_{t+1} - V_t,

        A_t = delta_t + gamma * lam * A_{t+1},     returns_t = A_t + V_t,

    both zero outside the mask.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gae needs gamma and lam in [0, 1], got gamma={gamma}, lam={lam}")
    m = mask.to(values.dtype)
    r, v = rewards * m, values * m
    adv = torch.zeros_like(v)
    last = torch.zeros_like(v[:, 0])  # A_{t+1}
    for t in reversed(range(v.shape[1])):
        next_v = v[:, t + 1] if t + 1 < v.shape[1] else torch.zeros_like(last)
        delta = r[:, t] + gamma * next_v - v[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        adv[:, t] = last
    return adv, (adv + v) * m


class AdaptiveKLController:
    """The KL coefficient beta of Ziegler et al. (2019, openai/lm-human-preferences), steered so the
    measured KL tracks `target`: with e = clip(KL / target - 1, -0.2, 0.2),

        beta <- beta * (1 + e * n_steps / horizon)

    after each batch of `n_steps` samples. `value` is plain state (save it to resume)."""

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        if init_beta < 0 or not target > 0 or not horizon > 0:
            raise ValueError(f"AdaptiveKLController needs init_beta >= 0, target > 0, horizon > 0; "
                             f"got {init_beta}, {target}, {horizon}")
        self.value, self.target, self.horizon = float(init_beta), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        err = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + err * n_steps / self.horizon
        return self.value


def ppo_losses(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
               values_new: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float = 0.2, vf_clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """PPO's clipped surrogate and clipped value loss over (b, t) tokens -> (policy loss, value loss, stats).

    With ratio = exp(logp_new - logp_old):
        policy = mean_mask max(-A ratio, -A clip(ratio, 1 - clip, 1 + clip))
        value  = 0.5 mean_mask max((V - R)^2, (V_old + clip(V - V_old, ±vf_clip) - R)^2)
    stats: clipfrac (share of tokens where the clipped surrogate binds), approx_kl
    (0.5 mean (logp_new - logp_old)^2), vf_clipfrac.
    """
    ratio = torch.exp(logp_new - logp_old)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    policy_loss = masked_mean(torch.maximum(pg1, pg2), mask)
    v_clipped = values_old + torch.clamp(values_new - values_old, -vf_clip, vf_clip)
    vf1, vf2 = (values_new - returns) ** 2, (v_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.maximum(vf1, vf2), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((pg2 > pg1).float(), mask),
                 "approx_kl": 0.5 * masked_mean((logp_new - logp_old) ** 2, mask),
                 "vf_clipfrac": masked_mean((vf2 > vf1).float(), mask)}
    return policy_loss, value_loss, stats


class RunningMoments:
    """Running mean and (sample) standard deviation of every value seen, merged batch by batch
    (Welford / Chan et al.), to normalise rewards whose scale is unknown in advance."""

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = int(count), float(mean), float(m2)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / (self.count - 1))) if self.count > 1 else 1.0

    def update(self, xs) -> None:
        xs = np.asarray(xs, dtype=np.float64).ravel()
        if xs.size == 0:
            return
        n, mean = xs.size, float(xs.mean())
        m2 = float(((xs - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta ** 2 * self.count * n / total
        self.count = total

    def state(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}


def kl_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor,
               beta: float) -> torch.Tensor:
    """Per-token rewards (b, t): -beta (log pi - log ref) on every action, plus the sequence's
    score (b,) on its last action."""
    m = mask.to(logp.dtype)
    r = -beta * (logp - ref_logp) * m
    last = (m * torch.arange(m.shape[1], dtype=m.dtype)).argmax(1)  # index of each row's last action
    rows = torch.arange(m.shape[0])
    r[rows, last] += scores.to(r.dtype)
    return r


# ---------------------------------------------------------------------------------------------
# rollouts

@dataclass
class Rollout:
    """A batch of sampled sequences: ids/attn (b, t) with BOS and prefix; action mask (b, t-1) in the
    `sequence_log_probs` frame, 1 where the scored token was sampled (not prefix, not padding)."""

    ids: torch.Tensor
    attn: torch.Tensor
    actions: torch.Tensor
    texts: list[str]
    scores: torch.Tensor  # (b,) task.reward of the decoded texts (prefix included)


def disable_dropout(model) -> None:
    """Set every dropout to p=0, so the log-probs of sampling and of training agree."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def rollout(policy, task: Task, n: int, seed: int, start: int = 0) -> Rollout:
    """`n` samples of `policy`, prompt i taken from task.prompts cycled from index `start`."""
    tok = task.tokenizer
    prompts = [task.prompts[(start + i) % len(task.prompts)] for i in range(n)]
    grouped, prefix_len = sample_prompts(policy, task, prompts, 1, lambda j: seed * 7919 + j)
    rows = [g[0] for g in grouped]
    ids, attn = pad_ids(rows, tok.pad_token_id)
    pos = torch.arange(1, ids.shape[1])[None]  # position of the scored token
    actions = (pos >= torch.tensor(prefix_len)[:, None]).long() * attn[:, 1:]
    texts = [decode(tok, r) for r in rows]
    scores = torch.as_tensor(np.asarray(task.reward(texts), dtype=np.float64), dtype=torch.float32)
    return Rollout(ids, attn, actions, texts, scores)


@torch.no_grad()
def reference_log_probs(reference, ro: Rollout) -> torch.Tensor:
    """log ref(token) on the rollout's actions -> (b, t-1)."""
    return token_log_probs(reference, ro.ids, ro.attn) * ro.actions


# ---------------------------------------------------------------------------------------------
# REINFORCE

@dataclass(frozen=True, kw_only=True)
class ReinforceConfig:
    """KL-regularised REINFORCE with a baseline (Williams 1992; Jaques et al. 2017; MusicRL)."""

    batch_size: int = 16  # samples per step
    beta: float = 0.05  # KL coefficient: R = score - beta * KL(sample)
    baseline: str = "running"  # "running" (mean R of past batches) or "loo" (leave-one-out in the batch)
    momentum: float = 0.9  # weight of the old running mean per batch

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.beta < 0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"ReinforceConfig needs batch_size >= 2, beta >= 0, momentum in [0, 1); got {self}")
        if self.baseline not in ("running", "loo"):
            raise ValueError(f"ReinforceConfig.baseline must be 'running' or 'loo', got {self.baseline!r}")


def reinforce_loss(logp_sum: torch.Tensor, returns: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """-(R - b) * sum_t log pi(y_t), averaged over the batch; logp_sum, returns, baseline (b,)."""
    return -((returns - baseline).detach() * logp_sum).mean()


def loo_baseline(returns: torch.Tensor) -> torch.Tensor:
    """b_i = mean of the other rows' returns (b,) -> (b,)."""
    n = returns.shape[0]
    return (returns.sum() - returns) / (n - 1)


@register("reinforce")
def reinforce(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
              config: ReinforceConfig = ReinforceConfig(), loop: LoopConfig = LoopConfig()) -> DistillRun:
    """Sample a batch from the policy, score it, and step on the REINFORCE loss of
    R = score - beta * KL(sample) against a baseline (`ReinforceConfig.baseline`)."""
    policy, ref = task.policy_copy(), task.reference()
    disable_dropout(policy)
    extra: dict = {"baseline": None, "rollouts": 0}

    def step_fn(step: int):
        k = extra["rollouts"]
        ro = rollout(policy, task, config.batch_size, seed=seed * 100_003 + k, start=k * config.batch_size)
        extra["rollouts"] = k + 1
        policy.train()
        ref_lp = reference_log_probs(ref, ro)
        lp = token_log_probs(policy, ro.ids, ro.attn) * ro.actions
        kl = (lp.detach() - ref_lp).sum(1)  # (b,)
        ret = ro.scores - config.beta * kl
        if config.baseline == "loo":
            base = loo_baseline(ret)
        else:
            old = extra["baseline"]
            base = torch.full_like(ret, float(ret.mean()) if old is None else old)
            extra["baseline"] = float(ret.mean()) if old is None else config.momentum * old + (1 - config.momentum) * float(ret.mean())
        loss = reinforce_loss(lp.sum(1), ret, base)
        return loss, {"reward": ro.scores.mean(), "kl": kl.mean(), "return": ret.mean()}

    history = train_loop({"policy": policy}, step_fn, budget, workdir, loop, progress=progress,
                         desc="reinforce", extra_state=extra)
    policy.eval()
    return DistillRun("reinforce", policy, history)
