"""Throughput of the ascent engine at scale: sequences/s, tokens/s, achieved FLOP/s as a fraction of
a large matmul's FLOP/s measured in the same run, and peak memory, for batch x length grids; and the
generator's sampling throughput, free and bar-aware.

Models: the benchmarks' 2x64 char-level generator (`reward_recipes.load_or_train_generator`'s
preset, context 512 as for whole tunes) built from its config with random weights (timing needs no
training), and `rewardmodels.RewardModel.from_generator` with the practical recipe's pooling. A reward
model copied from the generator shares its transformer's weights, so the engine runs one pass for
both (`gradopt.shared_backbone`), as it does with the practical probe recipe; ``--separate`` perturbs
the reward model's weights to time two passes instead.

Tables (B rows of T tokens: BOS, T-2 random characters, EOS):

- engine step: `gradopt._ascent_steps.objective_grad`, the forward and backward pass `ascend` runs
  per continuous step (default `gradopt.AscentConfig`: simplex relaxation, reward + generator
  log-likelihood) on a batch prepared by the engine's own `prepare_batch`;
- exact scoring: the engine's exact scorer (reward + generator log-likelihood of token ids, no
  gradient), what its verify and polish steps run.

Each cell: one warm-up call (peak memory measured on it), then calls until --min-seconds have
passed (at least one). A cell whose predicted time per call (its FLOPs at the rate of the previous
cell) exceeds 60 s, or predicted memory (the previous cell's peak scaled by B*T^2) 10 GB, is
recorded as skipped with the reason. The matmul reference (1024x1024, `ascent.matmul_flops`) is
measured before and after the tables; fractions are of their mean (both reported). One extra row
per table with 2 torch threads at B=64, T=256.

Sampling: `domains.sample_ids` (KV-cached), batches of 1, 16 and 64 tunes, free and bar-aware
(`domains.ABCConstraint.from_texts` over the training tunes); bar-aware with a fresh constraint
(its mask cache cold) and again with the same one (warm). Each row twice, side by side on the same
seeds: the reference path (``reference=True`` of `sample_ids` and `ABCConstraint`: every row run
to the end of its batch, every token tried on each new grammar state, fractions) and the fast one;
`sampling_speedup` gives their ratio per row and whether the samples were the same.

Writes benchmarks/results/throughput.json (--quick: throughput_quick.json) with its commit, machine
and config (benchmarks/provenance.py); ``--only sampling`` runs the sampling part alone and writes
throughput_sampling.json (throughput_sampling_quick.json); one summary line last.
"""

from __future__ import annotations

import cProfile
import ctypes
import gc
import hashlib
import inspect
import pstats
import time
from pathlib import Path

import torch

import domains
import gradopt
import rewardmodels
from provenance import write_result  # first: it reads the git state as the run starts
from ascent import forward_flops, matmul_flops, scoring_flops
from ascent_measures import WHOLE_CHARS, bench_corpus
from reward_recipes import run_parser, start_run
from gradopt._ascent import _Scorer
from gradopt._ascent_batch import prepare_batch
from gradopt._ascent_steps import objective_grad

RESULTS = Path(__file__).parent / "results"
BATCHES, LENGTHS = (1, 4, 16, 64, 256), (128, 256, 512)
QUICK_BATCHES, QUICK_LENGTHS = (1, 16), (128,)
SAMPLE_BATCHES, QUICK_SAMPLE_BATCHES = (1, 16, 64), (1, 16)
MAX_CALL_S, MAX_BYTES = 60.0, 10e9
DEFINITIONS = {
    "flops_engine_step": "3 x forward FLOPs (forward + backward) of one pass over B*T tokens, `ascent.forward_flops`: "
                         "2*12*layers*d^2 + 4*layers*T*d + 2*v*d per token; one pass when the models share their "
                         "transformer (shared_backbone), the reward model's plus the generator's otherwise",
    "flops_exact": "1 x forward FLOPs of the same passes (no backward)",
    "flops_sampling": "forward FLOPs of B rows x the loop's steps (finished rows are still computed), attention "
                      "over the mean context (prefix + steps/2)",
    "fraction_of_matmul": "achieved FLOP/s / the mean of the 1024x1024 matmul FLOP/s measured before and after "
                          "the tables in the same process and thread count",
    "peak_rss_bytes": "in-process: peak resident memory (VmHWM, reset through /proc/self/clear_refs after gc and "
                      "malloc_trim) minus the resident memory before the cell's batch was prepared, over the "
                      "preparation and the warm-up call; None where the kernel does not allow the reset",
    "seconds_per_call": "wall time per call, mean over the timed calls (cpu_s_per_call: process CPU time)",
}


