"""What `gradopt generate` does, measured: best-of-N, then the engine (do-no-harm guard on), against
best-of-N' with the same total CPU.

`benchmarks/ascent.py`'s batch-recipe row measured best-of-4 + engine with its own engine settings
(8 logit steps, lm weight 4, 8 polish rounds, no guard). A user who runs `gradopt generate` gets
the guard, which returns a pick unchanged unless the ensemble is confident the edit is better, and
an engine setting: `--engine defaults` (`gradopt.AscentConfig()`: 60 simplex steps, lm weight 1, 4
polish rounds) or `--engine polish` (`gradopt.POLISH_ENGINE`, ascent.py's setting); `--no-guard`
drops the guard. The setting `generate` uses is chosen with `--split select` and reported with
`--split report`. This script measures a setting with `ascent_measures.batch_recipe` (the library's
`gradopt.best_then_polish`, all slots in one batch) on the same kind of starts as ascent.py:
`--slots` bar-aware whole-tune samples of the split (its seeds), temperature 0.8, pitch edits, header
frozen, the bar grammar as the validity screen. Models: the generator and reward model of an
ascent.py work directory (`--work`), reused as they are.

Reported per arm: the simulated rater's utility gain over the first sample, with 95% intervals,
the paired difference, CPU seconds, and for the recipe how many picks the guard kept and how
often the engine made its pick worse (utility drop > 0.1 from the pick).

Writes benchmarks/results/generate_recipe[_quick][_select][_polish][_noguard].json (the parts
for --quick, --split select, --engine polish, --no-guard); one summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from provenance import write_result  # first: it records the tree's git state as the run starts

import numpy as np

import domains
import gradopt
import rewardmodels
from ascent import eval_starts
from ascent_measures import batch_recipe, bench_corpus, interval
from reward_recipes import eval_split, start_run

RESULTS = Path(__file__).parent / "results"
WORSE = 0.1  # a utility drop from the pick larger than this counts as made worse
ENGINES = {"defaults": gradopt.AscentConfig(), "polish": gradopt.POLISH_ENGINE}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="an ascent.py work directory holding generator/ and reward/")
    ap.add_argument("--quick", action="store_true", help="16 slots, best-of-2")
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--best-of", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--split", default="report", choices=["select", "report"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cap", type=int, default=128, help="most samples per slot the equal-CPU arm may draw")
    ap.add_argument("--engine", default="defaults", choices=sorted(ENGINES),
                    help="defaults: gradopt.AscentConfig(); polish: gradopt.POLISH_ENGINE (ascent.py's setting)")
    ap.add_argument("--no-guard", action="store_true", help="the engine without its do-no-harm guard")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.slots, args.best_of = 16, 2
    return args


def main() -> None:
    args = parse_args()
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    work = Path(args.work)
    if not (work / "generator" / "config.json").exists() or not (work / "reward" / "config.json").exists():
        raise SystemExit(f"{work} lacks generator/ or reward/: run benchmarks/ascent.py --work {work} first")
    tok, gen = domains.load_tokenizer(work / "generator"), domains.load_generator(work / "generator").eval()
    rm = rewardmodels.load_reward_model(work / "reward").eval()
    splits = bench_corpus(domains.context_length(gen) - 2, whole=True)
    split = eval_split(args.split)
    grammar = domains.ABCConstraint.from_texts(tok, splits["train"])
    starts = eval_starts(gen, tok, splits, split, args.slots, grammar, args.seed, args.temperature)["samples"]
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    cfg = ENGINES[args.engine]
    if args.no_guard:
        cfg = dataclasses.replace(cfg, trust=None)
    log(f"{len(starts)} starts; best-of-{args.best_of} + the engine ({args.engine}{', no guard' if args.no_guard else ''}) "
        f"vs best-of-N' at equal CPU")
    out = batch_recipe(starts, rm, gen, tok, cfg, rater.utility, n=args.best_of,
                       seed=split.baseline_seed + 1000 * args.seed, temperature=args.temperature,
                       constraint=grammar, edit="pitch", validate=grammar.accepts, n_cap=args.cap)
    log(out["line"])
    text = lambda rows: [domains.decode(tok, r) for r in rows]  # noqa: E731
    a = out["polish"]
    u_pick, u_out = np.asarray(rater.utility(text(a["picks"])), float), np.asarray(rater.utility(text(a["rows"])), float)
    changed = np.array([p != r for p, r in zip(a["picks"], a["rows"])])
    engine = {"kept": a["kept"], "changed": int(changed.sum()), "slots": len(starts),
              "utility_change_from_pick": interval(u_out - u_pick),
              "fraction_worse_than_pick": float(np.mean(u_out - u_pick < -WORSE)),
              "utility_change_from_pick_where_changed": interval((u_out - u_pick)[changed]) if changed.any() else None,
              "draw_cpu_s": a["draw_cpu_s"], "engine_cpu_s": a["engine_cpu_s"]}
    result = {"benchmark": "generate_recipe", "quick": args.quick, "utility_gain": out["utility_gain"],
              "better": out["better"], "n_equal_cpu": out["more_samples"]["n"],
              "n_capped": out["more_samples"]["n_capped"],
              "cpu_s": {"recipe": a["cpu_s"], "more_samples": out["more_samples"]["cpu_s"]},
              "engine": engine, "line": out["line"], "wall_s": time.perf_counter() - wall0}
    config = {**vars(args), "engine": repr(cfg), "edit": "pitch", "worse": WORSE, "split_seeds": repr(split),
              "rater_agreement": 0.75}
    tag = ("_quick" if args.quick else "") + (f"_{args.split}" if args.split != "report" else "") + \
        (f"_{args.engine}" if args.engine != "defaults" else "") + ("_noguard" if args.no_guard else "")
    path = write_result(RESULTS / f"generate_recipe{tag}.json", result, config)
    g = out["utility_gain"]
    print(f"generate_recipe ({args.split}, engine {args.engine}{', no guard' if args.no_guard else ''}): "
          f"best-of-{args.best_of} + the engine utility {g['polish']['mean']:+.3f} vs "
          f"best-of-{out['more_samples']['n']} at equal CPU {g['more_samples']['mean']:+.3f}, difference "
          f"{g['difference']['mean']:+.3f} [{g['difference']['ci95'][0]:+.3f}, {g['difference']['ci95'][1]:+.3f}]; "
          f"the guard kept {a['kept']} of {len(starts)} picks, {engine['fraction_worse_than_pick']:.0%} made worse "
          f"than the pick; {path}")


if __name__ == "__main__":
    main()
