"""Gradient-informed samplers over token sequences: Gibbs-with-gradients and discrete Langevin.

Legend: b batch, t time, v vocab, L sites per proposal.

Both sample (or, with greedy acceptance, climb) the target ``π(x) ∝ exp(J(x) / τ)`` over the free
positions' allowed tokens, J the exact objective (reward + lm_weight * mean log-lik - ...), using
the first-order estimate of every single-token change (`_first_order`)

    Δ̃(x)[i, v] = g_x[i, v] - g_x[i, x_i],      g_x = dJ/d one-hot at x.

gwg   Gibbs with gradients (Grathwohl et al. 2021): propose one change (i, v) with probability
      ``softmax(Δ̃(x) / 2τ)`` over the allowed changes (the current token excluded). With
      ``sites = L > 1`` the path-auxiliary form (Sun et al. 2022): L changes drawn one after the
      other, each from the same softmax restricted to the sites not yet changed; the reverse path
      undoes them in reverse order under the gradient at x'.
dlp   Discrete Langevin proposal (Zhang et al. 2022): every free site independently draws
      ``q_i(v) ∝ exp(½ Δ̃(x)[i, v] / τ - [v != x_i] / α)`` (the ``||x'_i - x_i||² / 2α`` penalty of
      a one-hot change is 1/α), so many sites may move at once; α = `step_size`.

Acceptance "mh": Metropolis-Hastings with the exact J at x' and the reverse proposal under the
gradient at x',
    A = min(1, exp((J(x') - J(x)) / τ) q(x | x') / q(x' | x)),
so the chain leaves π invariant however rough the first-order estimate is; "greedy": accept when the
exact J rises (a climber). A proposal vetoed by `accept_fn` (validity, the edit budget) is rejected,
i.e. π is restricted to the accepted sequences. Each row returns the best sequence it visited.

`run_sampler` is the model-free loop over an `EditProblem` (gradient, exact score and veto as
callables, the inputs `_polish.polish` takes too; the engine calls it from its polish step);
`gibbs_with_gradients` runs it on a reward model and generator directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from ._edit_problem import EditProblem
from ._first_order import deltas_from_gradient

PROPOSALS = ("gwg", "dlp")
ACCEPTANCE = ("mh", "greedy")


@dataclass(frozen=True, kw_only=True)
class GWGConfig:
    """A gradient-informed sampler's settings (see the module docstring)."""

    steps: int = 16  # proposals per row, each scored exactly (the engine's polish uses its `rounds`)
    proposal: str = "gwg"  # "gwg" (one or `sites` sequential changes) | "dlp" (every site at once)
    sites: int = 1  # gwg: changes per proposal, distinct positions (path auxiliary when > 1)
    temperature: float = 0.05  # τ of the target exp(J / τ); proposals use Δ̃ / 2τ
    step_size: float = 0.5  # dlp: α, a change costs 1/α in the proposal's log-odds
    acceptance: str = "mh"  # "mh" (Metropolis-Hastings) | "greedy" (keep only exact gains)
    seed: int = 0  # per-row streams from (seed, the row's tokens); the engine uses its own seed

    def __post_init__(self) -> None:
        if self.steps < 0 or self.sites < 1:
            raise ValueError(f"GWGConfig needs steps >= 0 and sites >= 1, got steps={self.steps}, sites={self.sites}")
        if not self.temperature > 0 or not self.step_size > 0:
            raise ValueError(f"GWGConfig needs temperature > 0 and step_size > 0, got {self.temperature} and "
                             f"{self.step_size}")
        if self.proposal not in PROPOSALS:
            raise ValueError(f"GWGConfig.proposal must be one of {PROPOSALS}, got {self.proposal!r}")
        if self.acceptance not in ACCEPTANCE:
            raise ValueError(f"GWGConfig.acceptance must be one of {ACCEPTANCE}, got {self.acceptance!r}")


