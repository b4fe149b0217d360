"""Objective terms of the ascent, as free functions, and their weighted sum.

Legend: b batch, t time, v vocab, d embedding width.

The ascent maximises, per row,

    J(p) = R(p) + lm_weight * L(p) - kl_weight * KL(p || s) + entropy_weight(frac) * (-H(p))

with R the reward model's score, L the PPLM-style mean soft log-likelihood under the generator
(gradients flow through the generator into the relaxed prefix), s the smoothed start sequence and H
the mean Shannon entropy of the free positions (annealed from 0 up to `entropy_weight`). At a
one-hot vertex p = one_hot(x) every term equals its discrete value, so J(one_hot(x)) = J(x).

With ``lm_floor`` the likelihood term is a floor instead of a bonus: lm_weight * min(0, L(p) - L0),
L0 the input's own mean log-likelihood, so an edit pays for making the piece less likely under the
generator but earns nothing for making it more likely: the likelihood guards the edits instead of
steering them (benchmarks/ascent.py reports where that helps and where it costs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from domains import sequence_log_probs

from ._relax import Relaxed


@dataclass(frozen=True, kw_only=True)
class ObjectiveWeights:
    """Weights of the objective terms (the reward's weight is 1)."""

    lm_weight: float = 1.0  # weight of the mean per-token log-likelihood under the generator
    kl_weight: float = 0.0  # weight of KL(p || smoothed start) over free positions; 0 = off
    entropy_weight: float = 0.0  # final weight of the entropy penalty, ramped linearly from 0
    kl_smoothing: float = 0.1  # mass of the uniform mixed into the start for the KL term
    lm_floor: bool = False  # True: the likelihood term is lm_weight * min(0, L - L(input)): drops cost, rises earn 0

    def __post_init__(self) -> None:
        for name in ("lm_weight", "kl_weight", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.kl_smoothing < 1.0:
            raise ValueError(f"kl_smoothing must be in (0, 1), got {self.kl_smoothing}")


def reward_term(reward_model, relaxed: Relaxed, attention_mask: torch.Tensor) -> torch.Tensor:
    """R(p) (b,): the reward model on soft one-hots (p @ E) or on embeddings when the relaxation
    provides them."""
    if relaxed.embeds is not None:
        return reward_model.score_embeds(relaxed.embeds, attention_mask=attention_mask)
    return reward_model.score_probs(relaxed.probs, attention_mask=attention_mask)


def soft_log_likelihood(generator, probs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """PPLM-style soft log-likelihood, mean over predicted positions -> (b,).

    ``L(p) = 1/n sum_{i>=1} sum_v p[i, v] log q_i(v | p[:i])`` where q_i is the generator's
    prediction from the relaxed prefix fed as ``inputs_embeds = p @ W``; n counts the non-padded
    positions after BOS. The generator's weights are not trained but the graph is kept, so the
    gradient reaches every p[j], j < i, as well as p[i].
    """
    w = generator.get_input_embeddings().weight
    embeds = probs.to(w.dtype) @ w  # (b,t,d)
    logits = generator(inputs_embeds=embeds, attention_mask=attention_mask).logits  # (b,t,v)
    return _soft_loglik_from_logits(logits, probs, attention_mask)


def _soft_loglik_from_logits(logits, probs, attention_mask) -> torch.Tensor:
    """logits (b,t,v) of a pass over the relaxed sequence -> mean soft log-likelihood (b,)."""
    logq = torch.log_softmax(logits[:, :-1].to(probs.dtype), dim=-1)  # (b,t-1,v)
    mask = attention_mask[:, 1:].to(probs.dtype)
    per_pos = (probs[:, 1:] * logq).sum(-1) * mask
    return per_pos.sum(-1) / mask.sum(-1).clamp(min=1)


def discrete_log_likelihood(generator, ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, total) log-likelihood of token ids, each (b,): the discrete counterpart of
    `soft_log_likelihood`, computed through ``input_ids``."""
    logits = generator(input_ids=ids, attention_mask=attention_mask).logits  # (b,t,v)
    return _discrete_loglik_from_logits(logits, ids, attention_mask)


def _discrete_loglik_from_logits(logits, ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (b,t,v) of a pass over ids -> (mean, total) log-likelihood, each (b,)."""
    total = sequence_log_probs(logits, ids, attention_mask).sum(-1)
    return total / attention_mask[:, 1:].to(total.dtype).sum(-1).clamp(min=1), total


def smoothed_start(start_onehot: torch.Tensor, allowed: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(1 - a) one_hot(start) + a uniform(allowed) -> (b,t,v); strictly positive on allowed tokens.

    allowed: (v,) or broadcastable to (b,t,v) (one token set per position)."""
    uniform = allowed.to(start_onehot.dtype) / allowed.sum(-1, keepdim=True)
    return (1.0 - smoothing) * start_onehot + smoothing * uniform


def kl_to_start(probs: torch.Tensor, start: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Mean over free positions of KL(p_i || s_i) -> (b,); 0 where p_i = s_i."""
    logp = torch.log(probs.clamp(min=torch.finfo(probs.dtype).tiny))
    logs = torch.log(start.clamp(min=torch.finfo(probs.dtype).tiny))
    kl = (probs * (logp - logs)).sum(-1)
    f = free.to(probs.dtype)
    return (kl * f).sum(-1) / f.sum(-1).clamp(min=1)


def mean_entropy(probs: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of the free positions -> (b,); 0 at a vertex."""
    logp = torch.log(probs.clamp(min=torch.finfo(probs.dtype).tiny))
    h = -(probs * logp).sum(-1)
    f = free.to(probs.dtype)
    return (h * f).sum(-1) / f.sum(-1).clamp(min=1)


@dataclass
class Terms:
    """Per-row values of the objective's parts, all (b,)."""

    reward: torch.Tensor
    loglik: torch.Tensor  # mean per-token log-likelihood
    kl: torch.Tensor
    entropy: torch.Tensor
    loglik_ref: torch.Tensor | None = None  # the inputs' mean log-likelihood (`ObjectiveWeights.lm_floor`)

    def total(self, w: ObjectiveWeights, frac: float) -> torch.Tensor:
        j = self.reward + w.lm_weight * lm_part(self.loglik, self.loglik_ref, w)
        j = j - w.kl_weight * self.kl
        return j - (w.entropy_weight * frac) * self.entropy


def lm_part(loglik, loglik_ref, w: ObjectiveWeights):
    """The likelihood term before its weight: the mean log-likelihood itself, or with ``w.lm_floor``
    min(0, loglik - loglik_ref) (tensors or arrays, (b,))."""
    if not w.lm_floor:
        return loglik
    if loglik_ref is None:
        raise ValueError("ObjectiveWeights(lm_floor=True) needs the inputs' log-likelihood (loglik_ref)")
    d = loglik - loglik_ref
    return d.clamp(max=0.0) if isinstance(d, torch.Tensor) else np.minimum(d, 0.0)


def shared_backbone(reward_model, generator) -> bool:
    """True when the reward model's transformer has exactly the generator's weights and reads the
    plain token embeddings (a reward model that is a probe on the frozen generator, e.g.
    ``train_from_store(..., probe=True)``, annotated or not: `RewardModel.reads_plain_embeddings`):
    then one forward pass gives both the generator's predictions and the reward
    (`RewardModel.score_from_hidden`)."""
    rt, gt = getattr(reward_model, "transformer", None), getattr(generator, "transformer", None)
    if (rt is None or gt is None or not hasattr(generator, "lm_head")
            or not getattr(reward_model, "reads_plain_embeddings", False)):
        return False
    if rt is gt:
        return True
    from domains import FUSED_ACTIVATIONS

    act = [getattr(m.config, "activation_function", None) for m in (rt, gt)]
    if len({FUSED_ACTIVATIONS.get(a, a) for a in act}) != 1:  # "gelu_new" is the fused tanh GELU unfused
        return False
    a, b = rt.state_dict(), gt.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _joint(reward_model, generator, attention_mask, ids=None, probs=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward (b,), logits (b,t,v)) from one pass of the shared transformer over token ids (b,t)
    or distributions probs (b,t,v) (fed as probs @ E)."""
    embeds = None
    if probs is not None:
        wte = generator.get_input_embeddings().weight
        embeds = probs.to(wte.dtype) @ wte
    h = generator.transformer(input_ids=ids, inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
    return reward_model.score_from_hidden(h, attention_mask, ids=ids, probs=probs), generator.lm_head(h)


def relaxed_terms(reward_model, generator, relaxed: Relaxed, attention_mask, start, free, w: ObjectiveWeights,
                  shared: bool = False, loglik_ref: torch.Tensor | None = None) -> Terms:
    """The objective's parts at a relaxed point (differentiable). shared: the models share their
    transformer (`shared_backbone`), so reward and log-likelihood come from one pass when both read
    the same soft input (relaxations without their own embeddings). loglik_ref (b,): the inputs'
    mean log-likelihood, needed with ``w.lm_floor``."""
    zero = torch.zeros(relaxed.probs.shape[0], dtype=relaxed.probs.dtype, device=relaxed.probs.device)
    batches = length_batches(attention_mask)
    if batches is None:
        reward, loglik = _network_terms(reward_model, generator, relaxed, attention_mask, w, shared)
    else:  # the padding cut off, as in `score_sequences` (it influences no output, so no gradient either)
        parts = [_network_terms(reward_model, generator, _cut(relaxed, rows, n), attention_mask[rows, :n], w, shared)
                 for rows, n in batches]
        inverse = torch.argsort(torch.cat([rows for rows, _ in batches]))
        reward, loglik = (torch.cat(x)[inverse] for x in zip(*parts))
    kl = kl_to_start(relaxed.probs, start, free) if w.kl_weight else zero
    ent = mean_entropy(relaxed.probs, free) if w.entropy_weight else zero
    return Terms(reward=reward.to(zero.dtype), loglik=loglik, kl=kl, entropy=ent, loglik_ref=loglik_ref)


LENGTH_GROUP = 8  # rows of one length scored together, unpadded, when at least this many share it
LENGTH_CHUNK = 16  # the other rows: by length, in chunks of this many, each cut to its longest row


def length_batches(attention_mask: torch.Tensor) -> list[tuple[torch.Tensor, int]] | None:
    """How to score rows of a right-padded batch without computing its padding: [(row indices,
    length to cut them to)] covering every row once. Rows of one length go together when at least
    `LENGTH_GROUP` share it (no padding at all: attention takes its causal fast path); the others,
    sorted by length, in chunks of `LENGTH_CHUNK`, each cut to its longest row. None when there is
    nothing to cut (every row at full length) or the mask is not right padding (ones, then zeros,
    in every row): then the batch is scored as it is."""
    t = attention_mask.shape[1]
    lengths = attention_mask.sum(1)
    if bool((lengths == t).all()) or not bool((attention_mask.bool() == (torch.arange(t) < lengths[:, None])).all()):
        return None
    out, rest = [], []
    for length in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == length).flatten()
        if len(rows) >= LENGTH_GROUP:
            out.append((rows, int(length)))
        else:
            rest.append(rows)
    if rest:
        rows = torch.cat(rest)
        rows = rows[torch.argsort(lengths[rows], stable=True)]
        out += [(rows[i:i + LENGTH_CHUNK], int(lengths[rows[i:i + LENGTH_CHUNK]].max()))
                for i in range(0, len(rows), LENGTH_CHUNK)]
    return out


def _network_terms(reward_model, generator, relaxed: Relaxed, attention_mask, w: ObjectiveWeights,
                   shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward (b,), mean soft log-likelihood (b,); zeros without an lm_weight) of one batch as it is."""
    if shared and w.lm_weight and relaxed.embeds is None:
        reward, logits = _joint(reward_model, generator, attention_mask, probs=relaxed.probs)
        return reward, _soft_loglik_from_logits(logits, relaxed.probs, attention_mask)
    reward = reward_term(reward_model, relaxed, attention_mask)
    if not w.lm_weight:
        return reward, torch.zeros(relaxed.probs.shape[0], dtype=relaxed.probs.dtype, device=relaxed.probs.device)
    return reward, soft_log_likelihood(generator, relaxed.probs, attention_mask)


def _cut(relaxed: Relaxed, rows: torch.Tensor, n: int) -> Relaxed:
    """The rows `rows` of a relaxed batch, cut to their first n positions."""
    return Relaxed(probs=relaxed.probs[rows, :n], embeds=None if relaxed.embeds is None else relaxed.embeds[rows, :n])


@torch.no_grad()
def score_sequences(reward_model, generator, ids, attention_mask, shared: bool | None = None):
    """Exact scores of token ids (b,t) -> (reward (b,), mean log-lik (b,), total log-lik (b,)).

    shared: the models share their transformer (None: check with `shared_backbone`); then one
    forward pass serves both, else the reward model and the generator run separately. A
    right-padded batch is scored in `length_batches` (the same scores, without the padding's cost)."""
    if shared is None:
        shared = shared_backbone(reward_model, generator)
    batches = length_batches(attention_mask)
    if batches is None:
        return _score_padded(reward_model, generator, ids, attention_mask, shared)
    out = None
    for rows, length in batches:
        part = _score_padded(reward_model, generator, ids[rows, :length], attention_mask[rows, :length], shared)
        if out is None:
            out = [torch.empty(ids.shape[0], dtype=x.dtype) for x in part]
        for o, x in zip(out, part):
            o[rows] = x
    return tuple(out)


def _score_padded(reward_model, generator, ids, attention_mask, shared: bool):
    """`score_sequences` of one batch as it is."""
    if shared:
        reward, logits = _joint(reward_model, generator, attention_mask, ids=ids)
        mean_ll, total_ll = _discrete_loglik_from_logits(logits, ids, attention_mask)
    else:
        reward = reward_model.score(ids, attention_mask=attention_mask)
        mean_ll, total_ll = discrete_log_likelihood(generator, ids, attention_mask)
    return reward, mean_ll, total_ll


@torch.no_grad()
def discrete_terms(reward_model, generator, ids, attention_mask, start, free, w: ObjectiveWeights,
                   shared: bool = False, loglik_ref: torch.Tensor | None = None) -> tuple[Terms, torch.Tensor]:
    """The objective's parts at token ids, scored exactly (``score(ids)``, ``input_ids``), and the
    total log-likelihood (b,). shared: one pass of the shared transformer (`shared_backbone`).
    loglik_ref (b,): the inputs' mean log-likelihood, needed with ``w.lm_floor``."""
    dtype = start.dtype
    reward, mean_ll, total_ll = score_sequences(reward_model, generator, ids, attention_mask, shared)
    reward = reward.to(dtype)
    onehot = torch.nn.functional.one_hot(ids, start.shape[-1]).to(dtype)
    zero = torch.zeros_like(reward)
    kl = kl_to_start(onehot, start, free) if w.kl_weight else zero
    return Terms(reward=reward, loglik=mean_ll.to(dtype), kl=kl, entropy=zero, loglik_ref=loglik_ref), total_ll.to(dtype)
