"""Reward-model recipes: which items get rated, how many comparisons, how the model is fitted.

A recipe builds a pool of ABC items — corpus tunes, generator samples, copies of corpus tunes with
random character edits (often invalid) and pitch variants (note letters changed to other note
letters: durations and bar lines kept, the edits the ascent engine makes) — lets a simulated rater
compare random pairs and every edited copy with its original, fits Bradley-Terry and fits a
`RewardModel` initialised from the generator to the posterior means θ (precision-weighted):

    fit "finetune"        all weights by AdamW on Σ w (r - θ)² (`train_reward_model`)
    fit "probe"           only the linear head, closed-form ridge on the frozen generator's pooled
                          features, λ by 5-fold cross-validation on θ (`fit_head`)
    fit "probe+finetune"  the probe, then a fine-tune from it (`train` sets its length and lr)

``targets="utility"`` regresses on the rater's hidden utility instead of θ: a ceiling for the
benchmarks, not usable in practice (a person cannot state a tune's utility).

The named presets (`BASELINE`, `PRACTICAL`, `PRACTICAL_BAR_AWARE`, `PRACTICAL_ENDING`,
`PRACTICAL_ATTENTION`, `PRACTICAL_MUSIC`, all in `RECIPES`) are the recipes benchmarks/reward_fidelity.py compares;
each docstring says which result backs it. Harvest rounds (the engine edits samples against the
model, they are rated, the model is refitted) need the ascent engine: `gradopt.build_reward_model`
runs them.

A recipe's model part (pooling, fit, fine-tune config) also applies to real ratings in a store:
``train_recipe(store, generator, tokenizer, scores, RECIPES["practical_ending"])`` (what
``gradopt train-reward --recipe practical_ending`` runs); the pool part is then the store's.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from ._bradley_terry import fit
from ._ensemble import RewardEnsemble, fit_ensemble
from ._model import BAR_POOLINGS, POOLINGS, RewardModel, bar_token_ids, token_texts
from ._train import RewardTrainConfig, fit_head, train_reward_model

FITS = ("finetune", "probe", "probe+finetune")
TARGETS = ("bt", "utility")
SAMPLINGS = ("free", "bar-aware")
MUSIC = ("none", "channels", "channels+pooled")  # Recipe.annotations: musical annotations the model reads
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
    pooling: str = "last"  # RewardModel pooling: one of POOLINGS
    fit: str = "finetune"  # one of FITS
    train: RewardTrainConfig = RewardTrainConfig(steps=300, batch_size=32, lr=1e-3)  # fine-tune routes
    targets: str = "bt"  # "bt" (posterior means) or "utility" (hidden utility: a ceiling only)
    sampling: str = "free"  # generator samples drawn "free" or "bar-aware" (domains.ABCConstraint)
    harvest_rounds: int = 0  # rounds of: engine edits fresh samples, they are rated, the model is refitted
    harvest_starts: int = 100  # generator samples the engine edits per round
    annotations: str = "none"  # "channels": ABC annotations added to the input; "+pooled": the head reads them too

    def __post_init__(self) -> None:
        if min(self.corpus, self.samples, self.char_edited, self.pitch_variants) < 0 or self.corpus + self.samples < 2:
            raise ValueError(f"item counts must be >= 0 with at least two corpus tunes or samples: {self}")
        if self.char_edited > self.corpus:
            raise ValueError(f"char_edited ({self.char_edited}) copies corpus tunes: it must be <= corpus ({self.corpus})")
        if self.comparisons < 1:
            raise ValueError(f"comparisons must be >= 1: {self}")
        if self.pooling not in POOLINGS or self.fit not in FITS or self.targets not in TARGETS:
            raise ValueError(f"pooling in {POOLINGS}, fit in {FITS}, targets in {TARGETS}: {self}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}: {self}")
        if self.annotations not in MUSIC:
            raise ValueError(f"annotations must be one of {MUSIC}: {self}")
        if self.annotations == "channels+pooled" and self.pooling == "attention":
            raise ValueError(f"annotations 'channels+pooled' do not combine with attention pooling: {self}")
        if self.harvest_rounds < 0 or self.harvest_starts < 1:
            raise ValueError(f"harvest_rounds must be >= 0 and harvest_starts >= 1: {self}")


BASELINE = Recipe()
"""The first recipe: 200 corpus tunes, 100 samples, 200 character-edited copies, a fine-tune with
last-token pooling. The reference row ("baseline") of benchmarks/results/reward_fidelity*.json."""

PRACTICAL = Recipe(corpus=400, samples=200, char_edited=0, pitch_variants=1, comparisons=8,
                   pooling="mean", fit="probe")
"""A ridge probe on mean-pooled generator features, fitted to 400 corpus tunes, 200 samples and a
pitch variant of each: the best practical recipe of benchmarks/reward_fidelity.py (rows
"practical" against "baseline", "probe", "pitch_pool" in benchmarks/results/reward_fidelity*.json),
and cheap (a closed-form fit, no fine-tune)."""

PRACTICAL_BAR_AWARE = dataclasses.replace(PRACTICAL, sampling="bar-aware")
"""`PRACTICAL` with bar-aware generator samples (`domains.ABCConstraint`): the recipe
benchmarks/ascent.py builds its reward model with, reward_fidelity's chosen recipe
("chosen_recipe": "practical_bar_aware" in benchmarks/results/reward_fidelity*.json)."""

PRACTICAL_ENDING = dataclasses.replace(PRACTICAL_BAR_AWARE, pooling="bars")
"""`PRACTICAL_BAR_AWARE` with per-bar pooling ([mean over bars, last bar, first bar]), so the probe
can weigh how a tune ends apart from its average bar: row "practical_ending" of
benchmarks/reward_fidelity.py (benchmarks/results/reward_fidelity*.json), against
"practical_bar_aware". In a --quick run (0.3x pools, report split) it tracked bar-aware samples
better (r 0.18 vs 0.03) but ordered pitch edits worse (0.42 vs 0.57), so it is not the default."""

PRACTICAL_ATTENTION = dataclasses.replace(PRACTICAL_BAR_AWARE, pooling="attention")
"""`PRACTICAL_BAR_AWARE` with attention pooling (a learned query over the hidden states, trained with
the probe's head by `fit_head`): row "practical_attention" of benchmarks/reward_fidelity.py. In a
--quick run (0.3x pools, report split) it ordered pitch edits better than "practical_bar_aware"
(0.62 vs 0.57) and held-out corpus tunes worse (r 0.34 vs 0.42): a candidate, not yet the default."""

PRACTICAL_MUSIC = dataclasses.replace(PRACTICAL_BAR_AWARE, annotations="channels+pooled")
"""`PRACTICAL_BAR_AWARE` reading musical annotations (`domains.annotate_abc`: pitch class from the
tonic, in-scale, interval, duration, beat, bar fullness, last note): the probe's head reads the
mean-pooled hidden states and the pooled annotations (means over notes and over bar lines, the
last note's row). Row "practical_music" of benchmarks/reward_fidelity.py: chosen over the same
with 300 fine-tune steps (W_a learning) on a --quick select-split run under the old rater. Under
the length-aware rater, --quick (0.3x pool, 357 items): select split
(benchmarks/results/reward_fidelity_quick_music_select.json) pitch-pair accuracy 0.90, corpus r
0.77, bar-aware samples r 0.53 (practical_bar_aware 0.76, 0.16, -0.03); report split
(benchmarks/results/reward_fidelity_quick_music.json) 0.94, 0.60, 0.57 against 0.81, 0.26, 0.09,
for 18 vs 19 CPU s; fitted to the utility itself (the ceiling) it does no better, so the features,
not the ratings, are its limit. As a 64-member ensemble (``fit_model(..., members=64)``,
`DEFAULT_MEMBERS`) in benchmarks/results/music_ascent_quick.json (report split, a fresh generator):
unguarded ascent gains +0.31 on held-out corpus tunes and +0.04 on the unrated airdsAirs but makes
31% of each worse; the default do-no-harm guard keeps 31% of the inputs and gains +0.31 / +0.20,
with 25% / 6% worse; the members' SD tracks the error with Spearman 0.21 (0.02 with 5 members on
the same generator; selection split 0.33). The full run (benchmarks/results/music_ascent.json:
1,197 rated items, 40 + 40 tunes, re-run after the bar-aware sampler fix) gains +0.21 / +0.11 under
the guard with 0% / 2.5% of tunes worse (unguarded +0.24 / +0.21, 7.5% / 22.5% worse), held-out
collection r 0.75, but there the SD hardly tracks the error (Spearman 0.10; the best other signal,
an error head on out-of-fold residuals, 0.17 over three generators in
benchmarks/results/calibration.json, where a head fitted to held-out items' true errors does no
better). The annotations overlap what the simulated rater scores, so these figures are optimistic
for people."""

RECIPES = {"baseline": BASELINE, "practical": PRACTICAL, "practical_bar_aware": PRACTICAL_BAR_AWARE,
           "practical_ending": PRACTICAL_ENDING, "practical_attention": PRACTICAL_ATTENTION, "practical_music": PRACTICAL_MUSIC}


def scale_recipe(recipe: Recipe, factor: float) -> Recipe:
    """The recipe with item counts (and fine-tune steps) scaled by `factor` (a count above zero stays
    at least 1), for quick runs."""
    if factor <= 0:
        raise ValueError(f"scale_recipe: factor must be > 0, got {factor}")
    n = lambda x: max(int(round(x * factor)), 1 if x else 0)  # noqa: E731
    train = dataclasses.replace(recipe.train, steps=n(recipe.train.steps))
    return dataclasses.replace(recipe, corpus=n(recipe.corpus), samples=n(recipe.samples),
                               char_edited=min(n(recipe.char_edited), n(recipe.corpus)), train=train,
                               harvest_starts=n(recipe.harvest_starts))


@dataclass(frozen=True)
class RatingPool:
    """Items to rate: texts, their origin, and (parent, child) rows of edited copies."""

    texts: list[str]
    origin: list[str]  # "corpus" | "sample" | "char_edit" | "pitch_edit" (| "harvested")
    edits: np.ndarray  # (m, 2) int: [parent, child] item indices
    cpu_s: float  # sampling, validity checks and edits


def _samples(recipe: Recipe, gen, tok, corpus: list[str], seed: int) -> list[str]:
    """`recipe.samples` generator samples as texts (seed 99 + seed, temperature 0.8, full context)."""
    import domains

    if not recipe.samples:
        return []
    kw = {}
    if recipe.sampling == "bar-aware":
        kw["constraint"] = domains.ABCConstraint.from_texts(tok, corpus)
    cfg = domains.SampleConfig(max_new_tokens=domains.context_length(gen) - 2, temperature=0.8)
    return [domains.decode(tok, r) for r in domains.sample_ids(gen, tok, recipe.samples, cfg, seed=99 + seed, **kw)]


def make_pool(recipe: Recipe, gen, tok, corpus: list[str], seed: int = 0) -> RatingPool:
    """The recipe's items: `recipe.corpus` tunes drawn from `corpus`, generator samples (seed 99 +
    seed, temperature 0.8), character-edited copies of the first corpus tunes
    (`domains.char_edit`), and pitch variants (`domains.pitch_edit`) of the corpus tunes and of the
    samples that pass `domains.validate_abc` (an auto-check, no rating needed)."""
    import domains

    if recipe.corpus > len(corpus):
        raise ValueError(f"make_pool: the recipe rates {recipe.corpus} corpus tunes but the corpus has "
                         f"{len(corpus)}; pass a larger corpus or scale the recipe (scale_recipe)")
    c0 = time.process_time()
    rng = np.random.default_rng(seed)
    tunes = [corpus[i] for i in rng.choice(len(corpus), recipe.corpus, replace=False)]
    samples = _samples(recipe, gen, tok, corpus, seed)
    texts = tunes + samples
    origin = ["corpus"] * len(tunes) + ["sample"] * len(samples)
    edits = []
    for i in range(recipe.char_edited):
        edits.append((i, len(texts)))
        texts.append(domains.char_edit(tunes[i], int(rng.integers(CHAR_EDITS[0], CHAR_EDITS[1] + 1)), rng))
        origin.append("char_edit")
    if recipe.pitch_variants:
        parents = list(range(len(tunes))) + [len(tunes) + i for i, s in enumerate(samples) if domains.validate_abc(s)]
        for i in parents:
            for _ in range(recipe.pitch_variants):
                edits.append((i, len(texts)))
                texts.append(domains.pitch_edit(texts[i], int(rng.integers(PITCH_EDITS[0], PITCH_EDITS[1] + 1)), rng))
                origin.append("pitch_edit")
    return RatingPool(texts, origin, np.array(edits, dtype=np.int64).reshape(-1, 2), time.process_time() - c0)


def simulate_comparisons(recipe: Recipe, pool: RatingPool, utility: np.ndarray, rater, seed: int = 0):
    """Simulated comparisons -> (wins (m_w, 2) [winner, loser], ties (m_t, 2)) of item indices:
    `recipe.comparisons` random partners per item (never itself) plus every edited copy against its
    parent twice, each judged with the rater's own outcome probabilities at the items' `utility`
    (`SimulatedRater.outcome_probabilities`: ties as noisy as wins). Draws from seed + 1."""
    rng = np.random.default_rng(seed + 1)
    n = len(pool.texts)
    if len(utility) != n:
        raise ValueError(f"simulate_comparisons: {len(utility)} utilities for a pool of {n} items")
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


def fit_recipe(recipe: Recipe, pool: RatingPool, utility: np.ndarray, gen, tok, rater, seed: int = 0,
               members: int = 0):
    """(RewardModel in eval mode, info) from the pool's utilities via simulated comparisons and
    Bradley-Terry (or, for the ceiling, the utilities themselves), fitted the recipe's way;
    ``members = K >= 2``: a `RewardEnsemble` of K bootstrap probes (as `fit_model`).
    info holds counts, the BT scores' correlation with the utility and CPU seconds."""
    import domains

    c0 = time.process_time()
    wins, ties = simulate_comparisons(recipe, pool, utility, rater, seed)
    scores = fit(wins, len(pool.texts), ties=ties if len(ties) else None)
    c1 = time.process_time()
    ids, mask = domains.encode_batch(tok, pool.texts, gen)
    target, weight = (utility, None) if recipe.targets == "utility" else (scores.mean, 1.0 / scores.sd ** 2)
    rm, info = fit_model(recipe, gen, tok, ids, mask, target, weight, root_groups(len(pool.texts), pool.edits), seed,
                         members)
    info.pop("cv_loss", None), info.pop("losses", None)  # per-step detail: the benchmarks record summaries
    info.update({"items": len(pool.texts), "comparisons": int(len(wins) + len(ties)),
                 "bt_corr_utility": float(np.corrcoef(scores.mean, utility)[0, 1]),
                 "origins": {o: pool.origin.count(o) for o in dict.fromkeys(pool.origin)},
                 "bt_cpu_s": c1 - c0, "fit_cpu_s": time.process_time() - c1})
    return rm.eval(), info


