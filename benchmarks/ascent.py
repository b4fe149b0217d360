"""The ascent engine vs random single-token hill-climbing, polish-only and best-of-N, one run, same models.

Setting: whole ABC tunes of the two training fiddle collections (`ascent_measures.bench_corpus`:
held-out tunes of up to 510 characters as they are, the generator's 512-token context; the
collection `do_no_harm.HELD_OUT` stays unseen; ``--max-chars 150`` cuts every tune at a bar line
instead, the older setting), a small char-level generator trained here for a fixed CPU budget
(or reused from --work), and the reward model the README recommends: ``--recipe practical_music``
(`rewardmodels.PRACTICAL_MUSIC`, 0.3x its items with --quick) as a `rewardmodels.RewardEnsemble` of
``--members`` bootstrap ridge probes (default `rewardmodels.DEFAULT_MEMBERS`, 64), fitted to the
Bradley-Terry latents of simulated ratings (`rewardmodels.SimulatedRater`, agreement 0.75);
``--recipe practical --members 1`` is the single un-annotated probe of older files. Every method
(engine, hill-climbing, polish-only, best-of-N, the batch recipe) scores with this one model: the
ensemble's score is its members' mean (pessimism 0), so the engine's objective is the mean and
the members' spread is read only by the do-no-harm guard of ``gradopt.AscentConfig()`` (the
raw engine here runs with ``trust=None``). `slots` output slots start from generator samples
(whole-tune samples: up to the context), and again from held-out corpus tunes:

- engine: `gradopt.optimize` edits its sample (objective reward + lm_weight * mean log-lik), by default
  with the logits relaxation (``--relaxation logits``, Adam step 2, start logits 3 x one-hot);
  `engine_simplex` (full runs) is the same run with the library's default simplex/entropy relaxation
  (Adam step 0.5; ``--relaxation simplex`` makes it the engine and `engine_logits` the side row);
- hill-climbing: random single-token mutations of its sample, kept when the same objective rises
  (and the tune stays valid if its start was), scored exactly, one candidate per row and round;
- polish-only: the engine's configuration with steps=0 (GCG exact swaps alone), with the engine's
  rounds and with rounds raised until its measured CPU reaches the engine's (``_equal_time``);
- best-of-N: the start sample plus N-1 fresh samples per slot, the reward model's favourite kept;
  run round by round (one fresh sample per slot and round) and timed, so its equal-time point is
  the first N whose *measured* CPU reaches the engine's, not an extrapolation;
- the batch recipe (`ascent_measures.batch_recipe`): best-of-N then the engine on the pick vs
  best-of-N' from the same draws at equal measured CPU, utility gains with 95% intervals;
- ``engine_free_edits``: the engine with free token edits, for validity when bars may break.

The goal (`acceptance`, in ``goal``): the engine's own objective J = reward + lm_weight * mean
log-lik, re-scored exactly on the discrete outputs, gained per measured CPU second, >= 3x
hill-climbing's and >= 1.5x polish-only's at equal CPU (bootstrap 95% intervals over slots);
utility gain >= 60% of the oracle editor's; from corpus tunes utility not down while reward rises;
do no harm with the library's defaults (`gradopt.AscentConfig()`, its default guard) on held-out
corpus tunes and the held-out collection's whole tunes (`ascent_measures.do_no_harm_default`):
mean utility change >= 0, at most 10% of tunes worse by more than 0.1; validity >= 90% under free
edits and 100% under bar-preserving edits, both of the outputs whose start was valid (a user edits
valid tunes; the fraction of all outputs is reported too).

Header lines (X:, T:, M:, L:, K:) are frozen for both editing methods: they edit the music; with
the default `--edit pitch` they change only note letters, to note letters (`gradopt.pitch_edits`:
durations and bar lines are kept, so a valid tune stays valid). Starts and best-of-N draws are
bar-aware samples (`domains.ABCConstraint`; `--free-sampling` for free ones).
Baselines run at equal reward-model evaluations (sequences scored; an ascent step counts one) and
at equal CPU time with the engine. The goal ratio is (engine gain / engine CPU) / (best-of-N gain /
best-of-N CPU) over the same slots, with a bootstrap interval over slots that keeps every
resample (+inf where best-of-N does not gain; no interval when a resample has neither gaining). The editors keep outputs valid with `ABCConstraint.accepts` as
a fast screen (the reported validity is `validate_abc`'s). Two references that are not methods: an
oracle editor (the hill-climber's random pitch edits kept when the rater's hidden utility, unclipped, rises, at
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
reward model's recipe was chosen by benchmarks/reward_fidelity.py on its select split. The engine's
lm_weight is 4: 8 was chosen with the single probe; with the 64-member ensemble --quick select runs
(cached models, commit cc0291a; not kept) gave, for lm_weight 1 / 4 / 8, from corpus tunes utility
-0.01 / -0.06 / -0.14 (reward +0.10 / +0.07 / +0.05), oracle fraction 0.01 / 0.41 / 0.27, objective
per CPU-s vs hill-climbing 2.57x at 4 and 2.60x at 8: 4 is the only weight that is not last on
either utility figure, so it became the default (the report split was not looked at for this
choice). The relaxation: with the simplex the 8 gradient steps hardly moved a row (on the select
split's 8 samples, 2 of 8 rows changed before the polish and none of the corpus tunes), so the
engine's result equalled polish-only's at the same rounds. With the logits relaxation every sample
row moved; --quick select runs (commit 707e950, same cached models, lm_weight 4, gain in J per
CPU-s, samples / corpus tunes) gave polish-only 0.034 / 0.014, logits at Adam step 0.5 / 1 / 2 / 4
with start logits 3 x one-hot: 0.033 / 0.025, 0.041 / 0.030, 0.050 / 0.031 (mean of two runs), 0.055
/ 0.021; step 2 with start 1.5: 0.050 / 0.027, with 16 steps: 0.053 / 0.019 (CPU times vary by about
20% between repeats). Step 2, start 3, 8 steps became the default (utility +0.13 / +0.04 on select);
lm_weight 8 with logits lost utility from corpus tunes (-0.25). --lm-floor (the likelihood term as
a floor, `ObjectiveWeights.lm_floor`; --quick select runs at commit a187634, ascent_quick_select.json
and ascent_quick_floor_select.json, same cached models, 8 slots): from corpus tunes the engine's
reward and utility change -0.02 / -0.05 without the floor and +0.08 / +0.05 with it, but from
samples its utility gain falls from +0.27 to 0.00 (reward +0.62 -> +0.51): there the likelihood
bonus itself improves the samples. So the floor stays an option, not the default. The rating pool
draws from the training split and seed 99 + --seed.
Best-of-N's fresh samples use the split's own seeds (`EvalSplit.baseline_seed`). The do-no-harm
block always measures the report split's tunes (`ascent_measures.do_no_harm_default`).

Writes benchmarks/results/ascent.json (--quick: ascent_quick.json; a cut, --max-chars n, adds
"_<n>chars", --split select "_select"), with {method: value} objects ``objective_gain_per_cpu_s``,
``utility_gain``, ``valid_fraction``; every file carries its commit, machine and config
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
from provenance import write_result  # first: it reads the git state as the run starts
from ascent_measures import (WHOLE_CHARS, batch_recipe, bench_corpus, bootstrap_ratio, do_no_harm_default,  # noqa: F401
                             first_at_budget, fraction_of, gain_ratio, json_number, per_cpu_ratio, same_slots_ratio)
from reward_recipes import (PRACTICAL, build_reward_model, edit_space, eval_corpus, eval_samples, eval_split,
                            load_or_train_generator, run_parser, scaled, start_run)

RESULTS = Path(__file__).parent / "results"
DEFAULT_RECIPE = "practical_music"  # the recipe the README recommends (`rewardmodels.PRACTICAL_MUSIC`)


def eval_starts(gen, tok, splits: dict[str, list[str]], split, slots: int, constraint=None, seed: int = 0,
                temperature: float = 0.8) -> dict[str, list[list[int]]]:
    """The starts of one split (`reward_recipes.EvalSplit`) as token rows: "samples", `slots`
    generator samples drawn with the split's seed (+ `seed`), bar-aware with `constraint`, and
    "corpus", the first `slots` in-vocabulary tunes of the split's corpus part."""
    return {"samples": eval_samples(gen, tok, slots, split, constraint, seed=seed, temperature=temperature),
            "corpus": gradopt.starts_from_texts(tok, eval_corpus(splits, tok, split)[:slots])}


