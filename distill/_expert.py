"""Expert iteration ("amortised ascent"): the project's own way of moving the generator.

Each round (seed essay, "Amortized inference"):

    starts   n pieces: samples of the current policy (free or bar-aware) or corpus pieces; with a
             curriculum, the policy completes real corpus tunes from a prefix that shrinks round by
             round, so it first learns short endings, then whole tunes
    improve  each start by gradient ascent on the reward model (`gradopt.optimize`, do-no-harm
             guard on), by best-of-k sampling under the verified reward, or by both in turn
             (best of k, then the ascent on the pick)
    verify   VERIFIED reward = task.reward(improved discrete texts), never a relaxation's score
    keep     rows above the threshold that pass task.validate
    train    likelihood fine-tune of the policy on the kept rows + a replay of the corpus

Rounds go on until `Budget.cpu_seconds` (or `Budget.max_steps`) is spent, so expert iteration gets
the same CPU as the methods it is compared with; ``rounds=N`` instead runs N rounds, each with an
equal share of the budget left (`round_allowance`).

Thresholds: "prev_mean" keeps rows above the mean verified reward of the previous corpus (round 1:
of its own starts; later: of the previous round's kept rows, the corpus the policy last imitated);
"top_fraction" keeps the best fraction; "margin" keeps rows that beat their own start by `margin`.

Work directory: ``round_k/`` holds improved.jsonl (all rows, written before training), kept.jsonl,
finetune/ (the loop's checkpoint), policy.pt and done.json (the round's history row, last). A
killed run resumes at the first round without done.json, from the policy of the round before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from domains import context_length, decode, sample_ids

from ._finetune import FINETUNE_LOOP, finetune
from ._loop import LoopConfig
from ._task import Budget, DistillRun, Task, register

SOURCES = ("samples", "bar_aware", "corpus")
IMPROVERS = ("optimize", "best_of_n", "best_of_n+optimize")
THRESHOLDS = ("prev_mean", "top_fraction", "margin")


@dataclass(frozen=True, kw_only=True)
class ExpertConfig:
    """One expert-iteration run. (Ascent and fine-tune optimiser settings are separate options of
    the method: `ascent=AscentConfig(...)`, `loop=LoopConfig(...)`.)"""

    rounds: int = 0  # improve -> keep -> fine-tune cycles; 0 = rounds until the Budget is spent
    n_per_round: int = 32  # starts per round
    source: str = "samples"  # "samples" (policy), "bar_aware" (policy under task.constraint_factory), "corpus"
    improver: str = "best_of_n"  # "optimize" (gradopt.optimize, needs task.reward_model), "best_of_n", or
    # "best_of_n+optimize" (best of k, then optimize on the pick: the batch recipe of benchmarks/ascent.py)
    k: int = 4  # best_of_n improvers: samples per start, the start included
    threshold: str = "prev_mean"  # "prev_mean", "top_fraction" or "margin" (module docstring)
    top_fraction: float = 0.25  # "top_fraction": share of the valid improved rows kept
    margin: float = 0.0  # "margin": verified gain over the row's own start needed to keep it
    replay_fraction: float = 0.5  # share of each fine-tune batch drawn from task.corpus
    finetune_steps: int = 40  # fine-tune steps per round (Budget.max_steps caps their sum)
    finetune_share: float = 0.5  # share of a round's CPU for the fine-tune; improvement stops at the rest
    curriculum: bool = False  # sampled starts complete corpus prefixes of fraction 1 - k/rounds in round k

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.n_per_round < 1 or self.k < 1 or self.finetune_steps < 1:
            raise ValueError(f"ExpertConfig needs rounds >= 0 (0: until the budget) and n_per_round, k and "
                             f"finetune_steps >= 1; got {self}")
        for name, value, choices in (("source", self.source, SOURCES), ("improver", self.improver, IMPROVERS),
                                     ("threshold", self.threshold, THRESHOLDS)):
            if value not in choices:
                raise ValueError(f"ExpertConfig.{name} must be one of {choices}, got {value!r}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"ExpertConfig.top_fraction must be in (0, 1], got {self.top_fraction}")
        if not math.isfinite(self.margin):
            raise ValueError(f"ExpertConfig.margin must be finite, got {self.margin}")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise ValueError(f"ExpertConfig.replay_fraction must be in [0, 1), got {self.replay_fraction}")
        if not 0.0 < self.finetune_share < 1.0:
            raise ValueError(f"ExpertConfig.finetune_share must be in (0, 1), got {self.finetune_share}")
        if self.curriculum and self.source == "corpus":
            raise ValueError("ExpertConfig.curriculum completes corpus prefixes with the policy; use source "
                             "'samples' or 'bar_aware' with it")
        if self.curriculum and self.rounds == 0:
            raise ValueError("ExpertConfig.curriculum shrinks the prefix over a known number of rounds; set rounds "
                             ">= 1 with it (rounds=0 runs until the budget)")
        if self.improver.startswith("best_of_n") and self.source == "corpus":
            raise ValueError(f"improver {self.improver!r} draws fresh samples and cannot improve given corpus "
                             "pieces; use improver 'optimize' with source 'corpus'")


# Expert iteration as benchmarks/distill.py runs it (results/distill.json, config "expert_config"):
# best of 8 free policy samples per start, every valid improved row kept (validity first: the
# kept rows are the policy's own valid tunes, so it learns where its own samples break bars),
# rounds until the budget is spent. Chosen on dev seed 100 (60 CPU-s, that script's --seed-start/
# --methods/--expert-options), never on the reported seeds: free validity 42% against the base's
# 23% there, where the old 3-round defaults run to the budget and bar-aware starts stayed at
# or below the base (the prev_mean bar rises until a round keeps 1-5 rows, and grammar samples
# do not teach the free sampler). ExpertConfig() keeps the earlier defaults.
BENCHMARK_EXPERT = ExpertConfig(k=8, threshold="top_fraction", top_fraction=1.0)


def _seed(*parts: int) -> int:
    """A 31-bit seed from integers (the same parts give the same seed in every process)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _context(task: Task) -> int:
    """Tokens a start may have: the generator's context, and the reward model's when ascending it."""
    n = context_length(task.generator)
    rm = task.reward_model
    if rm is not None and getattr(getattr(rm, "config", None), "n_positions", None):
        n = min(n, int(rm.config.n_positions))
    return n


