"""Projections onto the probability simplex and onto its low-entropy part.

Legend: b batch, t time, v vocab. Every function works on the last axis and accepts any leading
shape; `allowed` (v,), or broadcastable to the input (one set per position), marks the tokens a
position may take (the rest are held at exactly 0).
"""

from __future__ import annotations

import torch


def project_simplex(x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean projection of each row of `x` (..., v) onto {p >= 0, sum p = 1, p[~allowed] = 0}.

    argmin_p ||p - x||^2 over the simplex = max(x - theta, 0) with theta chosen so the result sums
    to one (sort-based, Held et al. 1974 / Duchi et al. 2008).
    """
    if allowed is not None:
        x = x.masked_fill(~allowed, -torch.inf)
    u, _ = torch.sort(x, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    k = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    cond = (u - css / k) > 0  # true on a prefix of the sorted entries (nan/-inf compare false)
    rho = cond.to(torch.long).cumsum(-1).argmax(-1, keepdim=True)  # last true index
    theta = css.gather(-1, rho) / (rho + 1).to(x.dtype)
    p = torch.clamp(x - theta, min=0.0)
    if allowed is not None:
        p = p.masked_fill(~allowed, 0.0)
    return p


def tsallis2_entropy(p: torch.Tensor) -> torch.Tensor:
    """Tsallis entropy of order 2, ``1 - sum_v p_v^2``: 0 at a vertex, ``1 - 1/n`` at uniform."""
    return 1.0 - (p * p).sum(-1)


def project_entropy(
    p: torch.Tensor, max_entropy: float, allowed: torch.Tensor | None = None, max_passes: int = 8
) -> torch.Tensor:
    """Push each row of a simplex point `p` (..., v) to Tsallis-2 entropy <= `max_entropy`.

    The feasible set ``||p||^2 >= 1 - h`` is the outside of a sphere around the uniform point c of
    p's support: ``||p - c||^2 >= 1 - h - 1/k`` (k = support size). A row inside the sphere is moved
    radially out to it and projected back onto the simplex (Geisler et al. 2024, PGD attack).
    Rows already feasible are returned unchanged; a row exactly at c moves toward its first
    largest entry.
    """
    if not 0.0 <= max_entropy <= 1.0:
        raise ValueError(f"max_entropy must be in [0, 1], got {max_entropy}")
    todo = torch.ones(p.shape[:-1] + (1,), dtype=torch.bool, device=p.device)
    for _ in range(max_passes):  # a row needs another pass only when its support shrank
        k = (p > 0).sum(-1, keepdim=True)
        p, moved = _entropy_step(p, max_entropy, allowed, todo)
        todo = moved & ((p > 0).sum(-1, keepdim=True) < k)
        if not bool(todo.any()):
            break
    return p


def _entropy_step(p: torch.Tensor, max_entropy: float, allowed, todo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One radial push of the rows marked `todo` -> (p, which rows moved)."""
    support = p > 0
    k = support.sum(-1, keepdim=True).clamp(min=1).to(p.dtype)
    c = support.to(p.dtype) / k
    r2 = (1.0 - max_entropy - 1.0 / k).clamp(min=0.0)
    d = p - c
    dist2 = (d * d).sum(-1, keepdim=True)
    # At the centre there is no radial direction: break the tie toward the first largest entry.
    centred = dist2 <= torch.finfo(p.dtype).eps * r2
    if bool((centred & (r2 > 0)).any()):
        vertex = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype)
        d = torch.where(centred, vertex - c, d)
        dist2 = (d * d).sum(-1, keepdim=True)
    inside = (((dist2 < r2 * (1 - 1e-9)) & (dist2 > 0)) | (centred & (r2 > 0))) & todo
    if not bool(inside.any()):
        return p, inside
    scale = torch.sqrt(r2 / dist2.clamp(min=torch.finfo(p.dtype).tiny))
    moved = project_simplex(c + d * scale, allowed)
    return torch.where(inside, moved, p), inside
