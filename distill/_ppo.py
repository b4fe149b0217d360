"""PPO on the KL-regularised reward (Ziegler et al. 2019; Ouyang et al. 2022), compact.

Each rollout: sample a batch of prompts' continuations from the current policy, score the decoded
texts with task.reward (normalised by running moments), turn them into per-token rewards
-beta (log pi - log ref) plus the score on the last token, estimate advantages with GAE from a
linear value head on the policy's last hidden state, then take `epochs` passes of minibatch PPO
updates. One `train_loop` step is one minibatch update; a new rollout starts when the previous
one's minibatches are used up. beta follows `AdaptiveKLController`.

Legend: b batch, t time, d width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from domains import sequence_log_probs

from ._loop import LoopConfig, train_loop
from ._rl import (AdaptiveKLController, RunningMoments, disable_dropout, gae, kl_rewards, ppo_losses,
                  reference_log_probs, rollout, whiten)
from ._task import Budget, DistillRun, Task, register


@dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """Rollout, advantage and update sizes of `ppo`."""

    batch_size: int = 16  # samples per rollout
    minibatch_size: int = 8  # samples per update (one train_loop step)
    epochs: int = 2  # passes over each rollout
    init_kl: float = 0.05  # initial KL coefficient beta
    target_kl: float = 1.0  # KL (nats per sequence) the adaptive controller steers to
    horizon: float = 10_000.0  # controller horizon in samples (larger = slower beta changes)
    lam: float = 0.95  # GAE lambda (gamma is 1: the episode is one finite sequence)
    clip: float = 0.2  # ratio clip of the policy loss and clip of the value change
    vf_coef: float = 0.1  # weight of the value loss (the head shares the policy's trunk)

    def __post_init__(self) -> None:
        if self.batch_size < 2 or not 1 <= self.minibatch_size <= self.batch_size or self.epochs < 1:
            raise ValueError(f"PPOConfig needs batch_size >= 2, 1 <= minibatch_size <= batch_size, epochs >= 1; got {self}")
        if self.init_kl < 0 or not self.target_kl > 0 or not self.horizon > 0:
            raise ValueError(f"PPOConfig needs init_kl >= 0, target_kl > 0, horizon > 0; got {self}")
        if not 0 <= self.lam <= 1 or not self.clip > 0 or self.vf_coef < 0:
            raise ValueError(f"PPOConfig needs lam in [0, 1], clip > 0, vf_coef >= 0; got {self}")


def build_value_head(policy, seed: int = 0) -> torch.nn.Linear:
    """A linear value head d -> 1 over the policy's last hidden state (small random weights, zero
    bias), initialised from its own generator so the global RNG is left alone."""
    d = int(policy.config.hidden_size)
    head = torch.nn.Linear(d, 1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, d, generator=g) / d ** 0.5)
        head.bias.zero_()
    return head


def policy_and_values(policy, head, ids: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass -> (log pi of each next token (b, t-1), value of each prefix (b, t-1)); entry i of
    both belongs to the action ids[:, i+1]."""
    out = policy(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    logp = sequence_log_probs(out.logits.float(), ids, attn)
    values = head(out.hidden_states[-1][:, :-1].float())[..., 0]  # (b, t-1)
    return logp, values


@register("ppo")
def ppo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
        config: PPOConfig = PPOConfig(), loop: LoopConfig = LoopConfig()) -> DistillRun:
    """Train a copy of task.generator with PPO; modules {"policy", "value_head"}. Resuming in the
    same `workdir` restores weights, optimiser, step, beta and the reward moments, and starts a
    fresh rollout."""
    policy, ref = task.policy_copy(), task.reference()
    disable_dropout(policy)
    head = build_value_head(policy, seed)
    ctl = AdaptiveKLController(config.init_kl, config.target_kl, config.horizon)
    extra: dict = {"beta": ctl.value, "moments": RunningMoments().state(), "rollouts": 0}
    cur: dict = {"queue": []}  # the rollout being trained on and its remaining minibatches

    @torch.no_grad()
    def new_rollout() -> None:
        k = extra["rollouts"]
        ro = rollout(policy, task, config.batch_size, seed=seed * 100_003 + k, start=k * config.batch_size)
        extra["rollouts"] = k + 1
        act = ro.actions.float()
        logp, values = policy_and_values(policy, head, ro.ids, ro.attn)
        logp, values = logp * act, values * act
        ref_lp = reference_log_probs(ref, ro)
        moments = RunningMoments(**extra["moments"])
        moments.update(ro.scores.numpy())
        extra["moments"] = moments.state()
        scores = (ro.scores - moments.mean) / (moments.std + 1e-8)
        beta = extra["beta"]
        adv, ret = gae(kl_rewards(logp, ref_lp, act, scores, beta), values, act, 1.0, config.lam)
        kl = ((logp - ref_lp) * act).sum(1).mean()
        ctl.value = beta
        extra["beta"] = ctl.update(float(kl), config.batch_size)
        cur.update(ids=ro.ids, attn=ro.attn, act=act, logp=logp, values=values, adv=whiten(adv, act), ret=ret,
                   stats={"reward": ro.scores.mean(), "kl": kl, "beta": beta})
        order = [torch.randperm(config.batch_size) for _ in range(config.epochs)]
        cur["queue"] = [p[i:i + config.minibatch_size] for p in order
                        for i in range(0, config.batch_size, config.minibatch_size)]

    def step_fn(step: int):
        if not cur["queue"]:
            new_rollout()
        i = cur["queue"].pop(0)
        policy.train()
        logp, values = policy_and_values(policy, head, cur["ids"][i], cur["attn"][i])
        act = cur["act"][i]
        pg, vf, stats = ppo_losses(logp * act, cur["logp"][i], cur["adv"][i], values * act, cur["values"][i],
                                   cur["ret"][i], act, clip=config.clip, vf_clip=config.clip)
        return pg + config.vf_coef * vf, {**cur["stats"], **stats, "policy_loss": pg.detach(), "value_loss": vf.detach()}

    history = train_loop({"policy": policy, "value_head": head}, step_fn, budget, workdir, loop,
                         progress=progress, desc="ppo", extra_state=extra)
    policy.eval()
    return DistillRun("ppo", policy, history)
