"""Do no harm: does the engine's trust guard keep users' tunes from getting worse?

Setting (what a new user does): a small char-level generator trained on two fiddle collections
(ryansMammoth + oneills1850, train split, tunes cut to whole bars within --max-chars), a reward
ensemble of K = --members bootstrap ridge probes on its hidden states (default
`rewardmodels.DEFAULT_MEMBERS` = 64), fitted on simulated ratings of the
pool of the reward-model recipe --recipe (`rewardmodels.RECIPES`; default "practical": corpus
tunes, generator samples and pitch variants; "practical_music" adds the musical annotations a
user would use; agreement 0.75, Bradley-Terry, `rewardmodels.fit_recipe`), then `gradopt.optimize` with pitch edits (note letters only,
headers frozen), lm_weight 8, the default engine otherwise, on *whole* tunes (<= --max-chars) from

    corpus    held-out tunes of the two training collections (their val or test split)
    held-out  a collection never rated nor used to train the generator (miscFolk or airdsAirs)

The truth is the simulated rater's hidden utility (`rewardmodels.SimulatedRater`). Per tune:
Δu = utility(output) - utility(input); reported per set and method: mean Δu, fraction made worse
(Δu < -0.1), fraction improved (Δu > 0.1), fraction kept unchanged, mean reward change (ensemble
mean) and mean positions changed.

Settings are chosen on one split and reported on another. Selection split: the val tunes of the
training collections + miscFolk; report split: their test tunes + airdsAirs. The engine runs once
per edit budget (the budget bounds the search); for each run the acceptance rule (pessimism k,
margin, largest drop of the generator's mean log-likelihood per token) is applied to the rows'
per-member gains and log-likelihoods, which is exactly what `TrustConfig(k, margin,
max_loglik_drop)` does with one restart. The chosen setting maximises mean Δu on the selection split among settings
making at most 5% of tunes worse (else the one making the fewest worse). On the report split the
guard then runs for real (`AscentConfig(trust=TrustConfig(...))`) and must match the offline
prediction; "off" is ``trust=None`` (the old engine).

Writes benchmarks/results/do_no_harm.json (--quick: do_no_harm_quick.json); one summary line last.
CPU: the generator trains for --gen-minutes CPU-minutes once and is cached under work/ (gitignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch

import domains
import gradopt
import rewardmodels
from gradopt import memo_validate
from provenance import write_result
from reward_recipes import cut_tune, edit_space, fit_recipe, load_or_train_generator, make_pool, scaled, start_run

RESULTS = Path(__file__).parent / "results"
TRAIN_COLLECTIONS = ("ryansMammoth", "oneills1850")
HELD_OUT = {"select": "miscFolk", "report": "airdsAirs"}
CORPUS_SPLIT = {"select": "val", "report": "test"}
BUDGETS = (0.05, 0.1, 0.2, 1.0)  # 1.0 = no budget (the raw engine's search)
PESSIMISM = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
MARGINS = (0.0, 0.1, 0.25, 0.5)
LL_DROPS = (math.inf, 0.1, 0.03, 0.01, 0.003, 0.0)  # TrustConfig.max_loglik_drop (nats per token); inf = off
WORSE = 0.1  # a tune is "made worse" when its utility drops by more than this


def fit_reward_ensemble(gen, tok, train: list[str], name: str, quick: bool, members: int, log):
    """(RewardEnsemble, info) from the pool of recipe `name` rated by the simulated rater."""
    c0 = time.process_time()
    recipe = scaled(rewardmodels.RECIPES[name], 0.4) if quick else rewardmodels.RECIPES[name]
    pool = make_pool(recipe, gen, tok, train, seed=0)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    ens, fit = fit_recipe(recipe, pool, rater.utility(pool.texts), gen, tok, rater, seed=0, members=members)
    info = {"name": name, "recipe": repr(recipe), "items": fit["items"], "comparisons": fit["comparisons"],
            "l2": fit.get("l2"), "members": members, "cpu_s": time.process_time() - c0}
    log(f"reward ensemble ({name}): {info['items']} items, {info['comparisons']} comparisons, "
        f"{info['cpu_s']:.0f} CPU s")
    return ens, info


def tune_sets(tok, max_chars: int, n: int) -> dict[str, dict[str, list[str]]]:
    """{split: {"corpus": tunes, "held-out": tunes}}: whole in-vocabulary tunes of <= max_chars."""
    ok = lambda t: len(t) <= max_chars and tok.unk_token_id not in tok(t)["input_ids"]  # noqa: E731
    parts = domains.split_corpus(domains.load_abc_corpus(TRAIN_COLLECTIONS))
    out = {}
    for split in ("select", "report"):
        corpus = [p.text for p in parts[CORPUS_SPLIT[split]] if ok(p.text)]
        held = [p.text for p in domains.load_abc_corpus((HELD_OUT[split],)) if ok(p.text)]
        rng = np.random.default_rng(1 if split == "select" else 2)
        pick = lambda xs: [xs[i] for i in sorted(rng.choice(len(xs), min(n, len(xs)), replace=False))]  # noqa: E731
        out[split] = {"corpus": pick(corpus), "held-out": pick(held)}
    return out


def run(texts, ens, gen, tok, cfg, validate, rater):
    """Engine outputs of `texts` under `cfg` -> per-row dict arrays (Δu, gains, changed, kept)."""
    starts = gradopt.starts_from_texts(tok, texts)
    freeze, allowed = edit_space(starts, tok, "pitch")
    res = gradopt.optimize(starts, ens, gen, cfg, tokenizer=tok, freeze=freeze, allowed=allowed, validate=validate)
    u0, u1 = rater.utility(texts), rater.utility([r.text for r in res.rows])
    # the generator's mean log-likelihood per token, input minus output (as `optimize` computes it for the guard)
    ll_drop = [r.loglik_before / (len(s) - 1) - r.loglik_after / (len(r.tokens) - 1) for s, r in zip(starts, res.rows)]
    rows = {"du": u1 - u0, "gain_mean": np.array([r.gain_mean for r in res.rows]), "ll_drop": np.array(ll_drop),
            "gain_sd": np.array([r.gain_sd for r in res.rows]),
            "d_reward": np.array([r.reward_after - r.reward_before for r in res.rows]),
            "changed": np.array([r.changed for r in res.rows]), "kept": np.array([r.kept for r in res.rows]),
            "texts": [r.text for r in res.rows]}
    return rows, res.cpu_seconds


def apply_rule(rows: dict, k: float, margin: float, ll_drop: float = math.inf) -> np.ndarray:
    """Which rows the acceptance rule (lower bound mean - k*sd > margin, log-likelihood drop per
    token <= ll_drop) lets through."""
    return (rows["gain_mean"] - k * rows["gain_sd"] > margin) & (rows["ll_drop"] <= ll_drop) & (rows["changed"] > 0)


def metrics(du: np.ndarray, d_reward: np.ndarray, changed: np.ndarray, accepted: np.ndarray) -> dict:
    du, d_reward, changed = (np.where(accepted, x, 0.0) for x in (du, d_reward, changed))
    return {"n": len(du), "mean_du": float(du.mean()), "se_du": float(du.std(ddof=1) / np.sqrt(len(du))),
            "frac_worse": float((du < -WORSE).mean()), "frac_better": float((du > WORSE).mean()),
            "frac_kept": float((~accepted).mean()), "mean_d_reward": float(d_reward.mean()),
            "mean_changed": float(changed.mean())}


def grid(runs: dict) -> list[dict]:
    """Every (budget, k, margin, log-likelihood drop) setting evaluated on the runs {budget: {set:
    rows}}; both sets pooled. A drop of None is no limit (math.inf)."""
    out = []
    for b, k, m, d in itertools.product(BUDGETS, PESSIMISM, MARGINS, LL_DROPS):
        per_set = {s: metrics(r["du"], r["d_reward"], r["changed"], apply_rule(r, k, m, d)) for s, r in runs[b].items()}
        pooled = {key: float(np.mean([v[key] for v in per_set.values()]))
                  for key in ("mean_du", "frac_worse", "frac_better", "frac_kept")}
        out.append({"max_changed": b, "pessimism": k, "margin": m, "max_loglik_drop": None if math.isinf(d) else d,
                    **pooled, "sets": per_set})
    return out


def choose(table: list[dict]) -> dict:
    """Highest mean Δu among settings making <= 5% of tunes worse, else the fewest made worse."""
    safe = [g for g in table if g["frac_worse"] <= 0.05]
    if safe:
        return max(safe, key=lambda g: (g["mean_du"], -g["frac_kept"]))
    return min(table, key=lambda g: (g["frac_worse"], -g["mean_du"]))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer tunes and a smaller rating pool (< 10 min)")
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent.parent / "work" / "do_no_harm"),
                    help="cache directory for the generator (reused when it holds one)")
    ap.add_argument("--max-chars", type=int, default=300, help="longest whole tune edited (generator context + 2)")
    ap.add_argument("--members", type=int, default=rewardmodels.DEFAULT_MEMBERS, help="ensemble members (bootstrap probes)")
    ap.add_argument("--recipe", default="practical", choices=sorted(rewardmodels.RECIPES),
                    help="reward-model recipe of the ensemble (practical_music: the annotated one users would use)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-minutes", type=float, default=3.0,
                    help="CPU-minutes to train the generator (once; --quick and full runs share the cached one)")
    return ap.parse_args()


def run_grid(sets, engine, ens, gen, tok, validate, rater, log):
    """The engine at every edit budget (1.0: unguarded) on both splits' tune sets; returns the runs and their CPU."""
    open_guard = lambda b: gradopt.TrustConfig(max_changed=b, pessimism=0.0, margin=-1e9)  # noqa: E731
    cpu_engine = 0.0
    runs: dict = {}
    for split in ("select", "report"):
        runs[split] = {}
        for b in BUDGETS:
            cfg = dataclasses.replace(engine, trust=None if b == 1.0 else open_guard(b))
            runs[split][b] = {}
            for name, texts in sets[split].items():
                runs[split][b][name], cpu = run(texts, ens, gen, tok, cfg, validate, rater)
                cpu_engine += cpu
            log(f"{split}: budget {b:.0%} done")
    return runs, cpu_engine