def build_models(tok, n_positions: int = WHOLE_CHARS + 2, seed: int = 0, separate: bool = False):
    """(generator, reward model): the benchmarks' 2x64 generator with random weights, and a reward
    model copied from it (`separate`: its weights perturbed, so the two no longer share a pass)."""
    preset = domains.GeneratorPreset(n_layer=2, n_head=2, n_embd=64, n_positions=n_positions)
    gen = domains.build_generator(preset, tok, seed=seed).eval()
    rm = rewardmodels.RewardModel.from_generator(gen, pooling=rewardmodels.PRACTICAL.pooling).eval()
    if separate:
        with torch.no_grad():
            for w in rm.transformer.parameters():
                w.add_(1e-3)
    return gen, rm


def random_rows(tok, b: int, t: int, seed: int = 0) -> list[list[int]]:
    """`b` rows of `t` tokens: BOS, t-2 random non-special tokens, EOS."""
    special = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    pool = torch.tensor([i for i in range(len(tok)) if i not in special])
    body = pool[torch.randint(len(pool), (b, t - 2), generator=torch.Generator().manual_seed(seed))]
    return [[tok.bos_token_id, *row, tok.eos_token_id] for row in body.tolist()]


def engine_call(rm, gen, tok, rows, cfg: gradopt.AscentConfig = gradopt.AscentConfig(), exact: bool = False):
    """(call, shared): a zero-argument call of the engine's per-step work on `rows`, prepared as
    `gradopt.optimize` prepares them: `objective_grad` (forward + backward) or, with `exact`, the
    exact scorer on the rows' token ids; shared: one pass serves both models."""
    batch = prepare_batch(rows, rm, gen, cfg, tok, None, None, None)
    scorer = _Scorer(rm, gen, batch, cfg.objective, tok, None)
    if exact:
        every = torch.arange(batch.B)
        return (lambda: scorer.exact(batch.ids_in, every)), scorer.shared
    param = cfg.relaxation.init(batch.onehot0, batch.ctx)
    return (lambda: objective_grad(batch, scorer, cfg, param, 0.5)), scorer.shared


