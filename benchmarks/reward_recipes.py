"""Reward-model recipes shared by the benchmarks: which items get rated, how many comparisons, how
the model is fitted to the Bradley-Terry scores. Also the small char-level generator they share.

A recipe builds a pool of ABC items — corpus tunes, generator samples, copies of corpus tunes with
random character edits (often invalid) and pitch variants (note letters changed to other note
letters: durations and bar lines kept, the edits the ascent engine makes) — lets the simulated
rater compare random pairs and every edited copy with its original, fits Bradley-Terry and fits a
`RewardModel` initialised from the generator to the posterior means θ (precision-weighted):

    fit "finetune"        all weights by AdamW on Σ w (r - θ)² (`rewardmodels.train_reward_model`)
    fit "probe"           only the linear head, closed-form ridge on the frozen generator's pooled
                          features, λ by 5-fold cross-validation on θ (`rewardmodels.fit_head`)
    fit "probe+finetune"  the probe, then a fine-tune from it (`train` sets its length and lr)

``targets="utility"`` regresses on the rater's hidden utility instead of θ: a ceiling for the
benchmarks, not usable in practice (a person cannot state a tune's utility).

``harvest_rounds = k > 0`` then runs the library's loop k times: the ascent engine edits
`harvest_starts` fresh generator samples against the current model, the rater compares each output
with its start (twice) and with random items, and the model is refitted on the grown pool — the
reward model learns from its own adversarial examples before anyone uses it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import domains
import gradopt
import rewardmodels
from domains import char_edit, pitch_edit  # noqa: F401  (re-exported: reward_fidelity uses pitch_edit)

FITS = ("finetune", "probe", "probe+finetune")
TARGETS = ("bt", "utility")
SAMPLINGS = ("free", "bar-aware")
PITCH_EDITS = (1, 6)  # a pitch variant changes between 1 and 6 note letters (uniform)
CHAR_EDITS = (1, 6)  # a character-edited copy has between 1 and 6 substitutions (uniform)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How a reward model is made from simulated ratings."""

    corpus: int = 200  # training-corpus tunes rated
    samples: int = 100  # generator samples rated
    char_edited: int = 200  # copies of the first corpus tunes with random character edits
    pitch_variants: int = 0  # pitch variants per corpus tune and per valid generator sample
    comparisons: int = 8  # random comparisons per item (each edited copy also meets its parent twice)
    pooling: str = "last"  # RewardModel pooling: "last" or "mean"
    fit: str = "finetune"  # one of FITS
    train: rewardmodels.TrainConfig = rewardmodels.TrainConfig(steps=300, batch_size=32, lr=1e-3)  # fine-tune routes
    targets: str = "bt"  # "bt" (posterior means) or "utility" (hidden utility: a ceiling only)
    sampling: str = "free"  # generator samples drawn "free" or "bar-aware" (domains.ABCConstraint)
    harvest_rounds: int = 0  # rounds of: engine edits fresh samples, they are rated, the model is refitted
    harvest_starts: int = 100  # generator samples the engine edits per round

    def __post_init__(self) -> None:
        if min(self.corpus, self.samples, self.char_edited, self.pitch_variants) < 0 or self.corpus + self.samples < 2:
            raise ValueError(f"item counts must be >= 0 with at least two corpus tunes or samples: {self}")
        if self.char_edited > self.corpus:
            raise ValueError(f"char_edited ({self.char_edited}) copies corpus tunes: it must be <= corpus ({self.corpus})")
        if self.comparisons < 1:
            raise ValueError(f"comparisons must be >= 1: {self}")
        if self.pooling not in rewardmodels.POOLINGS or self.fit not in FITS or self.targets not in TARGETS:
            raise ValueError(f"pooling in {rewardmodels.POOLINGS}, fit in {FITS}, targets in {TARGETS}: {self}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}: {self}")
        if self.harvest_rounds < 0 or self.harvest_starts < 1:
            raise ValueError(f"harvest_rounds must be >= 0 and harvest_starts >= 1: {self}")


# The recipe benchmarks/ascent.py uses (the best practical one in benchmarks/reward_fidelity.py).
PRACTICAL = Recipe(corpus=400, samples=200, char_edited=0, pitch_variants=1, comparisons=8,
                   pooling="mean", fit="probe")


def scaled(recipe: Recipe, factor: float) -> Recipe:
    """The recipe with item counts (and fine-tune steps) scaled by `factor`, for --quick runs."""
    n = lambda x: max(int(round(x * factor)), 1 if x else 0)  # noqa: E731
    train = dataclasses.replace(recipe.train, steps=n(recipe.train.steps))
    return dataclasses.replace(recipe, corpus=n(recipe.corpus), samples=n(recipe.samples),
                               char_edited=min(n(recipe.char_edited), n(recipe.corpus)), train=train,
                               harvest_starts=n(recipe.harvest_starts))