def report_chosen(sets, runs, best, chosen, engine, ens, gen, tok, validate, rater, cpu_engine: float):
    """The chosen guard run on the report split, next to the unguarded run and the offline rule's
    prediction; returns the report and `cpu_engine` plus the guarded runs' CPU."""
    report = {}
    for name, texts in sets["report"].items():
        on, cpu = run(texts, ens, gen, tok, dataclasses.replace(engine, trust=chosen), validate, rater)
        cpu_engine += cpu
        off = runs["report"][1.0][name]
        predicted = runs["report"][best["max_changed"]][name]
        accept = apply_rule(predicted, chosen.pessimism, chosen.margin, chosen.max_loglik_drop)
        expected = [t if a else s for t, a, s in zip(predicted["texts"], accept, texts)]
        report[name] = {
            "off": metrics(off["du"], off["d_reward"], off["changed"], np.ones(len(texts), bool)),
            "on": metrics(on["du"], on["d_reward"], on["changed"], ~on["kept"]),
            "on_matches_offline_rule": expected == on["texts"],
            "off_gain_sd_mean": float(np.nanmean(off["gain_sd"])),
            "off_corr_gain_mean_du": float(np.corrcoef(off["gain_mean"], off["du"])[0, 1]),
            "off_corr_ll_drop_du": float(np.corrcoef(off["ll_drop"], off["du"])[0, 1]),
        }
    return report, cpu_engine


