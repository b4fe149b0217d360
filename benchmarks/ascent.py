"""The ascent engine vs random single-token hill-climbing vs best-of-N, one run, same models.

Setting: ABC tunes (cut at a bar line to fit a small context), a small char-level generator
trained here for a fixed CPU budget (or reused from --work), a reward model trained by regression
on Bradley-Terry latents of simulated ratings (`rewardmodels.SimulatedRater`, agreement 0.75).
`slots` output slots start from generator samples:

- engine: `gradopt.optimize` edits its sample (objective reward + lm_weight * mean log-lik), with the
  default simplex/entropy relaxation; `engine_logits` is the same run with the logits relaxation;
- hill-climbing: random single-token mutations of its sample, kept when the same objective rises
  (and the tune stays valid if its start was), scored exactly, one candidate per row and round;
- best-of-N: the start sample plus N-1 fresh samples per slot, the reward model's favourite kept;
  run round by round (one fresh sample per slot and round) and timed, so its equal-time point is
  the first N whose *measured* CPU reaches the engine's, not an extrapolation.

Header lines (X:, T:, M:, L:, K:) are frozen for both editing methods: they edit the music; with
the default `--edit pitch` they change only note letters, to note letters (`gradopt.pitch_edits`:
durations and bar lines are kept, so a valid tune stays valid). Starts and best-of-N draws are
bar-aware samples (`domains.ABCConstraint`; `--free-sampling` for free ones).
Baselines run at equal reward-model evaluations (sequences scored; an ascent step counts one) and
at equal CPU time with the engine. The goal ratio is (engine gain / engine CPU) / (best-of-N gain /
best-of-N CPU) over the same slots, with a bootstrap interval over slots that keeps every
resample (+inf where best-of-N does not gain; no interval when a resample has neither gaining). The editors keep outputs valid with `ABCConstraint.accepts` as
a fast screen (the reported validity is `validate_abc`'s). Two references that are not methods: an
oracle editor (the hill-climber's random pitch edits kept when the rater's hidden utility rises, at
the engine's evaluations, on the first slots: what perfect judgement gains in this edit space;
compared with the engine and best-of-N on those same slots and at equal evaluations, never with
a CPU time it did not spend) and
best-of-N's whole gain-against-CPU curve (N = 2, 4, ...; also plotted to ascent.png). Gain = mean over slots of (output - start) for the reward and
for the simulated rater's hidden utility (reward hacking shows as reward up, utility down). The
engine and hill-climbing are repeated from held-out corpus tunes. Also: LM log-likelihood kept,
validity, distinct outputs, the engine's soft-vs-discrete gap, sequences/s and achieved FLOP/s as
a fraction of a large matmul's FLOP/s measured in the same run.

Selection and report use different starts (`reward_recipes.SPLITS`): the engine's defaults below
were chosen in --quick sweeps on generator samples of seed 1 — now ``--split select`` (val corpus
tunes, samples of seed 1 + --seed) — and the figures quoted come from ``--split report`` (the
default: test corpus tunes, samples of seed 1001 + --seed), starts no setting was chosen on. The
reward model's recipe was chosen by benchmarks/reward_fidelity.py on its select split; its rating
pool draws from the training split and seed 99 + --seed. Best-of-N's fresh samples use the split's
own seeds (`EvalSplit.baseline_seed`).

Writes benchmarks/results/ascent.json (--quick: ascent_quick.json; another --max-chars adds
"_<n>chars", --split select "_select"); every file carries its commit, machine and config
(benchmarks/provenance.py); one summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import domains
import gradopt
import rewardmodels
from gradopt import exact_scores, memo_validate
from provenance import write_result
from reward_recipes import (PRACTICAL, build_reward_model, edit_space, eval_corpus, eval_samples, eval_split,
                            load_or_train_generator, run_parser, scaled, start_corpus_run)

RESULTS = Path(__file__).parent / "results"


def eval_starts(gen, tok, splits: dict[str, list[str]], split, slots: int, constraint=None, seed: int = 0,
                temperature: float = 0.8) -> dict[str, list[list[int]]]:
    """The starts of one split (`reward_recipes.EvalSplit`) as token rows: "samples", `slots`
    generator samples drawn with the split's seed (+ `seed`), bar-aware with `constraint`, and
    "corpus", the first `slots` in-vocabulary tunes of the split's corpus part."""
    return {"samples": eval_samples(gen, tok, slots, split, constraint, seed=seed, temperature=temperature),
            "corpus": gradopt.starts_from_texts(tok, eval_corpus(splits, tok, split)[:slots])}