def _fitting(task: Task, context: int) -> list[str]:
    """The corpus pieces that fit `context` tokens (BOS and EOS included)."""
    pieces = [t for t in task.corpus if len(task.tokenizer(t)["input_ids"]) <= context]
    if not pieces:
        raise ValueError(f"no corpus piece fits the models' context of {context} tokens; pass shorter pieces "
                         "in Task.corpus or use models with a longer context")
    return pieces


# ---- starts --------------------------------------------------------------------------------------

def _sample_starts(policy, task: Task, prefixes: Sequence[str], *, seed: int, context: int,
                   constraint_factory: Callable[[], object] | None) -> list[list[int]]:
    """One policy sample per entry of `prefixes` (BOS prefix ... EOS), each within `context` tokens;
    samples sharing a prefix are drawn in one batch."""
    out: list[list[int] | None] = [None] * len(prefixes)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prefixes):
        groups.setdefault(p, []).append(i)
    eos = task.tokenizer.eos_token_id
    for j, (prefix, idx) in enumerate(groups.items()):
        used = 1 + len(task.tokenizer(prefix, add_special_tokens=False)["input_ids"])
        room = context - used - 1  # leave a place for the EOS appended to a cut-off sample
        if room < 1:
            raise ValueError(f"prefix {prefix[:40]!r} leaves no room in the context of {context} tokens")
        cfg = dataclasses.replace(task.sample, max_new_tokens=min(task.sample.max_new_tokens, room))
        constraint = constraint_factory() if constraint_factory is not None else None
        rows = sample_ids(policy, task.tokenizer, len(idx), cfg, prefix=prefix, seed=_seed(seed, j),
                          constraint=constraint)
        for i, r in zip(idx, rows):
            out[i] = r if r[-1] == eos else r + [eos]
    return out  # type: ignore[return-value]


