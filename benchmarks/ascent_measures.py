"""The ascent benchmark's measures beyond the method table (benchmarks/ascent.py imports them).

- The whole-tune corpus: the fiddle collections the generator is trained on (`do_no_harm`'s
  TRAIN_COLLECTIONS), held-out tunes kept whole (up to `WHOLE_CHARS`, the 512-token context less
  BOS and EOS), so the held-out collection of `do_no_harm` stays unseen by generator and ratings.
- Ratios of gains per measured CPU second over the same slots, with bootstrap intervals:

      ratio = (mean_i g_a[i] / cpu_a) / (mean_i g_b[i] / cpu_b)

  for the engine's own objective J = reward + lm_weight * mean log-lik, re-scored exactly on the
  discrete outputs (``objective_gain_per_slot``), or for the hidden utility.
- The batch recipe: from the same starts, best-of-N then the engine on the pick, against best-of-N'
  whose measured CPU reaches the recipe's (`batch_recipe`).
- Do no harm with the library's defaults (`gradopt.AscentConfig()`, its default `TrustConfig`) on
  held-out corpus tunes and a held-out collection's whole tunes, through `do_no_harm`'s own
  `tune_sets`, `run` and `metrics` (`do_no_harm_default`).
"""

from __future__ import annotations

import math

import numpy as np

import domains
import gradopt
from do_no_harm import HELD_OUT, TRAIN_COLLECTIONS, WORSE, metrics, run, tune_sets
from reward_recipes import cut_tune, edit_space

WHOLE_CHARS = 510  # a whole tune: BOS + up to 510 characters + EOS fill the generator's 512 positions


def bench_corpus(max_chars: int, whole: bool) -> dict[str, list[str]]:
    """The benchmark's tunes: TRAIN_COLLECTIONS split train/val/test (`domains.split_corpus`).
    train (generator and rating pool) is cut to whole bars within `max_chars` (`cut_tune`);
    val/test are the held-out starts: with `whole`, the tunes of at most `max_chars` characters
    as they are (none is cut), else cut like train."""
    parts = domains.split_corpus(domains.load_abc_corpus(TRAIN_COLLECTIONS))
    cut = lambda ps: [c for c in (cut_tune(p.text, max_chars) for p in ps) if c]  # noqa: E731
    out = {"train": cut(parts["train"])}
    for k in ("val", "test"):
        out[k] = [p.text for p in parts[k] if len(p.text) <= max_chars] if whole else cut(parts[k])
    return out