def build_models(args, train: list[str], val: list[str], log, engine: gradopt.AscentConfig):
    """(tokenizer, generator, reward model, info): reuse --work if it holds them, else train.

    The reward model follows --recipe (0.3x the items with --quick): by default
    `rewardmodels.PRACTICAL_MUSIC` as a `rewardmodels.RewardEnsemble` of --members bootstrap ridge
    probes (`rewardmodels.DEFAULT_MEMBERS`), the model the README tells users to train: simulated
    ratings of corpus tunes, generator samples (drawn as the starts are) and pitch variants of both,
    Bradley-Terry, probes on the frozen generator's mean-pooled features and musical annotations.
    ``--members 1`` fits a single probe."""
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ascent_bench_"))
    rdir = work / "reward"
    tok, gen, info = load_or_train_generator(work / "generator", train, val, args.max_chars, args.gen_minutes)
    if domains.context_length(gen) != args.max_chars + 2:
        raise SystemExit(f"{work / 'generator'} has context {domains.context_length(gen)}, but --max-chars "
                         f"{args.max_chars} needs {args.max_chars + 2}: use another --work directory")
    info["work"] = str(work)
    t0 = time.process_time()
    if (rdir / "config.json").exists():
        rm = rewardmodels.load_reward_model(rdir)
        info["reward"] = "reused"
        held = (rm.pooling, getattr(rm, "members", 1), rm.annotations is not None)
        wanted = (args.pooling, args.members, rewardmodels.RECIPES[args.recipe].annotations != "none")
        if held != wanted:
            raise SystemExit(f"{rdir} holds a reward model with (pooling, members, annotated) {held}, not {wanted} "
                             f"(--pooling, --members, --recipe {args.recipe}): use another --work directory")
    else:
        base = rewardmodels.RECIPES[args.recipe]
        recipe = scaled(base, 0.3) if args.quick else base
        bar_aware = not getattr(args, "free_sampling", True) and hasattr(domains, "ABCConstraint")
        recipe = dataclasses.replace(recipe, sampling="bar-aware" if bar_aware else "free",
                                     harvest_rounds=args.harvest_rounds, pooling=args.pooling)
        rm, rinfo = build_reward_model(recipe, gen, tok, train, seed=0, ascent=engine,
                                       members=args.members if args.members > 1 else 0)
        rm.save_pretrained(rdir)
        info["reward"] = {"recipe": repr(recipe), "members": args.members, **rinfo}
        log(f"reward model: {args.members} member(s), {rinfo['items']} items, {rinfo['comparisons']} comparisons, "
            f"{rinfo['cpu_s']:.0f} CPU s "
            f"(held-out fidelity: benchmarks/reward_fidelity.py)")
    info["reward_cpu_s"] = time.process_time() - t0
    return tok, gen, rm.eval(), info


