"""Exact search over domain-proposed whole sequences: edits one token swap cannot make.

Legend: n candidates, t time.

Some edits change a sequence's length or many tokens at once (in ABC: splitting a note, dotting a
pair, repeating or deleting a bar; see `domains.abc_moves`). The ascent's relaxation works on a
fixed-length grid, so these are searched like the polish (`_polish`) searches swaps, but with the
domain as the proposal: each round, every sequence gets its candidates from
``propose(text) -> list[str]`` (a seeded subsample of at most `candidates`), all of them are scored
exactly in batches, and the best candidate that beats the current sequence (and passes `validate`
when the input does) replaces it. Rounds stop early for a sequence no candidate improves.

The objective is the exact discrete one of the ascent without the position-wise terms, which do
not survive a change of length: ``J = reward + lm_weight * mean log-likelihood`` (with the default
``kl_weight = 0`` this equals `optimize`'s objective).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ._ascent_batch import pad_batch, row_seed
from ._distance import edit_distance
from ._models import frozen_models, model_context
from ._objective import ObjectiveWeights, discrete_log_likelihood, score_sequences, shared_backbone
from ._trust import TrustConfig, active, edit_budget, gain_stats, member_scores, verdict


@dataclass(frozen=True, kw_only=True)
class MoveConfig:
    """How long to search domain-proposed moves."""

    rounds: int = 2  # move rounds (each keeps at most one move per sequence); 0 = off
    candidates: int = 64  # candidates scored exactly per sequence and round (seeded subsample)
    seed: int = 0  # seeds the subsample, per sequence by content
    batch_size: int = 64  # sequences per exact scoring pass

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.candidates <= 0 or self.batch_size <= 0:
            raise ValueError(f"rounds must be >= 0 and candidates, batch_size > 0: {self}")


@dataclass
class MoveResult:
    """One sequence's outcome; every score is exact, of a discrete sequence."""

    text: str  # the best sequence found (the input when no move helped)
    tokens: list[int]  # its token ids (BOS ... EOS)
    reward_before: float
    reward_after: float
    loglik_before: float  # total generator log-likelihood (BOS excluded)
    loglik_after: float
    objective_before: float  # J = reward + lm_weight * mean log-likelihood
    objective_after: float
    moves: int  # moves kept
    valid_after: bool | None  # `validate` on `text` (None without a validator)


