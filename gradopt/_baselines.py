"""Baselines the ascent engine must beat: best-of-N sampling and random-mutation hill climbing.

Both spend reward-model evaluations without gradients, so they say what the engine's gradients buy
at equal evaluations and at equal CPU time (benchmarks/ascent.py reports both):

    best_of_n    draw N samples per slot from the generator, keep the one the reward model likes
                 most (the start counts as sample 1)
    hill_climb   per slot, change one random free token to a random allowed token; keep the change
                 when the exact objective  J = reward + lm_weight * mean log-lik  goes up (and the
                 text stays valid when it started valid)

Each returns `Snapshot`s (rows, process CPU s, wall s, evaluations) measured since the call, so a
budget in evaluations or in CPU time picks a snapshot instead of an extrapolation.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from ._ascent_batch import pad_batch
from ._objective import ObjectiveWeights, discrete_log_likelihood, lm_part, score_sequences, shared_backbone


class Snapshot(NamedTuple):
    """A baseline's rows at one budget, with what it took to get there (since the call)."""

    rows: list[list[int]]  # the current picks, one token row per slot
    cpu_s: float  # process CPU seconds
    wall_s: float  # wall-clock seconds
    evals: int  # reward-model evaluations, all slots together


def memo_validate(screen: Callable[[str], bool] | None = None) -> Callable[[str], bool]:
    """`domains.validate_abc`, memoised; with `screen` (e.g. `domains.ABCConstraint.accepts`, ~1 ms
    against ~50 ms for the parse) a text the screen accepts counts as valid without the parse.
    Baselines and the engine keep outputs valid with the screen; report validity from the parse."""
    from domains import validate_abc

    cache: dict[str, bool] = {}

    def validate(text: str) -> bool:
        if text not in cache:
            cache[text] = bool((screen is not None and screen(text)) or validate_abc(text))
        return cache[text]

    return validate


