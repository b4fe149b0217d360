"""The demo's stages (`_demo`): each takes the shared `DemoRun`, does its part of the loop in the
work directory and returns the dict the driver writes as ``<stage>.json``.

    generator -> samples -> ratings (simulated) -> Bradley-Terry -> reward model
              -> gradient ascent on a batch -> harvest (rated) -> [expert iteration]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import shutil
import time
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

import domains
from domains import GeneratorTrainConfig, SampleConfig

from ._report import mean_ci
from ._task import Budget, Task, model_reward, run_method

if TYPE_CHECKING:
    from ._demo import DemoConfig, DemoRun

N_MIDI = 5  # valid samples written as MIDI
LENIENT = functools.partial(domains.validate_abc, max_overlong_bars=10**9)  # validity with bar lengths ignored
BATCH_SIZE = 8  # generator training batch (windows of the context length)
RATER_AGREEMENT = 0.75  # the simulated rater's agreement (people agree ~60-75%)
PITCH_EDITS = (1, 6)  # a rated pitch variant changes between 1 and 6 note letters
HELDOUT = 60  # validation tunes the reward model is checked on against the utility
EXPERT_METHOD = "expert"  # the distill method the expert-iteration stage runs


def generator_tokenizer(run: DemoRun):
    """The generator's tokenizer: the saved one when the generator directory has it, else built
    from the training split."""
    gen_dir = run.workdir / "generator"
    if (gen_dir / "tokenizer.json").exists():
        return domains.load_tokenizer(gen_dir)
    return domains.build_tokenizer(run.train, run.cfg.tokenizer)


def stage_generator(run: DemoRun) -> dict:
    """Train the generator on the training split (or load it: ``generator/train_summary.json`` is
    written only after training finished) -> its training summary; sets run.gen, run.constraint
    (and run.tok unless set)."""
    cfg, gen_dir = run.cfg, run.workdir / "generator"
    train, val = run.train, [p.text for p in run.split["val"]]
    t0, c0 = time.perf_counter(), time.process_time()
    if run.tok is None:
        run.tok = generator_tokenizer(run)
    if (gen_dir / "train_summary.json").exists():
        run.gen = domains.load_generator(gen_dir)
        summary = json.loads((gen_dir / "train_summary.json").read_text())
        run.say(f"[generator] already trained in {gen_dir}")
        run.times["generator"] = {"seconds": 60 * summary.get("minutes", math.nan),
                                  "cpu_seconds": 60 * summary.get("cpu_minutes", math.nan), "reused": True}
    else:
        run.say("[generator]")
        run.gen = domains.build_generator(cfg.preset, run.tok, seed=cfg.seed)
        tcfg = GeneratorTrainConfig(max_steps=cfg.max_steps, cpu_minutes=cfg.minutes, batch_size=BATCH_SIZE,
                                    lr=cfg.lr, warmup=30, eval_every=250, seed=cfg.seed)
        summary = domains.train_generator(run.gen, run.tok, train, val, tcfg, gen_dir, progress=run.progress,
                                          normalisation=run.norm)
        (gen_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        run.times["generator"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                                  "reused": False}
    run.constraint = domains.ABCConstraint.from_texts(run.tok, train)
    return summary


def _sample(run: DemoRun, n: int, seed: int, constrained: bool, desc: str, temperature: float = 1.0) -> list[list[int]]:
    """`n` samples as token ids (EOS appended where cut off), drawn in batches under a progress bar
    (batch k from seed + k)."""
    from gradopt import starts_from_generator

    rows: list[list[int]] = []
    size = SampleConfig().batch_size
    for k, lo in enumerate(tqdm(range(0, n, size), desc=desc, unit="batch", disable=not run.progress)):
        rows += starts_from_generator(run.gen, run.tok, min(size, n - lo), seed=seed + k, temperature=temperature,
                                      constraint=run.constraint if constrained else None)
    return rows


def stage_samples(run: DemoRun) -> dict:
    """Held-out cross-entropy, then `n_samples` tunes drawn twice with one seed — freely and
    bar-aware — and validated; writes samples.abc (the reported way's samples) and MIDI of a few."""
    cfg, tok = run.cfg, run.tok
    val_ce = domains.evaluate(run.gen, domains.encode_corpus(tok, [p.text for p in run.split["val"]]), tok.pad_token_id)
    uni_ce = domains.unigram_cross_entropy(domains.encode_corpus(tok, run.train),
                                           domains.encode_corpus(tok, [p.text for p in run.split["val"]]), len(tok))
    out: dict = {}
    for way in ("free", "bar_aware"):
        t0 = time.time()
        texts = [domains.decode(tok, r) for r in _sample(run, cfg.n_samples, cfg.seed, way == "bar_aware", f"sample {way}")]
        out[way] = (texts, time.time() - t0)
    run.valid(out["free"][0] + out["bar_aware"][0])  # both ways' checks in one parallel batch
    samples, sample_s = out["bar_aware" if cfg.bar_aware else "free"]
    verdicts = run.valid(samples)
    valid = [s for s, v in zip(samples, verdicts) if v.ok]
    # Looser view for diagnosis only: parses, known key/meter, has notes, bar lengths ignored (a
    # valid tune passes it too, so only the invalid ones are checked again).
    invalid = [s for s, v in zip(samples, verdicts) if not v.ok]
    lenient = len(valid) + sum(v.ok for v in run.pool.map(LENIENT, invalid))
    reasons: dict[str, int] = {}
    for v in verdicts:
        if not v.ok:
            key = re.sub(r"\d+", "N", re.sub(r"'.*'", "'...'", v.reason.split(":")[0]))
            reasons[key] = reasons.get(key, 0) + 1
    (run.workdir / "samples.abc").write_text("\n".join(samples))
    midi_files = []
    for i, s in enumerate(valid[:N_MIDI]):
        try:
            midi_files.append(str(run.domain.to_midi(s, run.workdir / "midi" / f"sample_{i:02d}.mid")))
        except domains.RenderError as err:
            run.say(f"could not render sample {i}: {err}")
    frac = {w: sum(v.ok for v in run.valid(out[w][0])) / len(out[w][0]) for w in out}
    return {
        "val_cross_entropy": val_ce, "unigram_cross_entropy": uni_ce, "ce_ratio_to_unigram": val_ce / uni_ce,
        "val_perplexity": math.exp(val_ce), "n_samples": len(samples),
        "sampling": "bar-aware (domains.ABCConstraint)" if cfg.bar_aware else "free",
        "valid_fraction": len(valid) / len(samples), "valid_fraction_free_sampling": frac["free"],
        "valid_fraction_bar_aware_sampling": frac["bar_aware"], "sampling_seconds_free": out["free"][1],
        "sampling_seconds_bar_aware": out["bar_aware"][1], "valid_fraction_ignoring_bar_lengths": lenient / len(samples),
        "invalid_reasons": reasons, "sampling_seconds": sample_s, "example_tunes": valid[:3],
        "midi_files": midi_files, "samples": samples,
    }


def rated_corpus(run: DemoRun, rng: np.random.Generator | None = None) -> list[tuple[str, str]]:
    """The `rated_corpus` training tunes the ratings stage adds, each with its pitch variant, drawn
    from `rng` (default: a fresh one seeded with the run's seed, as the ratings stage's own)."""
    rng = np.random.default_rng(run.cfg.seed) if rng is None else rng
    train = run.train
    picked = rng.choice(len(train), min(run.cfg.stages.rated_corpus, len(train)), replace=False)
    return [(train[i], domains.pitch_edit(train[i], int(rng.integers(PITCH_EDITS[0], PITCH_EDITS[1] + 1)), rng))
            for i in picked]


def heldout_tunes(run: DemoRun) -> list[str]:
    """The first `HELDOUT` validation tunes within the generator's context: the reward model's check."""
    n_ctx = domains.PRESETS[run.cfg.preset].n_positions
    return [p.text for p in run.split["val"] if len(run.tok(p.text)["input_ids"]) <= n_ctx][:HELDOUT]


def stage_ratings(run: DemoRun) -> dict:
    """A rating store (``ratings/``) of `rated_corpus` training tunes, a pitch variant of each (its
    parent recorded) and the demo's samples, rated by the simulated rater: `comparisons` random
    partners per item, every variant against its tune twice, then `active_rounds` rounds of racing
    pairs (Bradley-Terry refitted before each). Built in ``ratings.partial/`` and renamed when
    complete, so a killed run never leaves half a store behind as finished."""
    from rewardmodels import RatingStore, SimulatedRater, fit_store, propose_pairs, rate_pairs

    s, seed = run.cfg.stages, run.cfg.seed
    final, tmp = run.workdir / "ratings", run.workdir / "ratings.partial"
    for d in (final, tmp):
        if d.exists():
            shutil.rmtree(d)
    store = RatingStore(tmp)
    rng = np.random.default_rng(seed)
    corpus = rated_corpus(run, rng)
    tunes = store.add_items([tune for tune, _ in corpus], origin="corpus")
    for it, (_, variant) in zip(tunes, corpus):
        store.add_item(variant, origin="corpus", parent=it.id)
    samples = json.loads((run.workdir / "samples.json").read_text())["samples"]
    store.add_items(samples, origin="sample")
    rater = SimulatedRater(agreement=RATER_AGREEMENT, seed=seed)
    rater.cache = run.rater.cache  # the same hidden utility; its own draws
    run.utility([it.text for it in store.items])
    ids = store.ids
    pairs = [(ids[i], ids[(i + int(j)) % len(ids)]) for i in range(len(ids))
             for j in rng.integers(1, len(ids), s.comparisons)]
    pairs += [(it.parent, it.id) for it in store.items if it.parent for _ in range(2)]
    rate_pairs(store, pairs, rater)
    for r in tqdm(range(s.active_rounds), desc="active rounds", disable=not run.progress):
        rate_pairs(store, propose_pairs(store, fit_store(store), s.active_pairs, "racing", seed=seed + r), rater)
    tmp.rename(final)
    stats = run.store().stats()
    return {"items": len(store), "comparisons": len(store.comparisons),
            "ties": sum(c.winner == "tie" for c in store.comparisons), "stats": stats,
            "agreement": RATER_AGREEMENT}


def stage_bradley_terry(run: DemoRun) -> dict:
    """Bayesian Bradley-Terry on the store -> ``scores.json`` (MAP means, Laplace SDs; the format of
    `gradopt fit-bt`) and, for the report, each item's score, SD, origin and hidden utility."""
    from rewardmodels import fit_store, save_scores

    store = run.store()
    scores = fit_store(store)
    save_scores(scores, store.ids, run.workdir / "scores.json")
    utility = run.utility([it.text for it in store.items])
    origin = ["pitch variant" if it.parent else it.origin for it in store.items]
    return {"items": len(store), "converged": scores.converged, "corr_utility": float(np.corrcoef(scores.mean, utility)[0, 1]),
            "mean": scores.mean.tolist(), "sd": scores.sd.tolist(), "origin": origin, "utility": utility.tolist()}


def stage_reward_model(run: DemoRun) -> dict:
    """The reward model (``reward/``), fitted the way of the recipe `reward_recipe` names (by
    default linear probes on the frozen generator's mean-pooled features) to the Bradley-Terry
    scores (`rewardmodels.train_recipe`; a bootstrap ensemble when `members` >= 2, so the do-no-harm
    guard can read the members' disagreement), checked against the hidden utility on held-out
    validation tunes."""
    from rewardmodels import RECIPES, load_scores, train_recipe

    members, name = run.cfg.stages.members, run.cfg.stages.reward_recipe
    recipe = RECIPES[name]
    store = run.store()
    scores, _ = load_scores(run.workdir / "scores.json", store)
    model, info = train_recipe(store, run.gen, run.tok, scores, recipe, members=members, seed=run.cfg.seed,
                               progress=run.progress)
    model.save_pretrained(run.workdir / "reward")
    domains.save_tokenizer(run.tok, run.workdir / "reward")
    run.reward = model.eval()
    held = heldout_tunes(run)
    pred = model.predict(*domains.encode_batch(run.tok, held, run.gen)).numpy()
    corr = float(np.corrcoef(pred, run.utility(held))[0, 1]) if len(held) > 2 else math.nan
    kind = {"probe": "linear probe", "finetune": "fine-tuned model", "probe+finetune": "probe, then fine-tuned"}[recipe.fit]
    kind = f"ensemble of {members} {kind}s" if members else kind
    frozen = ", frozen generator" if recipe.fit == "probe" else ""
    loss = min(info["cv_loss"].values()) if "cv_loss" in info else info.get("final_loss", math.nan)
    return {"recipe": name, "kind": f"{kind} ({recipe.pooling} pooling{frozen})", "members": members,
            "cv_loss" if "cv_loss" in info else "final_loss": float(loss), "heldout_corr_utility": corr,
            "heldout_n": len(held)}


def _engine(cfg: DemoConfig, guard: bool):
    """The ascent setting: `benchmarks/ascent.py`'s engine (lm weight 8, Adam on the simplex),
    `ascent_steps` steps, the do-no-harm guard on or off."""
    from gradopt import AscentConfig, ObjectiveWeights, TrustConfig

    return AscentConfig(steps=cfg.stages.ascent_steps, check_every=max(cfg.stages.ascent_steps // 3, 1),
                        seed=cfg.seed, objective=ObjectiveWeights(lm_weight=8.0),
                        trust=TrustConfig() if guard else None)


def stage_ascent(run: DemoRun) -> dict:
    """Gradient ascent on a batch: `ascent_tunes` bar-aware samples of a fresh seed (valid ones
    first), pitch edits only with the header lines frozen, verified by `ABCConstraint.accepts`;
    per row the reward, the hidden utility and validity before and after, and the reward at each
    check (the trajectory)."""
    from gradopt import header_frozen_masks, optimize

    s = run.cfg.stages
    drawn = _sample(run, s.ascent_tunes + s.ascent_tunes // 2, run.cfg.seed + 1000, True, "ascent starts", 0.8)
    ok = [bool(v) for v in run.valid([domains.decode(run.tok, r) for r in drawn])]
    starts = ([r for r, v in zip(drawn, ok) if v] + [r for r, v in zip(drawn, ok) if not v])[: s.ascent_tunes]
    freeze, allowed = header_frozen_masks(starts, run.tok, "pitch")
    engine = _engine(run.cfg, s.guard)
    res = optimize(starts, run.reward_model(), run.gen, engine, tokenizer=run.tok, freeze=freeze, allowed=allowed,
                   validate=run.constraint.accepts, progress=run.progress)
    before = [domains.decode(run.tok, r) for r in starts]
    after = [r.text for r in res.rows]
    u0, u1 = run.utility(before), run.utility(after)
    v0, v1 = run.valid(before), run.valid(after)
    rows = []
    for b, a, r, x0, x1, ok0, ok1 in zip(before, after, res.rows, u0, u1, v0, v1):
        rows.append({"before": b, "after": a, "reward_before": r.reward_before, "reward_after": r.reward_after,
                     "utility_before": float(x0), "utility_after": float(x1), "valid_before": bool(ok0),
                     "valid_after": bool(ok1), "changed": r.changed, "kept": r.kept,
                     "status": r.status, "gain_mean": r.gain_mean, "gain_sd": r.gain_sd,
                     "trajectory": [{"step": p["step"], "reward": p["reward"]} for p in r.trajectory]})
    summary = {f"{k}_{w}": mean_ci([row[f"{k}_{w}"] for row in rows]) for k in ("reward", "utility") for w in ("before", "after")}
    for k in ("reward", "utility"):
        summary[f"{k}_gain"] = mean_ci([row[f"{k}_after"] - row[f"{k}_before"] for row in rows])
    return {"engine": repr(engine), "rows": rows, "summary": summary, "kept": sum(r.kept for r in res.rows),
            "engine_cpu_seconds": res.cpu_seconds}


def stage_harvest(run: DemoRun) -> dict:
    """Harvest: the engine edits `harvest_starts` fresh samples with the guard off; edits the reward
    model likes but an auto-check, the generator or the distance to the corpus doubts go into the
    rating store with their starts and their racing pairs are queued (`gradopt.harvest`). The
    simulated rater then rates the queue and each edit against its start, so the store holds the
    reward model's blind spots for the next fit."""
    from gradopt import HarvestConfig, harvest, header_frozen_masks
    from rewardmodels import SimulatedRater, rate_pairs

    s = run.cfg.stages
    store = run.store()
    starts = _sample(run, s.harvest_starts, run.cfg.seed + 2000, True, "harvest starts", 0.8)
    freeze, allowed = header_frozen_masks(starts, run.tok, "pitch")
    hcfg = HarvestConfig(ascent=dataclasses.replace(_engine(run.cfg, False), require_valid=False), iteration=1)
    suspects = harvest(starts, run.reward_model(), run.gen, run.tok, store, corpus=run.train, cfg=hcfg,
                       freeze=freeze, allowed=allowed, progress=run.progress)
    edits = [(store[x.id].parent, x.id) for x in suspects]
    pairs = [(e.a, e.b) for e in store.pending()] + edits
    rater = SimulatedRater(agreement=RATER_AGREEMENT, seed=run.cfg.seed + 2)
    rater.cache = run.rater.cache  # the same hidden utility, computed once per tune; its own draws
    run.utility([store[k].text for pair in pairs for k in pair])
    rated = rate_pairs(store, pairs, rater) if pairs else []
    edit_verdicts = [c.winner for c in rated if (c.a, c.b) in set(edits)]
    decisive = [w for w in edit_verdicts if w != "tie"]
    reasons: dict[str, int] = {}
    for x in suspects:
        for why in x.reasons:
            key = why.split(" (")[0].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    gains = run.utility([x.text for x in suspects]) - run.utility([x.parent_text for x in suspects])
    return {"starts": len(starts), "suspects": len(suspects), "rated": len(rated), "reasons": reasons,
            "rater_preferred_edit": sum(w == "b" for w in decisive) / len(decisive) if decisive else None,
            "utility_gain": mean_ci(gains.tolist()) if len(gains) else None,
            "reward_gain": mean_ci([x.reward - x.reward_before for x in suspects]) if suspects else None}


def stage_expert_iteration(run: DemoRun) -> dict | None:
    """One round of expert iteration — the generator moves toward the reward model: sample, improve
    the samples with the engine, fine-tune on the verified improvements — run by the distill method
    registered as ``METHODS["expert"]`` (bar-aware samples, one round) within `expert_cpu_s` CPU
    seconds, in ``expert/``. -> {"method", "history", "notes"}, the report's distillation section."""
    rm = run.reward_model()
    task = Task(generator=run.gen, tokenizer=run.tok, reward=model_reward(rm, run.tok, run.constraint.accepts),
                corpus=run.train, sample=SampleConfig(max_new_tokens=domains.context_length(run.gen) - 2, temperature=0.8),
                constraint_factory=lambda: run.constraint, validate=lambda t: bool(domains.validate_abc(t)),
                reward_model=rm)
    result = run_method(EXPERT_METHOD, task, run.workdir / "expert", Budget(cpu_seconds=run.cfg.stages.expert_cpu_s),
                        seed=run.cfg.seed, progress=run.progress, rounds=1, source="bar_aware")
    return {"method": EXPERT_METHOD, "history": list(result.history), "notes": list(result.notes)}