class SamplerRun(NamedTuple):
    """What a sampler run returns."""

    ids: torch.Tensor  # (b,t) each row's best visited sequence
    value: torch.Tensor  # (b,) its exact objective
    trajectory: list[list[dict]]  # per row, one record per step (see `run_sampler`)
    exact_evals: int  # sequences scored exactly
    grad_evals: int  # sequences passed through the gradient


def _gumbel(gens: list[torch.Generator], rows: torch.Tensor, free: torch.Tensor, v: int, dtype) -> torch.Tensor:
    """(b,t,v) Gumbel noise: row r, when rows[r], draws (n_r, v) from gens[r], n_r = its last free
    position + 1, the rest 0; so a row's draws do not depend on the rest of the batch (its padding)."""
    b, t = free.shape
    out = torch.zeros((b, t, v), dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    for r in (rows & free.any(-1)).nonzero()[:, 0].tolist():
        n = int(free[r].nonzero()[-1, 0]) + 1
        u = torch.rand((n, v), generator=gens[r], dtype=dtype).clamp(min=tiny)
        out[r, :n] = -torch.log(-torch.log(u))
    return out


def change_logits(grad, ids, free, allowed, temperature: float) -> torch.Tensor:
    """Δ̃ / 2τ (b,t,v) over the allowed single-site changes; -inf at frozen positions, disallowed
    tokens and the current token (a change changes the token)."""
    d = deltas_from_gradient(grad, ids, free, allowed).scatter(-1, ids[..., None], -torch.inf)
    return d / (2.0 * temperature)


def sample_path(ids, grad, free, allowed, sites: int, temperature: float, gens) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw up to `sites` changes at distinct positions, one after the other -> (new ids (b,t),
    positions (b,L), -1 after a row ran out of positions). Change k is drawn from
    ``softmax(Δ̃(x) / 2τ)`` over the allowed changes at positions not yet changed."""
    logits = change_logits(grad, ids, free, allowed, temperature)
    b, t, v = logits.shape
    new, used = ids.clone(), torch.zeros(b, t, dtype=torch.bool)
    positions = torch.full((b, sites), -1, dtype=torch.long)
    for k in range(sites):
        flat = logits.masked_fill(used[..., None], -torch.inf).flatten(1)  # (b, t*v)
        ok = torch.isfinite(flat).any(-1)
        choice = (flat + _gumbel(gens, ok, free, v, flat.dtype).flatten(1)).argmax(-1)
        rows = ok.nonzero()[:, 0]
        i, tok = choice[rows] // v, choice[rows] % v
        new[rows, i], used[rows, i], positions[rows, k] = tok, True, i
    return new, positions


def path_log_prob(ids, grad, free, allowed, positions, tokens, temperature: float) -> torch.Tensor:
    """log q of the path positions[:, k] -> tokens[:, k], k = 0, 1, ... from `ids` under `grad`
    (b,); entries with position -1 are skipped. Each change is scored by the softmax `sample_path`
    draws it from (the positions changed before it excluded)."""
    logits = change_logits(grad, ids, free, allowed, temperature)
    b, t, v = logits.shape
    used = torch.zeros(b, t, dtype=torch.bool)
    out = torch.zeros(b, dtype=logits.dtype)
    for k in range(positions.shape[1]):
        rows = (positions[:, k] >= 0).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        flat = logits[rows].masked_fill(used[rows][..., None], -torch.inf).flatten(1)
        i = positions[rows, k]
        out[rows] += torch.log_softmax(flat, -1)[torch.arange(len(rows)), i * v + tokens[rows, k]]
        used[rows, i] = True
    return out


def dlp_logits(grad, ids, free, allowed, temperature: float, step_size: float) -> torch.Tensor:
    """Per-site log-odds (b,t,v) of the discrete Langevin proposal: ``Δ̃ / 2τ - 1/α`` for an
    allowed change, 0 for keeping the current token, -inf otherwise (frozen sites keep theirs)."""
    d = change_logits(grad, ids, free, allowed, temperature) - 1.0 / step_size
    return d.scatter(-1, ids[..., None], 0.0)


def dlp_sample(ids, grad, free, allowed, temperature: float, step_size: float, gens, rows) -> torch.Tensor:
    """Every free site of the `rows` (b,) bool draws its token independently -> new ids (b,t)."""
    logits = dlp_logits(grad, ids, free, allowed, temperature, step_size)
    choice = (logits + _gumbel(gens, rows, free, logits.shape[-1], logits.dtype)).argmax(-1)
    return torch.where(free & rows[:, None], choice, ids)


def dlp_log_prob(ids, to, grad, free, allowed, temperature: float, step_size: float) -> torch.Tensor:
    """log q(to | ids) (b,) of the discrete Langevin proposal under `grad` (a product over free sites)."""
    logp = torch.log_softmax(dlp_logits(grad, ids, free, allowed, temperature, step_size), -1)
    per_site = logp.gather(-1, to[..., None])[..., 0]
    return torch.where(free, per_site, 0.0).sum(-1)


def run_sampler(problem: EditProblem, cfg: GWGConfig, gens: list[torch.Generator]) -> SamplerRun:
    """`cfg.steps` proposals per row of `problem`, each scored exactly and accepted by `cfg.acceptance`.

    Rows whose value is not finite are left alone. `problem.grad_fn` is asked for the gradient of
    the whole batch; `problem.accept_fn` only about a proposal that would be accepted (one row at
    a time). Trajectory records per step and active row: step, proposed (exact J of the proposal,
    None when it changed nothing), accept_prob, accepted, sites (positions changed), value (J after
    the step), best.
    """
    ids, value, free, allowed, grad_fn, score_fn, accept_fn = problem
    tau = cfg.temperature
    b = ids.shape[0]
    cur, cur_val = ids.clone(), value.clone()
    best, best_val = ids.clone(), value.clone()
    active = torch.isfinite(value)
    traj: list[list[dict]] = [[] for _ in range(b)]
    exact = grad_evals = 0
    grad, stale = None, True
    for step in range(cfg.steps):
        if not bool(active.any()):
            break
        if stale:
            grad, stale = grad_fn(cur), False
            grad_evals += b
        fa = free & active[:, None]
        if cfg.proposal == "gwg":
            prop, positions = sample_path(cur, grad, fa, allowed, cfg.sites, tau, gens)
            logq_f = path_log_prob(cur, grad, fa, allowed, positions, prop.gather(1, positions.clamp(min=0)), tau)
        else:
            prop = dlp_sample(cur, grad, fa, allowed, tau, cfg.step_size, gens, active)
            logq_f = dlp_log_prob(cur, prop, grad, fa, allowed, tau, cfg.step_size)
        moved = (prop != cur).any(-1) & active
        rows = moved.nonzero()[:, 0]
        new_val = torch.full_like(cur_val, -torch.inf)
        if len(rows):
            s = score_fn(prop[rows], rows)
            new_val[rows] = torch.where(torch.isfinite(s), s, -torch.inf).to(new_val.dtype)
            exact += len(rows)
        if cfg.acceptance == "mh":
            grad_new = grad_fn(prop)
            grad_evals += b
            if cfg.proposal == "gwg":
                back = cur.gather(1, positions.clamp(min=0))
                logq_r = path_log_prob(prop, grad_new, fa, allowed, positions.flip(-1), back.flip(-1), tau)
            else:
                logq_r = dlp_log_prob(prop, cur, grad_new, fa, allowed, tau, cfg.step_size)
            log_a = (new_val - cur_val) / tau + logq_r - logq_f
        else:
            log_a = torch.where(new_val > cur_val, 0.0, -torch.inf).to(cur_val.dtype)
        log_a = torch.where(moved & torch.isfinite(new_val), log_a.nan_to_num(nan=-torch.inf), -torch.inf)
        take = torch.zeros(b, dtype=torch.bool)
        for r in active.nonzero()[:, 0].tolist():
            u = torch.rand((), generator=gens[r], dtype=cur_val.dtype)
            if bool(moved[r]) and bool(torch.log(u) < log_a[r]):
                take[r] = accept_fn is None or bool(accept_fn(prop[r][None], torch.tensor([r]))[0])
        n_sites = (prop != cur).sum(-1)
        cur = torch.where(take[:, None], prop, cur)
        cur_val = torch.where(take, new_val, cur_val)
        if cfg.acceptance == "mh":
            grad = torch.where(take[:, None, None], grad_new, grad)
        else:
            stale = bool(take.any())
        better = take & (cur_val > best_val)
        best, best_val = torch.where(better[:, None], cur, best), torch.where(better, cur_val, best_val)
        for r in active.nonzero()[:, 0].tolist():
            traj[r].append({"step": step, "proposed": float(new_val[r]) if bool(moved[r]) else None,
                            "accept_prob": float(log_a[r].clamp(max=0.0).exp()), "accepted": bool(take[r]),
                            "sites": int(n_sites[r]), "value": float(cur_val[r]), "best": float(best_val[r])})
    return SamplerRun(ids=best, value=best_val, trajectory=traj, exact_evals=exact, grad_evals=grad_evals)


def gibbs_with_gradients(ids, reward_model, generator, cfg: GWGConfig = GWGConfig(), weights=None, freeze=None,
                         allowed=None, validate: Callable[[str], object] | None = None, *,
                         tokenizer=None) -> SamplerRun:
    """Run a gradient-informed sampler (`cfg.proposal`) on token sequences -> `SamplerRun`.

    ids: token-id lists ``<bos> body <eos>`` or a right-padded (b,t) tensor; weights: the
    objective's `ObjectiveWeights` (default reward + mean log-lik); freeze (b,t) and allowed
    (b,t,v) or (v,) as in `optimize` (BOS/EOS/PAD positions frozen, special tokens never proposed).
    validate: text -> truthy; a row whose start passes it only moves to sequences that pass it
    (needs `tokenizer`). Each row draws from its own stream, seeded by `cfg.seed` and its tokens,
    so a row's run does not depend on the rest of the batch.
    """
    from ._ascent_batch import row_seed
    from ._first_order import edit_sites, objective_gradient
    from ._models import frozen_models
    from ._objective import ObjectiveWeights, discrete_terms, shared_backbone

    weights = weights or ObjectiveWeights()
    if validate is not None and tokenizer is None:
        raise ValueError("gibbs_with_gradients: validate needs a tokenizer to decode sequences")
    sites = edit_sites(ids, reward_model, generator, weights, freeze, allowed, tokenizer)
    shared = shared_backbone(reward_model, generator)
    lengths = sites.mask.sum(-1).tolist()
    gens = [torch.Generator().manual_seed(row_seed(cfg.seed, 0, sites.ids[r, :n].tolist()))
            for r, n in enumerate(lengths)]

    def grad_fn(x):
        return objective_gradient(x, reward_model, generator, sites, weights, shared)

    def score_fn(cand, rows):
        terms, _ = discrete_terms(reward_model, generator, cand, sites.mask[rows], sites.start[rows],
                                  sites.free[rows], weights, shared, loglik_ref=sites.ref(rows))
        return terms.total(weights, 1.0)

    accept_fn = None
    if validate is not None:
        from domains import decode

        def ok(x, r):
            return bool(validate(decode(tokenizer, x[: lengths[r]].tolist())))

        bound = [ok(sites.ids[r], r) for r in range(len(lengths))]

        def accept_fn(cand, rows):
            r = int(rows[0])
            return torch.tensor([not bound[r] or ok(c, r) for c in cand])

    with frozen_models(reward_model, generator):
        value = score_fn(sites.ids, torch.arange(len(lengths)))
        return run_sampler(EditProblem(sites.ids, value, sites.free, sites.allowed, grad_fn, score_fn, accept_fn),
                           cfg, gens)