def print_summary(report, chosen, out, q: bool, path) -> None:
    print(f"{'set':<10}{'guard':<6}{'mean Δu':>9}{'±se':>7}{'worse':>7}{'better':>7}{'kept':>6}{'Δreward':>9}{'changed':>8}")
    for name, r in report.items():
        for g in ("off", "on"):
            m = r[g]
            print(f"{name:<10}{g:<6}{m['mean_du']:>+9.3f}{m['se_du']:>7.3f}{m['frac_worse']:>7.0%}{m['frac_better']:>7.0%}"
                  f"{m['frac_kept']:>6.0%}{m['mean_d_reward']:>+9.3f}{m['mean_changed']:>8.1f}")
    c, h = report["corpus"], report["held-out"]
    print(f"do_no_harm{' (quick)' if q else ''} [{out['setup']['reward']['name']}]: guard (budget "
          f"{chosen.max_changed:.0%}, k={chosen.pessimism:g}, margin {chosen.margin:g}, "
          f"loglik drop <= {chosen.max_loglik_drop:g}, chosen on {CORPUS_SPLIT['select']}+{HELD_OUT['select']}) on "
          f"{CORPUS_SPLIT['report']} corpus / {HELD_OUT['report']}: mean Δu off {c['off']['mean_du']:+.3f} / "
          f"{h['off']['mean_du']:+.3f} -> on {c['on']['mean_du']:+.3f} / {h['on']['mean_du']:+.3f}, worse "
          f"{c['off']['frac_worse']:.0%} / {h['off']['frac_worse']:.0%} -> {c['on']['frac_worse']:.0%} / "
          f"{h['on']['frac_worse']:.0%}, better {c['on']['frac_better']:.0%} / {h['on']['frac_better']:.0%}, "
          f"kept {c['on']['frac_kept']:.0%} / {h['on']['frac_kept']:.0%}; "
          f"{out['cpu_s']['total']:.0f} CPU s; {path}")