def climb(starts, rm, gen, tok, evals_per_slot: int, cpu_budget: float, lm_weight: float, seed: int,
          edit: str = "pitch", screen=None, objective=None, lm_floor: bool = False):
    """`gradopt.hill_climb` in the benchmark's edit space (`edit_space`: header lines frozen, `edit`
    masks), valid starts kept valid by `memo_validate(screen)`; snapshots at equal evaluations and
    equal CPU time. objective: as in `gradopt.hill_climb` (the oracle climbs the rater's hidden
    utility, which already scores invalid tunes lowest). lm_floor: the engine's likelihood floor
    (`gradopt.ObjectiveWeights.lm_floor`)."""
    freeze, allowed = edit_space(starts, tok, edit)
    return gradopt.hill_climb(starts, rm, gen, tok, evals_per_slot=evals_per_slot, cpu_budget=cpu_budget,
                              lm_weight=lm_weight, seed=seed, freeze=freeze, allowed=allowed,
                              validate=memo_validate(screen), objective=objective, lm_floor=lm_floor)


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


def scoring_flops(rm, gen, t: float, shared: bool | None = None) -> float:
    """Forward FLOPs of scoring one sequence of `t` tokens for reward and likelihood: one pass when the
    reward model shares the generator's transformer (`shared`; None: ask `gradopt.shared_backbone`,
    as the engine and the exact scorer do), both models' passes otherwise."""
    shared = gradopt.shared_backbone(rm, gen) if shared is None else shared
    return forward_flops(gen, t, t) + (0.0 if shared else forward_flops(rm, t, t))


def summarise(name, rows, start_rows, ctx, cpu, wall, evals, flops=None, gap=None) -> dict:
    rm, gen, tok, rater, validate, lm_weight, lm_floor = ctx
    texts = [domains.decode(tok, r) for r in rows]
    starts = [domains.decode(tok, r) for r in start_rows]
    floor = gradopt.mean_logliks(gen, start_rows, tok.pad_token_id) if lm_floor else None
    r1, ll1, j1 = exact_scores(rm, gen, rows, tok.pad_token_id, lm_weight, floor=floor)
    r0, ll0, j0 = exact_scores(rm, gen, start_rows, tok.pad_token_id, lm_weight, floor=floor)
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
        # the engine's own objective J = reward + lm_weight * mean log-lik (with --lm-floor
        # reward + lm_weight * min(0, mean log-lik - the start's)), re-scored on the discrete rows
        "objective_gain": float((j1 - j0).mean()),
        "objective_gain_per_slot": [float(x) for x in j1 - j0],
        "objective_gain_per_cpu_s": float((j1 - j0).mean()) / cpu if cpu > 0 else None,
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
    per_seq = scoring_flops(rm, gen, t)
    soft = b * steps * 3 * per_seq  # forward + backward
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


LOGITS_LR, SIMPLEX_LR = 2.0, 0.5  # Adam step sizes per relaxation (module docstring: how they were chosen)