def pass_flops(rm, gen, b: int, t: int, shared: bool, backward: bool) -> float:
    """FLOPs of one call (see DEFINITIONS)."""
    return (3 if backward else 1) * b * scoring_flops(rm, gen, t, shared)  # FLOPs are linear in the tokens


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> int | None:
    """Free what can be freed, reset the peak-RSS mark; the resident bytes now (None: not possible)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def measure_cell(make, flops: float, b: int, t: int, min_seconds: float) -> dict:
    """Prepare (`make() -> call`), warm up once (peak memory), then time calls for `min_seconds`."""
    base = _reset_peak()
    call = make()
    call()
    peak = None if base is None else _status_bytes("VmHWM") - base
    reps, w0, c0 = 0, time.perf_counter(), time.process_time()
    while reps < 1 or time.perf_counter() - w0 < min_seconds:
        call()
        reps += 1
    wall, cpu = (time.perf_counter() - w0) / reps, (time.process_time() - c0) / reps
    del call
    return {"batch": b, "length": t, "calls": reps, "seconds_per_call": wall, "cpu_s_per_call": cpu,
            "sequences_per_s": b / wall, "tokens_per_s": b * t / wall, "flops_per_call": flops,
            "flops_per_s": flops / wall, "peak_rss_bytes": peak}


def table(rm, gen, tok, batches, lengths, exact: bool, min_seconds: float, log) -> list[dict]:
    """The engine-step (or, `exact`, exact-scoring) table over batches x lengths; cells predicted to
    take over MAX_CALL_S per call or MAX_BYTES of memory are skipped, with the reason."""
    out: list[dict] = []
    prev = None
    for t in lengths:
        for b in batches:
            rows = random_rows(tok, b, t, seed=b * 1000 + t)
            shared = gradopt.shared_backbone(rm, gen)
            flops = pass_flops(rm, gen, b, t, shared, backward=not exact)
            if prev is not None:
                est_s = flops / prev["flops_per_s"]
                est_bytes = (prev["peak_rss_bytes"] or 0) * (b * t * t) / (prev["batch"] * prev["length"] ** 2)
                reason = (f"predicted {est_s:.0f} s per call > {MAX_CALL_S:.0f} s" if est_s > MAX_CALL_S else
                          f"predicted {est_bytes / 1e9:.1f} GB > {MAX_BYTES / 1e9:.0f} GB" if est_bytes > MAX_BYTES
                          else None)
                if reason:
                    out.append({"batch": b, "length": t, "skipped": reason})
                    log(f"{'exact' if exact else 'engine'} B={b} T={t}: skipped, {reason}")
                    continue
            cell = measure_cell(lambda: engine_call(rm, gen, tok, rows, exact=exact)[0], flops, b, t, min_seconds)
            cell["shared_pass"] = shared
            out.append(cell)
            prev = cell
            mem = "" if cell["peak_rss_bytes"] is None else f", peak +{cell['peak_rss_bytes'] / 1e6:.0f} MB"
            log(f"{'exact' if exact else 'engine'} B={b} T={t}: {cell['sequences_per_s']:.1f} seq/s, "
                f"{cell['flops_per_s'] / 1e9:.2f} GFLOP/s{mem}")
    return out


def add_fractions(rows: list[dict], peak: float) -> None:
    for r in rows:
        if "flops_per_s" in r:
            r["fraction_of_matmul"] = r["flops_per_s"] / peak


def sampling_row(gen, tok, b: int, constraint, seed: int, max_new: int, reference: bool = False) -> dict:
    """`b` tunes in one batch from `domains.sample_ids` (`reference`: its reference path): tunes/s,
    ms/tune, tokens, FLOP/s and a digest of the token ids (equal digests: the same samples)."""
    cfg = domains.SampleConfig(temperature=0.8, batch_size=b, max_new_tokens=max_new)
    w0, c0 = time.perf_counter(), time.process_time()
    rows = domains.sample_ids(gen, tok, b, cfg, seed=seed, constraint=constraint, reference=reference)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    steps = max(len(r) for r in rows) - 1  # the prefix is BOS alone
    flops = forward_flops(gen, b * steps, 1 + steps / 2)
    return {"batch": b, "seconds": wall, "cpu_s": cpu, "tunes_per_s": b / wall, "ms_per_tune": 1000 * wall / b,
            "mean_tokens_per_tune": sum(len(r) - 1 for r in rows) / b, "steps": steps,
            "generated_tokens_per_s": sum(len(r) - 1 for r in rows) / wall, "flops_per_s": flops / wall,
            "samples_sha256": hashlib.sha256(repr(rows).encode()).hexdigest()}


def sampling_table(gen, tok, train: list[str], batches, max_new: int, log) -> tuple[list[dict], list[dict]]:
    """(rows, speedups): free, bar-aware with a fresh constraint (cold mask cache) and bar-aware
    again (warm), each on the reference path then the fast one with the same seed; a speedup row
    per pair: reference ms/tune over fast ms/tune, and whether the samples were identical."""
    out, speedups = [], []
    for b in batches:
        grammars = {ref: domains.ABCConstraint.from_texts(tok, train, reference=ref) for ref in (True, False)}
        for mode, seed in (("free", 0), ("bar_aware_cold", 0), ("bar_aware_warm", 1)):
            pair = {}
            for ref in (True, False):
                con = None if mode == "free" else grammars[ref]
                pair[ref] = {"mode": mode, "path": "reference" if ref else "fast",
                             **sampling_row(gen, tok, b, con, seed, max_new, reference=ref)}
                out.append(pair[ref])
            speedups.append({"mode": mode, "batch": b, "reference_ms_per_tune": pair[True]["ms_per_tune"],
                             "fast_ms_per_tune": pair[False]["ms_per_tune"],
                             "speedup": pair[True]["ms_per_tune"] / pair[False]["ms_per_tune"],
                             "same_samples": pair[True]["samples_sha256"] == pair[False]["samples_sha256"]})
            log(f"sampling {mode} b={b}: {pair[True]['ms_per_tune']:.1f} -> {pair[False]['ms_per_tune']:.1f} ms/tune "
                f"({speedups[-1]['speedup']:.2f}x, same samples: {speedups[-1]['same_samples']}), "
                f"{pair[False]['mean_tokens_per_tune']:.0f} tokens/tune")
    return out, speedups


def sampling_profile(gen, tok, train: list[str], b: int, max_new: int, reference: bool = False) -> dict:
    """Where bar-aware sampling's time goes: cProfile of one cold batch of `b` tunes, the time
    `sample_ids` spends in the model's forward calls, in the constraint (`allowed`, `advance`,
    `start`) and elsewhere, the share of Python's `fractions` arithmetic (the grammar's durations),
    and the constraint's mask-cache misses (distinct states: each tries every token) per mask asked."""
    grammar = domains.ABCConstraint.from_texts(tok, train, reference=reference)
    cfg = domains.SampleConfig(temperature=0.8, batch_size=b, max_new_tokens=max_new)
    prof = cProfile.Profile()
    prof.enable()
    domains.sample_ids(gen, tok, b, cfg, seed=0, constraint=grammar, reference=reference)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(tt for _, _, tt, _, _ in stats.values())

    def called(names: set[str], by: set[str]) -> float:
        """Cumulative time of the calls to `names` made by functions named in `by`."""
        return sum(ct for (_, _, fn), (_, _, _, _, callers) in stats.items() if fn in names
                   for (where, _, caller), (_, _, _, ct) in callers.items()
                   if caller in by and where == inspect.unwrap(domains.sample_ids).__code__.co_filename)

    sampler = {"sample_ids", "<listcomp>"}  # its per-row loops are list comprehensions
    model = called({"_wrapped_call_impl", "_call_impl"}, {"sample_ids"})
    constraint = called({"allowed", "advance", "start"}, sampler)
    asked = sum(nc for (_, _, fn), (_, nc, _, _, _) in stats.items() if fn == "allowed")
    fractions = sum(tt for (where, _, _), (_, _, tt, _, _) in stats.items() if where.endswith("fractions.py"))
    misses = len(grammar._cache)
    return {"batch": b, "path": "reference" if reference else "fast", "profiled_s": total, "model_forward_fraction": model / total,
            "constraint_fraction": constraint / total, "other_fraction": 1 - (model + constraint) / total,
            "fractions_arithmetic_fraction": fractions / total,
            "masks_asked": asked, "mask_cache_misses": misses, "constraint_profiled_ms_per_miss": 1000 * constraint / misses,
            "note": "cProfile inflates Python-heavy code (the constraint) more than torch kernels"}


