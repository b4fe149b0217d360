"""Every way of moving the generator at equal CPU: expert iteration vs DPO / online DPO / multi-model
DPO / PPO / RLOO / GRPO / REINFORCE / best-of-N, against the base generator.

Setting: ABC tunes cut at a bar line to fit a small context, the benchmarks' char-level generator
(`reward_recipes.load_or_train_generator`, cached in --work) and ONE reward model built from
simulated ratings by `gradopt.build_reward_model` with the `rewardmodels.PRACTICAL` recipe (0.3x
the items with --quick; cached in --work). The task every method gets (`distill.Task`): samples
from the start at temperature 1 (so the sampled KL is an unbiased estimate), the reward
`distill.model_reward` (invalid tunes -3), the training split as corpus, a bar-aware grammar
(`domains.ABCConstraint` from the training split) and the reward model itself.

Each method registered in `distill.METHODS` ("base" first) trains for the same process CPU budget
per seed (--cpu-seconds; default 600, 20 with --quick) from the same base generator, in --work
runs/<budget>/<method>/seed<k> (a crashed run resumes). Seeds 0, 1, 2 (one with --quick): the reported
seeds. Settings are tuned on other seeds: --seed-start 100 with --methods base,expert (a subset, in
the usual order), --expert-options finetune_steps=80,replay_fraction=0.25 (ExpertConfig fields over
`distill.BENCHMARK_EXPERT`, the settings this benchmark gives expert iteration) and a --work directory
of their own; that preset was chosen that way (the JSON config says so).
`distill.evaluate` measures every result with the same n, the same sampling seeds (the run's seed)
and the same held-out tunes (the test split): the simulated rater's utility, the reward, validity,
KL to the base, diversity, novelty against the training split, pitch / interval / duration
divergences. A method that raises is recorded under "failed" with its message and the others go
on; names the benchmark expects but nobody registered are listed under "missing".

Writes benchmarks/results/distill.json (--quick: distill_quick.json) with, per method, the mean
over seeds of every evaluation key and the per-seed evaluations; reward-vs-KL and reward-vs-CPU
plots next to it (<name>_reward_kl.png, <name>_reward_cpu.png). Every file carries its commit, machine and
config (benchmarks/provenance.py); one summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# This script shares its name with the `distill` package: import the package, not this file.
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import distill  # noqa: E402

sys.path[:] = _path
from provenance import write_result  # noqa: E402

import domains  # noqa: E402
import gradopt  # noqa: E402
import rewardmodels  # noqa: E402
from reward_recipes import PRACTICAL, cut_corpus, load_or_train_generator, scaled, start_run  # noqa: E402

RESULTS = Path(__file__).parent / "results"
EXPECTED = ("base", "expert", "best_of_n", "dpo", "online_dpo", "multi_dpo", "ppo", "rloo", "grpo", "reinforce")
# Where distill.BENCHMARK_EXPERT, the expert settings run here, was chosen (recorded in the JSON config): dev seeds.
EXPERT_CHOSEN_ON = "dev seed 100 (--methods base,expert --seed-start 100 --seeds 1, 60 CPU-s), not the reported seeds"


def method_order(registered) -> list[str]:
    """"base" first, then the expected methods in the order of EXPECTED, then any other registered."""
    known = [m for m in EXPECTED if m in registered]
    return known + sorted(m for m in registered if m not in EXPECTED)


def build_task(args, log) -> tuple[distill.Task, list[str], dict]:
    """(task, held-out tunes, info): the generator and reward model from --work (trained there if absent)."""
    work = Path(args.work)
    splits = cut_corpus(args.max_chars)
    train, val, test = splits["train"], splits["val"], splits["test"]
    tok, gen, info = load_or_train_generator(work / "generator", train, val, args.max_chars, args.gen_minutes)
    if domains.context_length(gen) != args.max_chars + 2:
        raise SystemExit(f"{work / 'generator'} has context {domains.context_length(gen)}, but --max-chars "
                         f"{args.max_chars} needs {args.max_chars + 2}: use another --work directory")
    rdir = work / "reward"
    t0 = time.process_time()
    if (rdir / "config.json").exists():
        rm = rewardmodels.load_reward_model(rdir)
        info["reward"] = "reused"
    else:
        recipe = scaled(PRACTICAL, 0.3) if args.quick else PRACTICAL
        rm, rinfo = gradopt.build_reward_model(recipe, gen, tok, train, seed=0)
        rm.save_pretrained(rdir)
        info["reward"] = {"recipe": repr(recipe), **{k: v for k, v in rinfo.items() if isinstance(v, (int, float, str))}}
    info["reward_cpu_s"] = time.process_time() - t0
    log(f"models ready: {len(train)} train / {len(test)} test tunes, reward model {info['reward_cpu_s']:.0f} CPU s")
    keep = lambda ts: [t for t in ts if tok.unk_token_id not in tok(t)["input_ids"]]  # noqa: E731
    train, test = keep(train), keep(test)
    grammar = domains.ABCConstraint.from_texts(tok, train)
    validate = lambda text: bool(domains.validate_abc(text))  # noqa: E731
    task = distill.Task(generator=gen, tokenizer=tok, reward=distill.model_reward(rm.eval(), tok, validate=validate),
                        prompts=("",), corpus=train, validate=validate, reward_model=rm,
                        sample=domains.SampleConfig(temperature=1.0, max_new_tokens=args.max_chars, batch_size=32),
                        constraint_factory=lambda: grammar)
    return task, test, info


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of every numeric evaluation key (None when no seed has it), plus the seeds' rows."""
    out: dict = {}
    for key in distill.EVALUATION_KEYS:
        vals = [r[key] for r in per_seed if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out[key] = float(np.mean(vals))
        elif per_seed and not isinstance(per_seed[0].get(key), (int, float)):
            out[key] = per_seed[0].get(key)  # a label such as kl_source
        else:
            out[key] = None
    for key in ("train_cpu_s", "steps"):
        out[key] = float(np.mean([r[key] for r in per_seed]))
    out["utility_sd_over_seeds"] = float(np.std([r["utility"] for r in per_seed], ddof=1)) if len(per_seed) > 1 else None
    out["per_seed"] = per_seed
    return out


def parse_methods(text: str, registered) -> list[str]:
    """--methods "a,b" -> those names in `method_order`; "" -> every registered method."""
    order = method_order(registered)
    if not text:
        return order
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in registered]
    if unknown or not names:
        raise SystemExit(f"--methods: unknown method(s) {unknown or text!r}; registered: {order}")
    return [m for m in order if m in names]


