"""Direct preference optimisation: offline DPO, online DPO and multi-model (mutual) online DPO.

All three train the generator on preference pairs (prompt, chosen, rejected) with one loss,

    L = -log sigmoid(beta * ((log pi(c|x) - log ref(c|x)) - (log pi(r|x) - log ref(r|x))))

where log pi(y|x) sums the log-probs of the completion's tokens only (`completion_logps`, over the
library's one log-prob primitive) and `ref` is a frozen generator (the base). They differ only in
where the pairs come from:

- ``dpo``: a fixed set — given (``pairs=``, e.g. `pairs_from_store` of rated comparisons) or two
  samples per prompt from the frozen base, the one `Task.reward` scores higher chosen;
- ``online_dpo``: each step two fresh samples per prompt from the *current* policy, judged by the
  reward;
- ``multi_dpo``: two policies each draw one sample per prompt; the reward picks the winner and
  both policies step on the same (winner, loser) pairs, so each learns from the other's wins
  (MultiOnlineDPO, seed 000).

Every step runs inside `train_loop` (budget, checkpoint, exact resume); sampling happens inside
the step, so it counts against the CPU budget. The pairs' loading and encoding are in `_dpo_pairs`,
the ``engine="trl"`` route through TRL's `DPOTrainer` in `_dpo_trl`.

Shapes: b pairs (or sequences), t tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from domains import decode, pad_ids, token_log_probs

from ._dpo_pairs import Pair, Row, check_pairs, encode_pairs
from ._dpo_trl import train_trl
from ._loop import LoopConfig, train_loop
from ._task import Budget, DistillRun, Task, register, sample_prompts


@dataclass(frozen=True, kw_only=True)
class DPOConfig:
    """Options shared by the DPO methods (pass them as keyword arguments to the method)."""

    beta: float = 0.1  # inverse temperature of the implicit reward beta * log(pi / ref); > 0
    lr: float = 1e-4  # AdamW learning rate (constant)
    batch: int = 8  # prompts per step: pairs per step (online, multi) or pairs per batch (dpo)
    n_pairs: int = 64  # dpo without pairs=: prompts sampled twice from the base to label pairs
    last_k: int = 32  # multi_dpo: each policy's most recent samples that decide which one is returned
    tries: int = 3  # sampling rounds a step may take before giving up on forming a pair
    partner_noise: float = 0.02  # multi_dpo default partner: Gaussian weight noise, relative to each tensor's SD
    checkpoint_every: int = 20  # steps between checkpoints

    def __post_init__(self) -> None:
        if not self.beta > 0 or not self.lr > 0:
            raise ValueError(f"DPO needs beta > 0 and lr > 0; got beta={self.beta}, lr={self.lr}")
        if min(self.batch, self.n_pairs, self.last_k, self.tries, self.checkpoint_every) <= 0:
            raise ValueError(f"DPO needs batch, n_pairs, last_k, tries and checkpoint_every > 0; got {self}")
        if not self.partner_noise >= 0:
            raise ValueError(f"DPO needs partner_noise >= 0, got {self.partner_noise}")


def _config(method: str, options: dict) -> DPOConfig:
    known = {f.name for f in fields(DPOConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{method}: unknown option(s) {unknown}; the options are {sorted(known)}")
    return DPOConfig(**options)


def completion_logps(model, ids: torch.Tensor, mask: torch.Tensor, prompt_lens: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Summed log-probability of each row's completion -> (b,).

    ids (b, t) = BOS, prompt, completion, right-padded; mask (b, t) 1 on real tokens; prompt_lens
    (b,) tokens before the completion, BOS included (>= 1). Token ``ids[i, j]`` counts when
    ``j >= prompt_lens[i]`` and it is not padding: the prompt is given, only the completion is scored.
    """
    prompt_lens = torch.as_tensor(prompt_lens, dtype=torch.long)
    lengths = mask.sum(-1)
    if prompt_lens.shape != (ids.shape[0],) or (prompt_lens < 1).any() or (prompt_lens > lengths).any():
        raise ValueError(f"completion_logps: prompt_lens must hold one length in [1, row length] per row; "
                         f"got {prompt_lens.tolist()} for row lengths {lengths.tolist()}")
    lp = token_log_probs(model, ids, mask)  # (b, t-1): entry j scores ids[:, j+1]
    target = torch.arange(1, ids.shape[1])[None]  # (1, t-1): position of the token each entry scores
    return (lp * (target >= prompt_lens[:, None])).sum(-1)


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """The sigmoid DPO loss, averaged over pairs, and its statistics.

    Inputs (b,): completion log-probs under the policy and the reference. With the implicit
    rewards ``r = beta * (pi - ref)``, the loss is ``-logsigmoid(r_chosen - r_rejected).mean()``;
    stats: ``margin`` (mean r_chosen - r_rejected) and ``accuracy`` (fraction with margin > 0).
    """
    if not beta > 0:
        raise ValueError(f"dpo_loss needs beta > 0, got {beta}")
    shapes = {t.shape for t in (pi_chosen, pi_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"dpo_loss needs four (b,) tensors of one shape; got {sorted(map(tuple, shapes))}")
    margin = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))  # (b,)
    loss = -F.logsigmoid(margin).mean()
    m = margin.detach()
    return loss, {"margin": float(m.mean()), "accuracy": float((m > 0).to(m.dtype).mean())}