def round_allowance(cfg: ExpertConfig, k: int, left: float) -> float:
    """CPU-seconds round k may use when `left` remain: (left) / (rounds left) for a fixed number of
    rounds; with ``rounds=0`` all of it, since a round's own size (n_per_round starts, finetune_steps
    steps) bounds it and only the last round, cut short, meets the budget. The improvement stops
    after ``1 - finetune_share`` of it (at a chunk boundary); the fine-tune gets the rest."""
    return left / (cfg.rounds - k + 1) if cfg.rounds else left


def prefix_fraction(cfg: ExpertConfig, k: int) -> float:
    """The curriculum's share of each corpus tune given as the prefix in round k (1-based):
    1 - k / rounds, so the last round samples whole tunes from the task's prompts."""
    return 1.0 - k / cfg.rounds


def _prefixes(task: Task, cfg: ExpertConfig, k: int, seed: int, context: int) -> list[str]:
    """What each of the round's samples starts from: the task's prompts cycled, or with the
    curriculum the first `prefix_fraction` of corpus tunes (drawn at random, seeded)."""
    frac = prefix_fraction(cfg, k) if cfg.curriculum else 0.0
    if frac <= 0.0:
        return [task.prompts[i % len(task.prompts)] for i in range(cfg.n_per_round)]
    pieces = _fitting(task, context)
    rng = np.random.default_rng(_seed(seed, k, 7))
    return [pieces[i][: int(frac * len(pieces[i]))] for i in rng.integers(len(pieces), size=cfg.n_per_round)]


def _starts(policy, task: Task, cfg: ExpertConfig, k: int, seed: int, context: int) -> tuple[list[list[int]], list[str]]:
    """The round's start rows and, per row, the prefix further samples of it must share."""
    if cfg.source == "corpus":
        pieces = _fitting(task, context)
        rng = np.random.default_rng(_seed(seed, k, 5))
        picks = [pieces[i] for i in rng.permutation(len(pieces))[: cfg.n_per_round]]
        return [task.tokenizer(t)["input_ids"] for t in picks], [""] * len(picks)
    prefixes = _prefixes(task, cfg, k, seed, context)
    factory = task.constraint_factory if cfg.source == "bar_aware" else None
    return _sample_starts(policy, task, prefixes, seed=_seed(seed, k, 1), context=context,
                          constraint_factory=factory), prefixes


# ---- improvers: start rows -> improved texts ----------------------------------------------------

def improve_optimize(rows: list[list[int]], prefixes: list[str], *, policy, task: Task, cfg: ExpertConfig,
                     ascent, seed: int, context: int) -> list[str]:
    """`gradopt.optimize` on `task.reward_model` (the base generator's likelihood as the prior term),
    do-no-harm guard on: a row the guard does not trust comes back as its start."""
    from gradopt import optimize

    result = optimize(rows, task.reward_model, task.reference(), dataclasses.replace(ascent, seed=seed),
                      tokenizer=task.tokenizer, validate=task.validate)
    return [r.text for r in result.rows]


def improve_best_of_n(rows: list[list[int]], prefixes: list[str], *, policy, task: Task, cfg: ExpertConfig,
                      ascent, seed: int, context: int) -> list[str]:
    """Best of k policy samples per start under the verified `task.reward` (the start is sample 1;
    the others share its prefix and sampling grammar; the earlier sample wins a tie)."""
    best = [decode(task.tokenizer, r) for r in rows]
    best_r = np.asarray(task.reward(best), dtype=np.float64)
    factory = task.constraint_factory if cfg.source == "bar_aware" else None
    for j in range(2, cfg.k + 1):
        fresh = [decode(task.tokenizer, r) for r in
                 _sample_starts(policy, task, prefixes, seed=_seed(seed, j), context=context,
                                constraint_factory=factory)]
        r = np.asarray(task.reward(fresh), dtype=np.float64)
        for i in np.flatnonzero(r > best_r):
            best[i], best_r[i] = fresh[i], r[i]
    return best


