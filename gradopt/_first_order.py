"""First-order estimates of single-token edits, and how well they rank the exact ones.

Legend: b batch, t time, v vocab, n edits.

At token ids x with one-hot X, the gradient g = dJ/dX (b,t,v) of the objective's discrete-consistent
part (reward + lm_weight * mean log-lik - kl_weight * KL; the entropy term is 0 at every vertex)
gives the first-order estimate of the change of J when position i takes token v:

    ΔJ̃[i, v] = g[i, v] - g[i, x_i]       (exact when J is linear in X)

The exact-swap polish (`_polish`) and the gradient-informed samplers (`_gwg`) rank or sample edits
by it; `rank_agreement` measures how well it orders the exact changes (Spearman), which is what
those methods rely on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ._ascent_batch import _masks, pad_batch
from ._models import frozen_models
from ._objective import (ObjectiveWeights, discrete_terms, relaxed_terms, score_sequences, shared_backbone,
                         smoothed_start)
from ._relax import Relaxed


class Sites(NamedTuple):
    """Where and to what a batch may be edited."""

    ids: torch.Tensor  # (b,t) right-padded ids
    mask: torch.Tensor  # (b,t) attention mask
    free: torch.Tensor  # (b,t) True = the position may change
    allowed: torch.Tensor  # (v,) shared by all positions or (b,t,v) per position; never a special token
    start: torch.Tensor  # (b,t,v) the smoothed inputs (the KL term's anchor)
    loglik_ref: torch.Tensor | None = None  # (b,) the inputs' mean log-lik (`ObjectiveWeights.lm_floor`)

    def ref(self, rows) -> torch.Tensor | None:
        """`loglik_ref` of `rows` (None when the objective has no likelihood floor)."""
        return None if self.loglik_ref is None else self.loglik_ref[rows]


def edit_sites(ids, reward_model, generator, weights: ObjectiveWeights, freeze=None, allowed=None,
               tokenizer=None) -> Sites:
    """Pad `ids` (token-id lists or a right-padded (b,t) tensor) and build the engine's masks.

    As in `optimize`: BOS/EOS/PAD and padded positions are frozen, so is `freeze` (b,t) (True =
    keep); a free position takes the non-special tokens (BOS/EOS/PAD/UNK excluded) ANDed with
    `allowed` (b,t,v) when given (see `allowed_per_position`)."""
    from ._models import special_ids, vocab_check

    specials = special_ids(generator, tokenizer)
    ids, mask = pad_batch(ids, specials["pad"])
    v = reward_model.embedding_matrix().shape[0]
    vocab_check(generator, v)
    if allowed is not None and allowed.dim() == 1:  # one token set for every position
        allowed = allowed[None, None].expand(*ids.shape, v)
    allowed, frozen = _masks(ids, mask, specials, v, freeze, allowed, tokenizer)
    dtype = reward_model.embedding_matrix().dtype
    start = smoothed_start(F.one_hot(ids, v).to(dtype), allowed, weights.kl_smoothing)
    ref = None
    if weights.lm_floor:
        with frozen_models(reward_model, generator):
            ref = score_sequences(reward_model, generator, ids, mask)[1].to(dtype)
    return Sites(ids=ids, mask=mask, free=~frozen, allowed=allowed, start=start, loglik_ref=ref)


def objective_gradient(ids, reward_model, generator, sites: Sites, weights: ObjectiveWeights,
                       shared: bool | None = None) -> torch.Tensor:
    """dJ/d one-hot at `ids` (b,t) -> (b,t,v), J = reward + lm_weight * mean log-lik - kl_weight * KL
    (the parts whose relaxed value equals the discrete one at a vertex). Non-finite entries -> 0."""
    if shared is None:
        shared = shared_backbone(reward_model, generator)
    x = F.one_hot(ids, sites.start.shape[-1]).to(sites.start.dtype).requires_grad_(True)
    with torch.enable_grad():
        terms = relaxed_terms(reward_model, generator, Relaxed(probs=x), sites.mask, sites.start, sites.free,
                              weights, shared, loglik_ref=sites.loglik_ref)
        total = terms.total(weights, 0.0)
        (g,) = torch.autograd.grad(torch.where(torch.isfinite(total), total, 0.0).sum(), x)
    return torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)


def deltas_from_gradient(grad: torch.Tensor, ids: torch.Tensor, free: torch.Tensor,
                         allowed: torch.Tensor) -> torch.Tensor:
    """``grad[i, v] - grad[i, x_i]`` (b,t,v); -inf at frozen positions and disallowed tokens.

    The current token keeps 0 at a free position (where it is allowed), so a softmax over a row may
    or may not include staying: the caller decides."""
    delta = grad - grad.gather(-1, ids[..., None])
    ok = allowed.expand_as(delta) & free[..., None]
    return delta.masked_fill(~ok, -torch.inf)


def first_order_deltas(ids, reward_model, generator, weights: ObjectiveWeights = ObjectiveWeights(),
                       freeze=None, allowed=None, *, tokenizer=None) -> torch.Tensor:
    """The first-order estimate of ΔJ for every single-token substitution -> (b,t,v).

    ids: token-id lists or a right-padded (b,t) tensor; freeze (b,t) / allowed (b,t,v) as in
    `optimize`. Entry [r, i, v] estimates J(x with x_i = v) - J(x) by ``g[i, v] - g[i, x_i]``;
    frozen positions (BOS/EOS/PAD included) and disallowed or special tokens are -inf."""
    sites = edit_sites(ids, reward_model, generator, weights, freeze, allowed, tokenizer)
    with frozen_models(reward_model, generator):
        g = objective_gradient(sites.ids, reward_model, generator, sites, weights)
    return deltas_from_gradient(g, sites.ids, sites.free, sites.allowed)


@torch.no_grad()
def exact_deltas(sites: Sites, reward_model, generator, weights: ObjectiveWeights, edits: torch.Tensor,
                 batch_size: int = 256) -> torch.Tensor:
    """Exact J(x with x_i = v) - J(x) of edits (n,3) = (row, position, token) -> (n,), scored in
    batches of `batch_size` sequences through the objective's discrete scoring."""
    shared = shared_backbone(reward_model, generator)
    rows_all = torch.arange(sites.ids.shape[0])

    def score(ids, rows):
        terms, _ = discrete_terms(reward_model, generator, ids, sites.mask[rows], sites.start[rows],
                                  sites.free[rows], weights, shared, loglik_ref=sites.ref(rows))
        return terms.total(weights, 1.0)

    base = score(sites.ids, rows_all)
    out = []
    for lo in range(0, len(edits), batch_size):
        e = edits[lo:lo + batch_size]
        cand = sites.ids[e[:, 0]].clone()
        cand[torch.arange(len(e)), e[:, 1]] = e[:, 2]
        out.append(score(cand, e[:, 0]) - base[e[:, 0]])
    return torch.cat(out) if out else base.new_zeros(0)


