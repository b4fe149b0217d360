"""Do no harm: the engine returns an edit only when the reward model is confident it helps.

Legend: b rows, K ensemble members (K = 1 for a single reward model).

A reward model fitted on a few hundred rated items is trusted near them and guesses away from
them; the ascent, which climbs whatever the model says, walks exactly where it guesses. So the
engine's output replaces a user's input only when

    changed <= floor(max_changed * free)                          (the edit budget)
    ll(before) - ll(after) <= max_loglik_drop                      ll = mean generator log-lik per token
    lower = mean_k(g_k) - pessimism * sd_k(g_k) > margin           g_k = member_k(after) - member_k(before)

with the per-member gains g_k of a `rewardmodels.RewardEnsemble` (`score_members`), so the
members' disagreement about the *gain* is what counts, not about the two scores separately.
The log-likelihood rule is a second witness that does not share the reward model's blind spots:
the generator was trained on far more music than was ever rated, so an edit that makes a tune
much less like its training music is one the reward model may well be wrong about. It is off by
default: on the 5-member selection split no limit changed a figure (the ascent's likelihood term
already keeps accepted edits likely); with 64 members a limit of 0.003 nats changed the selection
figures only slightly (`TrustConfig`).
A single reward model (K = 1) has no spread, so it cannot say how sure it is: by default its edits
are not trusted at all and every input is kept, with a status that says so and how to get an
ensemble. The whole-tune benchmark shows why: with one model and the rule ``gain > margin``, the
engine's default run made 75% of held-out tunes worse (``do_no_harm`` of
benchmarks/results/ascent_quick.json as committed in 810a591). ``single_model=True`` restores that rule for a user who accepts the risk.
Otherwise the input is returned unchanged with a status saying why. The budget also bounds the
search itself: with the guard on, the engine only keeps verified sequences within it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True)
class TrustConfig:
    """When an edited sequence may replace its input (see the module docstring).

    Defaults chosen on the selection split of `benchmarks/do_no_harm.py --quick --recipe
    practical_music` with a 5-member ensemble (val tunes of the training collections and the
    unrated miscFolk; rule: highest mean utility change with at most 5% of tunes made worse), over
    budgets, k, margins and log-likelihood limits: k = 2, margin 0.1. The rule's pick has no edit
    budget (selection split: mean +0.25, 3% worse); the default keeps a budget of 20% of the
    editable positions (selection split: +0.22, 3% worse, 25% improved), a trust region for
    settings the selection did not cover: without it, on the cut tunes of
    benchmarks/music_ascent.py a quarter of the test tunes got worse. No log-likelihood limit
    changed any selection-split figure, so it is off by default (figures:
    benchmarks/results/do_no_harm_quick.json as committed in 48c0832).
    Re-run with the 64-member ensemble (`rewardmodels.DEFAULT_MEMBERS`), every setting of the grid
    made at most 5% of the 32 selection tunes worse, so the rule's pick is the most permissive one
    (no budget, k = 0, margin 0) and says nothing about safety; these defaults were kept (on the
    selection split: +0.16, 0% worse, 81% kept; do_no_harm_quick.json ``grid``, ``chosen``,
    ``report``; music_ascent_quick.json). The first full run (40 tunes per set, before the bar-aware
    sampler fix) picked no budget, k = 0.5, margin 0 (selection split +0.42, 5% worse), not adopted:
    on the report split it left 12.5% of the test tunes worse, these defaults 2.5%; that choice was
    made with the report split in view. Its re-run after the fix (do_no_harm.json) picks a 10%
    budget, k = 0.5, margin 0 (report: 5% / 2.5% of tunes worse); these defaults give +0.16 mean,
    0% worse, 76% kept there, and stay."""

    enabled: bool = True  # False (or AscentConfig(trust=None)): the engine's raw best sequence is returned
    max_changed: float = 0.2  # edit budget: largest fraction of a row's free positions that may change
    pessimism: float = 2.0  # k of the lower bound mean - k * sd of the members' gains (ensembles only)
    margin: float = 0.1  # the lower bound (or a single model's gain) must exceed this, in reward units
    single_model: bool = False  # accept a single reward model's edits when gain > margin (it has no spread)
    max_loglik_drop: float = math.inf  # refuse an edit lowering the generator's mean log-lik per token by more (nats); inf = off, < 0 demands a rise

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_changed <= 1.0:
            raise ValueError(f"max_changed is a fraction of the free positions in [0, 1], got {self.max_changed}")
        if not math.isfinite(self.pessimism) or self.pessimism < 0:
            raise ValueError(f"pessimism must be a finite number >= 0, got {self.pessimism}")
        if not math.isfinite(self.margin):
            raise ValueError(f"margin must be finite, got {self.margin}")
        if math.isnan(self.max_loglik_drop):
            raise ValueError("max_loglik_drop is a drop in nats per token (math.inf: no limit; a negative limit "
                             "demands a rise), got nan")


def active(cfg: TrustConfig | None) -> bool:
    """Whether the guard applies (a config that is present and enabled)."""
    return cfg is not None and cfg.enabled


def edit_budget(free: torch.Tensor, cfg: TrustConfig | None) -> torch.Tensor:
    """Largest number of changed positions per row (b,) given free-position counts (b,); no limit
    (the count itself) when the guard is off."""
    if not active(cfg):
        return free.clone()
    return torch.floor(free.double() * cfg.max_changed + 1e-9).long()


@torch.no_grad()
def member_scores(reward_model, ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Per-member rewards (b, K) of token ids (b, t): `score_members` when the model has members,
    else its score as one member (b, 1)."""
    fn = getattr(reward_model, "score_members", None)
    out = []
    for i in range(0, ids.shape[0], chunk):
        x, m = ids[i : i + chunk], attention_mask[i : i + chunk]
        out.append(fn(x, m) if fn is not None else reward_model.score(x, attention_mask=m)[:, None])
    return torch.cat(out)