@dataclass(frozen=True)
class Pool:
    """Items to rate: texts, their origin, and (parent, child) rows of edited copies."""

    texts: list[str]
    origin: list[str]  # "corpus" | "sample" | "char_edit" | "pitch_edit"
    edits: np.ndarray  # (m, 2) int: [parent, child] item indices
    cpu_s: float  # sampling, validity checks and edits


def make_pool(recipe: Recipe, gen, tok, corpus: list[str], seed: int = 0) -> Pool:
    """The recipe's items: tunes drawn from `corpus`, generator samples (seed 99 + seed, temperature
    0.8), character-edited corpus copies, and pitch variants of the corpus tunes and of the samples
    that pass `domains.validate_abc` (an auto-check, no rating needed)."""
    c0 = time.process_time()
    rng = np.random.default_rng(seed)
    tunes = [corpus[i] for i in rng.choice(len(corpus), recipe.corpus, replace=False)]
    kw = {}
    if recipe.sampling == "bar-aware":
        if not hasattr(domains, "ABCConstraint"):
            raise RuntimeError("sampling='bar-aware' needs domains.ABCConstraint; use sampling='free'")
        kw["constraint"] = domains.ABCConstraint.from_texts(tok, corpus)
    samples = [domains.decode(tok, r) for r in
               gradopt.starts_from_generator(gen, tok, recipe.samples, seed=99 + seed, temperature=0.8, **kw)] \
        if recipe.samples else []
    texts = tunes + samples
    origin = ["corpus"] * len(tunes) + ["sample"] * len(samples)
    edits = []
    for i in range(recipe.char_edited):
        edits.append((i, len(texts)))
        texts.append(char_edit(tunes[i], int(rng.integers(CHAR_EDITS[0], CHAR_EDITS[1] + 1)), rng))
        origin.append("char_edit")
    if recipe.pitch_variants:
        parents = list(range(len(tunes))) + [len(tunes) + i for i, s in enumerate(samples) if domains.validate_abc(s)]
        for i in parents:
            for _ in range(recipe.pitch_variants):
                edits.append((i, len(texts)))
                texts.append(pitch_edit(texts[i], int(rng.integers(PITCH_EDITS[0], PITCH_EDITS[1] + 1)), rng))
                origin.append("pitch_edit")
    return Pool(texts, origin, np.array(edits, dtype=np.int64).reshape(-1, 2), time.process_time() - c0)


def compare(recipe: Recipe, pool: Pool, utility: np.ndarray, rater: rewardmodels.SimulatedRater, seed: int = 0):
    """Simulated comparisons -> (wins (m_w, 2) [winner, loser], ties (m_t, 2)): `comparisons` random
    partners per item plus every edited copy against its parent twice, each judged with the
    rater's own outcome probabilities (`SimulatedRater.outcome_probabilities`: ties as noisy as wins)."""
    rng = np.random.default_rng(seed + 1)
    n = len(pool.texts)
    i = np.repeat(np.arange(n), recipe.comparisons)
    j = (i + rng.integers(1, n, len(i))) % n  # never the item itself
    pairs = np.concatenate([np.stack([i, j], 1), pool.edits, pool.edits])
    p_a, p_tie, _ = rater.outcome_probabilities(utility[pairs[:, 0]], utility[pairs[:, 1]])
    draw = rng.random(len(pairs))
    a_wins, tie = draw < p_a, (draw >= p_a) & (draw < p_a + p_tie)
    wins = np.where(a_wins[:, None], pairs, pairs[:, ::-1])[~tie]
    return wins, pairs[tie]


def root_groups(n: int, edits: np.ndarray) -> np.ndarray:
    """(n,) group label per item: its root parent's index, following `edits` [parent, child] rows,
    so that cross-validation keeps an item and its edited copies in one fold."""
    parent = np.arange(n)
    parent[edits[:, 1]] = edits[:, 0]
    root = parent.copy()
    while np.any(parent[root] != root):
        root = parent[root]
    return root


