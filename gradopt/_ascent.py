"""The batched ascent driver: move many sequences uphill on the reward model at once.

Legend: b input sequences, r restarts, B = b*r rows, t time, v vocab, d embedding width.

Which token may go where: a free position takes any token of its allowed set, which is the
non-special tokens (BOS/EOS/PAD/UNK excluded), intersected with the user's per-position
``allowed`` mask (b,t,v) when given. Relaxation, restart noise and polish all keep to it.

Rows are laid out b-major (row = i*r + j). Every `check_every` steps each row is projected to
tokens and scored exactly (reward model on ids, generator on ids); the row keeps its best *verified
discrete* sequence. The soft objective is only used to move and to measure the relaxation gap.

A row's sequence is *accepted* once it is scored finite and, when `validate` is given with
`require_valid` and the input passes it, also passes `validate`. Restart 0 holds the input itself,
scored exactly, from the start; a restart from a perturbed start holds nothing until one of its own
sequences is accepted. Each input's result is its best accepted row, or the input unchanged (with a
status saying so) when no row was accepted, so a result never fails `validate` when its input
passes and is never scored below the input.

Do no harm (`cfg.trust`, on by default, see `_trust`): rows only keep verified sequences within the
edit budget, and an input's best row replaces it only when the reward model is confident of the
gain (an ensemble's lower bound on it, a single model's gain, above a margin); otherwise the input
is returned unchanged with a status "kept the input: <why>". ``trust=None`` or
``TrustConfig(enabled=False)`` returns the engine's best accepted sequence as it is.

`optimize` reads top to bottom over named steps: `_prepare` (batch, masks, restarts), `_ascend`
(the gradient steps, verified by `_Best.check` through `_Scorer.exact`), `_polish_rows`,
`_final_scores` and `_assemble` (the do-no-harm verdict per input).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from domains import pad_ids

from ._gwg import run_sampler
from ._models import frozen_models, model_context, special_ids, vocab_check
from ._objective import ObjectiveWeights, Terms, discrete_terms, relaxed_terms, shared_backbone, smoothed_start
from ._optim import Adam
from ._polish import PolishConfig, polish
from ._relax import RelaxContext, Relaxation, Relaxed, SimplexEntropy
from ._result import AscentResult, RowResult
from ._trust import TrustConfig, edit_budget, gain_stats, member_scores, verdict
from ._trust import active as trust_on


@dataclass(frozen=True, kw_only=True)
class AscentConfig:
    """Settings of one ascent run; parts are swappable objects (see `_relax`, `_optim`, `_polish`)."""

    steps: int = 60  # gradient steps
    check_every: int = 10  # project and score exactly every k steps (and after the last)
    restarts: int = 1  # rows per input; restart 0 starts from the input itself
    restart_noise: float = 0.15  # fraction of free positions redrawn at random for restarts > 0
    seed: int = 0  # seeds restarts, Gumbel noise and polish candidates (per row, by content)
    relaxation: Relaxation = field(default_factory=SimplexEntropy)  # how tokens become continuous
    objective: ObjectiveWeights = field(default_factory=ObjectiveWeights)  # term weights
    optimizer: Adam = field(default_factory=lambda: Adam(lr=0.5))  # elementwise; lr sized for the simplex
    polish: PolishConfig = field(default_factory=PolishConfig)  # final exact swaps (rounds=0: off)
    require_valid: bool = True  # never keep a sequence failing `validate` (if the start passes)
    trust: TrustConfig | None = field(default_factory=TrustConfig)  # do-no-harm guard; None = off

    def __post_init__(self) -> None:
        if self.steps < 0 or self.check_every <= 0 or self.restarts <= 0:
            raise ValueError(f"need steps >= 0, check_every > 0, restarts > 0: {self}")
        if not 0.0 <= self.restart_noise <= 1.0:
            raise ValueError(f"restart_noise must be in [0, 1], got {self.restart_noise}")
        for name in ("relaxation", "objective", "optimizer", "polish"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be None")


def row_seed(seed: int, restart: int, tokens: Sequence[int]) -> int:
    """A row's seed from the run seed, its restart index and its own tokens only, so a row's
    randomness does not depend on the rest of the batch (batched = one-by-one)."""
    h = hashlib.sha256(f"{seed}:{restart}:{','.join(map(str, tokens))}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def pad_batch(init, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists (or a (b,t) tensor) -> (ids (b,t), attention mask (b,t)), right-padded."""
    if isinstance(init, torch.Tensor):
        init = [[int(x) for x in row if int(x) != pad_id] for row in init.tolist()]
    rows = [list(map(int, row)) for row in init]
    if not rows or min(len(r) for r in rows) == 0:
        raise ValueError("optimize needs at least one non-empty sequence")
    return pad_ids(rows, pad_id)