def parse_args(extra=None) -> argparse.Namespace:
    """The command line, plus the sizes --quick sets (slots, generator minutes, rating pool).
    extra: a function that adds a calling script's own options to the parser (budget_curve.py)."""
    ap = run_parser(__doc__, "reduced run, a smoke test (8 slots; < 10 minutes wall on a shared 2-core machine)",
                    "directory with generator/ and reward/ to reuse (written if absent)")
    # Defaults from a sweep of --quick runs on the select split (pitch edits): the exact-swap polish does
    # most of the work, and a larger weight on the generator's likelihood keeps the edits from gaming the reward model.
    ap.add_argument("--steps", type=int, default=8, help="engine gradient steps")
    ap.add_argument("--polish-rounds", type=int, default=0, help="engine exact-swap rounds (0: 8, or 4 with --quick)")
    ap.add_argument("--candidates", type=int, default=16, help="exact-swap candidates per row and round")
    ap.add_argument("--combine", type=int, default=16, help="improving swaps merged per polish round (1 = off)")
    ap.add_argument("--backoff", action="store_true",
                    help="halve a merge that loses to the best single swap until it wins (gradopt.PolishConfig.backoff)")
    ap.add_argument("--pick", choices=["ranked", "uniform"], default="ranked",
                    help="exact-swap candidates: the row's best untried swaps by first-order gain, or a random "
                         "position and one of its top-k tokens (gradopt.PolishConfig.pick)")
    ap.add_argument("--relaxation", choices=["logits", "simplex"], default="logits",
                    help="the engine's relaxation: softmax of free logits (gradopt.SimplexLogits) or the simplex "
                         "with an entropy term (gradopt.SimplexEntropy, the library's default); full runs add the "
                         "other as a side row")
    ap.add_argument("--lr", type=float, default=0.0,
                    help=f"Adam's step size (0: {LOGITS_LR:g} for logits, {SIMPLEX_LR:g} for the simplex)")
    ap.add_argument("--init-scale", type=float, default=3.0, help="logits relaxation: start logits = this x one-hot")
    ap.add_argument("--lm-weight", type=float, default=4.0,
                    help="weight of the generator's mean log-likelihood per token in the editing objective")
    ap.add_argument("--lm-floor", action="store_true",
                    help="the likelihood term as a floor: lm_weight * min(0, mean log-lik - the start's) "
                         "(gradopt.ObjectiveWeights.lm_floor), for every editor and for J")
    ap.add_argument("--edit", choices=["pitch", "any"], default="pitch",
                    help="what the editing methods may change: note letters only (rhythm kept) or any token")
    ap.add_argument("--pooling", choices=list(rewardmodels.POOLINGS), default=PRACTICAL.pooling,
                    help="features the reward model's probe reads (with a new --work only)")
    ap.add_argument("--harvest-rounds", type=int, default=0,
                    help="before the comparison, rounds of: the engine edits fresh samples, they are rated, the "
                         "reward model is refitted (rewardmodels.Recipe.harvest_rounds; with a new --work only)")
    ap.add_argument("--max-chars", type=int, default=0,
                    help="0 (the default, as --whole): whole tunes of up to %d characters, the generator's context "
                         "512; n > 0: tunes cut to whole bars within n characters (e.g. 150, the older setting). "
                         "The generator's context is this + 2; a --work directory must have been made with the "
                         "same value" % WHOLE_CHARS)
    ap.add_argument("--whole", action="store_true", help="whole tunes (the same as --max-chars 0)")
    ap.add_argument("--batch-n", type=int, default=0,
                    help="batch recipe: samples per slot best-of-N draws before the engine (0: 4, or 2 with --quick)")
    ap.add_argument("--free-sampling", action="store_true",
                    help="draw starts and best-of-N samples freely instead of bar-aware (domains.ABCConstraint)")
    ap.add_argument("--recipe", choices=sorted(rewardmodels.RECIPES), default=DEFAULT_RECIPE,
                    help="reward-model recipe (rewardmodels.RECIPES); other than %r the result file is named "
                         "ascent[...]_<recipe>.json" % DEFAULT_RECIPE)
    ap.add_argument("--members", type=int, default=rewardmodels.DEFAULT_MEMBERS,
                    help="bootstrap probes of the reward ensemble (1: a single model; 2 or more need a 'probe' "
                         "recipe); other than the default the result file name adds _<n>members")
    ap.add_argument("--split", choices=["select", "report"], default="report",
                    help="starts: 'select' (val tunes, sample seed 1) for sweeps that choose settings, 'report' "
                         "(test tunes, sample seed 1001) for the figures quoted")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    if args.members < 1:
        ap.error(f"--members must be >= 1 (1: a single reward model), got {args.members}")
    if args.max_chars < 0 or (args.whole and args.max_chars not in (0, WHOLE_CHARS)):
        ap.error(f"--max-chars must be 0 (whole tunes) or a positive cut length, and --whole takes no cut; "
                 f"got --max-chars {args.max_chars}{' with --whole' if args.whole else ''}")
    args.whole = args.whole or args.max_chars in (0, WHOLE_CHARS)
    args.max_chars = WHOLE_CHARS if args.whole else args.max_chars
    args.batch_n = args.batch_n or (2 if args.quick else 4)
    q = args.quick
    # --quick on whole tunes: few slots, so that the run stays under 10 minutes on a shared machine
    args.slots = 8 if q else 64
    args.oracle_slots = 8 if q else 16  # the oracle parses every candidate (~50-100 ms each); 8: an interval
    args.dnh_tunes = 6 if q else 40  # tunes per set of the do-no-harm block
    # best-of-N rounds at most (each draws one whole tune per slot): with --quick equal evaluations are
    # not reached (flagged n_capped), equal CPU is
    args.best_of_n_cap = 16 if q else 128
    args.gen_minutes = 0.75 if q else 4.0
    args.temperature = 0.8  # generator sampling temperature (starts, best-of-N draws, rating pool)
    args.rm_samples, args.rm_corpus, args.rm_steps = (30, 60, 80) if q else (100, 200, 300)
    return args


def engine_configs(args) -> tuple[gradopt.AscentConfig, gradopt.AscentConfig, str]:
    """(the engine's setting, the same engine with the other relaxation, that row's name)."""
    relaxations = {"logits": (gradopt.SimplexLogits(init_scale=args.init_scale), LOGITS_LR),
                   "simplex": (gradopt.SimplexEntropy(entropy_start=0.5, entropy_end=0.0), SIMPLEX_LR)}
    relax, default_lr = relaxations[args.relaxation]
    cfg = gradopt.AscentConfig(
        steps=args.steps, check_every=4, seed=args.seed, relaxation=relax,
        objective=gradopt.ObjectiveWeights(lm_weight=args.lm_weight, lm_floor=args.lm_floor),
        optimizer=gradopt.Adam(lr=args.lr or default_lr),
        polish=gradopt.PolishConfig(rounds=args.polish_rounds or (4 if args.quick else 8), top_k=8,
                                    candidates=args.candidates, combine=args.combine, pick=args.pick,
                                    backoff=args.backoff),
        trust=None)  # the raw engine against the baselines; the do-no-harm guard is measured in do_no_harm.py
    other = "simplex" if args.relaxation == "logits" else "logits"
    alt_relax, alt_lr = relaxations[other]
    return cfg, dataclasses.replace(cfg, relaxation=alt_relax, optimizer=gradopt.Adam(lr=alt_lr)), f"engine_{other}"