def score_texts(texts: Sequence[str], reward_model, generator, tokenizer, weights: ObjectiveWeights,
                batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact (J, reward, total log-likelihood), each (n,), of texts encoded ``<bos> text <eos>``;
    a text with an out-of-vocabulary character or longer than a model's context scores -inf."""
    n = len(texts)
    J, reward, total = (torch.full((n,), -torch.inf, dtype=torch.float64) for _ in range(3))
    limit = min(x for x in (model_context(generator), model_context(reward_model), 10**9) if x is not None)
    enc = [tokenizer(t)["input_ids"] for t in texts]
    ok = [i for i, ids in enumerate(enc) if len(ids) <= limit and tokenizer.unk_token_id not in ids]
    shared = shared_backbone(reward_model, generator)
    for lo in range(0, len(ok), batch_size):
        rows = ok[lo:lo + batch_size]
        ids, mask = pad_batch([enc[i] for i in rows], tokenizer.pad_token_id)
        r, mean_ll, total_ll = score_sequences(reward_model, generator, ids, mask, shared)
        idx = torch.tensor(rows)
        reward[idx], total[idx] = r.double(), total_ll.double()
        J[idx] = (r + weights.lm_weight * mean_ll).double()
    return J, reward, total


def move_search(
    texts: Sequence[str],
    propose: Callable[[str], list[str]],
    reward_model,
    generator,
    tokenizer,
    cfg: MoveConfig = MoveConfig(),
    *,
    weights: ObjectiveWeights = ObjectiveWeights(),
    validate: Callable[[str], object] | None = None,
    progress: bool = False,
) -> list[MoveResult]:
    """Hill-climb each text over `propose`'s whole-sequence candidates (see the module docstring).

    The result never scores below its input, and never fails `validate` when its input passes it.
    """
    texts = list(texts)
    with frozen_models(reward_model, generator):
        J0, r0, ll0 = score_texts(texts, reward_model, generator, tokenizer, weights, cfg.batch_size)
        needs_valid = [validate is not None and bool(validate(t)) for t in texts]
        cur, val, rew, ll = list(texts), J0.clone(), r0.clone(), ll0.clone()
        moves = [0] * len(texts)
        active = [bool(torch.isfinite(J0[i])) for i in range(len(texts))]
        for rnd in tqdm(range(cfg.rounds), desc="moves", disable=not progress, leave=False):
            pool: list[tuple[int, str]] = []
            for i in (i for i in range(len(texts)) if active[i]):
                cands = [c for c in propose(cur[i]) if c != cur[i]]
                if len(cands) > cfg.candidates:
                    rng = random.Random(row_seed(cfg.seed, rnd, [ord(ch) for ch in cur[i]]))
                    cands = [cands[k] for k in sorted(rng.sample(range(len(cands)), cfg.candidates))]
                pool += [(i, c) for c in cands]
            if not pool:
                break
            Jc, rc, llc = score_texts([c for _, c in pool], reward_model, generator, tokenizer, weights, cfg.batch_size)
            improved = set()
            for k in sorted(range(len(pool)), key=lambda k: -float(Jc[k])):
                i, cand = pool[k]
                if i in improved or not Jc[k] > val[i]:
                    continue
                if needs_valid[i] and not validate(cand):
                    continue
                cur[i], val[i], rew[i], ll[i] = cand, Jc[k], rc[k], llc[k]
                moves[i] += 1
                improved.add(i)
            active = [a and i in improved for i, a in enumerate(active)]
    return [
        MoveResult(text=cur[i], tokens=tokenizer(cur[i])["input_ids"], reward_before=float(r0[i]),
                   reward_after=float(rew[i]), loglik_before=float(ll0[i]), loglik_after=float(ll[i]),
                   objective_before=float(J0[i]), objective_after=float(val[i]), moves=moves[i],
                   valid_after=None if validate is None else bool(validate(cur[i])))
        for i in range(len(texts))
    ]


def keep_bars(propose: Callable[[str], list[str]], bars: set[int]) -> Callable[[str], list[str]]:
    """`propose` restricted to candidates in which every bar of `bars` (numbers as in
    `_masks.bar_of_chars`, 0 = header) holds exactly the characters it holds in the current text,
    so moves respect a ``--freeze`` of bars (a move that shifts a frozen bar's number is refused)."""
    from ._masks import bar_of_chars

    def contents(text: str) -> list[str]:
        where = bar_of_chars(text)
        return ["".join(ch for ch, b in zip(text, where) if b == k) for k in sorted(bars)]

    def proposed(text: str) -> list[str]:
        mine = contents(text)
        return [c for c in propose(text) if contents(c) == mine]

    return proposed


def vet_moves(starts: Sequence[Sequence[int]], moved: list[MoveResult], reward_model, pad_id: int,
              cfg: TrustConfig | None, generator=None) -> list[str | None]:
    """The do-no-harm guard (`gradopt._trust`) on each moved sequence against its row's *input*
    `starts[i]` (token ids): None where the moves may be kept, else why not. The whole path from
    the input counts — the ascent's edit plus the moves — with the token edit distance as the
    changed positions and the input's length (BOS/EOS excluded) as the free ones. `generator`
    scores the log-likelihood rule (`TrustConfig.max_loglik_drop`); it is needed when that is set."""
    out: list[str | None] = [None] * len(moved)
    todo = [i for i, m in enumerate(moved) if m.moves]
    if not active(cfg) or not todo:
        return out
    before_ids, before_mask = pad_batch([list(starts[i]) for i in todo], pad_id)
    after_ids, after_mask = pad_batch([moved[i].tokens for i in todo], pad_id)
    gains = member_scores(reward_model, after_ids, after_mask) - member_scores(reward_model, before_ids, before_mask)
    mean, sd = gain_stats(gains)
    drop = torch.zeros(len(todo), dtype=torch.float64)
    if math.isfinite(cfg.max_loglik_drop):
        if generator is None:
            raise ValueError("vet_moves needs the generator when TrustConfig.max_loglik_drop is set")
        with torch.no_grad():
            drop = (discrete_log_likelihood(generator, before_ids, before_mask)[0]
                    - discrete_log_likelihood(generator, after_ids, after_mask)[0]).double()
    for k, i in enumerate(todo):
        start = "".join(map(chr, starts[i]))
        changed = edit_distance(start, "".join(map(chr, moved[i].tokens)))
        free = max(len(starts[i]) - 2, 0)
        budget = int(edit_budget(torch.tensor([free]), cfg)[0])
        out[i] = verdict(float(mean[k]), float(sd[k]), changed, budget, free, cfg, loglik_drop=float(drop[k]))
    return out


def apply_moves(rows: list, moved: list[MoveResult], refused: Sequence[str | None] | None = None) -> list:
    """`optimize`'s rows (`RowResult`) updated with a `move_search` run that started from their
    texts: the sequence, its scores and validity; `changed` becomes the token edit distance to the
    row's start when a move was kept. Rows without a move, or whose moves `refused` names a reason
    for (`vet_moves`), are returned unchanged (the reason is added to the status)."""
    out = []
    for n, (row, m) in enumerate(zip(rows, moved)):
        why = refused[n] if refused is not None else None
        if not m.moves or why is not None:
            out.append(row if why is None else replace(row, status=f"{row.status}; moves not kept: {why}"))
            continue
        before = "".join(map(chr, row.tokens))
        start_changed = row.changed
        out.append(replace(
            row, tokens=m.tokens, text=m.text, reward_after=m.reward_after, loglik_after=m.loglik_after,
            objective_after=m.objective_after, valid_after=m.valid_after,
            changed=start_changed + edit_distance(before, "".join(map(chr, m.tokens))),
            status=f"{row.status}; {m.moves} move(s)", kept=False,
        ))
    return out