# ---------------------------------------------------------------- ratios over the same slots


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
    neither gains. With any undefined resample there is no interval (ci95 None); "ci95_defined" is
    the interval over the defined resamples only (None if there are none): conditional on a
    resample where one of the two gains, so it is quoted with its undefined fraction.
    Returns {"ci95": [lo, hi] or None, "ci95_defined", "den_not_gaining_fraction", "undefined_fraction"}."""
    a, b = np.asarray(num_per_slot, float), np.asarray(den_per_slot, float)
    same_slots_ratio(a, b)  # the shape check
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n_boot, len(a)))
    ma, mb = a[idx].mean(1), b[idx].mean(1)
    ratio = np.full(n_boot, np.nan)
    gains = mb > 0
    ratio[gains] = scale * ma[gains] / mb[gains]
    ratio[~gains & (ma > 0)] = math.inf
    defined = ratio[~np.isnan(ratio)]
    undefined = 1.0 - len(defined) / n_boot
    ci_defined = None if not len(defined) else [float(np.percentile(defined, 2.5, method="lower")),
                                                float(np.percentile(defined, 97.5, method="higher"))]  # inf-safe
    return {"ci95": None if undefined > 0 else ci_defined, "ci95_defined": ci_defined,
            "den_not_gaining_fraction": float((~gains).mean()), "undefined_fraction": undefined, "resamples": n_boot}


def json_number(x):
    """A ratio for JSON: None stays None, +/-inf become "inf"/"-inf" (JSON has no infinity)."""
    if x is None or math.isfinite(x):
        return x
    return "inf" if x > 0 else "-inf"


def per_cpu_ratio(num: dict, den: dict, key: str = "objective_gain_per_slot", seed: int = 0) -> dict:
    """Gain per measured CPU second of method `num` over method `den`, both summaries of
    `ascent.summarise` on the same slots: (mean num[key] / num cpu_s) / (mean den[key] / den cpu_s),
    with the bootstrap interval over slots (`bootstrap_ratio`, CPU times held fixed). A method
    with no CPU time (cpu_s <= 0) has no per-CPU-s figure: refused."""
    if not (num["cpu_s"] > 0 and den["cpu_s"] > 0):
        raise ValueError(f"per_cpu_ratio needs both methods' CPU seconds > 0, got {num['cpu_s']} and {den['cpu_s']}; "
                         "compare a method without CPU time (the oracle) by its gain, not per CPU second")
    a, b = num[key], den[key]
    scale = den["cpu_s"] / num["cpu_s"]
    base = same_slots_ratio(a, b)
    boot = bootstrap_ratio(a, b, scale=scale, seed=seed)
    return {"ratio": json_number(None if base is None else base * scale),
            "ci95": [json_number(x) for x in boot["ci95"]] if boot["ci95"] else None,
            "num": num["method"], "den": den["method"], "num_cpu_s": num["cpu_s"], "den_cpu_s": den["cpu_s"],
            "num_gain": float(np.mean(a)), "den_gain": float(np.mean(b)),
            "den_not_gaining_fraction": boot["den_not_gaining_fraction"],
            "undefined_fraction": boot["undefined_fraction"], "resamples": boot["resamples"]}


def fraction_of(num_per_slot, den_per_slot, seed: int = 0) -> dict:
    """mean(num) / mean(den) over the same slots with its bootstrap interval (e.g. the engine's
    utility gain as a fraction of the oracle editor's); "ci95_defined": `bootstrap_ratio`'s interval
    over the resamples where either gains."""
    boot = bootstrap_ratio(num_per_slot, den_per_slot, seed=seed)
    return {"fraction": json_number(same_slots_ratio(num_per_slot, den_per_slot)),
            "ci95": [json_number(x) for x in boot["ci95"]] if boot["ci95"] else None,
            "ci95_defined": [json_number(x) for x in boot["ci95_defined"]] if boot["ci95_defined"] else None,
            "num_gain": float(np.mean(num_per_slot)), "den_gain": float(np.mean(den_per_slot)),
            "den_not_gaining_fraction": boot["den_not_gaining_fraction"], "undefined_fraction": boot["undefined_fraction"]}


# ---------------------------------------------------------------- the batch recipe


def interval(xs) -> dict:
    """{"mean", "ci95": [lo, hi], "n"}: `gradopt.mean_interval` (Student-t, 95%)."""
    m, lo, hi, n = gradopt.mean_interval([float(x) for x in xs])
    return {"mean": m, "ci95": [lo, hi], "n": n}


def recipe_verdict(gain_polish, gain_more) -> tuple[dict, str | None]:
    """(paired `interval` of gain_polish - gain_more over slots, which arm is better): "polish"
    when the interval lies above 0, "more_samples" when below, None when it spans 0."""
    diff = interval(np.asarray(gain_polish, float) - np.asarray(gain_more, float))
    lo, hi = diff["ci95"]
    return diff, ("polish" if lo > 0 else "more_samples" if hi < 0 else None)


def batch_recipe(starts, rm, gen, tok, cfg: gradopt.AscentConfig, utility, *, n: int, seed: int,
                 temperature: float, constraint=None, edit: str = "pitch", validate=None, n_cap: int = 256) -> dict:
    """From the same starts: (a) best-of-`n` (the start is sample 1, `gradopt.best_of_n`) and then
    the engine (`cfg`, header lines frozen, `edit` masks) on each pick, against (b) best-of-N' with
    the same draws (same `seed`), N' the first whose *measured* CPU reaches (a)'s draws + engine
    (`first_at_budget`; capped at `n_cap`, flagged). utility: texts -> (b,) hidden utility.

    Returns {"polish": {rows, n, cpu_s, ...}, "more_samples": {rows, n, cpu_s, n_capped, ...},
    "utility_gain": {"polish", "more_samples", "difference"} (each `interval` over slots; the
    difference paired: polish minus more samples), "better": "polish" | "more_samples" | None
    (None: the paired interval spans 0), "line": one sentence saying so}."""
    if n < 1:
        raise ValueError(f"batch_recipe: n (best-of-N's samples before the engine, the start included) must be >= 1, got {n}")
    draws, res = gradopt.best_then_polish(  # what `gradopt.generate` runs, all slots in one batch
        starts, rm, gen, tok, best_of=n, seed=seed, temperature=temperature, polish=cfg, constraint=constraint,
        edits=lambda ids: edit_space(ids.tolist(), tok, edit), validate=validate, batch_size=len(starts))
    cpu_a = draws[-1].cpu_s + res.cpu_seconds
    more = gradopt.best_of_n(starts, rm, gen, tok, n_max=max(n_cap, n), seed=seed, temperature=temperature,
                             constraint=constraint, stop=lambda k, cpu: cpu >= cpu_a)
    n_b = first_at_budget([s.cpu_s for s in more], cpu_a)
    snap = more[n_b - 1]
    text = lambda rows: [domains.decode(tok, r) for r in rows]  # noqa: E731
    u0 = np.asarray(utility(text(starts)), float)
    ga = np.asarray(utility(text(res.tokens)), float) - u0
    gb = np.asarray(utility(text(snap.rows)), float) - u0
    diff, better = recipe_verdict(ga, gb)
    lo, hi = diff["ci95"]
    names = {"polish": f"best-of-{n} + engine", "more_samples": f"best-of-{n_b} (equal CPU)"}
    verdict = (f"{names[better]} is better" if better else
               f"neither is better at this size (paired interval of the difference spans 0)")
    line = (f"batch recipe: {names['polish']} utility gain {ga.mean():+.3f} in {cpu_a:.1f} CPU s vs "
            f"{names['more_samples']} {gb.mean():+.3f} in {snap.cpu_s:.1f} CPU s; difference {diff['mean']:+.3f} "
            f"(95% CI [{lo:+.3f}, {hi:+.3f}]): {verdict}")
    return {
        "polish": {"rows": res.tokens, "picks": draws[-1].rows, "kept": sum(r.kept for r in res.rows),
                   "n": n, "cpu_s": cpu_a, "draw_cpu_s": draws[-1].cpu_s,
                   "engine_cpu_s": res.cpu_seconds, "wall_s": draws[-1].wall_s + res.seconds,
                   "evals": draws[-1].evals + res.reward_evals},
        "more_samples": {"rows": snap.rows, "n": n_b, "cpu_s": snap.cpu_s, "wall_s": snap.wall_s, "evals": snap.evals,
                         "n_capped": bool(snap.cpu_s < cpu_a)},
        "utility_gain": {"polish": interval(ga), "more_samples": interval(gb), "difference": diff},
        "better": better, "line": line,
    }


# ---------------------------------------------------------------- do no harm with the defaults


def do_no_harm_default(rm, gen, tok, rater, validate, *, max_chars: int, n: int,
                       cfg: gradopt.AscentConfig | None = None) -> dict:
    """The engine with the library's defaults (`gradopt.AscentConfig()`: its default do-no-harm
    guard, `TrustConfig()`) on whole tunes of at most `max_chars`: `n` test tunes of the training
    collections and `n` of the held-out collection (`do_no_harm.tune_sets`, report split), pitch
    edits, header frozen (`do_no_harm.run`). Per set `do_no_harm.metrics` (mean utility change Δu,
    fraction made worse by more than WORSE, kept, ...), plus both sets pooled."""
    cfg = cfg or gradopt.AscentConfig()
    sets = tune_sets(tok, max_chars, n)["report"]
    out: dict = {"config": repr(cfg), "held_out_collection": HELD_OUT["report"], "worse_threshold": WORSE}
    du = []
    for name, texts in sets.items():
        if not texts:
            raise ValueError(f"do_no_harm_default: no {name} tune of at most {max_chars} characters fits the "
                             "tokenizer; use whole tunes (ascent.py --whole)")
        rows, cpu = run(texts, rm, gen, tok, cfg, validate, rater)
        out[name] = {**metrics(rows["du"], rows["d_reward"], rows["changed"], ~rows["kept"]), "cpu_s": cpu}
        du.append(np.where(rows["kept"], 0.0, rows["du"]))
    pooled = np.concatenate(du)
    out["pooled"] = {"n": len(pooled), "mean_du": float(pooled.mean()), "frac_worse": float((pooled < -WORSE).mean())}
    return out