def pair_step(policy, reference, chosen: Sequence[Row], rejected: Sequence[Row], prompt_lens: Sequence[int],
              beta: float, pad_id: int) -> tuple[torch.Tensor, dict]:
    """DPO loss of (chosen, rejected) row pairs sharing prompts: one padded 2b batch through the
    policy (with gradients) and the reference (without)."""
    ids, mask = pad_ids(list(chosen) + list(rejected), pad_id)  # (2b, t)
    plens = list(prompt_lens) * 2
    pi = completion_logps(policy, ids, mask, plens)
    with torch.no_grad():
        ref = completion_logps(reference, ids, mask, plens)
    b = len(chosen)
    return dpo_loss(pi[:b], pi[b:], ref[:b], ref[b:], beta)


def _seed(*parts: int) -> int:
    """A sampling seed determined by (run seed, step, round, ...): the same on resume."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _step_prompts(prompts: Sequence[str], step: int, batch: int) -> list[str]:
    return [prompts[(step * batch + i) % len(prompts)] for i in range(batch)]


def rollout(model, task: Task, prompts: Sequence[str], per_prompt: int, seed: int) -> tuple[list[list[Row]], list[int]]:
    """`per_prompt` samples of each prompt from `model` (no gradients) -> (rows[i][k], prompt
    lengths) (`sample_prompts`, the j-th distinct prompt with seed ``_seed(seed, j)``)."""
    return sample_prompts(model, task, prompts, per_prompt, lambda j: _seed(seed, j))


def _rewards(task: Task, rows: Sequence[Row]) -> np.ndarray:
    return np.asarray(task.reward([decode(task.tokenizer, r) for r in rows]), dtype=float)


def _no_pair(method: str, n: int) -> ValueError:
    return ValueError(
        f"{method}: the reward gave equal scores to both samples of all {n} prompts, so no preference "
        "pair could be formed; use a reward that separates samples, raise the sampling temperature "
        "or max_new_tokens, use more prompts per step (batch=), or pass rated pairs (dpo pairs=)")


def _label_pairs(task: Task, cfg: DPOConfig, seed: int) -> tuple[list[Pair], list[tuple[float, float]]]:
    """Two samples per prompt from the frozen base; the higher reward is chosen, ties dropped."""
    prompts = [task.prompts[i % len(task.prompts)] for i in range(cfg.n_pairs)]
    rows, plens = rollout(task.reference(), task, prompts, 2, _seed(seed, 0))
    out, rewards = [], []
    for prompt, (a, b), n in zip(prompts, rows, plens):
        ra, rb = _rewards(task, [a, b])
        if ra == rb:
            continue
        (w, rw), (l, rl) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
        out.append((prompt, decode(task.tokenizer, w[n:]), decode(task.tokenizer, l[n:])))
        rewards.append((float(rw), float(rl)))
    if not out:
        raise _no_pair("dpo", len(prompts))
    return out, rewards


def _batch_indices(n: int, step: int, batch: int, seed: int) -> list[int]:
    """Pairs of `step`: consecutive slots of a stream of per-epoch shuffles of range(n)."""
    out = []
    for pos in range(step * batch, (step + 1) * batch):
        perm = np.random.default_rng([seed, pos // n]).permutation(n)
        out.append(int(perm[pos % n]))
    return out


@register("dpo")
def dpo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
        pairs=None, engine: str = "compact", **options) -> DistillRun:
    """Offline DPO on a fixed set of pairs against the frozen base.

    pairs: (prompt, chosen, rejected) strings or TRL-style dicts; default: `n_pairs` prompts
    sampled twice from the base and labelled by `task.reward` (ties dropped). Labelling happens in
    the first step, so it counts against the budget and is kept in the checkpoint.
    engine: "compact" (this module's loop) or "trl" (TRL's `DPOTrainer` on the same pairs).
    """
    cfg = _config("dpo", options)
    if engine not in ("compact", "trl"):
        raise ValueError(f"dpo: unknown engine {engine!r}; use 'compact' or 'trl'")
    given = None if pairs is None else check_pairs(pairs, task.tokenizer)
    policy, reference = task.policy_copy(), task.reference()
    state: dict = {}

    def build() -> None:
        if given is None:
            state["pairs"], state["rewards"] = _label_pairs(task, cfg, seed)
        else:
            flat = [t for p, c, r in given for t in (p + c, p + r)]
            r = np.asarray(task.reward(flat), dtype=float).reshape(-1, 2)
            state["pairs"], state["rewards"] = given, [tuple(map(float, x)) for x in r]

    def note() -> str:
        n = len(state.get("pairs", ()))
        return f"{n} pairs" if given is not None else f"{n} pairs from {cfg.n_pairs} prompts (equal rewards dropped)"

    if engine == "trl":
        build()
        history = train_trl(policy, reference, task.tokenizer, state, cfg, budget, Path(workdir), seed, progress)
        return DistillRun(method="dpo", policy=policy.eval(), history=history,
                          notes=[note(), "engine: trl DPOTrainer"])

    def step_fn(step: int):
        if "pairs" not in state:
            build()
        idx = _batch_indices(len(state["pairs"]), step, cfg.batch, seed)
        chosen, rejected, plens = encode_pairs(task.tokenizer, [state["pairs"][i] for i in idx])
        loss, stats = pair_step(policy, reference, chosen, rejected, plens, cfg.beta, task.tokenizer.pad_token_id)
        stats["reward"] = float(np.mean([state["rewards"][i] for i in idx]))
        return loss, stats

    history = train_loop({"policy": policy}, step_fn, budget, workdir, _loop_config(cfg), progress=progress,
                         desc="dpo", extra_state=state)
    return DistillRun(method="dpo", policy=policy.eval(), history=history,
                      notes=[note()])


def _loop_config(cfg: DPOConfig) -> LoopConfig:
    return LoopConfig(lr=cfg.lr, checkpoint_every=cfg.checkpoint_every)


def _prefer(a: Sequence[Row], b: Sequence[Row], ra: np.ndarray, rb: np.ndarray,
            plens: Sequence[int]) -> tuple[list[Row], list[Row], list[int], list[bool]]:
    """Pairs where the rewards differ: (chosen, rejected, prompt lengths, chosen-is-from-a)."""
    chosen, rejected, keep, from_a = [], [], [], []
    for x, y, rx, ry, n in zip(a, b, ra, rb, plens):
        if rx == ry:
            continue
        chosen.append(x if rx > ry else y)
        rejected.append(y if rx > ry else x)
        keep.append(n)
        from_a.append(bool(rx > ry))
    return chosen, rejected, keep, from_a


@register("online_dpo")
def online_dpo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
               **options) -> DistillRun:
    """Online DPO: each step two samples per prompt from the current policy, judged by
    `task.reward`, one DPO step against the frozen base."""
    cfg = _config("online_dpo", options)
    policy, reference = task.policy_copy(), task.reference()

    def step_fn(step: int):
        prompts = _step_prompts(task.prompts, step, cfg.batch)
        for k in range(cfg.tries):
            rows, plens = rollout(policy, task, prompts, 2, _seed(seed, step, k))
            r = _rewards(task, [x for pair in rows for x in pair]).reshape(-1, 2)
            chosen, rejected, keep, _ = _prefer([p[0] for p in rows], [p[1] for p in rows], r[:, 0], r[:, 1], plens)
            if chosen:
                break
        else:
            raise _no_pair("online_dpo", len(prompts))
        policy.train()  # sampling left it in eval mode
        loss, stats = pair_step(policy, reference, chosen, rejected, keep, cfg.beta, task.tokenizer.pad_token_id)
        return loss, {**stats, "reward": float(r.mean()), "pairs": len(chosen)}

    history = train_loop({"policy": policy}, step_fn, budget, workdir, _loop_config(cfg), progress=progress,
                         desc="online_dpo")
    return DistillRun(method="online_dpo", policy=policy.eval(), history=history)


def perturbed_copy(model, noise: float, seed: int):
    """A deep copy of `model` with Gaussian noise of `noise` times each weight tensor's SD added
    (tensors with zero spread, e.g. fresh LayerNorm gains, unchanged): a second generator close to
    the first but not equal to it, as if trained from another seed."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (noise * p.std()))
    return out