def parse_args():
    ap = run_parser(__doc__, "smoke test: B in {1,16}, T 128, sampling b in {1,16} (< 60 s)")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="timed calls per cell last at least this long")
    ap.add_argument("--max-new-tokens", type=int, default=255, help="sampling: tokens generated per tune at most")
    ap.add_argument("--only", choices=("sampling",), default=None,
                    help="run only this part (sampling: writes throughput_sampling.json)")
    ap.add_argument("--separate", action="store_true",
                    help="perturb the reward model's weights so it no longer shares the generator's pass")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    log = start_run(args.threads)
    wall0 = time.perf_counter()
    q = args.quick
    batches, lengths = (QUICK_BATCHES, QUICK_LENGTHS) if q else (BATCHES, LENGTHS)
    train = bench_corpus(WHOLE_CHARS, True)["train"]
    tok = domains.build_char_tokenizer(train)
    gen, rm = build_models(tok, seed=args.seed, separate=args.separate)
    if args.only == "sampling":
        return sampling_only(args, gen, tok, train, log, wall0)
    min_s = 0.3 if q else args.min_seconds
    mm_before = matmul_flops(0.5 if q else 1.5)
    log(f"matmul {mm_before / 1e9:.1f} GFLOP/s ({args.threads} thread(s))")
    engine = table(rm, gen, tok, batches, lengths, False, min_s, log)
    exact = table(rm, gen, tok, batches, lengths, True, min_s, log)
    mm_after = matmul_flops(0.5 if q else 1.5)
    mm = (mm_before + mm_after) / 2
    add_fractions(engine, mm)
    add_fractions(exact, mm)
    two = None
    if not q:
        torch.set_num_threads(2)
        mm2 = matmul_flops(1.5)
        two = {"threads": 2, "matmul_flops_per_s": mm2,
               "engine": measure_cell(lambda: engine_call(rm, gen, tok, random_rows(tok, 64, 256))[0],
                                      pass_flops(rm, gen, 64, 256, gradopt.shared_backbone(rm, gen), True), 64, 256, min_s),
               "exact": measure_cell(lambda: engine_call(rm, gen, tok, random_rows(tok, 64, 256), exact=True)[0],
                                     pass_flops(rm, gen, 64, 256, gradopt.shared_backbone(rm, gen), False), 64, 256, min_s)}
        for k in ("engine", "exact"):
            two[k]["fraction_of_matmul"] = two[k]["flops_per_s"] / mm2
            two[k]["fraction_of_one_thread_matmul"] = two[k]["flops_per_s"] / mm
        torch.set_num_threads(args.threads)
        log(f"2 threads B=64 T=256: engine {two['engine']['fraction_of_matmul']:.0%} of a 2-thread matmul")
    sampling, speedups = sampling_table(gen, tok, train, QUICK_SAMPLE_BATCHES if q else SAMPLE_BATCHES,
                                        64 if q else args.max_new_tokens, log)
    for r in sampling:
        r["fraction_of_matmul"] = r["flops_per_s"] / mm
    profile = sampling_profile(gen, tok, train, 16, 64 if q else args.max_new_tokens)
    log(f"bar-aware b=16 profile: model {profile['model_forward_fraction']:.0%}, constraint "
        f"{profile['constraint_fraction']:.0%}, {profile['mask_cache_misses']} misses / {profile['masks_asked']} masks")
    config = {**vars(args), "batches": batches, "lengths": lengths, "min_seconds_used": min_s,
              "generator": dict(n_layer=2, n_head=2, n_embd=64, n_positions=WHOLE_CHARS + 2, vocab=len(tok)),
              "reward_pooling": rm.pooling, "engine": repr(gradopt.AscentConfig())}
    out = {"benchmark": "throughput", "quick": q, "definitions": DEFINITIONS,
           "matmul_flops_per_s_before": mm_before, "matmul_flops_per_s_after": mm_after, "matmul_flops_per_s": mm,
           "engine_step": engine, "exact_scoring": exact, "two_threads": two, "sampling": sampling,
           "sampling_speedup": speedups, "sampling_profile_bar_aware": profile,
           "total_wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"throughput{'_quick' if q else ''}.json", out, config)
    print(summary_line(out, path))


def sampling_only(args, gen, tok, train: list[str], log, wall0: float) -> None:
    """The sampling part alone (reference and fast paths, profiles of both at b=16), with the
    matmul reference for FLOP/s fractions; writes throughput_sampling[_quick].json."""
    q = args.quick
    max_new = 64 if q else args.max_new_tokens
    mm_before = matmul_flops(0.5 if q else 1.5)
    sampling, speedups = sampling_table(gen, tok, train, QUICK_SAMPLE_BATCHES if q else SAMPLE_BATCHES, max_new, log)
    mm = (mm_before + matmul_flops(0.5 if q else 1.5)) / 2
    for r in sampling:
        r["fraction_of_matmul"] = r["flops_per_s"] / mm
    profiles = {ref: sampling_profile(gen, tok, train, 16, max_new, reference=ref) for ref in (True, False)}
    for p in profiles.values():
        log(f"bar-aware b=16 profile, {p['path']}: model {p['model_forward_fraction']:.0%}, constraint "
            f"{p['constraint_fraction']:.0%}, {p['mask_cache_misses']} misses / {p['masks_asked']} masks")
    config = {**vars(args), "sample_batches": QUICK_SAMPLE_BATCHES if q else SAMPLE_BATCHES, "max_new_used": max_new,
              "generator": dict(n_layer=2, n_head=2, n_embd=64, n_positions=WHOLE_CHARS + 2, vocab=len(tok))}
    out = {"benchmark": "throughput_sampling", "quick": q, "definitions": DEFINITIONS, "matmul_flops_per_s": mm,
           "sampling": sampling, "sampling_speedup": speedups, "sampling_profile_bar_aware": profiles[False],
           "sampling_profile_bar_aware_reference": profiles[True], "total_wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"throughput_sampling{'_quick' if q else ''}.json", out, config)
    s = {(r["mode"], r["batch"]): r for r in speedups}
    sb = max(k[1] for k in s)
    print(f"throughput sampling{' (quick)' if q else ''} b={sb}: free {s[('free', sb)]['reference_ms_per_tune']:.1f} -> "
          f"{s[('free', sb)]['fast_ms_per_tune']:.1f} ms/tune, bar-aware {s[('bar_aware_cold', sb)]['reference_ms_per_tune']:.1f}"
          f" -> {s[('bar_aware_cold', sb)]['fast_ms_per_tune']:.1f} ms/tune (cold); same samples: "
          f"{all(r['same_samples'] for r in speedups)}; {path}")


def summary_line(out: dict, path) -> str:
    """Engine step and exact scoring at the largest measured batch of the middle length, and sampling."""
    def at(rows, b, t):
        return next((r for r in rows if r["batch"] == b and r["length"] == t and "flops_per_s" in r), None)

    b = 64 if at(out["engine_step"], 64, 256) else max(r["batch"] for r in out["engine_step"] if "flops_per_s" in r)
    t = 256 if at(out["engine_step"], b, 256) else out["engine_step"][0]["length"]
    e, x = at(out["engine_step"], b, t), at(out["exact_scoring"], b, t)
    s = {(r["mode"], r["batch"]): r for r in out["sampling"] if r.get("path", "fast") == "fast"}
    sb = max(k[1] for k in s)
    return (f"throughput{' (quick)' if out['quick'] else ''}: engine step B={b} T={t} {e['sequences_per_s']:.1f} seq/s, "
            f"{e['fraction_of_matmul']:.0%} of matmul FLOP/s; exact scoring {x['sequences_per_s']:.1f} seq/s, "
            f"{x['fraction_of_matmul']:.0%}; sampling b={sb}: free {s[('free', sb)]['ms_per_tune']:.1f} ms/tune, "
            f"bar-aware {s[('bar_aware_cold', sb)]['ms_per_tune']:.1f} (cold) / "
            f"{s[('bar_aware_warm', sb)]['ms_per_tune']:.1f} (warm) ms/tune; {path}")


if __name__ == "__main__":
    main()