def build_models(args, train: list[str], val: list[str], log, engine: gradopt.AscentConfig):
    """(tokenizer, generator, reward model, info): reuse --work if it holds them, else train.

    The reward model follows `rewardmodels.PRACTICAL` (0.3x the items with --quick), the best
    practical recipe in benchmarks/reward_fidelity.py: simulated ratings of corpus tunes, generator
    samples (drawn as the starts are) and pitch variants of both, Bradley-Terry, and a linear
    probe (ridge head on the frozen generator's mean-pooled features)."""
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ascent_bench_"))
    rdir = work / "reward"
    tok, gen, info = load_or_train_generator(work / "generator", train, val, args.max_chars, args.gen_minutes)
    if domains.context_length(gen) != args.max_chars + 2:
        raise SystemExit(f"{work / 'generator'} has context {domains.context_length(gen)}, but --max-chars "
                         f"{args.max_chars} needs {args.max_chars + 2}: use another --work directory")
    info["work"] = str(work)
    t0 = time.process_time()
    if (rdir / "config.json").exists():
        rm = rewardmodels.RewardModel.from_pretrained(rdir)
        info["reward"] = "reused"
        if rm.pooling != args.pooling:
            raise SystemExit(f"{rdir} holds a reward model with {rm.pooling!r} pooling, not {args.pooling!r}: "
                             "use another --work directory")
    else:
        recipe = scaled(PRACTICAL, 0.3) if args.quick else PRACTICAL
        bar_aware = not getattr(args, "free_sampling", True) and hasattr(domains, "ABCConstraint")
        recipe = dataclasses.replace(recipe, sampling="bar-aware" if bar_aware else "free",
                                     harvest_rounds=args.harvest_rounds, pooling=args.pooling)
        rm, rinfo = build_reward_model(recipe, gen, tok, train, seed=0, ascent=engine)
        rm.save_pretrained(rdir)
        info["reward"] = {"recipe": repr(recipe), **rinfo}
        log(f"reward model: {rinfo['items']} items, {rinfo['comparisons']} comparisons, {rinfo['cpu_s']:.0f} CPU s "
            f"(held-out fidelity: benchmarks/reward_fidelity.py)")
    info["reward_cpu_s"] = time.process_time() - t0
    return tok, gen, rm.eval(), info


def climb(starts, rm, gen, tok, evals_per_slot: int, cpu_budget: float, lm_weight: float, seed: int,
          edit: str = "pitch", screen=None, objective=None):
    """`gradopt.hill_climb` in the benchmark's edit space (`edit_space`: header lines frozen, `edit`
    masks), valid starts kept valid by `memo_validate(screen)`; snapshots at equal evaluations and
    equal CPU time. objective: as in `gradopt.hill_climb` (the oracle climbs the rater's hidden
    utility, which already scores invalid tunes lowest)."""
    freeze, allowed = edit_space(starts, tok, edit)
    return gradopt.hill_climb(starts, rm, gen, tok, evals_per_slot=evals_per_slot, cpu_budget=cpu_budget,
                              lm_weight=lm_weight, seed=seed, freeze=freeze, allowed=allowed,
                              validate=memo_validate(screen), objective=objective)


def first_at_budget(cpu_s: list[float], budget: float) -> int:
    """The smallest N (1-based) whose measured CPU reaches `budget` (the last N if none does):
    best-of-N at equal time gets at least the engine's CPU, never less."""
    return next((n for n, c in enumerate(cpu_s, 1) if c >= budget), len(cpu_s))


def gain_ratio(num: float, den: float) -> float | None:
    """num / den, den a baseline's (mean) gain: +inf when the baseline does not gain (den <= 0)
    and num does; None when neither gains (no ratio means anything then)."""
    if den > 0:
        return num / den
    return math.inf if num > 0 else None