def measure_editors(results, origin, starts, args, ctx, cfg, cfg_alt, alt_name, screen, log):
    """The engine (and in full runs the engine with the other relaxation, row `alt_name`) and
    hill-climbing at the engine's evaluations and CPU on `starts`, into `results`; returns the
    engine's result, its rows, its evaluations per slot and the mean length."""
    rm, gen, tok, rater, _, lm_weight, lm_floor = ctx
    res, flops, gap = run_engine(starts, rm, gen, tok, cfg, memo_validate(screen), args.edit)
    eng_rows = [r.tokens for r in res.rows]
    results[f"engine/{origin}"] = summarise("engine", eng_rows, starts, ctx, res.cpu_seconds, res.seconds,
                                            res.reward_evals, flops, gap)
    per_slot = res.reward_evals // len(starts)
    log(f"engine/{origin}: {res.reward_evals} evals, {res.cpu_seconds:.1f} CPU s")
    if not args.quick:  # the other relaxation is a side row: skipped in the smoke test
        alt, alt_flops, alt_gap = run_engine(starts, rm, gen, tok, cfg_alt, memo_validate(screen), args.edit)
        results[f"{alt_name}/{origin}"] = summarise(alt_name, [r.tokens for r in alt.rows], starts, ctx,
                                                    alt.cpu_seconds, alt.seconds, alt.reward_evals, alt_flops, alt_gap)
    r0, _, _ = exact_scores(rm, gen, starts, tok.pad_token_id, lm_weight)
    u0 = rater.utility([domains.decode(tok, s) for s in starts])
    results[f"engine/{origin}"]["start_corr_reward_utility"] = float(np.corrcoef(r0, u0)[0, 1])
    snaps = climb(starts, rm, gen, tok, per_slot, res.cpu_seconds, lm_weight, args.seed, args.edit, screen,
                  lm_floor=lm_floor)
    t = float(np.mean([len(s) for s in starts]))
    for key, (rows, cpu, wall, evals) in snaps.items():
        fl = evals * scoring_flops(rm, gen, t)
        results[f"hill_climb_equal_{key}/{origin}"] = summarise(f"hill_climb_equal_{key}", rows, starts, ctx,
                                                                cpu, wall, evals, fl)
    log(f"hill-climbing/{origin} done")
    return res, eng_rows, per_slot, t


def measure_oracle(results, starts, eng_rows, per_slot, args, ctx, log) -> None:
    """The edit space's ceiling: the same random mutations kept when the rater's hidden utility
    rises (a perfect reward model; unclipped, so that it also climbs from the floor), at the
    engine's evaluations per slot, on the first slots. Gains are reported in the clipped utility."""
    rm, gen, tok, rater, _, lm_weight, _ = ctx
    k = args.oracle_slots
    memo: dict[str, float] = {}

    def hidden(rows):  # the unclipped utility: the clipped one is flat for tunes at the floor
        texts = [domains.decode(tok, x) for x in rows]
        for t in texts:
            if t not in memo:
                memo[t] = rewardmodels.unclipped_utility(t, rater.length_aware)
        return np.array([memo[t] for t in texts])

    oracle = climb(starts[:k], rm, gen, tok, per_slot, 0.0, lm_weight, args.seed, args.edit, objective=hidden)
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
    rm, gen, tok, rater, *_ = ctx
    n_cap = args.best_of_n_cap
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


def measure_polish_only(results, origin, starts, args, ctx, cfg, engine_cpu: float, screen, log) -> None:
    """The engine without its continuous steps (`cfg` with steps=0: the exact-swap polish alone,
    GCG), once with the engine's polish rounds and once with its rounds raised until its *measured*
    CPU reaches the engine's (``polish_only_equal_time``, the row the objective ratio uses)."""
    rm, gen, tok, *_ = ctx
    po = dataclasses.replace(cfg, steps=0)
    res, flops, _ = run_engine(starts, rm, gen, tok, po, memo_validate(screen), args.edit)
    results[f"polish_only/{origin}"] = summarise("polish_only", res.tokens, starts, ctx, res.cpu_seconds, res.seconds,
                                                 res.reward_evals, flops)
    results[f"polish_only/{origin}"]["polish_rounds"] = cfg.polish.rounds
    rounds, cap = cfg.polish.rounds, 50 * max(cfg.polish.rounds, 1)
    while res.cpu_seconds < engine_cpu and rounds < cap:  # each try measured; rounds only grow
        rounds = min(cap, max(rounds + 1, math.ceil(rounds * engine_cpu / max(res.cpu_seconds, 1e-3))))
        res, flops, _ = run_engine(starts, rm, gen, tok, dataclasses.replace(
            po, polish=dataclasses.replace(cfg.polish, rounds=rounds)), memo_validate(screen), args.edit)
    s = summarise("polish_only_equal_time", res.tokens, starts, ctx, res.cpu_seconds, res.seconds, res.reward_evals, flops)
    s.update({"polish_rounds": rounds, "cpu_capped": bool(res.cpu_seconds < engine_cpu),
              "cpu_note": "measured: polish rounds raised until this run's own CPU reached the engine's"})
    results[f"polish_only_equal_time/{origin}"] = s
    log(f"polish-only/{origin}: {cfg.polish.rounds} rounds {results[f'polish_only/{origin}']['cpu_s']:.1f} CPU s, "
        f"{rounds} rounds {res.cpu_seconds:.1f} CPU s (engine {engine_cpu:.1f})")


