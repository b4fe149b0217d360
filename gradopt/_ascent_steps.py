"""The ascent's step loop and row bookkeeping (`_ascent`): `ascend` moves the relaxation by
gradient steps and every `check_every` steps projects it to tokens, which `BestRows` scores exactly and
keeps per row when it improves and is accepted; `polish_rows` then runs exact swaps or a sampler
from each row's best sequence.

Legend: B rows (b inputs times r restarts), t time, v vocab, d embedding width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._ascent_batch import AscentBatch
from ._edit_problem import EditProblem
from ._gwg import run_sampler
from ._polish import polish
from ._relax import Relaxed

if TYPE_CHECKING:
    from ._ascent import AscentConfig, _Scorer


class BestRows:
    """Each row's best verified discrete sequence (ids, val; -inf = nothing accepted yet), its gap,
    trajectory and status, and whether its ascent is still active. Restart 0 holds the input."""

    def __init__(self, batch: AscentBatch, scorer: _Scorer, cfg: AscentConfig, before: dict) -> None:
        B, r = batch.B, batch.r
        self.batch, self.scorer, self.relaxation = batch, scorer, cfg.relaxation
        self.needs_valid = [cfg.require_valid and before["valid"][k // r] is not False for k in range(B)]
        self.active = torch.ones(B, dtype=torch.bool)
        self.status = ["ok"] * B
        self.ids = batch.ids_start.clone()
        self.val = torch.full((B,), -torch.inf, dtype=batch.dtype)
        val0 = before["val"]
        self.val[torch.arange(0, B, r)] = torch.where(torch.isfinite(val0), val0, -torch.inf)
        self.gap = torch.full((B,), torch.nan, dtype=batch.dtype)
        self.traj: list[list[dict]] = [[] for _ in range(B)]

    def project(self, p) -> torch.Tensor:
        """(B,t) the tokens of relaxed point `p` (frozen positions keep the start)."""
        bt = self.batch
        return torch.where(bt.free, self.relaxation.discretize(p.detach(), bt.ctx), bt.ids_start)

    def check(self, step: int, p, soft: torch.Tensor, record_gap: bool = True) -> None:
        """Project `p`, score it exactly, record each active row and keep what improves and is accepted."""
        bt, sc = self.batch, self.scorer
        ids = self.project(p)
        terms, total_ll, val = sc.exact(ids, torch.arange(bt.B))
        sc.count(bt.B)
        texts = sc.decode(ids, bt.lengths)
        g = soft - val
        for k in range(bt.B):
            if not bool(self.active[k]):
                continue
            if record_gap:
                self.gap[k] = g[k]
            self.traj[k].append({"step": step, "soft": float(soft[k]), "discrete": float(val[k]),
                                 "reward": float(terms.reward[k]), "loglik": float(total_ll[k]), "gap": float(g[k])})
            if not (torch.isfinite(val[k]) and val[k] > self.val[k]):
                continue
            if int((ids[k] != bt.ids_in[k]).sum()) > bt.budget[k]:
                continue
            # Validate only sequences that would be kept (the check can be slow, e.g. a parse).
            if self.needs_valid[k] and sc.is_valid(texts[k]) is False:
                continue
            self.ids[k], self.val[k] = ids[k], val[k]

    def measure_gap(self, p, soft: torch.Tensor) -> None:
        """gap = soft objective at `p` minus the exact objective of its projection (active rows)."""
        rows = self.active.nonzero()[:, 0]
        self.gap[rows] = soft[rows] - self.scorer.exact(self.project(p)[rows], rows)[2]
        self.scorer.count(len(rows))

    def accept(self, cand: torch.Tensor, rows) -> torch.Tensor:
        """(n,) which candidates (n,t) for one row keep to its edit budget and, if needed, validate."""
        bt, k = self.batch, int(rows[0])
        ok = (cand != bt.ids_in[k]).sum(-1) <= bt.budget[k]
        if not self.needs_valid[k] or self.scorer.validate is None:
            return ok
        texts = self.scorer.decode(cand, [bt.lengths[k]] * len(rows))
        return ok & torch.tensor([bool(self.scorer.is_valid(x)) for x in texts])


def relaxed_total(batch: AscentBatch, scorer: _Scorer, cfg: AscentConfig, param, frac: float) -> torch.Tensor:
    """J (B,) at relaxation parameter `param` (frozen positions keep their start token), with the
    entropy weight at `frac` of its ramp."""
    free = batch.free[..., None]
    rel = cfg.relaxation.relax(param, batch.ctx, frac)
    probs = torch.where(free, rel.probs, batch.onehot0)
    embeds = None if rel.embeds is None else torch.where(free, rel.embeds, batch.fixed_embeds)
    return scorer.relaxed(Relaxed(probs=probs, embeds=embeds)).total(cfg.objective, frac)


def objective_grad(batch: AscentBatch, scorer: _Scorer, cfg: AscentConfig, param, frac: float):
    """One continuous step's work: J (B,) at `param` and the gradient of -sum J over the finite
    rows with respect to it, (p, J, grad), p the leaf the gradient belongs to. This forward and
    backward pass through the reward model and the generator is the ascent's cost per step."""
    p = param.detach().requires_grad_(True)
    total = relaxed_total(batch, scorer, cfg, p, frac)
    (grad,) = torch.autograd.grad(-torch.where(torch.isfinite(total), total, 0.0).sum(), p)
    return p, total, grad


