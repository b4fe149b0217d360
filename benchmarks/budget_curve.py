"""How the engine's edge over random hill-climbing and polish-only depends on the CPU budget.

benchmarks/ascent.py compares the editors at one budget: the engine's default (8 gradient steps,
then 8 exact-swap polish rounds). Every editor climbs towards a local optimum of single pitch
edits, so a ratio of gains per CPU-s measured at one budget says little about another. This script
measures the curve: the engine with 1, 2, 4, 8 and 16 polish rounds (--rounds), each against
hill-climbing given exactly the engine run's own CPU time and against polish-only (the same swaps
without the gradient steps, its rounds raised until its own CPU reaches the engine's:
`ascent.measure_polish_only`), from the same starts, with the same models, objective and edit space
as ascent.py (its options and defaults: this script reads ascent.py's command line, plus --rounds).

Per budget: each method's verified gain in the objective J (reward + lm_weight x mean
log-likelihood, discrete, re-scored), the ratios of gains per CPU-s with bootstrap intervals over
slots (`ascent_measures.per_cpu_ratio`), the reward and the simulated rater's utility gains, and
the ratio at equal reward-model evaluations. The 8-round row repeats ascent.json's engine row with
the same seed and starts (a consistency check: CPU times differ between runs by up to ~20%).

Which budget to quote is chosen on the selection split: ``--split select`` writes
budget_curve_select.json, and a report run that finds it quotes, as ``goal``, its own row at the
rounds with the highest ratio against hill-climbing there (``chosen_on_select``).

Writes benchmarks/results/budget_curve.json (--quick: budget_curve_quick.json, --split select adds
"_select") and a plot beside it; one summary line last.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from provenance import write_result  # first: it records the tree's git state as the run starts

import numpy as np

import domains
import gradopt
import rewardmodels
from ascent import (build_models, climb, engine_configs, eval_starts, measure_polish_only, parse_args,
                    run_engine, summarise)
from ascent_measures import bench_corpus, per_cpu_ratio
from gradopt import memo_validate
from reward_recipes import eval_split, start_run

RESULTS = Path(__file__).parent / "results"
KEYS = ("cpu_s", "reward_evals", "objective_gain", "reward_gain", "utility_gain", "utility_gain_se",
        "objective_gain_per_cpu_s", "valid_kept_fraction")


def rounds_option(ap) -> None:
    ap.add_argument("--rounds", default="1,2,4,8,16",
                    help="comma-separated polish rounds of the engine, one budget each")


def parse_rounds(text: str) -> list[int]:
    try:
        rounds = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--rounds takes comma-separated integers, got {text!r}") from None
    if not rounds or rounds[0] < 1:
        raise SystemExit(f"--rounds must list polish rounds >= 1, got {text!r}")
    return rounds


def ratio_text(r: dict, interval: bool = True) -> str:
    """A `per_cpu_ratio` result as "1.23x [1.01, 1.50]"; the ratio may be None (neither gained) or
    "inf" (the baseline did not gain), the interval None (some resamples undefined)."""
    def num(x):
        return "n/a" if x is None else f"{float(x):.2f}"

    text = f"{num(r['ratio'])}x"
    if interval:
        text += f" [{num(r['ci95'][0])}, {num(r['ci95'][1])}]" if r["ci95"] else " [no interval]"
    return text


def goal_from_select(rows: list[dict], select_path: Path) -> dict | None:
    """This (report) run's row at the rounds whose ratio against hill-climbing was highest in the
    selection run at `select_path`; None when that run is absent or measured none of these rounds."""
    if not select_path.exists():
        return None
    sel = [r for r in json.loads(select_path.read_text())["curve"] if r["ratio"]["ratio"] is not None]
    mine = {r["rounds"]: r for r in rows}
    sel = [r for r in sel if r["rounds"] in mine]
    if not sel:
        return None
    chosen = max(sel, key=lambda r: float(r["ratio"]["ratio"]))["rounds"]  # "inf" when the baseline gained nothing
    row = mine[chosen]
    return {"chosen_on_select": chosen, "select_commit": json.loads(select_path.read_text()).get("commit"),
            "ratio_vs_hill_climb": row["ratio"]["ratio"], "ratio_vs_hill_climb_95ci": row["ratio"]["ci95"],
            "ratio_vs_polish_only": row["ratio_vs_polish_only"]["ratio"],
            "ratio_vs_polish_only_95ci": row["ratio_vs_polish_only"]["ci95"],
            "engine_cpu_s": row["engine"]["cpu_s"], "engine_utility_gain": row["engine"]["utility_gain"]}


def plot(rows: list[dict], path: Path) -> None:
    """Gain in J against CPU-s for both editors (left) and the per-CPU-s ratio with its interval (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for who, colour in (("engine", "C0"), ("hill_climb", "C1"), ("polish_only", "C2")):
        left.plot([r[who]["cpu_s"] for r in rows], [r[who]["objective_gain"] for r in rows], "o-", color=colour,
                  label=who.replace("_", "-"))
    for r in rows:
        left.annotate(f"{r['rounds']}", (r["engine"]["cpu_s"], r["engine"]["objective_gain"]), fontsize=7,
                      xytext=(3, -9), textcoords="offset points")
    left.set_xscale("log")
    left.set_xlabel("CPU seconds for all slots")
    left.set_ylabel("verified gain in the objective J (mean over slots)")
    left.set_title("Gain against CPU (labels: polish rounds)")
    left.legend(fontsize=8)
    x = [r["engine"]["cpu_s"] for r in rows]
    for key, style, label in (("ratio", dict(fmt="o-"), "vs hill-climbing"),
                              ("ratio_vs_polish_only", dict(fmt="s--", color="C2"), "vs polish-only")):
        y = [r[key]["ratio"] for r in rows]
        lo = [r[key]["ci95"][0] if r[key]["ci95"] else np.nan for r in rows]
        hi = [r[key]["ci95"][1] if r[key]["ci95"] else np.nan for r in rows]
        right.errorbar(x, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], capsize=3, label=label, **style)
    right.legend(fontsize=8)
    right.axhline(1, color="black", lw=0.5)
    right.axhline(3, color="grey", lw=0.5, ls="--")
    right.set_xscale("log")
    right.set_xlabel("CPU seconds for all slots (the engine's, given to both)")
    right.set_ylabel("engine / baseline, gain in J per CPU-s")
    right.set_title("The engine's edge, 95% interval over slots")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args(rounds_option)
    rounds = parse_rounds(args.rounds)
    split = eval_split(args.split)
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    splits = bench_corpus(args.max_chars, args.whole)
    cfg, _, _ = engine_configs(args)
    tok, gen, rm, info = build_models(args, splits["train"], splits["val"], log, cfg)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    ctx = (rm, gen, tok, rater, memo_validate(), args.lm_weight, args.lm_floor)
    grammar = domains.ABCConstraint.from_texts(tok, splits["train"])
    starts = eval_starts(gen, tok, splits, split, args.slots, None if args.free_sampling else grammar, args.seed,
                         args.temperature)["samples"]
    rows = []
    for n in rounds:
        cfg_n = dataclasses.replace(cfg, polish=dataclasses.replace(cfg.polish, rounds=n))
        res, _, _ = run_engine(starts, rm, gen, tok, cfg_n, memo_validate(grammar.accepts), args.edit)
        eng = summarise("engine", [r.tokens for r in res.rows], starts, ctx, res.cpu_seconds, res.seconds,
                        res.reward_evals)
        snaps = climb(starts, rm, gen, tok, res.reward_evals // len(starts), res.cpu_seconds, args.lm_weight,
                      args.seed, args.edit, grammar.accepts, lm_floor=args.lm_floor)
        hc = {key: summarise(f"hill_climb_equal_{key}", s.rows, starts, ctx, s.cpu_s, s.wall_s, s.evals)
              for key, s in snaps.items()}
        po: dict = {}
        measure_polish_only(po, "samples", starts, args, ctx, cfg_n, res.cpu_seconds, grammar.accepts, log)
        po = po["polish_only_equal_time/samples"]
        row = {"rounds": n, "engine": {k: eng[k] for k in KEYS},
               "hill_climb": {k: hc["time"][k] for k in KEYS},
               "hill_climb_equal_evals": {k: hc["evals"][k] for k in KEYS},
               "polish_only": {**{k: po[k] for k in KEYS}, "polish_rounds": po["polish_rounds"]},
               "ratio": per_cpu_ratio(eng, hc["time"]),
               "ratio_vs_polish_only": per_cpu_ratio(eng, po),
               "ratio_equal_evals_gain": float(np.mean(eng["objective_gain_per_slot"])
                                               / np.mean(hc["evals"]["objective_gain_per_slot"]))}
        rows.append(row)
        log(f"{n} polish rounds: engine {eng['cpu_s']:.0f} CPU-s, J {eng['objective_gain']:+.3f}; hill-climbing "
            f"{hc['time']['objective_gain']:+.3f}, ratio {ratio_text(row['ratio'])}; polish-only "
            f"{po['objective_gain']:+.3f}, ratio {ratio_text(row['ratio_vs_polish_only'])}")
    config = {**vars(args), "rounds": rounds, "split": dataclasses.asdict(split), "engine": repr(cfg),
              "rater_agreement": rater.agreement}
    out = {"benchmark": "budget_curve", "quick": args.quick, "setup": info, "curve": rows,
           "total_wall_s": time.perf_counter() - wall0}
    suffix = "_quick" if args.quick else ""
    if split.name == "select":
        suffix += "_select"
    else:
        out["goal"] = goal_from_select(rows, RESULTS / f"budget_curve{suffix}_select.json")
    path = write_result(RESULTS / f"budget_curve{suffix}.json", out, config)
    plot(rows, path.with_suffix(".png"))
    goal = out.get("goal")
    chosen = (f"; at {goal['chosen_on_select']} rounds (chosen on select) "
              f"{ratio_text({'ratio': goal['ratio_vs_hill_climb'], 'ci95': goal['ratio_vs_hill_climb_95ci']})} "
              f"hill-climbing's, "
              f"{ratio_text({'ratio': goal['ratio_vs_polish_only'], 'ci95': goal['ratio_vs_polish_only_95ci']})} "
              "polish-only's") if goal else ""
    print(f"budget_curve{' (quick)' if args.quick else ''}{' (select)' if split.name == 'select' else ''}: engine vs "
          "hill-climbing, gain in J per CPU-s, by polish rounds: "
          + ", ".join(f"{r['rounds']}: {ratio_text(r['ratio'], interval=False)}" for r in rows) + f"{chosen}; {path}")


if __name__ == "__main__":
    main()
