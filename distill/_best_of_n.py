"""The two reference points every trained policy is compared with: the base generator untouched,
and best-of-N sampling from it (no training at all).

Best-of-N draws N samples from the base and returns the one the verified reward likes most. Its
KL to the base is taken as the analytic value used since Stiennon et al. 2020 (Beirami et al. 2024,
"Theoretical guarantees on the best-of-n alignment policy", show it is an upper bound on the
exact KL):

    KL(best-of-N || base) = log N - (N - 1) / N

so it sits on the same reward-vs-KL plot as the trained methods at no training cost.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from domains import sample

from ._task import Budget, DistillRun, Task, register


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n in nats: 0 at n = 1, increasing in n."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"best-of-N needs an integer N >= 1 (samples per output), got {n!r}")
    return math.log(n) - (n - 1) / n


def best_of_n_sampler(task: Task, n_best: int, *, bar_aware: bool = False):
    """``sample_fn(m, seed) -> m texts``: output i is the highest-`task.reward` of `n_best` base
    samples from prompt ``task.prompts[i % len(prompts)]``. Candidate j of all outputs of a prompt
    is drawn in one batch (seed from (seed, prompt index, j)) and scored in one `task.reward` call;
    the earlier candidate wins a tie. bar_aware: sample under `task.constraint_factory`."""
    best_of_n_kl(n_best)  # checks n_best
    if bar_aware and task.constraint_factory is None:
        raise ValueError("best_of_n bar_aware=True needs Task.constraint_factory")
    base = task.reference()

    def sample_fn(m: int, seed: int) -> list[str]:
        out: list[str] = [""] * m
        for p, prompt in enumerate(task.prompts):
            idx = list(range(p, m, len(task.prompts)))
            if not idx:
                continue
            best, best_r = None, None
            for j in range(n_best):
                constraint = task.constraint_factory() if bar_aware else None
                cand = sample(base, task.tokenizer, len(idx), task.sample, prefix=prompt,
                              seed=int(np.random.SeedSequence([seed, p, j]).generate_state(1)[0] & 0x7FFFFFFF),
                              constraint=constraint)
                r = np.asarray(task.reward(cand), dtype=np.float64)
                if best is None:
                    best, best_r = list(cand), r
                else:
                    for i in np.flatnonzero(r > best_r):
                        best[i], best_r[i] = cand[i], r[i]
            for i, text in zip(idx, best):
                out[i] = text
        return out

    return sample_fn


@register("best_of_n")
def run_best_of_n(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
                  n: int = 4, bar_aware: bool = False) -> DistillRun:
    """Best-of-`n` sampling from the base generator: no training, no budget spent; evaluation
    samples through `DistillRun.sample_fn`, and the KL is the analytic `best_of_n_kl(n)`."""
    return DistillRun(method="best_of_n", policy=task.reference(),
                      sample_fn=best_of_n_sampler(task, n, bar_aware=bar_aware), kl=best_of_n_kl(n),
                      notes=[f"best of {n} base samples under task.reward; no training"])


@register("base")
def run_base(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False) -> DistillRun:
    """The base generator untouched (KL 0): the point every method starts from."""
    return DistillRun(method="base", policy=task.reference(), kl=0.0, notes=["the base generator, untrained"])
