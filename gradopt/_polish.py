"""Exact-swap polish (GCG-style): the last mile of the ascent is discrete and verified.

Legend: b batch, t time, v vocab, k top-k, n candidates per row.

Each round: the gradient of the objective with respect to the one-hot input, ``g = dJ/dx`` (b,t,v),
ranks single-token swaps by their first-order gain ``g[i, v] - g[i, x_i]``; each row takes `n`
candidates, every candidate is scored exactly, and the best one replaces the row's sequence if it
beats it (Zou et al. 2023). Which candidates (`PolishConfig.pick`):

ranked    the row's n best swaps by first-order gain over all its free positions together, none
          already scored at the row's current sequence (a row that did not move tries its next-best
          swaps, not the same ones again; its memory is cleared when it moves)
uniform   n draws of a uniformly random free position and one of its top-k tokens (GCG as Zou et
          al.): with few tokens per position (pitch edits allow ~14 note letters, k = 8) the
          gradient hardly chooses, and the round is close to random single edits

With ``combine = m > 1``
the round also merges the row's best improving swaps at up to m distinct positions into one
candidate and scores it exactly (one more sequence per row): when the merged sequence beats the
best single swap it is kept instead, so a round can make several verified edits. With
``backoff=True`` a merge that does not beat the best single swap is halved (its first-ranked half
of the swaps, scored exactly, one more sequence per such row) until it wins or two swaps are left:
swaps that each help can hurt together, and the whole merge then fails where a part of it would not.

``proposal="gwg"`` or ``"dlp"`` replaces the swap rounds by as many steps of a gradient-informed
sampler (`_gwg`: Gibbs-with-gradients, discrete Langevin) with the settings of `sampler`, each step
one proposal per row scored exactly; the engine runs it (`_gwg.run_sampler`) with the same
gradient, exact score and veto.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import torch
import torch.nn.functional as F

from ._edit_problem import EditProblem
from ._first_order import deltas_from_gradient
from ._gwg import GWGConfig


@dataclass(frozen=True, kw_only=True)
class PolishConfig:
    """How many exact-swap rounds to run after the continuous ascent."""

    rounds: int = 4  # swap rounds; 0 = off
    top_k: int = 8  # pick "uniform": tokens proposed per position by the gradient
    candidates: int = 16  # candidates scored exactly per row and round
    pick: str = "ranked"  # "ranked" (the best untried swaps of the whole row) | "uniform" (random position, top-k token)
    combine: int = 16  # merge up to this many improving swaps per round into one more candidate; 1 = off
    backoff: bool = False  # a failed merge is halved and re-scored until it wins or has 2 swaps
    proposal: str = "gcg"  # "gcg" (the swap rounds above) | "gwg" | "dlp" (`rounds` sampler steps, `_gwg`)
    sampler: GWGConfig = field(default_factory=GWGConfig)  # gwg/dlp: sites, temperature, step size, acceptance

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.top_k <= 0 or self.candidates <= 0 or self.combine <= 0:
            raise ValueError(f"rounds must be >= 0 and top_k, candidates, combine > 0: {self}")
        if self.pick not in ("ranked", "uniform"):
            raise ValueError(f"PolishConfig.pick must be 'ranked' or 'uniform', got {self.pick!r}")
        if self.proposal not in ("gcg", "gwg", "dlp"):
            raise ValueError(f"PolishConfig.proposal must be 'gcg', 'gwg' or 'dlp', got {self.proposal!r}")
        if not isinstance(self.sampler, GWGConfig):
            raise ValueError(f"PolishConfig.sampler must be a GWGConfig, got {type(self.sampler).__name__}")

    def sampler_config(self) -> GWGConfig:
        """The sampler run by proposal "gwg"/"dlp": `sampler` with `rounds` steps and this proposal
        (its own `steps`, `proposal` and `seed` are for `gibbs_with_gradients`; the engine seeds it)."""
        return replace(self.sampler, steps=self.rounds, proposal=self.proposal)


def propose_swaps(
    grad: torch.Tensor, ids: torch.Tensor, free: torch.Tensor, allowed: torch.Tensor, top_k: int
) -> torch.Tensor:
    """Top-k tokens per position by first-order gain -> (b,t,k) long; the current token excluded.

    allowed: (v,) shared by all positions or broadcastable to (b,t,v). Every proposal is an
    allowed token: a position with fewer than k allowed alternatives repeats its best ones in
    order, and a position with none (or a frozen one) proposes its current token (a no-op swap).
    k = min(top_k, the most alternatives any free position has).
    """
    gain = grad - grad.gather(-1, ids[..., None])
    gain = gain.masked_fill(~allowed, -torch.inf)
    gain = gain.scatter(-1, ids[..., None], -torch.inf)
    gain = gain.masked_fill(~free[..., None], -torch.inf)
    n_alt = (gain > -torch.inf).sum(-1, keepdim=True)  # (b,t,1) allowed alternatives (nan counts as none)
    top = gain.topk(max(1, min(top_k, int(n_alt.max()))), dim=-1).indices  # finite gains come first
    slot = torch.arange(top.shape[-1]) % n_alt.clamp(min=1)  # (b,t,k) cycle over the valid slots
    return torch.where(n_alt > 0, top.gather(-1, slot), ids[..., None])


def sample_candidates(
    ids: torch.Tensor, free: torch.Tensor, proposals: torch.Tensor, n: int, gens: list[torch.Generator]
) -> torch.Tensor:
    """`n` single-swap candidates per row -> (b, n, t); rows with no free position repeat themselves.

    Uses one torch.Generator per row so a row's candidates do not depend on the rest of the batch.
    """
    b, t = ids.shape
    out = ids[:, None, :].repeat(1, n, 1)
    for r in range(b):
        pos = free[r].nonzero()[:, 0]
        if len(pos) == 0:
            continue
        where = pos[torch.randint(len(pos), (n,), generator=gens[r])]
        which = torch.randint(proposals.shape[-1], (n,), generator=gens[r])
        out[r, torch.arange(n), where] = proposals[r, where, which]
    return out


def ranked_candidates(grad: torch.Tensor, ids: torch.Tensor, free: torch.Tensor, allowed: torch.Tensor,
                      tried: torch.Tensor, n: int) -> torch.Tensor:
    """Each row's `n` best single swaps by first-order gain ``grad[i, v] - grad[i, x_i]`` over all its
    free positions and allowed tokens, skipping the current tokens and the swaps marked in `tried`
    (b,t,v) -> (b, n, t); a row with fewer than n such swaps fills the rest with itself (no-op)."""
    b, t, v = grad.shape
    gain = deltas_from_gradient(grad, ids, free, allowed)
    gain = gain.scatter(-1, ids[..., None], -torch.inf).masked_fill(tried, -torch.inf).reshape(b, t * v)
    top = gain.topk(min(n, t * v), dim=-1)  # (b,n')
    out = ids[:, None, :].repeat(1, n, 1)
    for r, j in (top.values > -torch.inf).nonzero().tolist():  # nan gains are never picked
        pos, tok = divmod(int(top.indices[r, j]), v)
        out[r, j, pos] = tok
    return out


def polish(problem: EditProblem, cfg: PolishConfig, gens: list[torch.Generator]
           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Run `cfg.rounds` swap rounds on `problem` -> (ids (b,t), exact objective (b,), sequences scored).

    `problem.grad_fn` ranks the swaps, `problem.score_fn` scores candidates exactly and
    `problem.accept_fn` may veto them (validity). Rows whose value is not finite are left alone;
    the problem's tensors are not modified.
    """
    ids, value = problem.ids.clone(), problem.value.clone()
    free, allowed, score_fn, accept_fn = problem.free, problem.allowed, problem.score_fn, problem.accept_fn
    evals = 0
    active = torch.isfinite(value)
    tried = torch.zeros(*ids.shape, allowed.shape[-1], dtype=torch.bool)  # (b,t,v) swaps scored at ids
    for _ in range(cfg.rounds):
        if not bool(active.any()):
            break
        grad = problem.grad_fn(ids)
        if cfg.pick == "ranked":
            cands = ranked_candidates(grad, ids, free & active[:, None], allowed, tried, cfg.candidates)
            tried |= F.one_hot(cands, tried.shape[-1]).any(1) & (cands != ids[:, None, :]).any(1)[..., None]
        else:
            proposals = propose_swaps(grad, ids, free & active[:, None], allowed, cfg.top_k)
            cands = sample_candidates(ids, free & active[:, None], proposals, cfg.candidates, gens)
        before = ids.clone()
        b, n, t = cands.shape
        flat = cands.reshape(b * n, t)
        rows = torch.arange(b).repeat_interleave(n)
        scores = score_fn(flat, rows).reshape(b, n)
        evals += b * n
        scores = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -torch.inf))
        order = scores.argsort(dim=-1, descending=True)
        swaps = _improving_swaps(ids, cands, scores, order, value, active, cfg.combine) if cfg.combine > 1 else {}
        merged, evals_m = _score_merges(ids, swaps, scores, order, value, score_fn, cfg.backoff)
        evals += evals_m
        for r in range(b):
            if not bool(active[r]):
                continue
            if r in merged and merged[r][1] > value[r] and merged[r][1] > scores[r, order[r, 0]]:
                if accept_fn is None or bool(accept_fn(merged[r][0][None], torch.tensor([r]))[0]):
                    ids[r], value[r] = merged[r]
                    continue
            for j in order[r].tolist():
                if not scores[r, j] > value[r]:
                    break
                if accept_fn is None or bool(accept_fn(cands[r, j][None], torch.tensor([r]))[0]):
                    ids[r], value[r] = cands[r, j], scores[r, j]
                    break
        tried &= (ids == before).all(-1)[:, None, None]  # a row that moved starts a fresh memory
    return ids, value, evals