class Agreement(NamedTuple):
    """How well the first-order estimate ranks the exact changes, per row."""

    spearman: np.ndarray  # (b,) rank correlation per row (nan when a row has < 2 edits)
    edits: list[np.ndarray]  # per row (n, 2): (position, token) of the edits scored
    first_order: list[np.ndarray]  # per row (n,) estimated ΔJ
    exact: list[np.ndarray]  # per row (n,) exact ΔJ


def rank_agreement(ids, reward_model, generator, weights: ObjectiveWeights = ObjectiveWeights(), freeze=None,
                   allowed=None, *, max_exact: int | None = 512, seed: int = 0, tokenizer=None) -> Agreement:
    """Spearman correlation, per row, between first-order and exact ΔJ over single-token edits.

    Every allowed substitution at every free position counts (the current token excluded); a row
    with more than `max_exact` of them scores a uniform random subset of that size (`seed`), so
    the cost is at most ``b * max_exact`` exact evaluations (None = all)."""
    from scipy.stats import spearmanr

    if max_exact is not None and max_exact < 2:
        raise ValueError(f"max_exact must be >= 2 (edits scored exactly per row) or None, got {max_exact}")
    sites = edit_sites(ids, reward_model, generator, weights, freeze, allowed, tokenizer)
    with frozen_models(reward_model, generator):
        g = objective_gradient(sites.ids, reward_model, generator, sites, weights)
        est = deltas_from_gradient(g, sites.ids, sites.free, sites.allowed)
        est = est.scatter(-1, sites.ids[..., None], -torch.inf)  # single edits change a token
        rng = torch.Generator().manual_seed(seed)
        picked = []
        for r in range(est.shape[0]):
            cand = torch.isfinite(est[r]).nonzero()  # (n,2) position, token
            if max_exact is not None and len(cand) > max_exact:
                cand = cand[torch.randperm(len(cand), generator=rng)[:max_exact]]
            picked.append(torch.cat([torch.full((len(cand), 1), r), cand], 1))
        edits = torch.cat(picked)
        exact = exact_deltas(sites, reward_model, generator, weights, edits)
    first = est[edits[:, 0], edits[:, 1], edits[:, 2]]
    out_e, out_f, out_x, rho = [], [], [], []
    for r in range(est.shape[0]):
        sel = edits[:, 0] == r
        f, x = first[sel].numpy(), exact[sel].numpy()
        out_e.append(edits[sel, 1:].numpy())
        out_f.append(f)
        out_x.append(x)
        rho.append(float(spearmanr(f, x).statistic) if len(f) >= 2 else float("nan"))
    return Agreement(spearman=np.array(rho), edits=out_e, first_order=out_f, exact=out_x)
