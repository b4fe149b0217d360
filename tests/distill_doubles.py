"""Test doubles for the distill evaluation and command: a tiny task over the ascent doubles' models,
and two trivial methods (registered by the tests that use them, never by the library)."""

from __future__ import annotations

import copy

import numpy as np
import torch

import distill
import domains
from ascent_doubles import TEXTS, tiny_setup


def letter_reward(texts):
    """A reward over decoded texts: the share of characters that are note letters."""
    return np.array([sum(c in "ABCDEFGabcdefg" for c in t) / max(len(t), 1) for t in texts])


def tiny_task(**kw) -> distill.Task:
    tok, gen, _ = tiny_setup(n_positions=64)
    return distill.Task(generator=gen, tokenizer=tok, reward=letter_reward, corpus=list(TEXTS),
                        sample=domains.SampleConfig(max_new_tokens=24, batch_size=8), **kw)


def noop(task, workdir, budget, *, seed=0, progress=False, **options):
    """The base generator itself: KL 0, nothing trained."""
    return distill.DistillRun(method="noop", policy=task.generator)


STEPS_RUN: list[int] = []  # every step lm_steps computed, in order (a resumed run adds only the new ones)


def lm_steps(task, workdir, budget, *, seed=0, progress=False, **options):
    """A couple of language-model steps on the corpus through `distill.train_loop` (resumable)."""
    policy = task.policy_copy()
    ids, mask = domains.encode_batch(task.tokenizer, list(task.corpus))
    torch.manual_seed(seed)

    def step_fn(step):
        STEPS_RUN.append(step)
        lp = domains.token_log_probs(policy, ids, mask)
        return -lp.sum() / mask[:, 1:].sum(), {"reward": float(step), "kl": 0.1 * step}

    history = distill.train_loop({"policy": policy}, step_fn, budget, workdir, distill.LoopConfig(lr=0.05),
                                 progress=progress)
    return distill.DistillRun(method="lm_steps", policy=policy, history=history)


def perturbed(task, scale: float = 0.5, seed: int = 3):
    """A copy of the base generator with Gaussian noise on every weight."""
    policy = copy.deepcopy(task.generator)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return policy