def improve_best_then_optimize(rows: list[list[int]], prefixes: list[str], *, policy, task: Task,
                               cfg: ExpertConfig, ascent, seed: int, context: int) -> list[str]:
    """`improve_best_of_n`, then `improve_optimize` on each pick: the batch recipe that
    benchmarks/ascent.py measured against more samples at equal CPU (and `gradopt.generate` runs)."""
    kw = dict(policy=policy, task=task, cfg=cfg, ascent=ascent, seed=seed, context=context)
    picks = improve_best_of_n(rows, prefixes, **kw)
    return improve_optimize([task.tokenizer(t)["input_ids"] for t in picks], prefixes, **kw)


IMPROVE = {"optimize": improve_optimize, "best_of_n": improve_best_of_n,
           "best_of_n+optimize": improve_best_then_optimize}


# ---- selection ----------------------------------------------------------------------------------

def select(rows: Sequence[dict], cfg: ExpertConfig, bar: float | None) -> tuple[list[int], float]:
    """Indices of the rows to keep and the bar they had to beat. A row is eligible when its verified
    ``after`` reward is finite and it is ``valid``; then "prev_mean" keeps after > bar, "margin"
    keeps after - before > cfg.margin (bar reported as the margin), "top_fraction" keeps the best
    ceil(top_fraction * eligible) (bar = the lowest kept reward)."""
    ok = [i for i, r in enumerate(rows) if r["valid"] and math.isfinite(r["after"])]
    if cfg.threshold == "prev_mean":
        return [i for i in ok if rows[i]["after"] > bar], float(bar)
    if cfg.threshold == "margin":
        return [i for i in ok if rows[i]["after"] - rows[i]["before"] > cfg.margin], cfg.margin
    n = math.ceil(cfg.top_fraction * len(ok))
    keep = sorted(sorted(ok, key=lambda i: -rows[i]["after"])[:n])
    return keep, (min(rows[i]["after"] for i in keep) if keep else math.nan)


def _mean(xs) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return float(np.mean(xs)) if xs else math.nan


# ---- one round ----------------------------------------------------------------------------------