def fit_model(recipe: Recipe, gen, tok, ids: torch.Tensor, mask: torch.Tensor, target, weight, groups,
              seed: int = 0, members: int = 0, folds: int = 5, progress: bool = False):
    """(model, info): a reward model initialised from `gen`, fitted the recipe's way (its pooling,
    fit and fine-tune config) to target, weight (n,) on ids, mask (n, t); groups (n,) keep an item
    and its edits in one cross-validation fold. ``members = K >= 2`` fits a `RewardEnsemble` of K
    bootstrap probes (needs a "probe" fit). The bar poolings read their bar tokens from `tok`."""
    if members and (members < 2 or recipe.fit != "probe"):
        raise ValueError(f"an ensemble needs a 'probe' recipe and at least 2 members; got members={members} "
                         f"with fit {recipe.fit!r}")
    bar_ids = bar_token_ids(tok) if recipe.pooling in BAR_POOLINGS else None
    music = {} if recipe.annotations == "none" else {
        "annotations": "abc", "token_texts": token_texts(tok), "annotation_features": recipe.annotations == "channels+pooled"}
    torch.manual_seed(seed)  # the head's initial weights: recipes do not depend on the order they run in
    rm = (RewardEnsemble.from_generator(gen, recipe.pooling, members, bar_ids=bar_ids, **music) if members
          else RewardModel.from_generator(gen, pooling=recipe.pooling, bar_ids=bar_ids, **music))
    info: dict = {}
    if recipe.fit in ("probe", "probe+finetune"):
        probe = fit_ensemble if members else fit_head
        res = probe(rm, ids, mask, target, weight, seed=seed, groups=groups, folds=folds)
        info.update({"probe_l2": res["l2"], "cv_loss": res["cv_loss"]})
    if recipe.fit in ("finetune", "probe+finetune"):
        losses = train_reward_model(rm, ids, mask, target, weight, recipe.train, progress)
        info.update({"final_loss": float(np.mean(losses[-10:])), "losses": losses})
    return rm.eval(), info


