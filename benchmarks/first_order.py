"""How good is the gradient's estimate of a single-token edit, and what do gradient-informed samplers buy?

Setting: benchmarks/ascent.py's (its corpus: whole tunes by default, --max-chars n cuts them at a
bar line as ascent.py's; its char-level generator and practical reward model, reused from --work
or trained there, so an ascent.py --work directory of the same length serves; header lines
frozen, --edit pitch by default; objective J = reward + lm_weight * mean log-lik), on the first
--starts generator samples of the split (bar-aware).

1. Rank agreement: per start, Spearman between the first-order estimate ``g[i, v] - g[i, x_i]`` and
   the exact ΔJ over its single-token edits (`gradopt.rank_agreement`, at most --max-exact per start,
   sampled uniformly), and how often the estimate's top-k edits improve J exactly against all edits;
   the same for the reward term alone (lm_weight 0).
2. Verified objective gain per CPU second at (about) equal CPU on the same starts: the exact-swap
   polish alone (`optimize`, no gradient steps, proposal "gcg", pick "ranked"; "polish_gcg_uniform"
   picks a random position and one of its top-k tokens instead), the same polish slot with
   Gibbs-with-gradients (greedy and Metropolis-Hastings) and discrete Langevin (greedy) proposals,
   and random single-token hill climbing (`gradopt.hill_climb`); "polish_gcg_backoff" halves a
   merge of improving swaps that loses (`PolishConfig.backoff`), "polish_gcg_c8" (c4, c2) scores 8 (4, 2)
   candidates per row and round instead of 16, "polish_gcg_c4_single" 4 without merging the
   improving ones. --methods runs a subset. The engine runs are sized from a
   fit of two short calibration runs to --cpu seconds; every method's output is re-scored exactly; all keep
   valid starts valid (the ABC screen).

Writes benchmarks/results/first_order.json (--quick: first_order_quick.json; a cut, --max-chars n,
adds "_<n>chars", a --cpu other than the default "_<s>cpu", --split select "_select") with its commit,
machine and config (benchmarks/provenance.py); one summary line last.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

import domains
import gradopt
from ascent import build_models, climb, eval_starts
from ascent_measures import WHOLE_CHARS, bench_corpus
from gradopt import exact_scores, memo_validate
from provenance import write_result
from reward_recipes import PRACTICAL, edit_space, eval_split, run_parser, start_run

RESULTS = Path(__file__).parent / "results"


def agreement(starts, rm, gen, tok, w, edit: str, max_exact: int, ks=(1, 5, 20)) -> dict:
    """Spearman of first-order vs exact ΔJ per start, and the exact improvement rate of the
    estimate's top-k edits against the rate over all scored edits."""
    freeze, allowed = edit_space(starts, tok, edit)
    c0 = time.process_time()
    a = gradopt.rank_agreement(starts, rm, gen, w, freeze, allowed, max_exact=max_exact, tokenizer=tok)
    out = {"spearman_per_start": [round(float(x), 4) for x in a.spearman],
           "spearman_mean": float(np.nanmean(a.spearman)), "spearman_median": float(np.nanmedian(a.spearman)),
           "edits_per_start": int(np.mean([len(x) for x in a.exact])), "cpu_s": time.process_time() - c0,
           "improving_fraction_all": float(np.mean(np.concatenate(a.exact) > 0))}
    for k in ks:
        top = [x[np.argsort(-f, kind="stable")[:k]] for f, x in zip(a.first_order, a.exact)]
        out[f"improving_fraction_top{k}"] = float(np.mean(np.concatenate(top) > 0))
    return out