def parse_expert_options(text: str) -> dict:
    """--expert-options "k=4,source=samples" -> ExpertConfig fields to set over `distill.BENCHMARK_EXPERT`
    (checked by ExpertConfig itself)."""
    fields = {f.name: f for f in dataclasses.fields(distill.ExpertConfig)}
    out: dict = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--expert-options: {item!r} is not FIELD=VALUE with an ExpertConfig field {sorted(fields)}")
        kind = type(getattr(distill.ExpertConfig(), key))
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    try:
        dataclasses.replace(distill.BENCHMARK_EXPERT, **out)
    except ValueError as err:
        raise SystemExit(f"--expert-options: {err}") from None
    return out


def run_one(name: str, task, heldout, args, seed: int) -> tuple[dict, list[dict]]:
    """Train `name` for the budget with `seed`, evaluate -> (evaluation + train_cpu_s, steps; history)."""
    wd = Path(args.work) / "runs" / f"{args.cpu_seconds:g}s" / name / f"seed{seed}"
    options = {"cfg": distill.BENCHMARK_EXPERT, **args.expert_options} if name == "expert" else {}
    t0 = time.process_time()
    run = distill.run_method(name, task, wd, distill.Budget(cpu_seconds=args.cpu_seconds), seed=seed, **options)
    cpu = time.process_time() - t0
    if run.history and isinstance(run.history[-1].get("cpu_s"), (int, float)):
        cpu = max(cpu, float(run.history[-1]["cpu_s"]))  # a resumed run: the CPU it spent before counts
    ev = distill.evaluate(run, task, n=args.n_eval, heldout=heldout, corpus=task.corpus, seed=seed)
    return {**ev, "train_cpu_s": cpu, "steps": len(run.history), "notes": run.notes}, run.history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 10 minutes on an idle 2-core machine)")
    ap.add_argument("--work", help="directory with generator/ and reward/ to reuse (written if absent) and the runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--cpu-seconds", type=float, default=0.0,
                    help="training budget per method and seed in process CPU seconds (0: 600, or 20 with --quick)")
    ap.add_argument("--seeds", type=int, default=0, help="seeds per method (0: 3, or 1 with --quick)")
    ap.add_argument("--seed-start", type=int, default=0,
                    help="first seed (seeds seed-start, seed-start+1, ...); 0 = the reported seeds, tune on 100+")
    ap.add_argument("--methods", default="", help="comma-separated subset of the registered methods (default: all)")
    ap.add_argument("--expert-options", default="",
                    help="ExpertConfig fields set over distill.BENCHMARK_EXPERT for the expert method, e.g. k=8,n_per_round=64")
    ap.add_argument("--n-eval", type=int, default=0, help="samples per evaluation (0: 64, or 16 with --quick)")
    ap.add_argument("--max-chars", type=int, default=0,
                    help="tunes cut to whole bars within this many characters (0: 150, or 100 with --quick); a --work "
                         "directory must have been made with the same value")
    ap.add_argument("--gen-minutes", type=float, default=0.0, help="generator training CPU-minutes (0: 4, or 0.5 with --quick)")
    ap.add_argument("--results", default=str(RESULTS), help="where the JSON and plots go")
    args = ap.parse_args()
    q = args.quick
    args.cpu_seconds = args.cpu_seconds or (20.0 if q else 600.0)
    args.seeds = args.seeds or (1 if q else 3)
    args.n_eval = args.n_eval or (16 if q else 64)
    args.max_chars = args.max_chars or (100 if q else 150)
    args.gen_minutes = args.gen_minutes or (0.5 if q else 4.0)
    if not args.cpu_seconds > 0 or args.seeds < 1 or args.n_eval < 2 or args.seed_start < 0:
        raise SystemExit("--cpu-seconds must be > 0, --seeds >= 1, --seed-start >= 0 and --n-eval >= 2")
    args.expert_options = parse_expert_options(args.expert_options)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    args.work = args.work or tempfile.mkdtemp(prefix="distill_bench_")
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    task, heldout, info = build_task(args, log)
    names = parse_methods(args.methods, distill.METHODS)
    missing = [m for m in EXPECTED if m not in distill.METHODS]
    log(f"methods: {names}; missing: {missing}")
    results, failed, histories = {}, {}, {}
    for name in names:
        rows = []
        try:
            for seed in seeds:
                ev, hist = run_one(name, task, heldout, args, seed)
                rows.append(ev)
                if seed == seeds[0]:
                    histories[name] = hist
                log(f"{name} seed {seed}: {ev['steps']} steps, {ev['train_cpu_s']:.0f} CPU s, utility {ev['utility']:+.3f}, "
                    f"reward {ev['reward']:+.3f}, KL {ev['kl']}, free valid {ev['free_valid_fraction']}, "
                    f"distinct {ev['distinct_fraction']}")
        except Exception as err:  # one broken method must not cost the others' figures
            failed[name] = f"{type(err).__name__}: {err}"
            log(f"{name} FAILED: {failed[name]}\n{traceback.format_exc(limit=3)}")
            continue
        results[name] = aggregate(rows)
    config = {**vars(args), "expected": EXPECTED, "registered": names, "recipe": "PRACTICAL" + (" x0.3" if q else ""),
              "sample": dataclasses.asdict(task.sample), "prompts": list(task.prompts),
              "expert_config": dataclasses.asdict(dataclasses.replace(distill.BENCHMARK_EXPERT, **args.expert_options)),
              "expert_config_chosen_on": EXPERT_CHOSEN_ON}
    out = {"benchmark": "distill", "quick": q, "budget_cpu_s": args.cpu_seconds, "seeds": seeds,
           "n_eval": args.n_eval, "heldout_tunes": len(heldout), "corpus_tunes": len(task.corpus), "setup": info,
           "methods": results, "missing": missing, "failed": failed, "keys": distill.EVALUATION_KEYS,
           "total_wall_s": time.perf_counter() - wall0}
    path = write_result(Path(args.results) / f"distill{'_quick' if q else ''}.json", out, config)
    distill.plot_reward_kl(histories, path.parent / f"{path.stem}_reward_kl.png", points=results)
    distill.plot_curves(histories, path.parent / f"{path.stem}_reward_cpu.png", x="cpu_s", y="reward",
                        points={k: {**v, "cpu_s": v["train_cpu_s"]} for k, v in results.items()},
                        title="reward against training CPU seconds; squares: final evaluation")
    cols = ("utility", "reward", "kl", "free_valid_fraction", "distinct_fraction", "copied_8gram_fraction",
            "js_pitch_class", "train_cpu_s")
    print(f"{'method':<12}" + "".join(f"{c[:12]:>13}" for c in cols))
    for name, r in results.items():
        print(f"{name:<12}" + "".join(f"{'-' if r[c] is None else format(r[c], '.3f'):>13}" for c in cols))
    base = results.get("base", {}).get("utility")
    best = max(results, key=lambda k: results[k]["utility"] or -math.inf) if results else None
    gain = "" if best is None or base is None else f" ({results[best]['utility'] - base:+.3f} vs base)"
    print(f"distill{' (quick)' if q else ''}: {len(results)} methods at {args.cpu_seconds:g} CPU-s x {args.seeds} seed(s); "
          f"best utility {best}{gain}; failed {sorted(failed)}; missing {missing}; "
          f"{time.perf_counter() - wall0:.0f} s wall; {path}")


if __name__ == "__main__":
    main()