def train_recipe(store, generator, tokenizer, scores, recipe: Recipe, *, members: int = 0, seed: int = 0,
                 progress: bool = False):
    """(model, info): a reward model fitted the recipe's way (pooling, fit, fine-tune config) to a
    rating store's Bradley-Terry `scores` (`fit_store`/`load_scores`), precision-weighted, items
    longer than the generator's context left out, cross-validation folds grouped by root parent.
    The recipe's pool settings do not apply (the store is the pool). `members` as in `fit_model`.
    What ``gradopt train-reward --recipe NAME`` runs."""
    from domains import context_length, encode_batch

    from ._records import item_id
    from ._workflow import _fits_context, training_rows

    if recipe.targets != "bt":
        raise ValueError(f"recipe targets {recipe.targets!r}: a store has only ratings, so its recipe must "
                         "regress on Bradley-Terry scores (targets='bt')")
    if scores is None:
        raise ValueError("a recipe fit needs Bradley-Terry scores; run `gradopt fit-bt` first")
    texts, targets, weights = training_rows(store, scores, keep=_fits_context(store, tokenizer,
                                                                              context_length(generator)))
    ids, mask = encode_batch(tokenizer, texts, generator)
    roots = [store.root(item_id(t)) for t in texts]
    with torch.random.fork_rng():  # the head's initial weights, without touching the caller's RNG
        return fit_model(recipe, generator, tokenizer, ids, mask, targets, weights, roots, seed, members,
                         folds=min(5, len(set(roots))), progress=progress)