def fit_model(recipe: Recipe, pool: Pool, utility: np.ndarray, gen, tok, rater, seed: int = 0):
    """(RewardModel, info) from the pool's utilities via simulated comparisons and Bradley-Terry
    (or, for the ceiling, the utilities themselves). info holds counts and CPU seconds."""
    c0 = time.process_time()
    wins, ties = compare(recipe, pool, utility, rater, seed)
    scores = rewardmodels.fit(wins, len(pool.texts), ties=ties if len(ties) else None)
    c1 = time.process_time()
    ids, mask = domains.encode_batch(tok, pool.texts, gen)
    torch.manual_seed(seed)  # the head's initial weights: recipes do not depend on the order they run in
    rm = rewardmodels.RewardModel.from_generator(gen, pooling=recipe.pooling)
    target, weight = (utility, None) if recipe.targets == "utility" else (scores.mean, 1.0 / scores.sd ** 2)
    info: dict = {}
    if recipe.fit in ("probe", "probe+finetune"):
        info["probe_l2"] = rewardmodels.fit_head(rm, ids, mask, target, weight, seed=seed,
                                                 groups=root_groups(len(pool.texts), pool.edits))["l2"]
    if recipe.fit in ("finetune", "probe+finetune"):
        losses = rewardmodels.train_reward_model(rm, ids, mask, target, weight, recipe.train)
        info["final_loss"] = float(np.mean(losses[-10:]))
    info.update({"items": len(pool.texts), "comparisons": int(len(wins) + len(ties)),
                 "bt_corr_utility": float(np.corrcoef(scores.mean, utility)[0, 1]),
                 "origins": {o: pool.origin.count(o) for o in dict.fromkeys(pool.origin)},
                 "bt_cpu_s": c1 - c0, "fit_cpu_s": time.process_time() - c1})
    return rm.eval(), info


def edit_space(starts, tok, edit: str):
    """(freeze (b,t), allowed (b,t,v)) of the benchmarks' edits: header lines are always frozen;
    ``pitch`` edits change only note letters, to note letters (rhythm and bar lines kept)."""
    ids = gradopt.pad_batch(starts, tok.pad_token_id)[0]
    freeze = gradopt.freeze_bars(ids, tok, {0})
    kind_freeze, allowed = gradopt.edit_masks(edit, ids, tok)
    return (freeze if kind_freeze is None else freeze | kind_freeze), allowed


def harvest_round(rm, gen, tok, corpus: list[str], recipe: Recipe, ascent: gradopt.AscentConfig, seed: int):
    """(starts, outputs) as texts: the engine's pitch edits of `recipe.harvest_starts` fresh samples
    (header lines frozen), kept only when the output differs from its start."""
    constraint = domains.ABCConstraint.from_texts(tok, corpus)  # bar-aware sampling, and the validity screen
    kw = {"constraint": constraint} if recipe.sampling == "bar-aware" else {}
    starts = gradopt.starts_from_generator(gen, tok, recipe.harvest_starts, seed=seed, temperature=0.8, **kw)
    freeze, allowed = edit_space(starts, tok, "pitch")
    res = gradopt.optimize(starts, rm, gen, dataclasses.replace(ascent, trust=None), tokenizer=tok, freeze=freeze,
                           allowed=allowed,
                           validate=constraint.accepts)
    pairs = [(domains.decode(tok, s), r.text) for s, r in zip(starts, res.rows) if r.text != domains.decode(tok, s)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def build_reward_model(recipe: Recipe, gen, tok, corpus: list[str], seed: int = 0,
                       ascent: gradopt.AscentConfig | None = None):
    """Pool, simulated ratings (agreement 0.75), Bradley-Terry and fit in one call -> (model, info).
    `ascent`: the engine configuration of the harvest rounds (needed when recipe.harvest_rounds > 0)."""
    if recipe.harvest_rounds and ascent is None:
        raise ValueError("recipe.harvest_rounds > 0 needs the engine configuration (ascent=...)")
    start = time.process_time()
    pool = make_pool(recipe, gen, tok, corpus, seed)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=seed)
    c0 = time.process_time()
    utility = rater.utility(pool.texts)
    rating = time.process_time() - c0
    rm, info = fit_model(recipe, pool, utility, gen, tok, rater, seed)
    harvest_cpu, rounds = 0.0, []
    for k in range(recipe.harvest_rounds):
        c0 = time.process_time()
        starts, outputs = harvest_round(rm, gen, tok, corpus, recipe, ascent, seed=199 + 100 * seed + k)
        harvest_cpu += time.process_time() - c0
        n = len(pool.texts)
        texts = pool.texts + starts + outputs
        edits = [(n + i, n + len(starts) + i) for i in range(len(starts))]
        pool = Pool(texts, pool.origin + ["sample"] * len(starts) + ["harvested"] * len(outputs),
                    np.concatenate([pool.edits, np.array(edits, dtype=np.int64).reshape(-1, 2)]), pool.cpu_s)
        c1 = time.process_time()
        utility = np.concatenate([utility, rater.utility(starts + outputs)])
        rating += time.process_time() - c1
        u_gain = float(np.mean(utility[n + len(starts):] - utility[n : n + len(starts)])) if starts else 0.0
        rm, info = fit_model(recipe, pool, utility, gen, tok, rater, seed)
        rounds.append({"edited": len(starts), "utility_gain_of_edits": u_gain})
    info.update({"pool_cpu_s": pool.cpu_s, "rating_cpu_s": rating, "harvest_cpu_s": harvest_cpu,
                 "harvest_rounds": rounds})
    info["cpu_s"] = time.process_time() - start  # everything, harvest rounds and refits included
    return rm, info


