"""Likelihood fine-tuning: the "amortised inference" step of expert iteration.

The policy is trained to imitate a set of texts (the improved, verified pieces of a round) by
plain next-token maximum likelihood, mixed with a replay fraction of the original corpus so it
does not forget how the rest of the music goes:

    loss = - sum_{b,i} log p(x_{b,i+1} | x_{b,<=i}) / #targets      (`domains.sequence_log_probs`)

over a batch of which ``round(batch_size * replay_fraction)`` rows come from `replay` and the
rest from `texts`. Each step's batch is a pure function of (seed, step), so a resumed loop draws
exactly the batches an uninterrupted one would have drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from domains import context_length, pad_ids, sequence_log_probs

from ._loop import LoopConfig, train_loop
from ._task import Budget

FINETUNE_LOOP = LoopConfig(lr=5e-4, checkpoint_every=20)  # default optimiser of the fine-tune


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(list(texts))["input_ids"]] if texts else []


def _window(row: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """`row` itself when it fits `n` tokens, else a random window of `n` tokens of it."""
    if len(row) <= n:
        return row
    start = int(rng.integers(0, len(row) - n + 1))
    return row[start:start + n]


def finetune_batch(own: Sequence[list[int]], replay: Sequence[list[int]], step: int, *, seed: int, batch_size: int,
                   replay_fraction: float, context: int) -> list[list[int]]:
    """The token rows of step `step`: ``batch_size - n_replay`` rows drawn from `own`, then
    ``n_replay = round(batch_size * replay_fraction)`` from `replay` (none when it is empty; at
    least one row of `own` always), each cut to a window of `context` tokens. Deterministic in
    (seed, step)."""
    rng = np.random.default_rng([seed, step])
    n_replay = min(int(round(batch_size * replay_fraction)), batch_size - 1) if replay else 0
    picks = [own[i] for i in rng.integers(len(own), size=batch_size - n_replay)]
    picks += [replay[i] for i in rng.integers(len(replay), size=n_replay)] if n_replay else []
    return [_window(r, context, rng) for r in picks]


def nll(policy, rows: Sequence[list[int]], pad_id: int) -> torch.Tensor:
    """Mean next-token negative log-likelihood of token rows under `policy` (a scalar tensor)."""
    ids, mask = pad_ids(list(rows), pad_id)
    logits = policy(input_ids=ids, attention_mask=mask).logits  # (b, t, v)
    logp = sequence_log_probs(logits.float(), ids, mask)  # (b, t-1)
    return -logp.sum() / mask[:, 1:].sum().clamp(min=1)


def finetune(policy, tokenizer, texts: Sequence[str], budget: Budget, workdir: str | Path, *,
             replay: Sequence[str] = (), replay_fraction: float = 0.5, cfg: LoopConfig = FINETUNE_LOOP,
             batch_size: int = 8, seed: int = 0, progress: bool = False) -> list[dict]:
    """Fine-tune `policy` in place on `texts` (mixed with `replay`) by likelihood, through
    `train_loop` in `workdir` (resumable there); returns the loop's history (loss = the batch NLL).

    policy: a causal LM with trainable parameters; tokenizer: its tokenizer (texts are encoded
    with BOS/EOS; longer than the context, a random window is used)."""
    if not texts:
        raise ValueError("finetune: texts is empty; pass at least one text to imitate")
    if not 0.0 <= replay_fraction < 1.0:
        raise ValueError(f"finetune: replay_fraction must be in [0, 1) (the rest of each batch is texts), "
                         f"got {replay_fraction}")
    if batch_size < 1:
        raise ValueError(f"finetune: batch_size must be >= 1, got {batch_size}")
    own, old = _encode(tokenizer, texts), _encode(tokenizer, replay)
    n = context_length(policy)
    pad = tokenizer.pad_token_id

    def step_fn(step: int):
        rows = finetune_batch(own, old, step, seed=seed, batch_size=batch_size, replay_fraction=replay_fraction,
                              context=n)
        loss = nll(policy, rows, pad)
        return loss, {}

    return train_loop({"policy": policy}, step_fn, budget, workdir, cfg, progress=progress, desc="finetune")