def _improving_swaps(ids, cands, scores, order, value, active, m: int) -> dict[int, list[tuple[int, int]]]:
    """Per active row with at least two improving swaps at distinct positions: its best (up to m)
    of them, best first -> {row: [(position, token), ...]}."""
    out = {}
    for r in range(ids.shape[0]):
        if not bool(active[r]):
            continue
        used: list[tuple[int, int]] = []
        for j in order[r].tolist():
            if not scores[r, j] > value[r] or len(used) == m:
                break
            pos = (cands[r, j] != ids[r]).nonzero()[:, 0].tolist()
            if len(pos) != 1 or any(p == pos[0] for p, _ in used):
                continue
            used.append((pos[0], int(cands[r, j, pos[0]])))
        if len(used) > 1:
            out[r] = used
    return out


def _score_merges(ids, swaps, scores, order, value, score_fn, backoff: bool) -> tuple[dict, int]:
    """Each row's merge of its `swaps` scored exactly -> ({row: (ids (t,), score)}, sequences scored).
    A row's entry is its merge that beats both its value and its best single swap; without
    `backoff` it is the whole merge or nothing, with it the merge is halved (first-ranked half)
    and re-scored until it wins or fewer than two swaps remain. Non-finite scores never win."""
    out, evals = {}, 0
    n_of = {r: len(s) for r, s in swaps.items()}
    while n_of:
        rows = sorted(n_of)
        seqs = []
        for r in rows:
            seq = ids[r].clone()
            for pos, tok in swaps[r][: n_of[r]]:
                seq[pos] = tok
            seqs.append(seq)
        seqs_t = torch.stack(seqs)
        got = score_fn(seqs_t, torch.tensor(rows))
        evals += len(rows)
        nxt = {}
        for i, r in enumerate(rows):
            bar = max(float(value[r]), float(scores[r, order[r, 0]]))
            if torch.isfinite(got[i]) and float(got[i]) > bar:
                out[r] = (seqs_t[i], got[i])
            elif backoff and n_of[r] // 2 >= 2:
                nxt[r] = n_of[r] // 2
        n_of = nxt
    return out, evals