def gain_stats(gains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (b,), sd (b,)) of per-member gains (b, K); sd is nan for a single member."""
    g = gains.double()
    sd = g.std(-1, correction=1) if g.shape[-1] > 1 else torch.full(g.shape[:1], math.nan, dtype=g.dtype)
    return g.mean(-1), sd


def verdict(gain_mean: float, gain_sd: float, changed: int, budget: int, free: int,
            cfg: TrustConfig, loglik_drop: float = 0.0) -> str | None:
    """None when the edit may replace the input, else the reason it may not (for the status line).

    loglik_drop: the generator's mean log-likelihood per token of the input minus that of the edit
    (nats; positive = the edit is less like the music the generator learnt)."""
    if changed > budget:
        return (f"edit budget exceeded ({changed} of {free} free positions changed, "
                f"budget {budget} = {cfg.max_changed:.0%})")
    if not loglik_drop <= cfg.max_loglik_drop:  # also refuses a nan drop
        return (f"less like the training music (the generator's log-likelihood drops by {loglik_drop:.3f} "
                f"nats per token, limit {cfg.max_loglik_drop:g})")
    if not math.isfinite(gain_mean):
        return "no confident improvement (gain not finite)"
    if math.isnan(gain_sd):  # a single reward model: no spread to be pessimistic about
        if not cfg.single_model:
            return (f"unsure: one reward model cannot say how sure it is (its gain {gain_mean:.2f}); train an "
                    f"ensemble (gradopt train-reward --recipe practical_music --ensemble 64) or accept its edits "
                    "at your risk "
                    f"(TrustConfig(single_model=True), --trust-single-model)")
        if gain_mean > cfg.margin:
            return None
        return f"no confident improvement (gain {gain_mean:.2f}, needs > {cfg.margin:.2f})"
    lower = gain_mean - cfg.pessimism * gain_sd
    if lower > cfg.margin:
        return None
    return (f"no confident improvement (gain {gain_mean:.2f} ± {gain_sd:.2f}: lower bound {lower:.2f} "
            f"with k={cfg.pessimism:g}, needs > {cfg.margin:.2f})")