def same_slots_ratio(num_per_slot, den_per_slot) -> float | None:
    """`gain_ratio` of the mean gains of two methods on the same slots; lists of different
    lengths are refused (a ratio of means over different slots compares different starts)."""
    a, b = np.asarray(num_per_slot, float), np.asarray(den_per_slot, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"per-slot gains must cover the same slots: got {a.shape} and {b.shape}; "
                         "slice both to the slots the smaller run used")
    return gain_ratio(float(a.mean()), float(b.mean()))


def bootstrap_ratio(num_per_slot, den_per_slot, scale: float = 1.0, n_boot: int = 2000, seed: int = 0) -> dict:
    """95% percentile interval of scale * mean(num[i]) / mean(den[i]) over slots i resampled with
    replacement (the same slots for both methods), keeping every resample: one where the
    baseline does not gain counts as +inf when num gains (`gain_ratio`) and as undefined when
    neither gains. With any undefined resample there is no interval (ci95 None).
    Returns {"ci95": [lo, hi] or None, "den_not_gaining_fraction", "undefined_fraction"}."""
    a, b = np.asarray(num_per_slot, float), np.asarray(den_per_slot, float)
    same_slots_ratio(a, b)  # the shape check
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n_boot, len(a)))
    ma, mb = a[idx].mean(1), b[idx].mean(1)
    ratio = np.full(n_boot, np.nan)
    gains = mb > 0
    ratio[gains] = scale * ma[gains] / mb[gains]
    ratio[~gains & (ma > 0)] = math.inf
    undefined = float(np.isnan(ratio).mean())
    ci = None if undefined > 0 else [float(np.percentile(ratio, 2.5, method="lower")),
                                     float(np.percentile(ratio, 97.5, method="higher"))]  # data points: inf-safe
    return {"ci95": ci, "den_not_gaining_fraction": float((~gains).mean()), "undefined_fraction": undefined,
            "resamples": n_boot}


def json_number(x):
    """A ratio for JSON: None stays None, +/-inf become "inf"/"-inf" (JSON has no infinity)."""
    if x is None or math.isfinite(x):
        return x
    return "inf" if x > 0 else "-inf"


