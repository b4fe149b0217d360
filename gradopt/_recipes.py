"""A reward-model recipe run end to end, harvest rounds included (they need the engine).

`build_reward_model` = `rewardmodels.make_pool` -> simulated ratings (agreement 0.75) ->
`rewardmodels.fit_recipe`, then ``recipe.harvest_rounds`` times: the engine edits
``recipe.harvest_starts`` fresh generator samples against the current model (pitch edits, header
lines frozen), the rater compares each output with its start (twice) and with random items, and
the model is refitted on the grown pool — the reward model learns from its own adversarial
examples before anyone uses it.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ._ascent import AscentConfig, optimize
from ._ascent_batch import pad_batch
from ._edits import edit_masks
from ._masks import freeze_bars
from ._starts import starts_from_generator


def header_frozen_masks(starts, tokenizer, edit: str):
    """(freeze (b,t), allowed (b,t,v) or None) of ABC token rows: the header (bar 0: the lines up to
    ``K:``) always frozen, plus `edit`'s masks (`edit_masks`; ``"pitch"`` changes only note letters,
    to note letters, keeping rhythm and bar lines)."""
    ids = pad_batch(starts, tokenizer.pad_token_id)[0]
    freeze = freeze_bars(ids, tokenizer, {0})
    kind_freeze, allowed = edit_masks(edit, ids, tokenizer)
    return (freeze if kind_freeze is None else freeze | kind_freeze), allowed


def harvest_round(rm, gen, tok, corpus: list[str], recipe, ascent: AscentConfig, seed: int):
    """(starts, outputs) as texts: the engine's pitch edits of `recipe.harvest_starts` fresh samples
    (seed `seed`, temperature 0.8, bar-aware when the recipe samples so; header lines frozen;
    outputs screened by `domains.ABCConstraint.accepts`; the trust guard off, since harvesting
    wants what the model likes but cannot vouch for), kept only when the output differs."""
    import domains

    constraint = domains.ABCConstraint.from_texts(tok, corpus)  # bar-aware sampling, and the validity screen
    kw = {"constraint": constraint} if recipe.sampling == "bar-aware" else {}
    starts = starts_from_generator(gen, tok, recipe.harvest_starts, seed=seed, temperature=0.8, **kw)
    freeze, allowed = header_frozen_masks(starts, tok, "pitch")
    res = optimize(starts, rm, gen, dataclasses.replace(ascent, trust=None), tokenizer=tok, freeze=freeze,
                   allowed=allowed, validate=constraint.accepts)
    pairs = [(domains.decode(tok, s), r.text) for s, r in zip(starts, res.rows) if r.text != domains.decode(tok, s)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def build_reward_model(recipe, gen, tok, corpus: list[str], seed: int = 0, ascent: AscentConfig | None = None,
                       members: int = 0):
    """Pool, simulated ratings (`rewardmodels.SimulatedRater`, agreement 0.75, seed `seed`),
    Bradley-Terry and fit of a `rewardmodels.Recipe` in one call -> (model, info), then its harvest
    rounds (round k starts from seed 199 + 100 * seed + k). `ascent`: the engine configuration of the
    harvest rounds, needed when ``recipe.harvest_rounds > 0``. ``members = K >= 2``: the model (and
    every refit) is a `rewardmodels.RewardEnsemble` of K bootstrap probes (`rewardmodels.fit_recipe`);
    0: a single model. info: `rewardmodels.fit_recipe`'s, plus
    CPU seconds of each stage and per round the number of edits kept and their mean utility gain."""
    from rewardmodels import RatingPool, SimulatedRater, fit_recipe, make_pool

    if recipe.harvest_rounds and ascent is None:
        raise ValueError("recipe.harvest_rounds > 0 needs the engine configuration (ascent=...)")
    start = time.process_time()
    pool = make_pool(recipe, gen, tok, corpus, seed)
    rater = SimulatedRater(agreement=0.75, seed=seed)
    c0 = time.process_time()
    utility = rater.utility(pool.texts)
    rating = time.process_time() - c0
    rm, info = fit_recipe(recipe, pool, utility, gen, tok, rater, seed, members)
    harvest_cpu, rounds = 0.0, []
    for k in range(recipe.harvest_rounds):
        c0 = time.process_time()
        starts, outputs = harvest_round(rm, gen, tok, corpus, recipe, ascent, seed=199 + 100 * seed + k)
        harvest_cpu += time.process_time() - c0
        n = len(pool.texts)
        texts = pool.texts + starts + outputs
        edits = [(n + i, n + len(starts) + i) for i in range(len(starts))]
        pool = RatingPool(texts, pool.origin + ["sample"] * len(starts) + ["harvested"] * len(outputs),
                          np.concatenate([pool.edits, np.array(edits, dtype=np.int64).reshape(-1, 2)]), pool.cpu_s)
        c1 = time.process_time()
        utility = np.concatenate([utility, rater.utility(starts + outputs)])
        rating += time.process_time() - c1
        u_gain = float(np.mean(utility[n + len(starts):] - utility[n : n + len(starts)])) if starts else 0.0
        rm, info = fit_recipe(recipe, pool, utility, gen, tok, rater, seed, members)
        rounds.append({"edited": len(starts), "utility_gain_of_edits": u_gain})
    info.update({"pool_cpu_s": pool.cpu_s, "rating_cpu_s": rating, "harvest_cpu_s": harvest_cpu,
                 "harvest_rounds": rounds})
    info["cpu_s"] = time.process_time() - start  # everything, harvest rounds and refits included
    return rm, info