def measure_free_edits(results, origin, starts, args, ctx, cfg, screen, log) -> None:
    """The engine with free token edits (any token of the tune's body, header frozen), for the
    validity of its outputs when the edits may break bars (pitch edits keep them)."""
    rm, gen, tok, *_ = ctx
    res, flops, gap = run_engine(starts, rm, gen, tok, cfg, memo_validate(screen), "any")
    results[f"engine_free_edits/{origin}"] = summarise("engine_free_edits", res.tokens, starts, ctx, res.cpu_seconds,
                                                       res.seconds, res.reward_evals, flops, gap)
    log(f"engine with free edits/{origin}: valid {results[f'engine_free_edits/{origin}']['valid_fraction']:.0%}")


def measure_batch_recipe(results, starts, args, split, ctx, cfg, constraint, screen, log) -> dict:
    """`batch_recipe` on the samples' starts: best-of-N then the engine vs best-of-N' at equal
    measured CPU; both arms summarised into `results`; returns the recipe's comparison."""
    rm, gen, tok, rater, *_ = ctx
    out = batch_recipe(starts, rm, gen, tok, cfg, rater.utility, n=args.batch_n,
                       seed=split.baseline_seed + 1000 * args.seed, temperature=args.temperature,
                       constraint=constraint, edit=args.edit, validate=memo_validate(screen),
                       n_cap=args.best_of_n_cap)
    for arm, name in (("polish", "best_of_n_then_engine"), ("more_samples", "best_of_n_equal_time_to_recipe")):
        a = out[arm]
        s = summarise(name, a["rows"], starts, ctx, a["cpu_s"], a["wall_s"], a["evals"])
        s.update({k: v for k, v in a.items() if k not in ("rows", "picks", "cpu_s", "wall_s", "evals")})
        results[f"{name}/samples"] = s
    log(out["line"])
    return {k: v for k, v in out.items() if k not in ("polish", "more_samples")} | {
        "n": out["polish"]["n"], "n_equal_cpu": out["more_samples"]["n"], "n_capped": out["more_samples"]["n_capped"],
        "improve_corpus": ("best-of-N + engine polish" if out["better"] == "polish" else
                           "more best-of-N samples" if out["better"] == "more_samples" else
                           "either (no difference measured): the engine polish also serves users' own tunes")}


def acceptance(results, dnh: dict | None, q: bool) -> dict:
    """The goal's figures in the terms of the benchmark's acceptance: objective gain per CPU-s of
    the engine over hill-climbing and polish-only at equal CPU (discrete, re-scored, bootstrap
    intervals over slots), the engine's utility gain as a fraction of the oracle editor's (same
    slots, same evaluations), do no harm with the library's defaults, and validity."""
    eng = results["engine/samples"]
    by_start = {origin: {"hill_climb": per_cpu_ratio(results[f"engine/{origin}"],
                                                     results[f"hill_climb_equal_time/{origin}"]),
                         "polish_only": per_cpu_ratio(results[f"engine/{origin}"],
                                                      results[f"polish_only_equal_time/{origin}"])}
                for origin in ("samples", "corpus")}
    orc = results["oracle_hill_climb_equal_evals/samples"]
    k = orc["slots"]
    oracle = fraction_of(eng["utility_gain_per_slot"][:k], orc["utility_gain_per_slot"])
    corpus = results["engine/corpus"]
    free = results.get("engine_free_edits/samples")
    out = {"ratio_vs_hill_climb": by_start["samples"]["hill_climb"]["ratio"],
           "ratio_vs_hill_climb_95ci": by_start["samples"]["hill_climb"]["ci95"],
           "ratio_vs_polish_only": by_start["samples"]["polish_only"]["ratio"],
           "ratio_vs_polish_only_95ci": by_start["samples"]["polish_only"]["ci95"],
           "objective_ratios": by_start,
           "utility_fraction_of_oracle": oracle["fraction"], "utility_fraction_of_oracle_95ci": oracle["ci95"],
           # when some resample of the slots has neither gaining (most starts sit at the utility floor,
           # where the oracle gains nothing either), the interval over the other resamples
           "utility_fraction_of_oracle_95ci_defined_resamples": oracle["ci95_defined"],
           "utility_fraction_of_oracle_undefined_resamples": oracle["undefined_fraction"],
           "utility_fraction_of_oracle_detail": {**oracle, "slots": k},
           "corpus_utility_gain": corpus["utility_gain"], "corpus_reward_gain": corpus["reward_gain"],
           "valid_fraction_free_edits": free["valid_fraction"] if free else None,
           "valid_kept_fraction_free_edits": free["valid_kept_fraction"] if free else None,
           "valid_fraction_of_starts": eng["valid_fraction_start"],
           "valid_fraction_bar_preserving_edits": eng["valid_fraction"],
           "valid_kept_fraction_bar_preserving_edits": eng["valid_kept_fraction"],
           "do_no_harm": None if dnh is None else {
               "corpus_mean_utility_change": dnh["corpus"]["mean_du"],
               "heldout_collection_mean_utility_change": dnh["held-out"]["mean_du"],
               "fraction_worse": dnh["pooled"]["frac_worse"],
               "fraction_worse_corpus": dnh["corpus"]["frac_worse"],
               "fraction_worse_heldout_collection": dnh["held-out"]["frac_worse"]}}
    ge = lambda x, t: isinstance(x, (int, float)) and x >= t or x == "inf"  # noqa: E731
    d = out["do_no_harm"]
    out["criteria"] = {
        "objective_vs_hill_climb_3x": ge(out["ratio_vs_hill_climb"], 3),
        "objective_vs_polish_only_1.5x": ge(out["ratio_vs_polish_only"], 1.5),
        "utility_60pct_of_oracle": ge(out["utility_fraction_of_oracle"], 0.6),
        "corpus_utility_not_down_while_reward_rises": corpus["utility_gain"] >= 0 and corpus["reward_gain"] > 0,
        "do_no_harm": None if d is None else bool(d["corpus_mean_utility_change"] >= 0
                                                  and d["heldout_collection_mean_utility_change"] >= 0
                                                  and d["fraction_worse"] <= 0.1),
        "valid_90pct_free_edits": None if free is None else (free["valid_kept_fraction"] or 0.0) >= 0.9,
        "valid_100pct_bar_preserving": eng["valid_kept_fraction"] == 1.0,
    }
    # A --quick run (weak models, few slots) is a smoke test: the goal is judged on the full run only.
    out["met"] = None if q else all(v is True for v in out["criteria"].values())
    out["note_validity"] = ("valid_fraction counts every output, invalid starts included; both validity criteria "
                            "count outputs whose start was valid (valid_kept_fraction): a user edits valid tunes")
    return out