def cut_tune(text: str, max_chars: int) -> str | None:
    """Header + as many whole bars as fit in `max_chars` (None when not even one bar fits)."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("|", 0, max_chars - 1)  # the cut keeps the bar line and adds a newline
    body = text.find("\n", text.find("\nK:") + 1)
    return text[: cut + 1] + "\n" if cut > body > 0 else None


def cut_corpus(max_chars: int) -> dict[str, list[str]]:
    """The music21 ABC corpus split train/val/test (`domains.split_corpus`), each tune cut by
    `cut_tune` (tunes where not even one bar fits are dropped)."""
    pieces = domains.split_corpus(domains.load_abc_corpus())
    return {k: [c for c in (cut_tune(p.text, max_chars) for p in ps) if c] for k, ps in pieces.items()}


@dataclass(frozen=True, kw_only=True)
class EvalSplit:
    """Which held-out items a benchmark run measures on. Settings (a reward-model recipe, the
    engine's defaults) are chosen on the ``select`` split; reported figures come from ``report``,
    whose items were never looked at while choosing: other corpus tunes, other sample seeds."""

    name: str  # "select" | "report"
    corpus: str  # the corpus split (`domains.split_corpus`) whose tunes are held-out items
    sample_seed: int  # seed of the generator samples used as held-out items (+ a run's --seed)
    baseline_seed: int  # first seed of the samples a baseline draws (best-of-N), away from every other seed

    def __post_init__(self) -> None:
        if self.corpus not in ("val", "test"):
            raise ValueError(f"EvalSplit.corpus must be 'val' or 'test' (never the training split), not {self.corpus!r}")


# Seeds elsewhere: rating pools draw samples with seed 99 + seed, harvest rounds 199 + 100 * seed + k.
SPLITS = {"select": EvalSplit(name="select", corpus="val", sample_seed=1, baseline_seed=20_000),
          "report": EvalSplit(name="report", corpus="test", sample_seed=1001, baseline_seed=30_000)}


def eval_split(name: str) -> EvalSplit:
    """The split called `name` (a --split argument)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}: use 'select' to choose settings, 'report' for figures")
    return SPLITS[name]


def eval_corpus(splits: dict[str, list[str]], tok, split: EvalSplit) -> list[str]:
    """The split's held-out corpus tunes the tokenizer can encode (no unknown characters)."""
    return [t for t in splits[split.corpus] if tok.unk_token_id not in tok(t)["input_ids"]]


def eval_samples(gen, tok, n: int, split: EvalSplit, constraint=None, seed: int = 0, temperature: float = 0.8):
    """`n` generator samples (token rows) drawn as the split's held-out items: seed
    `split.sample_seed + seed`, bar-aware with `constraint` (e.g. `domains.ABCConstraint`)."""
    return gradopt.starts_from_generator(gen, tok, n, seed=split.sample_seed + seed, temperature=temperature,
                                         constraint=constraint)


def start_run(threads: int):
    """The benchmarks' run setup: torch threads, no hub downloads; returns a log function that
    prefixes each message with the wall time since this call."""
    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    wall0 = time.perf_counter()
    return lambda msg: print(f"[{time.perf_counter() - wall0:6.1f}s] {msg}", flush=True)


def load_or_train_generator(gdir: Path, train: list[str], val: list[str], max_chars: int, minutes: float):
    """(tokenizer, generator, info): the benchmarks' 2x64 char-level generator, reused from `gdir`
    when it holds one, else trained there for `minutes` CPU-minutes."""
    t0 = time.process_time()
    if (gdir / "config.json").exists():
        tok, gen = domains.load_tokenizer(gdir), domains.load_generator(gdir)
        info: dict = {"generator": "reused"}
    else:
        tok = domains.build_char_tokenizer(train + val)
        preset = domains.GeneratorPreset(n_layer=2, n_head=2, n_embd=64, n_positions=max_chars + 2)
        gen = domains.build_generator(preset, tok, seed=0)
        cfg = domains.TrainConfig(max_steps=100_000, cpu_minutes=minutes, batch_size=16, lr=3e-3,
                                  warmup=50, eval_every=100_000)
        summary = domains.train_generator(gen, tok, train, val[:50], cfg, gdir, progress=True,
                                          normalisation=domains.NormaliseConfig())  # cut_corpus keeps spaces
        gen = domains.load_generator(gdir)
        info = {"generator": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}
    info["generator_cpu_s"] = time.process_time() - t0
    return tok, gen.eval(), info
