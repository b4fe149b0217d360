"""Projections from continuous relaxations back to real tokens.

Legend: b batch, t time, v vocab, d embedding width.
"""

from __future__ import annotations

import torch


def project_argmax(x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The most weighted allowed token of each position: (..., v) -> (...) long.

    Idempotent: ``project_argmax(one_hot(project_argmax(x))) == project_argmax(x)``.
    """
    if allowed is not None:
        x = x.masked_fill(~allowed, -torch.inf)
    return x.argmax(-1)


def project_nearest(e: torch.Tensor, embedding: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The allowed token whose embedding is closest (Euclidean) to each vector: (..., d) -> (...) long.

    ``argmin_v ||e - E_v||^2 = argmin_v (||E_v||^2 - 2 e . E_v)``; an exact token embedding maps
    to its own token whenever embeddings are distinct, so projecting twice equals projecting once.
    """
    if e.shape[-1] != embedding.shape[-1]:
        raise ValueError(f"embedding width mismatch: vectors have {e.shape[-1]}, matrix has {embedding.shape[-1]}")
    emb = embedding.to(e.dtype)
    cost = (emb * emb).sum(-1) - 2.0 * e @ emb.T  # (..., v)
    if allowed is not None:
        cost = cost.masked_fill(~allowed, torch.inf)
    return cost.argmin(-1)
