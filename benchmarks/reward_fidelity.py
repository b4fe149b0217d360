"""Reward fidelity: how closely reward models from several recipes track the simulated rater's
hidden utility, side by side on the same held-out items.

Setting: that of benchmarks/ascent.py — ABC tunes cut at a bar line to <= 150 characters, its
small char-level generator (trained here for the same CPU budget, or reused from --work), the
simulated rater (`rewardmodels.SimulatedRater`, agreement 0.75). Each recipe
(benchmarks/reward_recipes.py) rates a pool of training-corpus tunes, generator samples and
edited copies, fits Bradley-Terry and fits a reward model; it is then scored on held-out items:

  samples       free generator samples (the split's sample seed, temperature 0.8): Pearson and
                Spearman correlation of reward with utility (invalid tunes have utility -3)
  samples_bar   the same drawn bar-aware (`domains.ABCConstraint`, when domains has it), as
                benchmarks/ascent.py draws its starts by default
  corpus        held-out corpus tunes of the split's corpus part: Pearson and Spearman
  pitch         pitch-edit pairs: a valid held-out tune (half corpus, half generator samples,
                bar-aware when domains has the constraint) vs a copy with k in {1, 2, 4} note
                letters changed to other note letters (durations and bar lines kept: the ascent
                engine's edits); the fraction of pairs the reward orders as the utility does
                (pairs with equal utility left out)

Per recipe: CPU seconds (pool + simulated ratings + Bradley-Terry fit + model fit; a rating costs
the CPU time the rater took for that item, measured once and charged to every recipe that rates
it) and the number of simulated comparisons. Recipes named ``ceiling_*`` regress on the hidden
utility itself: upper references, not usable in practice. Held-out numbers only.

Selection and report use different items (`reward_recipes.SPLITS`): ``--split select`` measures
on the val corpus tunes and samples of seed 1 — the run on which a recipe is chosen (the best
practical recipe by pitch-pair accuracy) — and ``--split report`` (the default) on the test tunes
and samples of seed 1001, where the recipe the other benchmarks use (`CHOSEN`) is reported, not
re-chosen (``--chosen`` names another recipe a select run chose). The rating pools draw from the training split and seed 99 + --seed, so no held-out
item is rated for training. benchmarks/ascent.py reports on the same report items.

Its ``goal`` object holds the issue's figures for the shown recipe: corpus_r and samples_r
(bar-aware samples, as the issue's acceptance says; the free samples' r beside as samples_free_r)
from this run, the others read from the full runs of the benchmarks that measure them
(`GOAL_SOURCES`: file, JSON pointer and commit under ``goal.sources``); ``--regoal`` refreshes only
that object after one of those runs. Each recipe's row records its costs (scoring items per CPU
second, model and ensemble bytes).

Writes benchmarks/results/reward_fidelity.json (--quick: reward_fidelity_quick.json; --split
select adds "_select"); one summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import domains
import rewardmodels
from provenance import RUN_STATE, json_pointer, write_result
from reward_recipes import (PRACTICAL, Recipe, eval_corpus, eval_samples, eval_split, fit_recipe,
                            load_or_train_generator, make_pool, pitch_edit, run_parser, scaled, start_corpus_run)

RESULTS = Path(__file__).parent / "results"
MAX_CHARS = 150  # as benchmarks/ascent.py, so a --work directory serves both
PITCH_KS = (1, 2, 4)
CHOSEN = "practical_bar_aware"  # the recipe benchmarks/ascent.py uses (PRACTICAL, bar-aware samples)


def recipes(quick: bool) -> dict[str, tuple[Recipe, str]]:
    """name -> (recipe, what it changes); --quick scales item counts and steps by 0.3 and skips one."""
    tc = rewardmodels.RewardTrainConfig
    base = Recipe()
    out = {
        "baseline": (base, "benchmarks/ascent.py before this benchmark: fine-tune, last-token pooling"),
        "more_ratings": (Recipe(corpus=400, samples=200, char_edited=400, comparisons=16),
                         "2x the items, 4x the comparisons"),
        "pitch_pool": (Recipe(pitch_variants=1),
                       "+ one pitch variant of every corpus tune and valid sample, paired with it"),
        "longer_cosine": (Recipe(train=tc(steps=600, batch_size=32, lr=3e-4, schedule="cosine")),
                          "2x the steps, lr 3e-4 with cosine decay"),
        "mean_pool": (Recipe(pooling="mean"), "mean pooling instead of the last token"),
        "probe": (Recipe(pooling="mean", fit="probe"), "frozen backbone, ridge head on mean-pooled features"),
        "practical": (PRACTICAL, "probe on 400 corpus + 200 samples + pitch variants (benchmarks/ascent.py)"),
        "practical_finetune": (dataclasses.replace(PRACTICAL, fit="probe+finetune",
                                                   train=tc(steps=300, batch_size=32, lr=3e-5, schedule="cosine")),
                               "practical, then 300 fine-tune steps from the probe (lr 3e-5, cosine)"),
        "practical_bar_aware": (dataclasses.replace(PRACTICAL, sampling="bar-aware"),
                                "practical with bar-aware generator samples in the pool"),
        "practical_bar_aware_mean_last": (dataclasses.replace(PRACTICAL, sampling="bar-aware", pooling="mean+last"),
                                          "practical_bar_aware, the probe reading mean and last-token features"),
        "practical_attention": (rewardmodels.PRACTICAL_ATTENTION,
                                "practical_bar_aware, attention pooling (query trained with the probe's head)"),
        "practical_ending": (rewardmodels.PRACTICAL_ENDING,
                             "practical_bar_aware, per-bar pooling: [mean over bars, last bar, first bar]"),
        "practical_bar_aware_mean_last_bars": (dataclasses.replace(PRACTICAL, sampling="bar-aware",
                                                                   pooling="mean+last+bars"),
                                               "practical_bar_aware, mean + last-token + per-bar features"),
        "practical_music": (rewardmodels.PRACTICAL_MUSIC,
                            "practical_bar_aware reading musical annotations (input channels + pooled, probe)"),
        "practical_music_finetune": (dataclasses.replace(rewardmodels.PRACTICAL_MUSIC, fit="probe+finetune",
                                                         train=tc(steps=300, batch_size=32, lr=1e-4, schedule="cosine")),
                                     "practical_music, then 300 fine-tune steps (lr 1e-4, cosine): W_a learns"),
        "ceiling_practical_music": (dataclasses.replace(rewardmodels.PRACTICAL_MUSIC, targets="utility"),
                                    "CEILING: practical_music fitted to the hidden utility"),
        "ceiling_baseline": (Recipe(targets="utility"), "CEILING: baseline trained on the hidden utility"),
        "ceiling_practical": (dataclasses.replace(PRACTICAL, targets="utility"),
                              "CEILING: practical fitted to the hidden utility"),
        "ceiling_practical_mean_last": (dataclasses.replace(PRACTICAL, targets="utility", pooling="mean+last"),
                                        "CEILING: practical with mean+last features fitted to the hidden utility"),
        "ceiling_practical_ending": (dataclasses.replace(rewardmodels.PRACTICAL_ENDING, targets="utility"),
                                     "CEILING: practical_ending fitted to the hidden utility"),
    }
    if quick:  # the slowest recipe, and no better than `practical` in full runs
        del out["practical_finetune"]
    if not hasattr(domains, "ABCConstraint"):
        out = {k: v for k, v in out.items() if v[0].sampling == "free"}
    return {k: (scaled(r, 0.3) if quick else r, note) for k, (r, note) in out.items()}


class ChargedUtility:
    """The rater's utility with the CPU seconds of each item's first evaluation remembered, so a
    recipe is charged for every item it rates even when another recipe rated it first."""

    def __init__(self, rater: rewardmodels.SimulatedRater) -> None:
        self.rater = rater
        self.cost: dict[str, float] = {}

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, float]:
        for t in dict.fromkeys(texts):
            if t not in self.cost:
                c0 = time.process_time()
                self.rater.utility([t])
                self.cost[t] = time.process_time() - c0
        return self.rater.utility(texts), float(sum(self.cost[t] for t in texts))


def eval_sets(gen, tok, held_out: list[str], utility, constraint, n: dict, split) -> dict:
    """Held-out texts and utilities of one split (`reward_recipes.EvalSplit`): samples (free, and
    bar-aware with `constraint`) drawn with the split's seed, `held_out` corpus tunes (the split's,
    from `reward_recipes.eval_corpus`), and pitch-edit pairs built from valid corpus tunes and
    valid samples. `utility`: texts -> (utilities, cpu s), e.g. `ChargedUtility`."""
    sets = {}
    draw = lambda k, c=None: [domains.decode(tok, r) for r in eval_samples(gen, tok, k, split, c)]  # noqa: E731
    sets["samples"] = draw(n["samples"])
    if constraint is not None:
        sets["samples_bar"] = draw(n["samples_bar"], constraint)
    sets["corpus"] = held_out[: n["corpus"]]
    out = {k: (v, utility(v)[0]) for k, v in sets.items()}
    rng = np.random.default_rng(123)
    bases, base_origin = [], []
    for name in ("corpus", "samples_bar" if constraint is not None else "samples"):
        texts, u = out[name]
        valid = [t for t, x in zip(texts, u) if x > rewardmodels.INVALID][: n["pitch_bases"] // 2]
        bases += valid
        base_origin += ["corpus" if name == "corpus" else "sample"] * len(valid)
    a, b, ks, origin = [], [], [], []
    for text, o in zip(bases, base_origin):
        for k in PITCH_KS:
            a.append(text)
            b.append(pitch_edit(text, k, rng))
            ks.append(k)
            origin.append(o)
    out["pitch"] = (a, b, np.array(ks), np.array(origin), utility(a)[0], utility(b)[0])
    return out


def correlations(r: np.ndarray, u: np.ndarray) -> dict:
    valid = u > rewardmodels.INVALID
    return {"pearson": float(np.corrcoef(r, u)[0, 1]), "spearman": float(spearmanr(r, u)[0]), "n": len(u),
            "valid_fraction": float(valid.mean()),
            "pearson_valid_only": float(np.corrcoef(r[valid], u[valid])[0, 1]) if valid.sum() > 2 else None}


def measure(rm, gen, tok, sets: dict) -> dict:
    """Held-out fidelity of one reward model on `eval_sets`."""
    predict = lambda texts: rm.predict(*domains.encode_batch(tok, texts, gen)).double().numpy()  # noqa: E731
    out = {name: correlations(predict(v[0]), v[1]) for name, v in sets.items() if name != "pitch"}
    a, b, ks, origin, ua, ub = sets["pitch"]
    ra, rb = predict(a), predict(b)
    keep = np.abs(ua - ub) > 1e-9
    agree = np.sign(ra - rb) == np.sign(ua - ub)
    pitch = {"accuracy": float(agree[keep].mean()), "pairs": int(keep.sum()), "tied_left_out": int((~keep).sum()),
             "diff_pearson": float(np.corrcoef((ra - rb)[keep], (ua - ub)[keep])[0, 1])}
    for k in PITCH_KS:
        pitch[f"accuracy_k{k}"] = float(agree[keep & (ks == k)].mean())
    for o in ("corpus", "sample"):
        if (keep & (origin == o)).any():
            pitch[f"accuracy_{o}"] = float(agree[keep & (origin == o)].mean())
    out["pitch"] = pitch
    return out


def parse_args() -> argparse.Namespace:
    ap = run_parser(__doc__, "reduced run (< 4 minutes): 0.3x pools and steps",
                    "directory with generator/ to reuse (written if absent), as benchmarks/ascent.py",
                    "seeds the pools, comparisons and fits")
    ap.add_argument("--recipes", help="comma-separated subset of the recipes to run")
    ap.add_argument("--out", help="result file (default: results/reward_fidelity[_quick][_select].json); give one "
                                  "with --recipes so a partial run does not replace the full table")
    ap.add_argument("--regoal", action="store_true",
                    help="only refresh the goal object of the existing result file from the benchmarks that measure "
                         "its other figures (run after they change); nothing is re-measured")
    ap.add_argument("--split", choices=["select", "report"], default="report",
                    help="held-out items: 'select' (val tunes, sample seed 1) to choose a recipe, 'report' "
                         "(test tunes, sample seed 1001) for the figures quoted")
    ap.add_argument("--chosen", default=CHOSEN,
                    help=f"the recipe the report split's summary and goal figures are for (default {CHOSEN}, the "
                         "one benchmarks/ascent.py uses); name the one a --select run chose when --recipes leaves "
                         "the default out")
    return ap.parse_args()


def chosen_recipes(args) -> dict:
    """The recipes to run: all of `recipes(quick)`, or the --recipes subset (an unknown name stops the run)."""
    todo = recipes(args.quick)
    if args.recipes:
        unknown = set(args.recipes.split(",")) - set(todo)
        if unknown:
            raise SystemExit(f"unknown recipes {sorted(unknown)}; choose from {sorted(todo)}")
        todo = {k: v for k, v in todo.items() if k in args.recipes.split(",")}
    return todo


def run_recipe(recipe, note: str, gen, tok, train, utility, rater, sets, seed: int) -> dict:
    """One recipe: its rating pool, its fit, its CPU parts and its held-out measures."""
    pool = make_pool(recipe, gen, tok, train, seed)
    u, rating_cpu = utility(pool.texts)
    rm, info = fit_recipe(recipe, pool, u, gen, tok, rater, seed)
    cpu = {"pool": pool.cpu_s, "ratings": rating_cpu, "bradley_terry": info.pop("bt_cpu_s"),
           "fit": info.pop("fit_cpu_s")}
    return {"note": note, "recipe": repr(recipe), "ceiling": recipe.targets == "utility",
            **info, "cpu_s": sum(cpu.values()), "cpu_s_parts": cpu, "costs": costs(rm, gen, tok, sets["corpus"][0]),
            **measure(rm, gen, tok, sets)}


def costs(rm, gen, tok, texts: list[str]) -> dict:
    """Scoring throughput (items per CPU second: encoding + forward, batches of 64, on `texts`) and
    memory: the model's parameter and buffer bytes, its head's, and those of a `RewardEnsemble` of
    `rewardmodels.DEFAULT_MEMBERS` members, the default the README recommends (one backbone, one head
    row per member)."""
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    c0 = time.process_time()
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            rm.predict(*domains.encode_batch(tok, texts[i:i + 64], gen))
    cpu = time.process_time() - c0
    total = nbytes(list(rm.parameters()) + list(rm.buffers()))
    head = nbytes(rm.head.parameters())
    return {"score_items": len(texts), "score_cpu_s": cpu, "score_items_per_cpu_s": len(texts) / cpu if cpu else None,
            "model_bytes": total, "head_bytes": head,
            "ensemble_members": rewardmodels.DEFAULT_MEMBERS,
            "ensemble_bytes": total + (rewardmodels.DEFAULT_MEMBERS - 1) * head}


def print_summary(results, sets, split, shown, best_here, q: bool, wall0: float, path) -> None:
    bar = "samples_bar" in sets
    print(f"{'recipe':<20}{'samples r/rho':>15}{'bar-aware r/rho':>17}{'corpus r/rho':>15}{'pitch acc':>10}"
          f"{'cpu_s':>7}{'compar.':>9}")
    for k, r in results.items():
        sb = f"{r['samples_bar']['pearson']:.3f}/{r['samples_bar']['spearman']:.3f}" if bar else "-"
        print(f"{k:<20}{r['samples']['pearson']:>8.3f}/{r['samples']['spearman']:.3f}{sb:>17}"
              f"{r['corpus']['pearson']:>8.3f}/{r['corpus']['spearman']:.3f}{r['pitch']['accuracy']:>10.3f}"
              f"{r['cpu_s']:>7.0f}{r['comparisons']:>9}")
    best = shown
    base = results.get("baseline")
    label = "best practical (pitch, select split)" if split.name == "select" else "chosen recipe (report split)"
    summary = (f"{label} {best}: pitch {results[best]['pitch']['accuracy']:.3f}, "
               f"corpus r {results[best]['corpus']['pearson']:.3f}, samples r {results[best]['samples']['pearson']:.3f}"
               if best else "no practical recipe run")
    if split.name == "report" and best_here and best_here != best:
        summary += f" (best on this split: {best_here}, not a selection)"
    if base:
        summary += (f" vs baseline pitch {base['pitch']['accuracy']:.3f}, corpus r {base['corpus']['pearson']:.3f}, "
                    f"samples r {base['samples']['pearson']:.3f}")
    print(f"reward_fidelity{' (quick)' if q else ''}: {summary}; {time.perf_counter() - wall0:.0f} s; {path}")


def shown_recipe(results: dict, split: str, chosen: str) -> tuple[str | None, str | None]:
    """(best practical recipe by pitch-pair accuracy, the recipe the summary and goal report).
    On the select split the best practical recipe is the choice; on the report split the recipe
    chosen before (`chosen`, None when this run left it out) is reported, and the best here is
    only recorded, not acted on. Ceilings are never chosen."""
    practical = [k for k, r in results.items() if not r["ceiling"]]
    best = max(practical, key=lambda k: results[k]["pitch"]["accuracy"]) if practical else None
    return best, best if split == "select" else (chosen if chosen in results else None)


GOAL_KEYS = ("heldout_pairwise_accuracy_3000", "corpus_r", "samples_r", "heldout_collection_r", "edit_capture",
             "corpus_ascent_utility_gain", "heldout_collection_ascent_utility_gain", "ensemble_sd_error_spearman")
GOAL_SOURCES = {  # goal figures this script does not measure: (full-run result file, JSON pointer, what it is)
    "heldout_pairwise_accuracy_3000": (
        "rating_efficiency_probe_music_n1000-3000_bt_random-pairwise.json", "/bt_random/3000",
        "benchmarks/rating_efficiency.py --model probe_music: held-out pairwise accuracy at 3000 ratings of the "
        "Bradley-Terry regression on random pairs (the library's default path), mean over seeds"),
    "heldout_collection_r": (
        "music_ascent.json", "/results/<recipe>/calibration/sets/held-out/r_mean_utility",
        "benchmarks/music_ascent.py: Pearson r of the ensemble mean with the utility on whole tunes of a collection "
        "nobody rated (this script's generator and pools see every collection, so none is held out here)"),
    "edit_capture": (
        "edit_ranking.json", "/rankings/<recipe>~1lm8/capture",
        "benchmarks/edit_ranking.py: utility gain of the edit the engine's objective (lm_weight 8) ranks first / "
        "the best single edit's gain"),
    "corpus_ascent_utility_gain": (
        "music_ascent.json", "/results/<recipe>/sets/corpus/on/mean_du",
        "benchmarks/music_ascent.py: mean utility change of ascent from held-out corpus tunes, default guard"),
    "heldout_collection_ascent_utility_gain": (
        "music_ascent.json", "/results/<recipe>/sets/held-out/on/mean_du",
        "benchmarks/music_ascent.py: mean utility change of ascent from the held-out collection, default guard"),
    "ensemble_sd_error_spearman": (
        "music_ascent.json", "/results/<recipe>/calibration/pooled/spearman_sd_abs_error",
        "benchmarks/music_ascent.py: Spearman of the members' SD with the absolute error on held-out items "
        "(goal >= 0.3)"),
}


def goal(results: dict, recipe: str | None, results_dir: Path = RESULTS) -> dict:
    """The project's goal figures for `recipe` (the shown one): corpus_r (Pearson, held-out corpus
    tunes) and samples_r (Pearson, bar-aware generator samples, as the acceptance names them; free
    samples when the run drew none, and their r beside as samples_free_r) measured here; the others
    read from the full (non-quick) result files of the benchmarks that measure them
    (`GOAL_SOURCES`), each with its file, pointer and commit under "sources"; null (the note says
    why) when that file is absent, is a --quick run, or holds no figure for `recipe`."""
    r = results.get(recipe) if recipe else None
    bar = "samples_bar" if r and "samples_bar" in r else "samples"
    figures = {"corpus_r": r["corpus"]["pearson"] if r else None, "samples_r": r[bar]["pearson"] if r else None}
    notes = {"corpus_r": "this run: recipes.<recipe>.corpus.pearson",
             "samples_r": f"this run: recipes.<recipe>.{bar}.pearson ("
                          + ("bar-aware samples, as the issue's acceptance names them" if bar == "samples_bar"
                             else "free samples: this run drew no bar-aware ones") + ")"}
    sources = {}
    for key, (name, pointer, what) in GOAL_SOURCES.items():
        pointer = pointer.replace("<recipe>", recipe or "<recipe>")
        path = results_dir / name
        doc = json.loads(path.read_text()) if path.exists() else None
        try:
            value = json_pointer(doc, pointer) if doc is not None and recipe and not doc.get("quick") else None
        except KeyError:
            value = None
        figures[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        why = ("" if figures[key] is not None else " -- none yet: " + (
            f"{name} is absent" if doc is None else f"{name} is a --quick run" if doc.get("quick")
            else f"{name} holds no number at that pointer"))
        notes[key] = f"{what}; benchmarks/results/{name}#{pointer}{why}"
        if figures[key] is not None:
            sources[key] = {"file": f"benchmarks/results/{name}", "pointer": pointer, "commit": doc.get("commit")}
    free = r["samples"]["pearson"] if r and bar == "samples_bar" else None  # beside the goal, not part of it
    return {"recipe": recipe, **{k: figures[k] for k in GOAL_KEYS}, "samples_free_r": free,
            "notes": {k: notes[k] for k in GOAL_KEYS}, "sources": sources}


def regoal(path: Path, results_dir: Path = RESULTS) -> dict:
    """Refresh the goal object of the result file `path` from the current source files (`goal`),
    leaving the run's own figures and provenance as they are; the goal records the commit it was
    assembled at ("assembled_at"). Returns the new goal."""
    doc = json.loads(path.read_text())
    g = goal(doc["recipes"], doc["goal"]["recipe"], results_dir)
    doc["goal"] = {**g, "assembled_at": RUN_STATE["commit"]}
    path.write_text(json.dumps(doc, indent=1, default=str))
    return doc["goal"]


def main() -> None:
    args = parse_args()
    q = args.quick
    split = eval_split(args.split)
    default_path = RESULTS / f"reward_fidelity{'_quick' if q else ''}{'_select' if split.name == 'select' else ''}.json"
    if args.regoal:
        g = regoal(Path(args.out) if args.out else default_path)
        print("reward_fidelity goal: " + ", ".join(f"{k} {g[k]:.3f}" if g[k] is not None else f"{k} -" for k in GOAL_KEYS))
        return
    wall0 = time.perf_counter()
    log, splits = start_corpus_run(args.threads, MAX_CHARS)
    train, val, test = splits["train"], splits["val"], splits["test"]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="reward_fidelity_"))
    tok, gen, setup = load_or_train_generator(work / "generator", train, val, MAX_CHARS, 0.75 if q else 4.0)
    setup["work"] = str(work)
    log(f"generator ready ({setup['generator_cpu_s']:.0f} CPU s); "
        f"corpus {len(train)} train; split {split.name}: {split.corpus} tunes, samples of seed {split.sample_seed}")
    held_out = eval_corpus(splits, tok, split)
    constraint = domains.ABCConstraint.from_texts(tok, train) if hasattr(domains, "ABCConstraint") else None

    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=args.seed)
    utility = ChargedUtility(rater)
    sizes = ({"samples": 100, "samples_bar": 60, "corpus": 150, "pitch_bases": 80} if q else
             {"samples": 200, "samples_bar": 250, "corpus": 500, "pitch_bases": 260})
    c0 = time.process_time()
    sets = eval_sets(gen, tok, held_out, utility, constraint, sizes, split)
    log(f"held-out sets rated ({time.process_time() - c0:.0f} CPU s): "
        + ", ".join(f"{k} {len(v[0])}" for k, v in sets.items()) + " pairs")

    todo = chosen_recipes(args)
    results: dict = {}
    for name, (recipe, note) in todo.items():
        results[name] = r = run_recipe(recipe, note, gen, tok, train, utility, rater, sets, args.seed)
        log(f"{name}: samples {r['samples']['pearson']:.3f}, corpus {r['corpus']['pearson']:.3f}, "
            f"pitch {r['pitch']['accuracy']:.3f}, {r['cpu_s']:.0f} CPU s, {r['comparisons']} comparisons")

    best_here, shown = shown_recipe(results, split.name, args.chosen)
    config = {"quick": q, "seed": args.seed, "split": dataclasses.asdict(split), "max_chars": MAX_CHARS,
              "gen_minutes": 0.75 if q else 4.0, "eval_sizes_wanted": sizes, "pitch_ks": list(PITCH_KS),
              "rater_agreement": rater.agreement, "recipes": {k: repr(r) for k, (r, _) in todo.items()}}
    out = {
        "benchmark": "reward_fidelity", "quick": q, "split": split.name,
        "chosen_recipe": shown, "best_practical_on_this_split": best_here,
        "setup": setup, "eval_sizes": {k: len(v[0]) for k, v in sets.items()},
        "pitch_ks": list(PITCH_KS), "rater_agreement": rater.agreement,
        "definitions": {
            "cpu_s": "pool building + simulated ratings (each item charged its measured rating CPU time) "
                     "+ Bradley-Terry fit + model fit; process CPU time, 1 torch thread",
            "comparisons": "simulated pairwise comparisons the recipe uses (ties included)",
            "pitch.accuracy": "fraction of (tune, pitch-edited copy) pairs ordered by the reward as by the "
                              "utility, pairs with equal utility left out",
            "ceiling": "trained on the hidden utility: an upper reference, not usable in practice"},
        "recipes": results, "goal": goal(results, shown), "total_wall_s": time.perf_counter() - wall0,
    }
    path = Path(args.out) if args.out else default_path
    write_result(path, out, config)
    print_summary(results, sets, split, shown, best_here, q, wall0, path)


if __name__ == "__main__":
    main()