@torch.no_grad()
def exact_scores(reward_model, generator, rows: Sequence[Sequence[int]], pad_id: int, lm_weight: float,
                 batch_size: int = 64, floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reward, total log-lik, J) of token rows, each (n,) float64, J = reward + lm_weight * mean log-lik,
    or with `floor` (n,) (the starts' mean log-lik: `ObjectiveWeights.lm_floor`)
    J = reward + lm_weight * min(0, mean log-lik - floor).

    The rows-level twin of `score_texts` (which encodes texts and refuses out-of-context ones): the
    same `score_sequences`, one pass when the models share a backbone, summed in float64."""
    ids, mask = pad_batch([list(r) for r in rows], pad_id)
    shared = shared_backbone(reward_model, generator)
    out = []
    for lo in range(0, len(ids), batch_size):
        r, mean_ll, total = score_sequences(reward_model, generator, ids[lo:lo + batch_size],
                                            mask[lo:lo + batch_size], shared)
        out.append(torch.stack([r.double(), total.double(), mean_ll.double()], 1))
    x = torch.cat(out).numpy()
    w = ObjectiveWeights(lm_weight=lm_weight, lm_floor=floor is not None)
    return x[:, 0], x[:, 1], x[:, 0] + lm_weight * lm_part(x[:, 2], floor, w)


def mean_logliks(generator, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The generator's mean log-likelihood per predicted token of token rows (n,) float64 (the
    likelihood floor of `exact_scores`)."""
    ids, mask = pad_batch([list(r) for r in rows], pad_id)
    with torch.no_grad():
        out = [discrete_log_likelihood(generator, ids[lo:lo + batch_size], mask[lo:lo + batch_size])[0]
               for lo in range(0, len(ids), batch_size)]
    return torch.cat(out).double().numpy()


def _rewards(reward_model, rows, pad_id: int) -> np.ndarray:
    """Rewards of token rows (n,) float64: `predict` (batched, normalised) when the model has it."""
    ids, mask = pad_batch(rows, pad_id)
    with torch.no_grad():
        fn = getattr(reward_model, "predict", None) or reward_model.score
        return fn(ids, mask).double().numpy()


def best_of_n(start_rows: Sequence[Sequence[int]], reward_model, generator, tokenizer, *, n_max: int, seed: int,
              temperature: float, constraint=None,
              stop: Callable[[int, float], bool] | None = None,
              score: Callable[[list[list[int]]], np.ndarray] | None = None) -> list[Snapshot]:
    """Best-of-N as it would be used, round by round and timed.

    The start of each slot is sample 1; round n (n = 2, 3, ...) draws one fresh sample per slot
    (`starts_from_generator`, seed ``seed + n``, `temperature`, `constraint`), scores it, and each
    slot keeps the best so far (the earlier sample on a tie). Returns one `Snapshot` per N = 1, 2,
    ..., the CPU measured, not extrapolated. Stops at `n_max` or when ``stop(n, cpu_s)`` is true
    after n rounds. `score`: rows -> (n,) values to maximise; default the reward model's reward
    (`predict` when it has one, else `score`)."""
    from ._starts import starts_from_generator

    if n_max < 1:
        raise ValueError(f"best_of_n: n_max (samples per slot, the start included) must be >= 1, got {n_max}")
    c0, t0 = time.process_time(), time.perf_counter()
    slots = len(start_rows)
    score = score or (lambda rows: _rewards(reward_model, rows, tokenizer.pad_token_id))
    best = [list(r) for r in start_rows]
    best_r = np.array(score(best), dtype=np.float64)
    snaps = [Snapshot(list(best), time.process_time() - c0, time.perf_counter() - t0, slots)]
    for n in range(2, n_max + 1):
        if stop is not None and stop(n - 1, snaps[-1].cpu_s):
            break
        fresh = starts_from_generator(generator, tokenizer, slots, seed=seed + n, temperature=temperature,
                                      constraint=constraint)
        r = score(fresh)
        for i in np.flatnonzero(r > best_r):
            best[i], best_r[i] = fresh[i], r[i]
        snaps.append(Snapshot(list(best), time.process_time() - c0, time.perf_counter() - t0, n * slots))
    return snaps


class _Mutations:
    """Where and to what one row may mutate: its free positions and, per position, the tokens
    allowed there. A draw picks the token first, uniformly among those allowed at some free
    position of the row, then a position that allows it (every free position when the masks
    allow the same tokens everywhere, as pitch edits do)."""

    def __init__(self, positions: list[int], tokens: list[int], ok: np.ndarray | None):
        self.positions, self.tokens, self.ok = positions, tokens, ok  # ok: (positions, tokens) bool or None

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        j = int(rng.choice(len(self.tokens)))
        where = self.positions if self.ok is None else [p for p, y in zip(self.positions, self.ok[:, j]) if y]
        return int(where[int(rng.choice(len(where)))]), self.tokens[j]


def _mutations(ids: torch.Tensor, mask: torch.Tensor, tokenizer, freeze, allowed) -> list[_Mutations | None]:
    """Per row, its `_Mutations` (None when no position may change)."""
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    free = ~torch.isin(ids, torch.tensor(special)) & mask.bool()
    if freeze is not None:
        free &= ~freeze.bool()
    anything = [i for i in range(len(tokenizer)) if i not in special + [tokenizer.unk_token_id]]
    if allowed is not None:
        free &= allowed.any(-1)
    out: list[_Mutations | None] = []
    for r in range(ids.shape[0]):
        positions = free[r].nonzero()[:, 0].tolist()
        if not positions:
            out.append(None)
        elif allowed is None:
            out.append(_Mutations(positions, anything, None))
        else:
            at = allowed[r, positions].bool()  # (positions, v)
            tokens = at.any(0).nonzero()[:, 0].tolist()
            out.append(_Mutations(positions, tokens, at[:, tokens].numpy()))
    return out


def hill_climb(starts: Sequence[Sequence[int]], reward_model, generator, tokenizer, *, evals_per_slot: int,
               cpu_budget: float, lm_weight: float, seed: int, freeze: torch.Tensor | None = None,
               allowed: torch.Tensor | None = None, validate: Callable[[str], bool] | None = None,
               objective: Callable[[list[list[int]]], np.ndarray] | None = None,
               lm_floor: bool = False) -> dict[str, Snapshot]:
    """Random single-token mutation hill climbing in the engine's edit space.

    Each round mutates one random free position of every slot to a random token it allows (the
    token drawn first, then a position that allows it: `_Mutations`) and keeps the mutation where the objective rises strictly; a slot whose start is valid only
    accepts valid mutations (`validate` on the decoded text). Positions: not special (bos, eos,
    pad), not `freeze` (b,t), and with at least one token in `allowed` (b,t,v); tokens: those
    `allowed` there (default every token but the special and unknown ones).

    objective: rows -> (b,) values to climb instead of J = reward + lm_weight * mean log-lik
    (`exact_scores`; lm_floor: its likelihood floor at each start's own mean log-lik, as
    `ObjectiveWeights.lm_floor`); with it, validity is not screened (an oracle objective scores invalid texts
    itself). validate: default none (every text counts as valid); `memo_validate()` for ABC.
    Returns {"evals": `Snapshot` after `evals_per_slot` evaluations per slot (the start's
    included), "time": the first after `cpu_budget` process CPU seconds}; it runs until both."""
    from domains import decode

    if evals_per_slot < 1 or cpu_budget < 0:
        raise ValueError(f"hill_climb: evals_per_slot must be >= 1 and cpu_budget >= 0, got {evals_per_slot} "
                         f"and {cpu_budget}")
    t0, c0 = time.perf_counter(), time.process_time()
    validate = validate or (lambda text: True)
    ids, mask = pad_batch([list(s) for s in starts], tokenizer.pad_token_id)
    b = ids.shape[0]
    if freeze is not None and freeze.shape != ids.shape:
        raise ValueError(f"hill_climb: freeze has shape {tuple(freeze.shape)}, the padded starts {tuple(ids.shape)}")
    if allowed is not None and allowed.shape[:2] != ids.shape:
        raise ValueError(f"hill_climb: allowed has shape {tuple(allowed.shape)}, expected "
                         f"{tuple(ids.shape)} + (vocabulary,)")
    mutations = _mutations(ids, mask, tokenizer, freeze, allowed)
    rng = np.random.default_rng(seed)
    cur = [list(s) for s in starts]
    floor = mean_logliks(generator, cur, tokenizer.pad_token_id) if lm_floor and objective is None else None
    value = objective or (lambda rows: exact_scores(reward_model, generator, rows, tokenizer.pad_token_id,
                                                    lm_weight, floor=floor)[2])
    val = value(cur)
    start_ok = [validate(decode(tokenizer, s)) for s in cur] if objective is None else [False] * b
    evals, snaps, it = b, {}, 0
    while "evals" not in snaps or "time" not in snaps:
        cand = [list(s) for s in cur]
        for r in range(b):
            if mutations[r] is not None:
                pos, token = mutations[r].draw(rng)
                cand[r][pos] = token
        new = value(cand)
        evals += b
        it += 1
        for r in range(b):
            if new[r] > val[r] and (not start_ok[r] or validate(decode(tokenizer, cand[r]))):
                cur[r], val[r] = cand[r], new[r]
        state = Snapshot([list(s) for s in cur], time.process_time() - c0, time.perf_counter() - t0, evals)
        if "evals" not in snaps and it + 1 >= evals_per_slot:
            snaps["evals"] = state
        if "time" not in snaps and state.cpu_s >= cpu_budget:
            snaps["time"] = state
    return snaps