@register("multi_dpo")
def multi_dpo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
              partner=None, **options) -> DistillRun:
    """Two policies learning from each other's wins (MultiOnlineDPO).

    Each step each policy draws one sample per prompt; `task.reward` picks the winner of each
    prompt's two samples and both policies take a DPO step on the same (winner, loser) pairs, each
    against its own frozen starting point. partner: the second generator (same tokenizer); default
    `perturbed_copy` of the base (`partner_noise`), the stand-in for a second training seed. The
    partner must differ from the policy: two identical copies get identical gradients from the
    same pairs and stay identical, whatever seeds they sample with (that is online DPO).
    Returns the policy whose last `last_k` samples have the higher mean reward; the history keeps
    both (reward_policy, reward_partner, wins_policy).
    """
    cfg = _config("multi_dpo", options)
    policy, reference = task.policy_copy(), task.reference()
    if partner is None:
        partner = perturbed_copy(reference, cfg.partner_noise, _seed(seed, 1_000_003))
    elif partner.config.vocab_size != reference.config.vocab_size:
        raise ValueError(f"multi_dpo: partner has vocab_size {partner.config.vocab_size} but the task's "
                         f"generator has {reference.config.vocab_size}; pass a partner trained on the same tokenizer")
    other = copy.deepcopy(partner).train()
    for p in other.parameters():
        p.requires_grad_(True)
    other_ref = copy.deepcopy(partner).eval()
    for p in other_ref.parameters():
        p.requires_grad_(False)
    state: dict = {"recent": [[], []]}

    def step_fn(step: int):
        prompts = _step_prompts(task.prompts, step, cfg.batch)
        for k in range(cfg.tries):
            a, plens = rollout(policy, task, prompts, 1, _seed(seed, step, k, 0))
            b, _ = rollout(other, task, prompts, 1, _seed(seed, step, k, 1))
            a, b = [x[0] for x in a], [x[0] for x in b]
            r = _rewards(task, a + b)
            ra, rb = r[: len(a)], r[len(a):]
            chosen, rejected, keep, from_a = _prefer(a, b, ra, rb, plens)
            if chosen:
                break
        else:
            raise _no_pair("multi_dpo", len(prompts))
        state["recent"] = [(state["recent"][0] + ra.tolist())[-cfg.last_k:],
                           (state["recent"][1] + rb.tolist())[-cfg.last_k:]]
        policy.train()
        other.train()
        pad = task.tokenizer.pad_token_id
        la, sa = pair_step(policy, reference, chosen, rejected, keep, cfg.beta, pad)
        lb, sb = pair_step(other, other_ref, chosen, rejected, keep, cfg.beta, pad)
        return la + lb, {"reward": float(r.mean()), "reward_policy": float(ra.mean()),
                         "reward_partner": float(rb.mean()), "wins_policy": float(np.mean(from_a)),
                         "margin": (sa["margin"] + sb["margin"]) / 2, "margin_policy": sa["margin"],
                         "margin_partner": sb["margin"], "accuracy": (sa["accuracy"] + sb["accuracy"]) / 2,
                         "pairs": len(chosen)}

    history = train_loop({"policy": policy, "partner": other}, step_fn, budget, workdir, _loop_config(cfg),
                         progress=progress, desc="multi_dpo", extra_state=state)
    means = [float(np.mean(x)) if x else float("-inf") for x in state["recent"]]
    pick = 1 if means[1] > means[0] else 0
    note = (f"returned the {('policy', 'partner')[pick]}: mean reward of the last {cfg.last_k} samples "
            f"policy {means[0]:.4g}, partner {means[1]:.4g}")
    return DistillRun(method="multi_dpo", policy=(policy, other)[pick].eval(), history=history, notes=[note])