def main() -> None:
    args = parse_args()
    q = args.quick
    n = 16 if q else 40
    c_start, wall0 = time.process_time(), time.perf_counter()
    log = start_run(args.threads)
    parts = domains.split_corpus(domains.load_abc_corpus(TRAIN_COLLECTIONS))
    cut = lambda ps: [c for c in (cut_tune(p.text, args.max_chars) for p in ps) if c]  # noqa: E731
    train, val = cut(parts["train"]), cut(parts["val"])
    work = Path(args.work)
    tok, gen, ginfo = load_or_train_generator(work / f"generator_{args.max_chars}", train, val, args.max_chars,
                                              args.gen_minutes)
    log(f"generator ready ({ginfo['generator_cpu_s']:.0f} CPU s)")
    ens, rinfo = fit_reward_ensemble(gen, tok, train, args.recipe, q, args.members, log)
    sets = tune_sets(tok, args.max_chars, n)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    validate = memo_validate(domains.ABCConstraint.from_texts(tok, train).accepts)
    engine = gradopt.AscentConfig(steps=60, check_every=10, objective=gradopt.ObjectiveWeights(lm_weight=8.0))
    runs, cpu_engine = run_grid(sets, engine, ens, gen, tok, validate, rater, log)
    tables = {split: grid(runs[split]) for split in runs}
    best = choose(tables["select"])
    drop = math.inf if best["max_loglik_drop"] is None else best["max_loglik_drop"]
    chosen = gradopt.TrustConfig(max_changed=best["max_changed"], pessimism=best["pessimism"], margin=best["margin"],
                                 max_loglik_drop=drop)
    without_ll = choose([g for g in tables["select"] if g["max_loglik_drop"] is None])
    log(f"chosen on the selection split: {chosen}")
    report, cpu_engine = report_chosen(sets, runs, best, chosen, engine, ens, gen, tok, validate, rater, cpu_engine)
    config = {"args": vars(args), "train_collections": TRAIN_COLLECTIONS, "held_out": HELD_OUT,
              "corpus_split": CORPUS_SPLIT, "tunes_per_set": n, "max_chars": args.max_chars, "engine": repr(engine),
              "edit": "pitch", "recipe": args.recipe, "budgets": BUDGETS, "pessimism": PESSIMISM, "margins": MARGINS,
              "max_loglik_drops": [None if math.isinf(d) else d for d in LL_DROPS],
              "worse_threshold": WORSE,
              "selection_rule": "max mean Δu with <= 5% made worse (else fewest worse), on the select split"}
    out = {
        "benchmark": "do_no_harm", "quick": q,
        "setup": {**ginfo, "reward": rinfo},
        "chosen": {"max_changed": chosen.max_changed, "pessimism": chosen.pessimism, "margin": chosen.margin,
                   "max_loglik_drop": best["max_loglik_drop"],
                   "select_split": {k: best[k] for k in ("mean_du", "frac_worse", "frac_better", "frac_kept")},
                   "best_without_loglik_rule": {k: without_ll[k] for k in ("max_changed", "pessimism", "margin", "mean_du",
                                                                           "frac_worse", "frac_better", "frac_kept")}},
        "report": report,
        "grid": {split: [{k: v for k, v in g.items()} for g in tables[split]] for split in tables},
        "cpu_s": {"total": time.process_time() - c_start, "engine": cpu_engine},
        "wall_s": time.perf_counter() - wall0,
    }
    path = write_result(RESULTS / f"do_no_harm{'_quick' if q else ''}.json", out, config)
    print_summary(report, chosen, out, q, path)


if __name__ == "__main__":
    main()