class _Run:
    """The state a run carries from round to round, and the CPU clock across resumes."""

    def __init__(self, task, cfg, ascent, loop, budget, seed, progress, workdir):
        self.task, self.cfg, self.ascent, self.loop = task, cfg, ascent, loop
        self.budget, self.seed, self.progress, self.workdir = budget, seed, progress, workdir
        self.context = _context(task)
        self.policy = task.policy_copy()
        self.bar: float | None = None  # "prev_mean" bar for the next round
        self.spent_before = 0.0  # CPU of finished rounds (recorded in their done.json)
        self.t0 = time.process_time()
        self.steps = 0  # fine-tune steps so far

    def spent(self) -> float:
        return self.spent_before + time.process_time() - self.t0

    def improve(self, d: Path, k: int, allowance: float, notes: list[str]) -> list[dict]:
        """improved.jsonl of round k: start, improved text, verified rewards, validity per row.
        Starts are improved in chunks until the round's improvement share of CPU is used."""
        path = d / "improved.jsonl"
        if path.exists():
            return _read_jsonl(path)
        cfg, task = self.cfg, self.task
        t_start = self.spent()
        starts, prefixes = _starts(self.policy, task, cfg, k, self.seed, self.context)
        chunk = max(1, min(len(starts), 16))
        improved: list[str] = []
        for lo in range(0, len(starts), chunk):
            improved += IMPROVE[cfg.improver](starts[lo:lo + chunk], prefixes[lo:lo + chunk], policy=self.policy,
                                              task=task, cfg=cfg, ascent=self.ascent,
                                              seed=_seed(self.seed, k, 3, lo), context=self.context)
            if self.spent() - t_start >= (1.0 - cfg.finetune_share) * allowance and len(improved) < len(starts):
                notes.append(f"round {k}: the improvement's CPU share was used after {len(improved)} of "
                             f"{len(starts)} starts")
                break
        start_texts = [decode(task.tokenizer, r) for r in starts[:len(improved)]]
        before = np.asarray(task.reward(start_texts), dtype=np.float64)
        after = np.asarray(task.reward(improved), dtype=np.float64)
        valid = [task.validate is None or bool(task.validate(t)) for t in improved]
        rows = [{"start": s, "text": t, "before": float(b), "after": float(a), "valid": v}
                for s, t, b, a, v in zip(start_texts, improved, before, after, valid)]
        _write_jsonl(path, rows)
        return rows

    def round(self, k: int, notes: list[str]) -> dict:
        """Run round k (resuming its improvement and fine-tune if they were under way)."""
        cfg, d = self.cfg, self.workdir / f"round_{k}"
        d.mkdir(parents=True, exist_ok=True)
        t_round = self.spent()
        allowance = round_allowance(cfg, k, self.budget.cpu_seconds - t_round)
        rows = self.improve(d, k, allowance, notes)
        if self.bar is None:  # round 1 of "prev_mean": the starts are the previous corpus
            self.bar = _mean(r["before"] for r in rows)
        keep, bar = select(rows, cfg, self.bar)
        kept = [rows[i] for i in keep]
        _write_jsonl(d / "kept.jsonl", kept)
        steps_cap = min(cfg.finetune_steps, self.budget.max_steps - self.steps)
        nll, steps = math.nan, 0
        if not kept:
            invalid = sum(not r["valid"] for r in rows)
            notes.append(f"round {k}: no row passed the {cfg.threshold} threshold ({bar:.4g}); {len(rows)} improved, "
                         f"{invalid} invalid; the policy was not fine-tuned")
        elif steps_cap <= 0:
            notes.append(f"round {k}: Budget.max_steps ({self.budget.max_steps}) used up; no fine-tune")
        else:
            left = max(allowance - (self.spent() - t_round), 1e-6)
            torch.manual_seed(_seed(self.seed, k, 4))  # dropout, if the policy has any
            hist = finetune(self.policy, self.task.tokenizer, [r["text"] for r in kept],
                            Budget(cpu_seconds=left, max_steps=steps_cap), d / "finetune",
                            replay=self.task.corpus, replay_fraction=cfg.replay_fraction, cfg=self.loop,
                            seed=_seed(self.seed, k, 2), progress=self.progress)
            steps = len(hist)
            nll = hist[-1]["loss"] if hist else math.nan
            if not hist:
                notes.append(f"round {k}: the round's CPU share was used up by the improvement; no fine-tune step")
        self.steps += steps
        torch.save(self.policy.state_dict(), d / "policy.pt.tmp")
        (d / "policy.pt.tmp").replace(d / "policy.pt")
        row = {"step": k, "round": k, "cpu_s": round(self.spent(), 3), "n_started": len(rows),
               "n_improved": sum(r["after"] > r["before"] for r in rows), "n_kept": len(kept),
               "reward_before": _mean(r["before"] for r in rows), "reward_after": _mean(r["after"] for r in rows),
               "kept_mean": _mean(r["after"] for r in kept), "bar": bar, "finetune_steps": steps, "nll": nll}
        if cfg.curriculum:
            row["prefix_fraction"] = prefix_fraction(cfg, k)
        if kept and cfg.threshold == "prev_mean":
            self.bar = row["kept_mean"]
        _write_json(d / "done.json", {"row": row, "notes": [n for n in notes if n.startswith(f"round {k}:")],
                                      "bar_next": self.bar, "steps_total": self.steps})
        return row


