"""Relaxations: how a discrete token sequence becomes a continuous variable the optimizer moves.

Legend: b batch, t time, v vocab, d embedding width.

A relaxation is a small frozen object with four pure methods:

- ``init(onehot (b,t,v), ctx) -> param``: the continuous variable at the start sequence;
- ``relax(param, ctx, frac) -> Relaxed``: what the models see (``probs`` (b,t,v) for the generator
  and, for embedding-space relaxations, ``embeds`` (b,t,d) for the reward model); differentiable;
- ``constrain(param, ctx, frac) -> param``: back onto the feasible set after an optimizer step;
- ``discretize(param, ctx) -> ids (b,t)``: the projection to real tokens.

``frac`` in [0, 1] is the fraction of the run done; schedules (temperature, entropy) read it.
Every method keeps to ``ctx.allowed``: one token set shared by all positions (v,) or one set per
position (anything broadcastable to (b,t,v)); probabilities are exactly 0 and projections never
land outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ._projection import project_argmax, project_nearest
from ._simplex import project_entropy, project_simplex


@dataclass
class RelaxContext:
    """What relaxations need besides their parameter; built once per run by the driver."""

    allowed: torch.Tensor  # bool (v,) or broadcastable to (b,t,v): tokens a (free) position may take
    embedding: torch.Tensor  # (v, d) the reward model's token embedding matrix
    noise: Callable[[], torch.Tensor] | None = None  # () -> (b,t,v) standard uniforms, per-row seeded


@dataclass
class Relaxed:
    """A relaxed sequence: a point in (or a straight-through stand-in for) the simplex."""

    probs: torch.Tensor  # (b,t,v) fed to the generator as probs @ W and to the reward model
    embeds: torch.Tensor | None = None  # (b,t,d) reward-model input when set (embedding space)


class Relaxation(Protocol):
    def init(self, onehot: torch.Tensor, ctx: RelaxContext) -> torch.Tensor: ...
    def relax(self, param: torch.Tensor, ctx: RelaxContext, frac: float) -> Relaxed: ...
    def constrain(self, param: torch.Tensor, ctx: RelaxContext, frac: float) -> torch.Tensor: ...
    def discretize(self, param: torch.Tensor, ctx: RelaxContext) -> torch.Tensor: ...


def linear(start: float, end: float, frac: float) -> float:
    return start + (end - start) * frac


def geometric(start: float, end: float, frac: float) -> float:
    return math.exp(linear(math.log(start), math.log(end), frac))


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax(logits / tau) over allowed tokens; exactly 0 elsewhere."""
    return torch.softmax((logits / tau).masked_fill(~allowed, -torch.inf), dim=-1)


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Forward value `hard`, gradient of `soft`."""
    return hard + soft - soft.detach()


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True, kw_only=True)
class SimplexEntropy:
    """Relaxed one-hot on the simplex with an annealed Tsallis-entropy cap (default; PGD, Geisler
    et al. 2024). After each step: project onto the simplex, then onto entropy <= h(frac), with h
    going linearly from ``entropy_start`` to ``entropy_end`` so rows are pushed to single tokens."""

    entropy_start: float = 0.5  # cap on Tsallis-2 entropy at the start, in [0, 1]
    entropy_end: float = 0.0  # cap at the end; 0 = a vertex (one token)
    init_smoothing: float = 0.0  # start at (1 - s) one-hot + s uniform(allowed); > 0 lets Adam leave the vertex

    def __post_init__(self) -> None:
        for name in ("entropy_start", "entropy_end", "init_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def init(self, onehot, ctx):
        if not self.init_smoothing:
            return onehot.clone()
        uniform = ctx.allowed.to(onehot.dtype) / ctx.allowed.sum(-1, keepdim=True)
        return (1 - self.init_smoothing) * onehot + self.init_smoothing * uniform

    def relax(self, param, ctx, frac):
        return Relaxed(probs=param)

    def constrain(self, param, ctx, frac):
        p = project_simplex(param, ctx.allowed)
        return project_entropy(p, linear(self.entropy_start, self.entropy_end, frac), ctx.allowed)

    def discretize(self, param, ctx):
        return project_argmax(param, ctx.allowed)


class _LogitParameter:
    """Shared by relaxations whose parameter is free logits (b, t, v): start at a scaled one-hot,
    no projection after the update, discretize by argmax over the allowed tokens."""

    def init(self, onehot, ctx):
        return onehot * self.init_scale

    def constrain(self, param, ctx, frac):
        return param

    def discretize(self, param, ctx):
        return project_argmax(param, ctx.allowed)


@dataclass(frozen=True, kw_only=True)
class SimplexLogits(_LogitParameter):
    """Unconstrained logits, p = softmax(logits / tau) with tau annealed geometrically."""

    tau_start: float = 1.0  # temperature at the start
    tau_end: float = 0.1  # temperature at the end; -> 0 makes p one-hot
    init_scale: float = 6.0  # start logits = init_scale * one-hot(start token)

    def __post_init__(self) -> None:
        _check_positive(tau_start=self.tau_start, tau_end=self.tau_end, init_scale=self.init_scale)

    def relax(self, param, ctx, frac):
        return Relaxed(probs=masked_softmax(param, ctx.allowed, geometric(self.tau_start, self.tau_end, frac)))


@dataclass(frozen=True, kw_only=True)
class GumbelSoftmax(_LogitParameter):
    """GBDA-style: p = softmax((logits + g) / tau), g ~ Gumbel(0, 1) fresh each step, per row."""

    tau_start: float = 1.0  # temperature at the start
    tau_end: float = 0.3  # temperature at the end
    init_scale: float = 6.0  # start logits = init_scale * one-hot(start token)
    hard: bool = False  # straight-through: forward the sampled one-hot

    def __post_init__(self) -> None:
        _check_positive(tau_start=self.tau_start, tau_end=self.tau_end, init_scale=self.init_scale)

    def relax(self, param, ctx, frac):
        if ctx.noise is None:
            raise ValueError("GumbelSoftmax needs ctx.noise")
        u = ctx.noise().to(param.dtype).clamp(1e-12, 1 - 1e-12)
        g = -torch.log(-torch.log(u))
        soft = masked_softmax(param + g, ctx.allowed, geometric(self.tau_start, self.tau_end, frac))
        if not self.hard:
            return Relaxed(probs=soft)
        hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        return Relaxed(probs=straight_through(hard, soft))


@dataclass(frozen=True, kw_only=True)
class StraightThrough(_LogitParameter):
    """Hard one-hot of argmax(logits) forward, gradient of softmax(logits / tau) backward."""

    tau: float = 1.0  # temperature of the backward softmax
    init_scale: float = 3.0  # start logits = init_scale * one-hot(start token)

    def __post_init__(self) -> None:
        _check_positive(tau=self.tau, init_scale=self.init_scale)

    def relax(self, param, ctx, frac):
        soft = masked_softmax(param, ctx.allowed, self.tau)
        hard = F.one_hot(project_argmax(param, ctx.allowed), soft.shape[-1]).to(soft.dtype)
        return Relaxed(probs=straight_through(hard, soft))


@dataclass(frozen=True, kw_only=True)
class EmbeddingPEZ:
    """Embedding space (PEZ / MuCoLa): the parameter is a continuous embedding (b,t,d) in the reward
    model's space; the forward pass uses its nearest token's embedding, the update moves the
    continuous one. The generator sees one-hot(nearest) forward with the gradient of
    softmax(-||e - E_v||^2 / tau) backward, so the LM term also reaches the embedding."""

    tau: float = 1.0  # temperature of the soft nearest-token assignment (LM-term gradient)

    def __post_init__(self) -> None:
        _check_positive(tau=self.tau)

    def init(self, onehot, ctx):
        return onehot @ ctx.embedding

    def relax(self, param, ctx, frac):
        emb = ctx.embedding
        nearest = project_nearest(param.detach(), emb, ctx.allowed)
        embeds = straight_through(emb[nearest], param)
        dist2 = (param * param).sum(-1, keepdim=True) - 2 * param @ emb.T + (emb * emb).sum(-1)
        soft = masked_softmax(-dist2, ctx.allowed, self.tau)
        hard = F.one_hot(nearest, emb.shape[0]).to(param.dtype)
        return Relaxed(probs=straight_through(hard, soft), embeds=embeds)

    def constrain(self, param, ctx, frac):
        return param

    def discretize(self, param, ctx):
        return project_nearest(param, ctx.embedding, ctx.allowed)


RELAXATIONS: dict[str, Callable[[], Relaxation]] = {
    "simplex": SimplexEntropy,
    "logits": SimplexLogits,
    "gumbel": GumbelSoftmax,
    "straight-through": StraightThrough,
    "embedding": EmbeddingPEZ,
}


def make_relaxation(name: str) -> Relaxation:
    """A relaxation with default settings by name (used by the CLI)."""
    if name not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {name!r}; choose from {sorted(RELAXATIONS)}")
    return RELAXATIONS[name]()
