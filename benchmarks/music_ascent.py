"""Ascent from corpus tunes against reward models from several recipes: does the reward's rise carry
the hidden utility with it, or does the engine find the model's blind spots?

Setting: that of benchmarks/reward_fidelity.py (tunes cut at a bar line to <= 150 characters, its
small char-level generator, reused from --work, the simulated rater at agreement 0.75). Each recipe
(default: "practical_bar_aware" and "practical_music", the recipe reading musical annotations) rates
its pool and fits one reward model; then `gradopt.optimize` edits note letters only (headers frozen,
`reward_recipes.edit_space(..., "pitch")`), lm_weight 8, 60 steps, no trust guard (a single model
has no members to disagree), from held-out corpus tunes of the split (select: val, report: test).
Per recipe: mean utility change Δu (± its standard error), fractions made worse / better (|Δu| >
0.1), mean reward change and mean positions changed, and CPU seconds (fit and engine).

The annotations overlap what the simulated rater scores, so an annotated model's Δu here is an
optimistic figure for people. Writes benchmarks/results/music_ascent[_quick][_select].json; one
summary line last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import domains
import gradopt
import rewardmodels
from provenance import write_result
from reward_recipes import cut_corpus, edit_space, eval_corpus, eval_split, fit_model, load_or_train_generator, make_pool, scaled, start_run

RESULTS = Path(__file__).parent / "results"
MAX_CHARS = 150  # as benchmarks/reward_fidelity.py, so a --work directory serves both
WORSE = 0.1


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.3x rating pools, 16 tunes")
    ap.add_argument("--work", help="directory with generator/ to reuse (written if absent), as reward_fidelity.py")
    ap.add_argument("--split", choices=["select", "report"], default="report")
    ap.add_argument("--recipes", default="practical_bar_aware,practical_music",
                    help=f"comma-separated names from rewardmodels.RECIPES ({', '.join(rewardmodels.RECIPES)})")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def ascend(texts, rm, gen, tok, cfg, validate, rater) -> dict:
    starts = gradopt.starts_from_texts(tok, texts)
    freeze, allowed = edit_space(starts, tok, "pitch")
    c0 = time.process_time()
    res = gradopt.optimize(starts, rm, gen, cfg, tokenizer=tok, freeze=freeze, allowed=allowed, validate=validate)
    cpu = time.process_time() - c0
    du = rater.utility([r.text for r in res.rows]) - rater.utility(texts)
    d_reward = np.array([r.reward_after - r.reward_before for r in res.rows])
    return {"n": len(du), "mean_du": float(du.mean()), "se_du": float(du.std(ddof=1) / np.sqrt(len(du))),
            "frac_worse": float((du < -WORSE).mean()), "frac_better": float((du > WORSE).mean()),
            "mean_d_reward": float(d_reward.mean()), "mean_changed": float(np.mean([r.changed for r in res.rows])),
            "engine_cpu_s": cpu}


def main() -> None:
    args = parse_args()
    q, split = args.quick, eval_split(args.split)
    names = args.recipes.split(",")
    unknown = set(names) - set(rewardmodels.RECIPES)
    if unknown:
        raise SystemExit(f"unknown recipes {sorted(unknown)}; choose from {sorted(rewardmodels.RECIPES)}")
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    splits = cut_corpus(MAX_CHARS)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="music_ascent_"))
    tok, gen, setup = load_or_train_generator(work / "generator", splits["train"], splits["val"], MAX_CHARS,
                                              0.75 if q else 4.0)
    n = 16 if q else 40
    texts = eval_corpus(splits, tok, split)[:n]
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    validate = gradopt.memo_validate(domains.ABCConstraint.from_texts(tok, splits["train"]).accepts)
    engine = gradopt.AscentConfig(trust=None, steps=60, check_every=10, objective=gradopt.ObjectiveWeights(lm_weight=8.0))
    results = {}
    for name in names:
        recipe = scaled(rewardmodels.RECIPES[name], 0.3) if q else rewardmodels.RECIPES[name]
        c0 = time.process_time()
        pool = make_pool(recipe, gen, tok, splits["train"], seed=0)
        rm, info = fit_model(recipe, pool, rater.utility(pool.texts), gen, tok, rater, seed=0)
        fit_cpu = time.process_time() - c0
        results[name] = {"recipe": repr(recipe), "fit_cpu_s": fit_cpu, "items": info["items"],
                         **ascend(texts, rm, gen, tok, engine, validate, rater)}
        r = results[name]
        log(f"{name}: Δu {r['mean_du']:+.3f} ± {r['se_du']:.3f}, worse {r['frac_worse']:.2f}, better "
            f"{r['frac_better']:.2f}, Δreward {r['mean_d_reward']:+.3f}, {r['mean_changed']:.1f} changed")
    config = {"quick": q, "split": args.split, "recipes": names, "tunes": n, "max_chars": MAX_CHARS,
              "engine": repr(engine), "edit": "pitch", "worse_threshold": WORSE}
    out = {"benchmark": "music_ascent", "quick": q, "split": split.name, "setup": setup, "results": results,
           "wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"music_ascent{'_quick' if q else ''}{'_select' if split.name == 'select' else ''}.json",
                        out, config)
    print(f"music_ascent{' (quick)' if q else ''} ({split.name}): " + "; ".join(
        f"{k} Δu {r['mean_du']:+.3f} Δreward {r['mean_d_reward']:+.3f}" for k, r in results.items()) + f"; {path}")


if __name__ == "__main__":
    main()