def method_dicts(results) -> dict:
    """The top-level {method: value} objects of the result file."""
    return {key: {k: v[key] for k, v in results.items()}
            for key in ("objective_gain_per_cpu_s", "utility_gain", "valid_fraction", "utility_gain_per_cpu_s")}


def acceptance_line(goal: dict, batch: dict, q: bool, path) -> str:
    """The summary line: every acceptance figure and whether it is met."""
    c, d = goal["criteria"], goal["do_no_harm"]
    mark = lambda ok: "" if ok is None else (" ok" if ok else " NOT met")  # noqa: E731
    r = lambda x: x if not isinstance(x, float) else round(x, 2)  # noqa: E731
    ci = lambda x: None if x is None else [r(v) for v in x]  # noqa: E731
    dnh = ("n/a (whole tunes only)" if d is None else
           f"corpus {d['corpus_mean_utility_change']:+.3f} / held-out collection "
           f"{d['heldout_collection_mean_utility_change']:+.3f}, worse {d['fraction_worse']:.0%}{mark(c['do_no_harm'])}")
    free = goal["valid_kept_fraction_free_edits"]
    return (f"ascent{' (quick)' if q else ''}: objective gain/CPU-s engine vs hill-climbing {r(goal['ratio_vs_hill_climb'])}x "
            f"(95% CI {ci(goal['ratio_vs_hill_climb_95ci'])}){mark(c['objective_vs_hill_climb_3x'])}, vs polish-only "
            f"{r(goal['ratio_vs_polish_only'])}x ({ci(goal['ratio_vs_polish_only_95ci'])})"
            f"{mark(c['objective_vs_polish_only_1.5x'])}; utility {r(goal['utility_fraction_of_oracle'])} of the oracle's "
            f"({ci(goal['utility_fraction_of_oracle_95ci'])}; over defined resamples "
            f"{ci(goal['utility_fraction_of_oracle_95ci_defined_resamples'])}){mark(c['utility_60pct_of_oracle'])}; from corpus tunes "
            f"utility {goal['corpus_utility_gain']:+.3f}, reward {goal['corpus_reward_gain']:+.3f}"
            f"{mark(c['corpus_utility_not_down_while_reward_rises'])}; do no harm (defaults) {dnh}; valid "
            f"{'-' if free is None else f'{free:.0%}'} free / {goal['valid_kept_fraction_bar_preserving_edits']:.0%} "
            f"bar-preserving (of valid starts); batch recipe: {batch['improve_corpus']}; "
            f"goal {'judged on the full run only' if q else ('met' if goal['met'] else 'NOT met')}; {path}")


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
            # The retired goal (utility gain per CPU-s >= 3x best-of-N's), kept for comparison with older
            # files; the goal now is `acceptance`'s. A --quick run is a smoke test: judged on full runs only.
            "retired_best_of_n_goal_met": None if q else bool(ratio is not None and ratio >= 3
                                                              and eng["valid_fraction"] >= 0.9
                                                              and bon["utility_gain"] > 0)}
    return goal, ratio, ci


def print_summary(results, goal, ratio, ci, q: bool, path) -> None:
    """The table of methods and the one summary line."""
    eng = results["engine/samples"]
    bon = results["best_of_n_equal_time/samples"]
    oracle, k = goal["oracle_same_slots"], goal["oracle_same_slots"]["slots"]
    print(f"{'method':<40}{'reward+':>9}{'J+/cpu_s':>10}{'util+':>8}{'±se':>6}{'util+/cpu_s':>12}{'ll/tok':>8}{'valid':>7}"
          f"{'distinct':>9}{'cpu_s':>8}")
    for name, r in results.items():
        rate = "" if r["utility_gain_per_cpu_s"] is None else f"{r['utility_gain_per_cpu_s']:.4f}"
        j_rate = "" if r["objective_gain_per_cpu_s"] is None else f"{r['objective_gain_per_cpu_s']:.4f}"
        print(f"{name:<40}{r['reward_gain']:>9.3f}{j_rate:>10}{r['utility_gain']:>8.3f}{r['utility_gain_se'] or 0:>6.2f}"
              f"{rate:>12}{r['loglik_per_token_after']:>8.2f}{r['valid_fraction']:>7.2f}{r['distinct_outputs']:>9}"
              f"{r['cpu_s']:>8.1f}")
    print(f"utility gain/CPU-s: engine {eng['utility_gain_per_cpu_s']:.4f} vs best-of-N "
          f"(equal time) {bon['utility_gain_per_cpu_s']:.4f} -> ratio {json_number(ratio if ratio is None else round(ratio, 2))} "
          f"(95% CI {ci if ci is None else [json_number(round(x, 2)) for x in ci]}); oracle on {k} slots "
          f"{oracle['oracle_gain_ratio_vs_best_of_n_equal_evals']}x best-of-N at equal evaluations, "
          f"engine valid {eng['valid_fraction']:.0%} (starts {eng['valid_fraction_start']:.0%}), reward gain {eng['reward_gain']:+.3f}, "
          f"gap {eng.get('soft_discrete_gap')}")
    print(goal["batch_recipe"]["line"])
    print(acceptance_line(goal, goal["batch_recipe"], q, path))