def _uniform_noise(gens: list[torch.Generator], lengths: list[int], t: int, v: int, dtype) -> torch.Tensor:
    out = torch.full((len(gens), t, v), 0.5, dtype=dtype)
    for r, (g, n) in enumerate(zip(gens, lengths)):
        out[r, :n] = torch.rand((n, v), generator=g, dtype=dtype)
    return out


def _perturb(ids, free, allowed, gens, frac: float):
    """Redraw a fraction of each row's free positions uniformly from their allowed tokens.

    ids, free: (B,t); allowed: (v,) shared by all positions or (B,t,v) per position.
    """
    shared = allowed.dim() == 1
    tokens = allowed.nonzero()[:, 0] if shared else None
    out = ids.clone()
    for r in range(ids.shape[0]):
        pos = free[r].nonzero()[:, 0]
        k = int(round(frac * len(pos)))
        if k == 0:
            continue
        pick = pos[torch.randperm(len(pos), generator=gens[r])[:k]]
        if shared:
            out[r, pick] = tokens[torch.randint(len(tokens), (k,), generator=gens[r])]
            continue
        for i in pick.tolist():
            options = allowed[r, i].nonzero()[:, 0]
            out[r, i] = options[torch.randint(len(options), (1,), generator=gens[r])]
    return out