def run_optimize(starts, rm, gen, tok, cfg, edit, screen, budget: float) -> tuple[list[list[int]], float, int]:
    """`optimize` sized to about `budget` CPU s -> (rows, CPU s, rounds); the rounds from a linear fit
    (fixed cost + cost per round) of two short calibration runs, 2 and 6 rounds."""
    freeze, allowed = edit_space(starts, tok, edit)

    def run(rounds):
        c = dataclasses.replace(cfg, polish=dataclasses.replace(cfg.polish, rounds=rounds))
        return gradopt.optimize(starts, rm, gen, c, tokenizer=tok, freeze=freeze, allowed=allowed,
                                validate=memo_validate(screen))

    c2, c6 = run(2).cpu_seconds, run(6).cpu_seconds
    per_round = max((c6 - c2) / 4, 1e-3)
    rounds = max(1, int(round((budget - (c2 - 2 * per_round)) / per_round)))
    res = run(rounds)
    return [r.tokens for r in res.rows], res.cpu_seconds, rounds


def main() -> None:
    ap = run_parser(__doc__, "reduced run (< 5 CPU-minutes with a reused --work)", "directory with generator/ and reward/ to reuse (written if absent)")
    ap.add_argument("--starts", type=int, default=16)
    ap.add_argument("--lm-weight", type=float, default=8.0, help="as benchmarks/ascent.py")
    ap.add_argument("--edit", choices=["pitch", "any"], default="pitch")
    ap.add_argument("--max-chars", type=int, default=0,
                    help="0: whole tunes (up to %d characters, as benchmarks/ascent.py); n > 0: cut to whole bars "
                         "within n characters" % WHOLE_CHARS)
    ap.add_argument("--max-exact", type=int, default=0, help="exact edits per start for the rank agreement "
                                                             "(0: 96 with --quick, else 512)")
    ap.add_argument("--cpu", type=float, default=0.0,
                    help="CPU s per method on all starts (0: 15 with --quick, else 60)")
    ap.add_argument("--temperature", type=float, default=0.05, help="τ of the samplers' proposals (and MH target)")
    ap.add_argument("--step-size", type=float, default=0.25, help="dlp α")
    ap.add_argument("--split", choices=["select", "report"], default="select")
    ap.add_argument("--methods", type=lambda x: [m for m in x.split(",") if m], default=[],
                    help="comma-separated subset of the methods of part 2 (default: all)")
    args = ap.parse_args()
    q = args.quick
    args.max_exact = args.max_exact or (96 if q else 512)
    default_cpu = 15.0 if q else 60.0
    cpu_tag = "" if args.cpu in (0.0, default_cpu) else f"_{args.cpu:g}cpu"
    args.cpu = args.cpu or default_cpu
    args.gen_minutes, args.pooling = 0.75 if q else 4.0, PRACTICAL.pooling  # as benchmarks/ascent.py
    args.harvest_rounds, args.free_sampling, args.recipe, args.members = 0, False, "practical", 1
    whole = args.max_chars in (0, WHOLE_CHARS)
    args.max_chars = WHOLE_CHARS if whole else args.max_chars
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    splits = bench_corpus(args.max_chars, whole)
    w = gradopt.ObjectiveWeights(lm_weight=args.lm_weight)
    base = gradopt.AscentConfig(steps=0, check_every=4, seed=args.seed, objective=w, trust=None,
                                polish=gradopt.PolishConfig(rounds=1, top_k=8, candidates=16, combine=16))
    tok, gen, rm, info = build_models(args, splits["train"], splits["val"], log, base)
    grammar = domains.ABCConstraint.from_texts(tok, splits["train"])
    starts = eval_starts(gen, tok, splits, eval_split(args.split), args.starts, grammar, args.seed)["samples"]
    pad = tok.pad_token_id
    j0 = exact_scores(rm, gen, starts, pad, args.lm_weight)[2]
    log(f"{len(starts)} starts, mean J {j0.mean():.3f}")

    agree = agreement(starts, rm, gen, tok, w, args.edit, args.max_exact)
    agree_reward = agreement(starts, rm, gen, tok, dataclasses.replace(w, lm_weight=0.0), args.edit, args.max_exact)
    log(f"rank agreement: Spearman mean {agree['spearman_mean']:.3f} (median {agree['spearman_median']:.3f}); "
        f"top-1 improving {agree['improving_fraction_top1']:.2f} vs all {agree['improving_fraction_all']:.2f}")

    def sampler(proposal, acceptance, **kw):
        s = gradopt.GWGConfig(temperature=args.temperature, step_size=args.step_size, acceptance=acceptance, **kw)
        return dataclasses.replace(base, polish=dataclasses.replace(base.polish, proposal=proposal, sampler=s))

    def gcg(**kw):
        return dataclasses.replace(base, polish=dataclasses.replace(base.polish, **kw))

    configs = {"polish_gcg": base, "polish_gcg_uniform": gcg(pick="uniform"),
               "polish_gcg_backoff": gcg(backoff=True), "polish_gcg_c8": gcg(candidates=8),
               "polish_gcg_c8_backoff": gcg(candidates=8, backoff=True),
               "polish_gcg_c4": gcg(candidates=4), "polish_gcg_c2": gcg(candidates=2),
               "polish_gcg_c4_single": gcg(candidates=4, combine=1),
               "polish_gwg_greedy": sampler("gwg", "greedy"),
               "polish_gwg_mh": sampler("gwg", "mh"), "polish_gwg2_greedy": sampler("gwg", "greedy", sites=2),
               "polish_dlp_greedy": sampler("dlp", "greedy")}
    unknown = set(args.methods) - set(configs) - {"hill_climb"}
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {sorted(configs) + ['hill_climb']}")
    methods = {}
    for name, cfg in configs.items():
        if args.methods and name not in args.methods:
            continue
        rows, cpu, rounds = run_optimize(starts, rm, gen, tok, cfg, args.edit, grammar.accepts, args.cpu)
        methods[name] = {"rows": rows, "cpu_s": cpu, "rounds": rounds}
    if not args.methods or "hill_climb" in args.methods:
        snap = climb(starts, rm, gen, tok, 1, args.cpu, args.lm_weight, args.seed, args.edit, grammar.accepts)["time"]
        methods["hill_climb"] = {"rows": snap.rows, "cpu_s": snap.cpu_s, "rounds": snap.evals // len(starts)}
    report = {}
    for name, m in methods.items():
        gain = exact_scores(rm, gen, m["rows"], pad, args.lm_weight)[2] - j0
        report[name] = {"gain": float(gain.mean()), "gain_se": float(gain.std(ddof=1) / np.sqrt(len(gain))),
                        "cpu_s": m["cpu_s"], "gain_per_cpu_s": float(gain.mean() / m["cpu_s"]),
                        "rounds": m["rounds"], "improved_fraction": float(np.mean(gain > 1e-12)),
                        "changed_tokens": float(np.mean([sum(a != b for a, b in zip(r, s))
                                                         for r, s in zip(m["rows"], starts)]))}
        log(f"{name}: gain {report[name]['gain']:+.4f} ± {report[name]['gain_se']:.4f} in {m['cpu_s']:.1f} CPU s "
            f"({m['rounds']} rounds), {report[name]['gain_per_cpu_s']:.4f}/CPU-s")
    out = RESULTS / (f"first_order{'_quick' if q else ''}{'' if whole else f'_{args.max_chars}chars'}{cpu_tag}"
                     f"{'_select' if args.split == 'select' else ''}.json")
    write_result(out, {"benchmark": "first_order", "quick": q, "split": args.split, "setup": info,
                       "rank_agreement": agree,
                       "rank_agreement_reward_only": agree_reward, "methods": report, "total_wall_s": time.perf_counter() - wall0},
                 vars(args))
    best = max(report, key=lambda k: report[k]["gain_per_cpu_s"])
    print(f"first_order{' (quick)' if q else ''}: Spearman {agree['spearman_mean']:.3f}; gain/CPU-s "
          + ", ".join(f"{k} {v['gain_per_cpu_s']:.4f}" for k, v in report.items()) + f"; best {best}")


if __name__ == "__main__":
    main()