def _check(task: Task, cfg: ExpertConfig, ascent) -> None:
    if cfg.improver.endswith("optimize"):
        if task.reward_model is None:
            raise ValueError(f"expert improver {cfg.improver!r} ascends Task.reward_model, which is None; set it (a "
                             "rewardmodels.RewardModel on the generator's tokenizer) or use improver 'best_of_n'")
        if ascent.trust is None or not ascent.trust.enabled:
            raise ValueError("expert iteration keeps the do-no-harm guard on; pass an AscentConfig with trust enabled")
    if cfg.source == "bar_aware" and task.constraint_factory is None:
        raise ValueError("source 'bar_aware' needs Task.constraint_factory (e.g. domains.ABCConstraint.from_texts)")
    if (cfg.source == "corpus" or cfg.curriculum) and not task.corpus:
        raise ValueError(f"source {cfg.source!r}{' with curriculum' if cfg.curriculum else ''} needs Task.corpus")


def _same_config(workdir: Path, record: dict) -> None:
    """Refuse to resume a run made with other settings (only `rounds` may grow)."""
    path = workdir / "expert_config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if {k: v for k, v in old.items() if k != "rounds"} != {k: v for k, v in record.items() if k != "rounds"}:
            raise ValueError(f"{workdir} holds an expert run with other settings ({old}); use a new work "
                             "directory or the same settings to resume")
    _write_json(path, record)


@register("expert")
def run_expert(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
               cfg: ExpertConfig | None = None, ascent=None, loop: LoopConfig = FINETUNE_LOOP,
               **fields) -> DistillRun:
    """Expert iteration on `task` (module docstring). cfg: an `ExpertConfig`; further keyword
    `fields` override its fields (``rounds=5``). ascent: the `gradopt.AscentConfig` of the
    "optimize" improver (default `AscentConfig()`, guard on). loop: the fine-tune's optimiser.
    The whole run spends at most about `budget.cpu_seconds` (`round_allowance` splits it over the
    rounds); with ``rounds=0`` rounds go on until the CPU budget or `budget.max_steps` is spent."""
    from gradopt import AscentConfig

    unknown = set(fields) - {f.name for f in dataclasses.fields(ExpertConfig)}
    if unknown:
        raise ValueError(f"expert: unknown option(s) {sorted(unknown)}; ExpertConfig fields are "
                         f"{[f.name for f in dataclasses.fields(ExpertConfig)]}")
    cfg = dataclasses.replace(cfg or ExpertConfig(), **fields)
    ascent = ascent or AscentConfig()
    _check(task, cfg, ascent)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _same_config(workdir, {**dataclasses.asdict(cfg), "seed": seed, "ascent": repr(ascent),
                           "loop": dataclasses.asdict(loop)})
    state = _Run(task, cfg, ascent, loop, budget, seed, progress, workdir)
    run = DistillRun(method="expert", policy=state.policy)
    k = 1
    while (cfg.rounds == 0 or k <= cfg.rounds) and (workdir / f"round_{k}" / "done.json").exists():  # finished rounds: read back
        rec = json.loads((workdir / f"round_{k}" / "done.json").read_text())
        run.history.append(rec["row"])
        run.notes += rec["notes"]
        state.bar, state.steps, state.spent_before = rec["bar_next"], rec["steps_total"], rec["row"]["cpu_s"]
        k += 1
    if k > 1:
        state.policy.load_state_dict(torch.load(workdir / f"round_{k - 1}" / "policy.pt"))
    while cfg.rounds == 0 or k <= cfg.rounds:
        if state.spent() >= budget.cpu_seconds:
            if cfg.rounds:
                run.notes.append(f"CPU budget of {budget.cpu_seconds} s used up after round {k - 1}; "
                                 f"rounds {k}..{cfg.rounds} not run")
            break
        if cfg.rounds == 0 and state.steps >= budget.max_steps:
            run.notes.append(f"Budget.max_steps ({budget.max_steps}) used up after round {k - 1}; no further round")
            break
        run.history.append(state.round(k, run.notes))
        k += 1
    state.policy.eval()
    return run
