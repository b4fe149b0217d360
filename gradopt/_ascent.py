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

`optimize` reads top to bottom over named steps: `prepare_batch` (batch, masks, restarts; in
`_ascent_batch`), `ascend` (the gradient steps, verified by `BestRows.check` through `_Scorer.exact`)
and `polish_rows` (both in `_ascent_steps`), `_final_scores` and `_assemble` (the do-no-harm verdict
per input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ._ascent_batch import (AscentBatch, _masks, _perturb, allowed_per_position, pad_batch,  # noqa: F401  (gradopt._ascent.X as before)
                            prepare_batch, row_seed)
from ._ascent_steps import BestRows, ascend, polish_rows
from ._models import frozen_models
from ._objective import ObjectiveWeights, Terms, discrete_terms, relaxed_terms, shared_backbone
from ._optim import Adam
from ._polish import PolishConfig
from ._relax import Relaxation, Relaxed, SimplexEntropy
from ._result import AscentResult, RowResult
from ._trust import TrustConfig, gain_stats, member_scores, verdict
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
    batch = prepare_batch(init, reward_model, generator, cfg, tokenizer, freeze, allowed, validate)
    scorer = _Scorer(reward_model, generator, batch, cfg.objective, tokenizer, validate)
    with frozen_models(reward_model, generator):
        before = _score_inputs(batch, scorer)
        best = BestRows(batch, scorer, cfg, before)
        ascend(batch, scorer, best, cfg, progress)
        accepted = torch.isfinite(best.val)  # (B,) rows holding an accepted sequence
        if cfg.polish.rounds:
            polish_rows(batch, scorer, best, cfg)
        final = _final_scores(batch, scorer, best, accepted)
    rows = _assemble(batch, scorer, best, before, final, cfg)
    return AscentResult(rows=rows, reward_evals=scorer.evals, generator_evals=scorer.gen_evals,
                        seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)


class _Scorer:
    """Scores rows of the batch (exactly on ids, or relaxed), decodes and validates them (validity
    cached by text) and counts the reward-model and generator evaluations."""

    def __init__(self, reward_model, generator, batch: AscentBatch, w: ObjectiveWeights, tokenizer, validate) -> None:
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
        ref = None if bt.loglik_ref is None else bt.loglik_ref[rows]
        terms, total_ll = discrete_terms(self.reward_model, self.generator, ids, bt.mask[rows], bt.start[rows],
                                         bt.free[rows], self.w, self.shared, loglik_ref=ref)
        return terms, total_ll, terms.total(self.w, 1.0)

    def inputs(self) -> tuple[Terms, torch.Tensor, torch.Tensor]:
        """`exact` of the inputs (the restart-0 rows); sets the batch's likelihood floor from them."""
        bt = self.batch
        rows = torch.arange(0, bt.B, bt.r)
        terms, total_ll = discrete_terms(self.reward_model, self.generator, bt.ids0, bt.mask[rows], bt.start[rows],
                                         bt.free[rows], self.w, self.shared)
        if self.w.lm_floor:
            bt.loglik_ref, terms.loglik_ref = terms.loglik.repeat_interleave(bt.r), terms.loglik
        return terms, total_ll, terms.total(self.w, 1.0)

    def relaxed(self, relaxed: Relaxed) -> Terms:
        """Relaxed terms of all B rows."""
        bt = self.batch
        return relaxed_terms(self.reward_model, self.generator, relaxed, bt.mask, bt.start, bt.free, self.w,
                             self.shared, loglik_ref=bt.loglik_ref)

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


def _score_inputs(batch: AscentBatch, scorer: _Scorer) -> dict:
    """The inputs' "before" scores: each input itself, scored exactly (its restart-0 rows; not a
    projection of the initial relaxation, which need not land on the input), its text and validity."""
    terms0, ll0, val0 = scorer.inputs()
    scorer.count(batch.b)
    texts = scorer.decode(batch.ids0, batch.lengths[:: batch.r])
    valid = [scorer.is_valid(x) for x in texts]
    return {"reward": terms0.reward, "ll": ll0, "mean_ll": terms0.loglik, "val": val0, "valid": valid, "texts": texts}


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


def _final_scores(batch: AscentBatch, scorer: _Scorer, best: BestRows, accepted: torch.Tensor) -> _Final:
    """Score each row's best sequence (its input when nothing was accepted) and its gain per member."""
    ids = torch.where(accepted[:, None], best.ids, batch.ids_in)  # never a rejected start
    terms, ll, val = scorer.exact(ids, torch.arange(batch.B))
    members_in = member_scores(scorer.reward_model, batch.ids0, batch.mask0)  # (b,K) the guard's "before"
    gain_mean, gain_sd = gain_stats(member_scores(scorer.reward_model, ids, batch.mask)
                                    - members_in.repeat_interleave(batch.r, 0))
    scorer.count(2 * batch.B + batch.b, batch.B)
    return _Final(ids=ids, accepted=accepted, terms=terms, ll=ll, val=val, gain_mean=gain_mean, gain_sd=gain_sd,
                  texts=scorer.decode(ids, batch.lengths))


def _assemble(batch: AscentBatch, scorer: _Scorer, best: BestRows, before: dict, final: _Final,
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
            drop = before["mean_ll"].repeat_interleave(r, 0) - final.terms.loglik  # (B,) nats per token
            why = {k: verdict(float(gain_mean[k]), float(gain_sd[k]), int(changed[k]), int(batch.budget[k]),
                              int(n_free[k]), cfg.trust, loglik_drop=float(drop[k])) for k in kept}
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
