"""New pieces by the batch recipe: best-of-N by the reward model, then the engine on each pick.

`benchmarks/ascent.py` measured this against best-of-N' with the same total CPU (its batch
recipe row): from the same whole-tune samples, best-of-4 followed by the engine gained more
simulated-rater utility than drawing more samples. `best_then_polish` is that procedure on given
first samples; `generate` draws the first samples too and is what ``gradopt generate`` runs.

By default the engine runs as `POLISH_ENGINE`, without the do-no-harm guard: the pieces are new,
and on the select split of benchmarks/generate_recipe.py the guard kept a third of the picks
unchanged and lost the recipe's lead over more samples, while without it no pick was made worse
(utility drop > 0.1) by the engine. `GenerateConfig(polish=...)` with a `TrustConfig` turns the
guard on; each piece says whether the engine changed its pick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ._ascent import AscentConfig, optimize
from ._ascent_batch import pad_batch
from ._baselines import Snapshot, _rewards, best_of_n
from ._objective import ObjectiveWeights
from ._optim import Adam
from ._polish import PolishConfig
from ._relax import SimplexLogits
from ._result import AscentResult, RowResult
from ._starts import starts_from_generator

# (padded ids (b,t)) -> (freeze (b,t) or None, allowed (b,t,v) or None): the edit space of a batch
EditSpace = Callable[[torch.Tensor], tuple]

# The engine as benchmarks/ascent.py runs it (its defaults, chosen there on the select split): 8
# steps of the logits relaxation (Adam step 2), lm weight 4, 8 rounds of the exact-swap polish, no
# do-no-harm guard. `generate`'s default (chosen on generate_recipe.py's select split).
POLISH_ENGINE = AscentConfig(steps=8, check_every=4, relaxation=SimplexLogits(init_scale=3.0),
                             objective=ObjectiveWeights(lm_weight=4.0), optimizer=Adam(lr=2.0),
                             polish=PolishConfig(rounds=8, top_k=8, candidates=16, combine=16), trust=None)


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    """How `generate` draws and improves pieces."""

    best_of: int = 4  # samples drawn per piece, the reward model keeps the best (1 = plain sampling)
    polish: AscentConfig | None = POLISH_ENGINE  # the engine on each pick; None = best-of-N only
    temperature: float = 0.8  # sampling temperature (as benchmarks/generate_recipe.py measured it)
    max_new_tokens: int | None = None  # per sample; None = the generator's context
    batch_size: int = 16  # picks per `optimize` call
    seed: int = 0  # sampling seed (round k of best-of-N draws with seed + k)

    def __post_init__(self) -> None:
        if self.best_of < 1:
            raise ValueError(f"best_of (samples per piece, the first included) must be >= 1, got {self.best_of}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class GeneratedPiece:
    """One piece: the returned text, and how it was reached."""

    text: str  # the result: the engine's output, or the pick when the engine is off or kept it
    pick: str  # the best-of-N pick (what best-of-N alone would return)
    first_reward: float  # the first sample's reward (what plain sampling would return)
    pick_reward: float  # the pick's reward
    reward: float  # the returned text's verified reward
    engine: RowResult | None  # the engine's row for the pick (None: polish off)

    @property
    def changed(self) -> bool:
        """True when the engine edited the pick."""
        return self.engine is not None and self.engine.changed > 0


@dataclass
class GenerateResult:
    pieces: list[GeneratedPiece]
    sample_cpu_seconds: float  # drawing the samples and scoring them (best-of-N)
    engine_cpu_seconds: float  # the engine on the picks (0 with polish off)
    samples: int  # samples drawn in all

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.pieces]


def best_then_polish(starts: Sequence[Sequence[int]], reward_model, generator, tokenizer, *, best_of: int,
                     seed: int, temperature: float, polish: AscentConfig | None, constraint=None,
                     edits: EditSpace | None = None, validate: Callable[[str], object] | None = None,
                     batch_size: int = 16, on_round: Callable[[int], None] | None = None,
                     progress: bool = False) -> tuple[list[Snapshot], AscentResult | None]:
    """Best-of-`best_of` from `starts` (each start is sample 1; `gradopt.best_of_n` with `seed`,
    `temperature`, `constraint`), then `optimize(pick, polish)` on the picks in batches of
    `batch_size` with `edits(ids)`'s masks. on_round(k): called as round k of sampling starts.

    Returns (best-of-N's snapshots, the engine's result on the picks, its batches merged: rows in
    order, evaluations, seconds and CPU seconds summed; None when `polish` is None)."""
    def stop(k: int, cpu: float) -> bool:  # best_of_n asks before round k + 1; never stops early
        if on_round is not None:
            on_round(k + 1)
        return False

    draws = best_of_n(starts, reward_model, generator, tokenizer, n_max=best_of, seed=seed,
                      temperature=temperature, constraint=constraint, stop=None if on_round is None else stop)
    if polish is None:
        return draws, None
    picks, parts = draws[-1].rows, []
    for lo in range(0, len(picks), batch_size):
        batch = picks[lo:lo + batch_size]
        freeze, allowed = edits(pad_batch(batch, tokenizer.pad_token_id)[0]) if edits else (None, None)
        parts.append(optimize(batch, reward_model, generator, polish, tokenizer=tokenizer, freeze=freeze,
                              allowed=allowed, validate=validate, progress=progress))
    return draws, AscentResult(rows=[r for p in parts for r in p.rows],
                               reward_evals=sum(p.reward_evals for p in parts),
                               generator_evals=sum(p.generator_evals for p in parts),
                               seconds=sum(p.seconds for p in parts), cpu_seconds=sum(p.cpu_seconds for p in parts))


def generate(generator, reward_model, tokenizer, n: int, cfg: GenerateConfig = GenerateConfig(), *,
             constraint=None, edits: EditSpace | None = None, validate: Callable[[str], object] | None = None,
             progress: bool = False) -> GenerateResult:
    """`n` new pieces: best-of-`cfg.best_of` generator samples by the reward model, each pick then
    improved by the engine (`cfg.polish`; its guard, if it has one, may return the pick). constraint: as in
    `domains.sample_ids` (e.g. bar-aware ABC); edits: the edit space per batch (e.g. ABC pitch edits
    with the header frozen, `header_frozen_masks`); validate: text -> truthy when acceptable.
    Rewards are the reward model's `predict` (an ensemble's mean), verified on the discrete texts."""
    import domains

    if n < 1:
        raise ValueError(f"n (pieces to generate) must be >= 1, got {n}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.best_of, desc="best-of-N", unit="round")
    c0 = time.process_time()
    first = starts_from_generator(generator, tokenizer, n, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                                  temperature=cfg.temperature, constraint=constraint)
    first_cpu = time.process_time() - c0
    if bar is not None:
        bar.update(1)
    draws, engine = best_then_polish(
        first, reward_model, generator, tokenizer, best_of=cfg.best_of, seed=cfg.seed, temperature=cfg.temperature,
        polish=cfg.polish, constraint=constraint, edits=edits, validate=validate, batch_size=cfg.batch_size,
        on_round=None if bar is None else (lambda k: bar.update(1)), progress=progress)
    if bar is not None:
        bar.close()
    pad = tokenizer.pad_token_id
    picks = draws[-1].rows
    first_r, pick_r = _rewards(reward_model, first, pad), _rewards(reward_model, picks, pad)
    decode = lambda r: domains.decode(tokenizer, r)  # noqa: E731
    pieces = []
    for i, pick in enumerate(picks):
        row = engine.rows[i] if engine is not None else None
        text = row.text if row is not None else decode(pick)
        reward = row.reward_after if row is not None else float(pick_r[i])
        pieces.append(GeneratedPiece(text=text, pick=decode(pick), first_reward=float(first_r[i]),
                                     pick_reward=float(pick_r[i]), reward=float(reward), engine=row))
    return GenerateResult(pieces=pieces, sample_cpu_seconds=first_cpu + draws[-1].cpu_s,
                          engine_cpu_seconds=engine.cpu_seconds if engine is not None else 0.0,
                          samples=draws[-1].evals)