def allowed_per_position(
    allowed: torch.Tensor, ids: torch.Tensor, frozen: torch.Tensor, base: torch.Tensor, tokenizer=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine a user's per-position mask with the engine's token set -> (allowed (b,t,v), frozen (b,t)).

    allowed: (b,t,v) bool, True = the token may be placed there; ids, frozen: (b,t); base: (v,)
    the tokens any free position may take. The result is ``allowed & base`` at free positions.
    A free position whose current token is not in its `allowed` set is an error; one whose set
    holds no other token is frozen. Frozen positions get `base` (their token is kept anyway and
    every position keeps a non-empty set, so relaxations stay finite there).
    """
    b, t = ids.shape
    v = base.shape[0]
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
        raise ValueError(f"allowed must be a bool tensor of shape (b, t, v) = {(b, t, v)}, got "
                         f"{getattr(allowed, 'dtype', type(allowed).__name__)}")
    if tuple(allowed.shape) != (b, t, v):
        raise ValueError(f"allowed mask has shape {tuple(allowed.shape)}, expected (b, t, v) = {(b, t, v)} "
                         "(the padded batch by the reward model's vocabulary)")
    allowed = allowed.to(base.device)
    here = allowed.gather(-1, ids[..., None])[..., 0]
    bad = (~frozen & ~here).nonzero()
    if len(bad):
        i, j = bad[0].tolist()
        tok = int(ids[i, j])
        what = f"token {tok}" + (f" ({tokenizer.decode([tok])!r})" if tokenizer is not None else "")
        raise ValueError(
            f"row {i}, position {j}: its current {what} is not in the position's allowed set "
            f"({len(bad)} such position(s)); allow it there or freeze the position"
        )
    out = allowed & base
    others = out & ~F.one_hot(ids, v).bool()
    frozen = frozen | ~others.any(-1)
    return torch.where(frozen[..., None], base, out), frozen


def optimize(
    init,
    reward_model,
    generator,
    cfg: AscentConfig = AscentConfig(),
    *,
    tokenizer=None,
    freeze: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    validate: Callable[[str], object] | None = None,
    progress: bool = False,
) -> AscentResult:
    """Improve each sequence of `init` by gradient ascent on J = reward + lm_weight * loglik - ...

    init: token-id lists ``<bos> body <eos>`` (or a right-padded (b,t) tensor); see `starts` for
    generator samples or noise. freeze: (b,t) bool, True = keep the token (BOS/EOS/PAD are always
    kept). allowed: (b,t,v) bool, True = the token may be placed at that position (ANDed with the
    non-special tokens); a free position must allow its current token (else ValueError) and one
    allowing no other token is frozen (see `allowed_per_position`, and `pitch_edits` for ABC).
    Shapes are of the right-padded batch. validate: text -> truthy when the decoded sequence is
    acceptable (needs `tokenizer`).
    Returns, per input, the best accepted discrete sequence over `cfg.restarts` restarts (see the
    module docstring); "before" scores are the input's own exact scores.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    batch = _prepare(init, reward_model, generator, cfg, tokenizer, freeze, allowed, validate)
    scorer = _Scorer(reward_model, generator, batch, cfg.objective, tokenizer, validate)
    with frozen_models(reward_model, generator):
        before = _score_inputs(batch, scorer)
        best = _Best(batch, scorer, cfg, before)
        _ascend(batch, scorer, best, cfg, progress)
        accepted = torch.isfinite(best.val)  # (B,) rows holding an accepted sequence
        if cfg.polish.rounds:
            _polish_rows(batch, scorer, best, cfg)
        final = _final_scores(batch, scorer, best, accepted)
    rows = _assemble(batch, scorer, best, before, final, cfg)
    return AscentResult(rows=rows, reward_evals=scorer.evals, generator_evals=scorer.gen_evals,
                        seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)


@dataclass(kw_only=True)
class _Batch:
    """The prepared batch: b inputs, each laid out as r restart rows (B = b*r rows, b-major)."""

    ids0: torch.Tensor  # (b,t) the inputs, right-padded
    mask0: torch.Tensor  # (b,t) their attention mask
    r: int  # restarts per input
    v: int  # vocabulary size
    dtype: torch.dtype  # of the reward model's embeddings
    allowed: torch.Tensor  # (v,) shared by all positions or (B,t,v) per position
    ids_in: torch.Tensor  # (B,t) each row's input, what "changed" counts against
    ids_start: torch.Tensor  # (B,t) each row's start (restarts > 0 perturbed)
    mask: torch.Tensor  # (B,t)
    free: torch.Tensor  # (B,t) True = the position may change
    lengths: list[int]  # (B,) unpadded lengths
    restart_of: list[int]  # (B,) each row's restart index
    gens: list[torch.Generator]  # (B,) each row's random stream
    budget: torch.Tensor  # (B,) most positions a kept sequence may change
    ctx: RelaxContext
    onehot0: torch.Tensor  # (B,t,v) the starts as one-hots
    start: torch.Tensor  # (B,t,v) the smoothed inputs (KL anchor)
    fixed_embeds: torch.Tensor  # (B,t,d) the starts' embeddings

    @property
    def b(self) -> int:
        return self.ids0.shape[0]

    @property
    def B(self) -> int:  # noqa: N802 (the legend's name)
        return self.b * self.r


def _prepare(init, reward_model, generator, cfg, tokenizer, freeze, allowed, validate) -> _Batch:
    """Pad and check the inputs, build the free/allowed masks and lay out (and perturb) the restarts."""
    specials = special_ids(generator, tokenizer)
    ids0, mask0 = pad_batch(init, specials["pad"])
    b, t = ids0.shape
    for model, what in ((generator, "generator"), (reward_model, "reward model")):
        n = model_context(model)
        if n is not None and t > n:
            raise ValueError(
                f"a sequence has {t} tokens but the {what}'s context is {n}; shorten it "
                "(e.g. split the tune or edit fewer bars) or use models with a longer context"
            )
    emb = reward_model.embedding_matrix().detach()
    v, dtype = emb.shape[0], emb.dtype
    vocab_check(generator, v)
    if validate is not None and tokenizer is None:
        raise ValueError("validate needs a tokenizer to decode sequences")
    allowed, frozen = _masks(ids0, mask0, specials, v, freeze, allowed, tokenizer)

    r = cfg.restarts
    allowed = allowed if allowed.dim() == 1 else allowed.repeat_interleave(r, 0)  # (v,) or (B,t,v)
    ids_start = ids0.repeat_interleave(r, 0)  # (B,t)
    mask = mask0.repeat_interleave(r, 0)
    free = ~frozen.repeat_interleave(r, 0)
    lengths = mask.sum(-1).tolist()
    restart_of = [j for _ in range(b) for j in range(r)]
    gens = [
        torch.Generator().manual_seed(row_seed(cfg.seed, restart_of[k], ids_start[k, : lengths[k]].tolist()))
        for k in range(b * r)
    ]
    ids_in = ids0.repeat_interleave(r, 0)
    budget = edit_budget(free.sum(-1), cfg.trust)
    noisy = torch.tensor([j > 0 for j in restart_of])
    if cfg.restart_noise > 0 and bool(noisy.any()):
        ids_start = torch.where(noisy[:, None], _perturb(ids_start, free, allowed, gens, cfg.restart_noise), ids_start)
    ctx = RelaxContext(allowed=allowed, embedding=emb,
                       noise=lambda: _uniform_noise(gens, lengths, t, v, dtype))
    start = smoothed_start(F.one_hot(ids0.repeat_interleave(r, 0), v).to(dtype), allowed, cfg.objective.kl_smoothing)
    return _Batch(ids0=ids0, mask0=mask0, r=r, v=v, dtype=dtype, allowed=allowed, ids_in=ids_in,
                  ids_start=ids_start, mask=mask, free=free, lengths=lengths, restart_of=restart_of, gens=gens,
                  budget=budget, ctx=ctx, onehot0=F.one_hot(ids_start, v).to(dtype), start=start,
                  fixed_embeds=emb[ids_start])


def _masks(ids0, mask0, specials, v, freeze, allowed, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (allowed: (v,) the non-special tokens, or (b,t,v) with the user's mask; frozen: (b,t))."""
    b, t = ids0.shape
    base = torch.ones(v, dtype=torch.bool)  # (v,) tokens any free position may take
    for key in ("bos", "eos", "pad", "unk"):
        if specials.get(key) is not None:
            base[specials[key]] = False
    frozen = torch.isin(ids0, torch.tensor([specials[k] for k in ("bos", "eos", "pad") if specials.get(k) is not None]))
    frozen |= mask0 == 0
    if freeze is not None:
        if tuple(freeze.shape) != (b, t):
            raise ValueError(f"freeze mask has shape {tuple(freeze.shape)}, expected {(b, t)} (padded batch)")
        frozen |= freeze.to(torch.bool)
    if allowed is None:
        return base, frozen
    return allowed_per_position(allowed, ids0, frozen, base, tokenizer)


class _Scorer:
    """Scores rows of the batch (exactly on ids, or relaxed), decodes and validates them (validity
    cached by text) and counts the reward-model and generator evaluations."""

    def __init__(self, reward_model, generator, batch: _Batch, w: ObjectiveWeights, tokenizer, validate) -> None:
        self.reward_model, self.generator, self.batch, self.w = reward_model, generator, batch, w
        self.tokenizer, self.validate = tokenizer, validate
        self.shared = shared_backbone(reward_model, generator)  # one forward pass serves both models
        self.cache: dict[str, bool] = {}
        self.evals = self.gen_evals = 0

    def count(self, reward: int, gen: int | None = None) -> None:
        self.evals += reward
        self.gen_evals += reward if gen is None else gen

    def exact(self, ids, rows) -> tuple[Terms, torch.Tensor, torch.Tensor]:
        """Exact terms, total loglik and objective of `ids`, which hold the batch's `rows`."""
        bt = self.batch
        terms, total_ll = discrete_terms(self.reward_model, self.generator, ids, bt.mask[rows], bt.start[rows],
                                         bt.free[rows], self.w, self.shared)
        return terms, total_ll, terms.total(self.w, 1.0)

    def relaxed(self, relaxed: Relaxed) -> Terms:
        """Relaxed terms of all B rows."""
        bt = self.batch
        return relaxed_terms(self.reward_model, self.generator, relaxed, bt.mask, bt.start, bt.free, self.w,
                             self.shared)

    def decode(self, rows_ids: torch.Tensor, rows_len: Sequence[int]) -> list[str | None]:
        if self.tokenizer is None:
            return [None] * len(rows_len)
        from domains import decode
        return [decode(self.tokenizer, x[:n].tolist()) for x, n in zip(rows_ids, rows_len)]

    def is_valid(self, text: str | None) -> bool | None:
        if self.validate is None or text is None:
            return None
        if text not in self.cache:
            self.cache[text] = bool(self.validate(text))
        return self.cache[text]


def _score_inputs(batch: _Batch, scorer: _Scorer) -> dict:
    """The inputs' "before" scores: each input itself, scored exactly (its restart-0 rows; not a
    projection of the initial relaxation, which need not land on the input), its text and validity."""
    inputs = torch.arange(0, batch.B, batch.r)  # (b,) restart-0 rows
    terms0, ll0, val0 = scorer.exact(batch.ids0, inputs)
    scorer.count(batch.b)
    texts = scorer.decode(batch.ids0, batch.lengths[:: batch.r])
    valid = [scorer.is_valid(x) for x in texts]
    return {"reward": terms0.reward, "ll": ll0, "val": val0, "valid": valid, "texts": texts}


class _Best:
    """Each row's best verified discrete sequence (ids, val; -inf = nothing accepted yet), its gap,
    trajectory and status, and whether its ascent is still active. Restart 0 holds the input."""

    def __init__(self, batch: _Batch, scorer: _Scorer, cfg: AscentConfig, before: dict) -> None:
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


def _ascend(batch: _Batch, scorer: _Scorer, best: _Best, cfg: AscentConfig, progress: bool) -> None:
    """The gradient steps, checking every `cfg.check_every` steps, then a last check at the end point."""
    B, w, free, ctx = batch.B, cfg.objective, batch.free, batch.ctx

    def relaxed_at(p, frac):
        rel = cfg.relaxation.relax(p, ctx, frac)
        probs = torch.where(free[..., None], rel.probs, batch.onehot0)
        embeds = None if rel.embeds is None else torch.where(free[..., None], rel.embeds, batch.fixed_embeds)
        return scorer.relaxed(Relaxed(probs=probs, embeds=embeds))

    param = cfg.relaxation.init(batch.onehot0, ctx)
    opt_state = cfg.optimizer.init(param)
    active = best.active
    for step in tqdm(range(cfg.steps), desc="ascent", disable=not progress, leave=False):
        frac = step / max(cfg.steps - 1, 1)
        p = param.detach().requires_grad_(True)
        total = relaxed_at(p, frac).total(w, frac)
        scorer.count(B, B if w.lm_weight else 0)
        finite = torch.isfinite(total)
        (grad,) = torch.autograd.grad(-torch.where(finite, total, 0.0).sum(), p)
        finite &= torch.isfinite(grad).flatten(1).all(-1)
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
        total = relaxed_at(param, 1.0).total(w, 1.0)
    scorer.count(B, 0)
    active &= torch.isfinite(total)
    best.check(cfg.steps, param, total, record_gap=cfg.steps == 0)


def _polish_rows(batch: _Batch, scorer: _Scorer, best: _Best, cfg: AscentConfig) -> None:
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
    if sampling:
        run = run_sampler(best.ids.clone(), val, batch.free, batch.allowed, grad_fn, score_fn, best.accept,
                          cfg.polish.sampler_config(), batch.gens)
        best.ids, best.val = run.ids, run.value
        scorer.count(run.exact_evals + run.grad_evals)
        return
    best.ids, best.val, n = polish(best.ids.clone(), val, batch.free, batch.allowed, grad_fn, score_fn,
                                   best.accept, cfg.polish, batch.gens)
    scorer.count(n + batch.B * cfg.polish.rounds)


@dataclass(kw_only=True)
class _Final:
    """Each row's returned sequence (B,t), its exact scores, its gain over the input and its text."""

    ids: torch.Tensor
    accepted: torch.Tensor
    terms: Terms
    ll: torch.Tensor
    val: torch.Tensor
    gain_mean: torch.Tensor
    gain_sd: torch.Tensor
    texts: list[str | None]


def _final_scores(batch: _Batch, scorer: _Scorer, best: _Best, accepted: torch.Tensor) -> _Final:
    """Score each row's best sequence (its input when nothing was accepted) and its gain per member."""
    ids = torch.where(accepted[:, None], best.ids, batch.ids_in)  # never a rejected start
    terms, ll, val = scorer.exact(ids, torch.arange(batch.B))
    members_in = member_scores(scorer.reward_model, batch.ids0, batch.mask0)  # (b,K) the guard's "before"
    gain_mean, gain_sd = gain_stats(member_scores(scorer.reward_model, ids, batch.mask)
                                    - members_in.repeat_interleave(batch.r, 0))
    scorer.count(2 * batch.B + batch.b, batch.B)
    return _Final(ids=ids, accepted=accepted, terms=terms, ll=ll, val=val, gain_mean=gain_mean, gain_sd=gain_sd,
                  texts=scorer.decode(ids, batch.lengths))


def _assemble(batch: _Batch, scorer: _Scorer, best: _Best, before: dict, final: _Final,
              cfg: AscentConfig) -> list[RowResult]:
    """Per input, its best kept row, or the input unchanged with a status saying why (the
    do-no-harm verdict of `_trust`, or no accepted row)."""
    r, status, lengths = batch.r, best.status, batch.lengths
    changed = (final.ids != batch.ids_in).sum(-1)  # (B,)
    n_free = batch.free.sum(-1)
    gain_mean, gain_sd, final_val = final.gain_mean, final.gain_sd, final.val
    rows_out: list[RowResult] = []
    for i in range(batch.b):
        ks = list(range(i * r, (i + 1) * r))
        kept = [k for k in ks if bool(final.accepted[k]) and torch.isfinite(final_val[k])]
        failed = [status[j] for j in ks if status[j] != "ok"]
        if kept and trust_on(cfg.trust):
            why = {k: verdict(float(gain_mean[k]), float(gain_sd[k]), int(changed[k]), int(batch.budget[k]),
                              int(n_free[k]), cfg.trust) for k in kept}
            trusted = [k for k in kept if why[k] is None]
            if not trusted:  # the input stands; report the best candidate and why it was not taken
                k = max(kept, key=lambda k: float(final_val[k]))
                rows_out.append(_kept_row(i, batch.ids0, lengths[i * r], before, before["texts"][i], best.traj[k],
                                          best.gap[k], f"kept the input: {why[k]}", float(gain_mean[k]),
                                          float(gain_sd[k])))
                continue
            kept = trusted
        if kept:
            k = max(kept, key=lambda k: float(final_val[k]))
            row_status = status[k]
        else:  # no row was accepted: its restart-0 row holds the input unchanged
            k = i * r
            row_status = f"kept the input: no restart reached an accepted sequence ({failed[0] if failed else 'nonfinite score'})"
        n = lengths[k]
        rows_out.append(RowResult(
            tokens=final.ids[k, :n].tolist(), text=final.texts[k], gain_mean=float(gain_mean[k]),
            gain_sd=float(gain_sd[k]), reward_before=float(before["reward"][i]),
            reward_after=float(final.terms.reward[k]), loglik_before=float(before["ll"][i]),
            loglik_after=float(final.ll[k]), objective_before=float(before["val"][i]),
            objective_after=float(final_val[k]), gap=float(best.gap[k]), valid_before=before["valid"][i],
            valid_after=scorer.is_valid(final.texts[k]), status=row_status, restart=batch.restart_of[k],
            changed=int(changed[k]), kept=row_status.startswith("kept the input"), trajectory=best.traj[k],
        ))
    return rows_out


def _kept_row(i, ids0, n, before, text, traj, gap, status, gain_mean, gain_sd) -> RowResult:
    """Input i returned unchanged: every "after" score is its own "before" score."""
    keys = {"reward": float(before["reward"][i]), "loglik": float(before["ll"][i]), "objective": float(before["val"][i])}
    return RowResult(tokens=ids0[i, :n].tolist(), text=text, **{f"{k}_{w}": v for k, v in keys.items()
                                                                 for w in ("before", "after")},
                     gap=float(gap), valid_before=before["valid"][i], valid_after=before["valid"][i], status=status,
                     restart=0, changed=0, kept=True, gain_mean=gain_mean, gain_sd=gain_sd, trajectory=traj)


def _expand(free: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,t) -> broadcastable to `like` (B,t,v|d)."""
    return free[..., None].expand_as(like)
