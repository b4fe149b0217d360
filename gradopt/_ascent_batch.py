"""The ascent's prepared batch (`_ascent`): inputs padded and checked, the free and allowed masks,
and the restarts laid out and perturbed, each row with its own random stream.

Legend: b input sequences, r restarts, B = b*r rows (b-major: row = i*r + j), t time, v vocab,
d embedding width.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from domains import pad_ids

from ._models import model_context, special_ids, vocab_check
from ._objective import smoothed_start
from ._relax import RelaxContext
from ._trust import edit_budget


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


@dataclass(kw_only=True)
class AscentBatch:
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
    loglik_ref: torch.Tensor | None = None  # (B,) the inputs' mean log-lik, set when they are scored (lm_floor)

    @property
    def b(self) -> int:
        return self.ids0.shape[0]

    @property
    def B(self) -> int:  # noqa: N802 (the legend's name)
        return self.b * self.r


def prepare_batch(init, reward_model, generator, cfg, tokenizer, freeze, allowed, validate) -> AscentBatch:
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
    return AscentBatch(ids0=ids0, mask0=mask0, r=r, v=v, dtype=dtype, allowed=allowed, ids_in=ids_in,
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