def ascend(batch: AscentBatch, scorer: _Scorer, best: BestRows, cfg: AscentConfig, progress: bool) -> None:
    """The gradient steps, checking every `cfg.check_every` steps, then a last check at the end point."""
    B, w, free, ctx = batch.B, cfg.objective, batch.free, batch.ctx
    param = cfg.relaxation.init(batch.onehot0, ctx)
    opt_state = cfg.optimizer.init(param)
    active = best.active
    for step in tqdm(range(cfg.steps), desc="ascent", disable=not progress, leave=False):
        frac = step / max(cfg.steps - 1, 1)
        p, total, grad = objective_grad(batch, scorer, cfg, param, frac)
        scorer.count(B, B if w.lm_weight else 0)
        finite = torch.isfinite(total) & torch.isfinite(grad).flatten(1).all(-1)
        for k in (active & ~finite).nonzero()[:, 0].tolist():
            best.status[k] = f"nonfinite objective or gradient at step {step}"
        if step % cfg.check_every == 0:
            best.check(step, p, total.detach())
        elif step == cfg.steps - 1:  # the gap is measured at the last relaxed point, before the
            best.measure_gap(p, total.detach())  # final update projects it (e.g. onto a vertex)
        active &= finite
        grad = torch.where(active[:, None, None] & _expand(free, grad), grad, 0.0)
        new, opt_state = cfg.optimizer.update(param, grad, opt_state)
        new = cfg.relaxation.constrain(new, ctx, frac)
        param = torch.where(active[:, None, None], new, param)

    with torch.no_grad():
        total = relaxed_total(batch, scorer, cfg, param, 1.0)
    scorer.count(B, 0)
    active &= torch.isfinite(total)
    best.check(cfg.steps, param, total, record_gap=cfg.steps == 0)


def polish_rows(batch: AscentBatch, scorer: _Scorer, best: BestRows, cfg: AscentConfig) -> None:
    """Exact single-token swaps (or a gradient-informed sampler, `cfg.polish.proposal`) from each
    active row's best sequence (see `_polish`, `_gwg`)."""
    w, v, dtype = cfg.objective, batch.v, batch.dtype
    sampling = cfg.polish.proposal != "gcg"
    frac = 0.0 if sampling else 1.0  # samplers: no entropy term, 0 at every vertex but not its gradient

    def grad_fn(ids):
        x = F.one_hot(ids, v).to(dtype).requires_grad_(True)
        tot = scorer.relaxed(Relaxed(probs=x)).total(w, frac)
        (gx,) = torch.autograd.grad(torch.where(torch.isfinite(tot), tot, 0.0).sum(), x)
        return torch.nan_to_num(gx, nan=0.0, posinf=0.0, neginf=0.0)

    def score_fn(cand, rows):
        out = [scorer.exact(cand[i : i + 256], rows[i : i + 256])[2] for i in range(0, len(rows), 256)]
        return torch.cat(out)

    val = torch.where(best.active, best.val, torch.full_like(best.val, -torch.inf))
    problem = EditProblem(best.ids, val, batch.free, batch.allowed, grad_fn, score_fn, best.accept)
    if sampling:
        run = run_sampler(problem, cfg.polish.sampler_config(), batch.gens)
        best.ids, best.val = run.ids, run.value
        scorer.count(run.exact_evals + run.grad_evals)
        return
    best.ids, best.val, n = polish(problem, cfg.polish, batch.gens)
    scorer.count(n + batch.B * cfg.polish.rounds)


def _expand(free: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,t) -> broadcastable to `like` (B,t,v|d)."""
    return free[..., None].expand_as(like)