def matmul_flops(seconds: float = 1.5, n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def forward_flops(model, tokens: float, t: float) -> float:
    """~2 * (weights touched per token) + attention, per forward pass over `tokens` tokens."""
    cfg = model.config
    d, layers, v = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    return tokens * (2 * 12 * layers * d * d + 4 * layers * t * d + 2 * v * d)


def summarise(name, rows, start_rows, ctx, cpu, wall, evals, flops=None, gap=None) -> dict:
    rm, gen, tok, rater, validate, lm_weight = ctx
    texts = [domains.decode(tok, r) for r in rows]
    starts = [domains.decode(tok, r) for r in start_rows]
    r1, ll1, _ = exact_scores(rm, gen, rows, tok.pad_token_id, lm_weight)
    r0, ll0, _ = exact_scores(rm, gen, start_rows, tok.pad_token_id, lm_weight)
    u1, u0 = rater.utility(texts), rater.utility(starts)
    n1 = np.array([max(len(r) - 1, 1) for r in rows])
    n0 = np.array([max(len(r) - 1, 1) for r in start_rows])
    v1 = np.array([validate(x) for x in texts])
    v0 = np.array([validate(x) for x in starts])
    out = {
        "method": name, "slots": len(rows), "reward_evals": int(evals), "cpu_s": cpu, "wall_s": wall,
        "reward_before": float(r0.mean()), "reward_after": float(r1.mean()), "reward_gain": float((r1 - r0).mean()),
        "utility_before": float(u0.mean()), "utility_after": float(u1.mean()), "utility_gain": float((u1 - u0).mean()),
        "utility_gain_se": float((u1 - u0).std(ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else None,
        "utility_gain_per_slot": [round(float(x), 4) for x in u1 - u0],
        "loglik_per_token_before": float((ll0 / n0).mean()), "loglik_per_token_after": float((ll1 / n1).mean()),
        "valid_fraction": float(v1.mean()), "valid_fraction_start": float(v0.mean()),
        "valid_kept_fraction": float(v1[v0].mean()) if v0.any() else None,
        "distinct_outputs": len(set(texts)), "changed_outputs": int(sum(a != b for a, b in zip(texts, starts))),
        "sequences_per_s": len(rows) / wall if wall > 0 else None,
        "utility_gain_per_cpu_s": float((u1 - u0).mean()) / cpu if cpu > 0 else None,
        "reward_gain_per_cpu_s": float((r1 - r0).mean()) / cpu if cpu > 0 else None,
    }
    if flops is not None:
        out["flops"] = flops
        out["flops_per_s"] = flops / wall if wall > 0 else None
    if gap is not None:
        out["soft_discrete_gap"] = gap
    return out


def run_engine(starts, rm, gen, tok, cfg, validate, edit: str = "pitch"):
    freeze, allowed = edit_space(starts, tok, edit)
    res = gradopt.optimize(starts, rm, gen, cfg, tokenizer=tok, freeze=freeze, allowed=allowed, validate=validate,
                           progress=True)
    t = float(np.mean([len(s) for s in starts]))
    b, steps = len(starts) * cfg.restarts, cfg.steps
    per_seq = forward_flops(rm, t, t) + forward_flops(gen, t, t)
    soft = b * steps * 3 * per_seq  # forward + backward through both models
    other = max(res.reward_evals - b * steps, 0) * per_seq
    gaps = [r.gap for r in res.rows if np.isfinite(r.gap)]
    return res, soft + other, float(np.mean(np.abs(gaps))) if gaps else None


def plot(results: dict, curve: list[dict], path: Path) -> None:
    """Utility gain against CPU seconds: best-of-N's curve and each editing method's point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar([c["cpu_s"] for c in curve], [c["utility_gain"] for c in curve],
                yerr=[c["utility_gain_se"] for c in curve], fmt="o-", color="grey", capsize=2,
                label="best-of-N (N = 2, 4, ...), ± 1 s.e.")
    for c in curve:
        ax.annotate(str(c["n"]), (c["cpu_s"], c["utility_gain"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    for key, r in results.items():
        if key.endswith("/samples") and not key.startswith(("best_of_n", "oracle")):
            ax.errorbar(r["cpu_s"], r["utility_gain"], yerr=r["utility_gain_se"], fmt="s", capsize=2,
                        label=key.split("/")[0])
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("CPU seconds for all slots")
    ax.set_ylabel("simulated rater's utility gain (mean over slots)")
    ax.set_title("From generator samples: gain against CPU time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    """The command line, plus the sizes --quick sets (slots, generator minutes, rating pool)."""
    ap = run_parser(__doc__, "reduced run (< 5 minutes)", "directory with generator/ and reward/ to reuse (written if absent)")
    # Defaults from a sweep of --quick runs on the select split (pitch edits): the exact-swap polish does
    # most of the work, and a larger weight on the generator's likelihood keeps the edits from gaming the reward model.
    ap.add_argument("--steps", type=int, default=8, help="engine gradient steps")
    ap.add_argument("--polish-rounds", type=int, default=0, help="engine exact-swap rounds (0: 8, or 4 with --quick)")
    ap.add_argument("--candidates", type=int, default=16, help="exact-swap candidates per row and round")
    ap.add_argument("--combine", type=int, default=4, help="improving swaps merged per polish round (1 = off)")
    ap.add_argument("--lm-weight", type=float, default=8.0,
                    help="weight of the generator's mean log-likelihood per token in the editing objective")
    ap.add_argument("--edit", choices=["pitch", "any"], default="pitch",
                    help="what the editing methods may change: note letters only (rhythm kept) or any token")
    ap.add_argument("--pooling", choices=list(rewardmodels.POOLINGS), default=PRACTICAL.pooling,
                    help="features the reward model's probe reads (with a new --work only)")
    ap.add_argument("--harvest-rounds", type=int, default=0,
                    help="before the comparison, rounds of: the engine edits fresh samples, they are rated, the "
                         "reward model is refitted (rewardmodels.Recipe.harvest_rounds; with a new --work only)")
    ap.add_argument("--max-chars", type=int, default=150,
                    help="tunes are cut to whole bars within this many characters (the generator's context is "
                         "this + 2; a --work directory must have been made with the same value)")
    ap.add_argument("--free-sampling", action="store_true",
                    help="draw starts and best-of-N samples freely instead of bar-aware (domains.ABCConstraint)")
    ap.add_argument("--split", choices=["select", "report"], default="report",
                    help="starts: 'select' (val tunes, sample seed 1) for sweeps that choose settings, 'report' "
                         "(test tunes, sample seed 1001) for the figures quoted")
    args = ap.parse_args()
    q = args.quick
    args.slots = 24 if q else 64
    args.oracle_slots = 6 if q else 16  # the oracle parses every candidate (~50 ms each)
    args.gen_minutes = 0.75 if q else 4.0
    args.temperature = 0.8  # generator sampling temperature (starts, best-of-N draws, rating pool)
    args.rm_samples, args.rm_corpus, args.rm_steps = (30, 60, 80) if q else (100, 200, 300)
    return args


def engine_configs(args) -> tuple[gradopt.AscentConfig, gradopt.AscentConfig]:
    """The engine's setting and the same engine with the logits relaxation."""
    cfg = gradopt.AscentConfig(
        steps=args.steps, check_every=4, seed=args.seed,
        relaxation=gradopt.SimplexEntropy(entropy_start=0.5, entropy_end=0.0),
        objective=gradopt.ObjectiveWeights(lm_weight=args.lm_weight),
        optimizer=gradopt.Adam(lr=0.5),
        polish=gradopt.PolishConfig(rounds=args.polish_rounds or (4 if args.quick else 8), top_k=8,
                                    candidates=args.candidates, combine=args.combine),
        trust=None)  # the raw engine against the baselines; the do-no-harm guard is measured in do_no_harm.py
    # The same engine with the logits relaxation (stronger mover in a sweep on validation tunes).
    cfg_logits = dataclasses.replace(cfg, relaxation=gradopt.SimplexLogits(init_scale=3.0), optimizer=gradopt.Adam(lr=0.3))
    return cfg, cfg_logits


def measure_editors(results, origin, starts, args, ctx, cfg, cfg_logits, screen, log):
    """The engine (both relaxations) and hill-climbing at the engine's evaluations and CPU on `starts`,
    into `results`; returns the engine's result, its rows, its evaluations per slot and the mean length."""
    rm, gen, tok, rater, _, lm_weight = ctx
    res, flops, gap = run_engine(starts, rm, gen, tok, cfg, memo_validate(screen), args.edit)
    eng_rows = [r.tokens for r in res.rows]
    results[f"engine/{origin}"] = summarise("engine", eng_rows, starts, ctx, res.cpu_seconds, res.seconds,
                                            res.reward_evals, flops, gap)
    per_slot = res.reward_evals // len(starts)
    log(f"engine/{origin}: {res.reward_evals} evals, {res.cpu_seconds:.1f} CPU s")
    alt, alt_flops, alt_gap = run_engine(starts, rm, gen, tok, cfg_logits, memo_validate(screen), args.edit)
    results[f"engine_logits/{origin}"] = summarise("engine_logits", [r.tokens for r in alt.rows], starts, ctx,
                                                   alt.cpu_seconds, alt.seconds, alt.reward_evals, alt_flops, alt_gap)
    r0, _, _ = exact_scores(rm, gen, starts, tok.pad_token_id, lm_weight)
    u0 = rater.utility([domains.decode(tok, s) for s in starts])
    results[f"engine/{origin}"]["start_corr_reward_utility"] = float(np.corrcoef(r0, u0)[0, 1])
    snaps = climb(starts, rm, gen, tok, per_slot, res.cpu_seconds, lm_weight, args.seed, args.edit, screen)
    t = float(np.mean([len(s) for s in starts]))
    for key, (rows, cpu, wall, evals) in snaps.items():
        fl = evals * (forward_flops(rm, t, t) + forward_flops(gen, t, t))
        results[f"hill_climb_equal_{key}/{origin}"] = summarise(f"hill_climb_equal_{key}", rows, starts, ctx,
                                                                cpu, wall, evals, fl)
    log(f"hill-climbing/{origin} done")
    return res, eng_rows, per_slot, t


def measure_oracle(results, starts, eng_rows, per_slot, args, ctx, log) -> None:
    """The edit space's ceiling: the same random mutations kept when the rater's hidden utility
    rises (a perfect reward model), at the engine's evaluations per slot, on the first slots."""
    rm, gen, tok, rater, _, lm_weight = ctx
    k = args.oracle_slots
    oracle = climb(starts[:k], rm, gen, tok, per_slot, 0.0, lm_weight, args.seed, args.edit,
                   objective=lambda rows: rater.utility([domains.decode(tok, x) for x in rows]))
    rows_o, _, wall_o, evals_o = oracle["evals"]
    s = summarise("oracle_hill_climb_equal_evals", rows_o, starts[:k], ctx, 0.0, wall_o, evals_o)
    s["note"] = ("climbs the hidden utility itself; a ceiling for editing in this edit space at this "
                 "budget, not a method (its CPU time is the rater's parse, so no per-CPU-s figure)")
    s["engine_utility_gain_same_slots"] = float(np.mean(
        rater.utility([domains.decode(tok, x) for x in eng_rows[:k]])
        - rater.utility([domains.decode(tok, x) for x in starts[:k]])))
    results["oracle_hill_climb_equal_evals/samples"] = s
    log(f"oracle on {k} slots: utility {s['utility_gain']:+.3f} (engine on the same slots "
        f"{s['engine_utility_gain_same_slots']:+.3f})")


def measure_best_of_n(results, curve, starts, res, per_slot, t, args, split, ctx, constraint, log) -> None:
    """Best-of-N run round by round and timed, until it has the engine's evaluations per slot
    (or the cap) and twice the engine's CPU: equal evaluations, equal CPU time (the first N
    whose measured CPU reaches the engine's) and the gain-against-CPU curve, all measured."""
    rm, gen, tok, rater, _, _ = ctx
    n_cap = 48 if args.quick else 128
    snaps_b = gradopt.best_of_n(starts, rm, gen, tok, n_max=n_cap, seed=split.baseline_seed + 1000 * args.seed,
                                temperature=args.temperature, constraint=constraint,
                                stop=lambda n, cpu: n >= per_slot and cpu >= 2 * res.cpu_seconds)
    n_time = first_at_budget([sn[1] for sn in snaps_b], res.cpu_seconds)
    for key, n, wanted in (("evals", min(per_slot, len(snaps_b)), per_slot), ("time", n_time, None)):
        pick, cpu, wall, evals = snaps_b[n - 1]
        fl = n * len(starts) * (t * forward_flops(gen, 1, t) + forward_flops(rm, t, t))
        s = summarise(f"best_of_n_equal_{key}", pick, starts, ctx, cpu, wall, evals, fl)
        s.update({"n": n, "n_wanted": wanted,
                  "n_capped": n < per_slot if key == "evals" else bool(cpu < res.cpu_seconds),
                  "cpu_note": "measured: process CPU of the rounds that drew and scored these samples"})
        results[f"best_of_n_equal_{key}/samples"] = s
    u_start = rater.utility([domains.decode(tok, x) for x in starts])
    for n in sorted({2 ** i for i in range(1, 8) if 2 ** i <= len(snaps_b)} | {len(snaps_b)}):
        d = rater.utility([domains.decode(tok, x) for x in snaps_b[n - 1][0]]) - u_start
        curve.append({"n": n, "cpu_s": snaps_b[n - 1][1], "utility_gain": float(d.mean()),
                      "utility_gain_se": float(d.std(ddof=1) / np.sqrt(len(d)))})
    log("best-of-N done")


def oracle_same_slots(results) -> dict:
    """The oracle, the engine and best-of-N compared on the oracle's slots at equal evaluations."""
    de = results["engine/samples"]["utility_gain_per_slot"]
    db = results["best_of_n_equal_time/samples"]["utility_gain_per_slot"]
    bon_e = results["best_of_n_equal_evals/samples"]
    orc = results["oracle_hill_climb_equal_evals/samples"]
    k = orc["slots"]  # the oracle ran on the first k slots: every comparison with it uses those k
    do = orc["utility_gain_per_slot"]
    return {
        "slots": k,
        "note": "all on the oracle's slots, at equal reward-model evaluations per slot (the oracle's CPU is the "
                "rater's parse, so no per-CPU-s ratio is formed with it)",
        "oracle_utility_gain": float(np.mean(do)),
        "engine_utility_gain": float(np.mean(de[:k])),
        "best_of_n_equal_evals_utility_gain": float(np.mean(bon_e["utility_gain_per_slot"][:k])),
        "best_of_n_equal_time_utility_gain": float(np.mean(db[:k])),
        "oracle_gain_ratio_vs_best_of_n_equal_evals": json_number(same_slots_ratio(do, bon_e["utility_gain_per_slot"][:k])),
        "engine_gain_ratio_vs_best_of_n_equal_evals": json_number(same_slots_ratio(de[:k], bon_e["utility_gain_per_slot"][:k])),
        "oracle_gain_ratio_vs_engine": json_number(same_slots_ratio(do, de[:k])),
    }


def goal_of(results, q: bool):
    """The goal block and the ratio and interval quoted in the summary line."""
    eng = results["engine/samples"]
    bon = results["best_of_n_equal_time/samples"]
    # The goal ratio compares gains per measured CPU second over the same slots:
    #   (mean engine gain / engine CPU) / (mean best-of-N gain / best-of-N CPU), both runs timed.
    # +inf when best-of-N does not gain and the engine does, None when neither gains.
    de, db = eng["utility_gain_per_slot"], bon["utility_gain_per_slot"]
    scale = bon["cpu_s"] / eng["cpu_s"]
    base = same_slots_ratio(de, db)
    ratio = None if base is None else base * scale
    boot = bootstrap_ratio(de, db, scale=scale, seed=0)
    ci = boot["ci95"]
    bon_e = results["best_of_n_equal_evals/samples"]
    goal = {"ratio_vs_best_of_n_equal_time": json_number(ratio),
            "ratio_95ci_bootstrap_over_slots": [json_number(x) for x in ci] if ci else None,
            "ratio_bootstrap": {**boot, "ci95": [json_number(x) for x in ci] if ci else None,
                                "note": "every resample kept: one where best-of-N does not gain counts as +inf (the "
                                        "engine gains) or undefined (neither gains; then no interval)"},
            "gain_ratio_vs_best_of_n_equal_evals": json_number(same_slots_ratio(de, bon_e["utility_gain_per_slot"])),
            "engine_valid_fraction": eng["valid_fraction"],
            "engine_valid_fraction_of_starts": eng["valid_fraction_start"],
            "engine_valid_kept_fraction": eng["valid_kept_fraction"],
            "oracle_same_slots": oracle_same_slots(results),
            "note": "valid_fraction counts all outputs (invalid generator samples stay invalid unless an edit "
                    "fixes them); valid_kept_fraction counts outputs whose start was valid",
            # A --quick run (weak models, 24 slots, gains near zero) is a smoke test: its ratio of two
            # tiny gains means nothing, so the goal is judged on the full run only.
            "met": None if q else bool(ratio is not None and ratio >= 3 and eng["valid_fraction"] >= 0.9
                                       and bon["utility_gain"] > 0)}
    return goal, ratio, ci


def print_summary(results, goal, ratio, ci, q: bool, path) -> None:
    """The table of methods and the one summary line."""
    eng = results["engine/samples"]
    bon = results["best_of_n_equal_time/samples"]
    oracle, k = goal["oracle_same_slots"], goal["oracle_same_slots"]["slots"]
    print(f"{'method':<38}{'reward+':>9}{'util+':>8}{'±se':>6}{'util+/cpu_s':>12}{'ll/tok':>8}{'valid':>7}{'distinct':>9}{'cpu_s':>8}")
    for name, r in results.items():
        rate = "" if r["utility_gain_per_cpu_s"] is None else f"{r['utility_gain_per_cpu_s']:.4f}"
        print(f"{name:<38}{r['reward_gain']:>9.3f}{r['utility_gain']:>8.3f}{r['utility_gain_se'] or 0:>6.2f}{rate:>12}"
              f"{r['loglik_per_token_after']:>8.2f}{r['valid_fraction']:>7.2f}{r['distinct_outputs']:>9}{r['cpu_s']:>8.1f}")
    print(f"ascent{' (quick)' if q else ''}: engine utility gain/CPU-s {eng['utility_gain_per_cpu_s']:.4f} vs best-of-N "
          f"(equal time) {bon['utility_gain_per_cpu_s']:.4f} -> ratio {json_number(ratio if ratio is None else round(ratio, 2))} "
          f"(95% CI {ci if ci is None else [json_number(round(x, 2)) for x in ci]}); oracle on {k} slots "
          f"{oracle['oracle_gain_ratio_vs_best_of_n_equal_evals']}x best-of-N at equal evaluations, "
          f"engine valid {eng['valid_fraction']:.0%} (starts {eng['valid_fraction_start']:.0%}), reward gain {eng['reward_gain']:+.3f}, "
          f"gap {eng.get('soft_discrete_gap')}, goal (>=3x, >=90% valid) {'judged on the full run only' if q else ('met' if goal['met'] else 'NOT met')}; {path}")


def main() -> None:
    args = parse_args()
    q = args.quick
    split = eval_split(args.split)
    wall0 = time.perf_counter()
    log, splits = start_corpus_run(args.threads, args.max_chars)
    train, val, test = splits["train"], splits["val"], splits["test"]
    log(f"corpus: {len(train)} train / {len(val)} val / {len(test)} test tunes (cut to <= {args.max_chars} chars)")
    cfg, cfg_logits = engine_configs(args)
    tok, gen, rm, info = build_models(args, train, val, log, cfg)
    flops_peak = matmul_flops()
    log(f"models ready; matmul {flops_peak / 1e9:.1f} GFLOP/s")
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    ctx = (rm, gen, tok, rater, memo_validate(), args.lm_weight)
    grammar = domains.ABCConstraint.from_texts(tok, train)
    constraint = None if args.free_sampling else grammar  # bar-aware starts and best-of-N draws
    screen = grammar.accepts  # fast validity screen for the editors
    starts_of = eval_starts(gen, tok, splits, split, args.slots, constraint, args.seed, args.temperature)
    results: dict = {}
    curve: list[dict] = []  # best-of-N utility gain against its CPU time, N = 2, 4, ...
    for origin, starts in starts_of.items():
        res, eng_rows, per_slot, t = measure_editors(results, origin, starts, args, ctx, cfg, cfg_logits, screen, log)
        if origin != "samples":
            continue
        measure_oracle(results, starts, eng_rows, per_slot, args, ctx, log)
        measure_best_of_n(results, curve, starts, res, per_slot, t, args, split, ctx, constraint, log)
    for r in results.values():
        if r.get("flops_per_s"):
            r["flops_fraction_of_matmul"] = r["flops_per_s"] / flops_peak
    goal, ratio, ci = goal_of(results, q)
    config = {**{k_: v for k_, v in vars(args).items()}, "split": dataclasses.asdict(split),
              "engine": repr(cfg), "engine_logits": repr(cfg_logits), "best_of_n_cap": 48 if q else 128,
              "rater_agreement": rater.agreement, "sampling": "free" if args.free_sampling else "bar-aware"}
    out = {
        "benchmark": "ascent", "quick": q, "split": split.name, "matmul_flops_per_s": flops_peak, "setup": info,
        "eval_definition": "reward-model evaluations = sequences passed through the reward model "
                           "(an ascent step on a row counts one, as does each exact score)",
        "methods": results,
        "utility_gain_per_cpu_s": {k: v["utility_gain_per_cpu_s"] for k, v in results.items()},
        "valid_fraction": {k: v["valid_fraction"] for k, v in results.items()},
        "best_of_n_curve": curve,
        "goal": goal, "total_wall_s": time.perf_counter() - wall0,
    }
    suffix = (("_quick" if q else "") + (f"_{args.max_chars}chars" if args.max_chars != 150 else "")
              + ("_select" if split.name == "select" else ""))
    path = write_result(RESULTS / f"ascent{suffix}.json", out, config)
    plot(results, curve, path.with_suffix(".png"))
    print_summary(results, goal, ratio, ci, q, path)


if __name__ == "__main__":
    main()