def measure_do_no_harm(args, ctx, screen, log) -> dict | None:
    """`do_no_harm_default` with this run's generator and reward model (whole tunes only: a cut
    corpus has hardly any tune short enough to be whole)."""
    if not args.whole:
        return None
    rm, gen, tok, rater, *_ = ctx
    out = do_no_harm_default(rm, gen, tok, rater, memo_validate(screen), max_chars=args.max_chars, n=args.dnh_tunes)
    log(f"do no harm (defaults): corpus {out['corpus']['mean_du']:+.3f}, held-out collection "
        f"{out['held-out']['mean_du']:+.3f}, worse {out['pooled']['frac_worse']:.0%}")
    return out


def result_suffix(args, split) -> str:
    """ascent[_quick][_<n>chars][_<recipe>][_<n>members][_floor][_select].json: whole tunes carry no
    length, a cut its length; the default reward model (`DEFAULT_RECIPE`, `rewardmodels.DEFAULT_MEMBERS`
    members) no name; --lm-floor "_floor"."""
    return (("_quick" if args.quick else "") + ("" if args.whole else f"_{args.max_chars}chars")
            + ("" if args.recipe == DEFAULT_RECIPE else f"_{args.recipe}")
            + ("" if args.members == rewardmodels.DEFAULT_MEMBERS else f"_{args.members}members")
            + ("_floor" if args.lm_floor else "")
            + ("_select" if split.name == "select" else ""))


def main() -> None:
    args = parse_args()
    q = args.quick
    split = eval_split(args.split)
    wall0 = time.perf_counter()
    log = start_run(args.threads)
    splits = bench_corpus(args.max_chars, args.whole)
    train, val, test = splits["train"], splits["val"], splits["test"]
    log(f"corpus: {len(train)} train / {len(val)} val / {len(test)} test tunes "
        f"({'whole, ' if args.whole else 'cut, '}<= {args.max_chars} chars)")
    cfg, cfg_alt, alt_name = engine_configs(args)
    tok, gen, rm, info = build_models(args, train, val, log, cfg)
    flops_peak = matmul_flops()
    log(f"models ready; matmul {flops_peak / 1e9:.1f} GFLOP/s")
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    ctx = (rm, gen, tok, rater, memo_validate(), args.lm_weight, args.lm_floor)
    grammar = domains.ABCConstraint.from_texts(tok, train)
    constraint = None if args.free_sampling else grammar  # bar-aware starts and best-of-N draws
    screen = grammar.accepts  # fast validity screen for the editors
    starts_of = eval_starts(gen, tok, splits, split, args.slots, constraint, args.seed, args.temperature)
    results: dict = {}
    curve: list[dict] = []  # best-of-N utility gain against its CPU time, N = 2, 4, ...
    for origin, starts in starts_of.items():
        res, eng_rows, per_slot, t = measure_editors(results, origin, starts, args, ctx, cfg, cfg_alt, alt_name, screen, log)
        measure_polish_only(results, origin, starts, args, ctx, cfg, res.cpu_seconds, screen, log)
        measure_free_edits(results, origin, starts, args, ctx, cfg, screen, log)
        if origin != "samples":
            continue
        measure_oracle(results, starts, eng_rows, per_slot, args, ctx, log)
        measure_best_of_n(results, curve, starts, res, per_slot, t, args, split, ctx, constraint, log)
        batch = measure_batch_recipe(results, starts, args, split, ctx, cfg, constraint, screen, log)
    dnh = measure_do_no_harm(args, ctx, screen, log)
    for r in results.values():
        if r.get("flops_per_s"):
            r["flops_fraction_of_matmul"] = r["flops_per_s"] / flops_peak
    goal, ratio, ci = goal_of(results, q)
    goal.update(acceptance(results, dnh, q), batch_recipe=batch)
    config = {**{k_: v for k_, v in vars(args).items()}, "split": dataclasses.asdict(split),
              "engine": repr(cfg), alt_name: repr(cfg_alt), "best_of_n_cap": args.best_of_n_cap,
              "rater_agreement": rater.agreement, "sampling": "free" if args.free_sampling else "bar-aware"}
    out = {
        "benchmark": "ascent", "quick": q, "split": split.name, "matmul_flops_per_s": flops_peak, "setup": info,
        "eval_definition": "reward-model evaluations = sequences passed through the reward model "
                           "(an ascent step on a row counts one, as does each exact score)",
        "methods": results,
        **method_dicts(results), "do_no_harm_default": dnh,
        "best_of_n_curve": curve,
        "goal": goal, "total_wall_s": time.perf_counter() - wall0,
    }
    path = write_result(RESULTS / f"ascent{result_suffix(args, split)}.json", out, config)
    plot(results, curve, path.with_suffix(".png"))
    print_summary(results, goal, ratio, ci, q, path)


if __name__ == "__main__":
    main()
