"""Ascent from users' tunes against reward ensembles from several recipes, with the engine's
do-no-harm guard on (library defaults) and off: does the library keep a tune when it is unsure and
never make it worse on average? And does the ensemble's disagreement say where it is wrong?

Setting: that of benchmarks/reward_fidelity.py (tunes cut at a bar line to <= 150 characters, a
small char-level generator trained for --gen-minutes, reused from --work, the simulated rater at
agreement 0.75), except that the generator and the rating pools see only the two training
collections of benchmarks/do_no_harm.py (ryansMammoth, oneills1850), so that its held-out
collection is one nobody rated. Each recipe (default: "practical_bar_aware" and
"practical_music", the recipe reading musical annotations) rates its pool and fits a
`RewardEnsemble` of --members bootstrap probes (`rewardmodels.fit_recipe(..., members=K)`). Then
`gradopt.optimize` edits note letters only (headers frozen, `reward_recipes.edit_space(...,
"pitch")`), lm_weight 8, 60 steps, from

    corpus     held-out tunes of the training collections (split select: val, report: test), cut
    held-out   whole tunes (<= 150 characters) of a collection never rated nor trained on
               (select: miscFolk, report: airdsAirs; do_no_harm.HELD_OUT)

once with ``trust=None`` ("off", the raw engine) and once with the default
`gradopt.TrustConfig()` ("on"). Per recipe, set and guard (`do_no_harm.metrics`): mean utility
change Δu ± its standard error, fractions made worse / better (|Δu| > 0.1), share of inputs kept
unchanged, mean reward change (ensemble mean) and mean positions changed.

Calibration, per recipe: on held-out items (the split's corpus tunes, held-out collection tunes, a
pitch variant of each, and the unguarded engine's outputs), Spearman between the members' SD and
the absolute error |a·mean + b - utility|, where a, b are an affine (least-squares) fit of the
ensemble mean to the hidden utility on the rating pool's items (the training items); also the
rank-based variant |rank(mean) - rank(utility)| / n within the pooled held-out items; and, for the
mean's fidelity, the pitch-pair accuracy (how often the ensemble mean orders a pitch variant and its
parent as the utility does, pairs of equal utility left out).

The annotations overlap what the simulated rater scores, so an annotated model's Δu here is an
optimistic figure for people. Writes benchmarks/results/music_ascent[_quick][_select].json; one
summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from provenance import write_result  # first: it records the tree's git state as the run starts

import numpy as np
from scipy.stats import rankdata, spearmanr

import domains
import gradopt
import rewardmodels
from do_no_harm import HELD_OUT, TRAIN_COLLECTIONS, WORSE, metrics, run
from reward_recipes import cut_corpus, eval_corpus, eval_split, fit_recipe, load_or_train_generator, make_pool, scaled, start_run

RESULTS = Path(__file__).parent / "results"
MAX_CHARS = 150  # as benchmarks/reward_fidelity.py
CALIBRATION_ITEMS = 100  # held-out tunes per set scored for calibration (and one pitch variant of each)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.3x rating pools, 16 tunes per set")
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent.parent / "work" / "music_ascent"),
                    help="cache directory for the generator (reused when it holds one)")
    ap.add_argument("--split", choices=["select", "report"], default="report")
    ap.add_argument("--recipes", default="practical_bar_aware,practical_music",
                    help=f"comma-separated names from rewardmodels.RECIPES ({', '.join(rewardmodels.RECIPES)})")
    ap.add_argument("--members", type=int, default=rewardmodels.DEFAULT_MEMBERS, help="ensemble members (bootstrap probes)")
    ap.add_argument("--gen-minutes", type=float, default=None,
                    help="CPU-minutes to train the generator once (default 0.75 with --quick, else 4)")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def whole_tunes(tok, collection: str, n: int, seed: int) -> list[str]:
    """`n` whole in-vocabulary tunes of <= MAX_CHARS characters of `collection`, drawn with `seed`."""
    ok = [p.text for p in domains.load_abc_corpus((collection,))
          if len(p.text) <= MAX_CHARS and tok.unk_token_id not in tok(p.text)["input_ids"]]
    rng = np.random.default_rng(seed)
    return [ok[i] for i in sorted(rng.choice(len(ok), min(n, len(ok)), replace=False))]


def ascend(texts, ens, gen, tok, engine, validate, rater) -> tuple[dict, list[str]]:
    """{"off": metrics, "on": metrics} of the engine without and with the default guard, and the
    unguarded outputs (calibration items)."""
    out = {}
    for guard, trust in (("off", None), ("on", gradopt.TrustConfig())):
        rows, cpu = run(texts, ens, gen, tok, dataclasses.replace(engine, trust=trust), validate, rater)
        accepted = rows["changed"] > 0 if trust is None else ~rows["kept"]
        out[guard] = {**metrics(rows["du"], rows["d_reward"], rows["changed"], accepted), "engine_cpu_s": cpu,
                      "mean_gain_sd": float(np.nanmean(rows["gain_sd"]))}
        if trust is None:
            outputs = rows["texts"]
    return out, outputs


def calibration(ens, gen, tok, train_texts, train_u, sets: dict[str, list[str]], rater,
                parents: tuple[str, ...] = ("corpus", "held-out")) -> dict:
    """Spearman(member SD, |affine-fitted mean - utility|) per held-out set and pooled, the
    rank-based variant pooled, and the pitch-pair accuracy of `sets["pitch variants"]` against
    their parents, the sets named in `parents` in order (module docstring)."""
    def members(texts):
        ids, mask = domains.encode_batch(tok, texts, gen)
        m = ens.predict_members(ids, mask).double().numpy()  # (n, K)
        return m.mean(1), m.std(1, ddof=1)

    mean, _ = members(train_texts)
    a, b = np.polyfit(mean, train_u, 1)
    out = {"affine_fit": {"slope": float(a), "intercept": float(b), "train_items": len(train_texts),
                          "train_r": float(np.corrcoef(mean, train_u)[0, 1])}, "sets": {}}
    pooled = {"mean": [], "sd": [], "u": []}
    scored = {}  # set name -> (ensemble mean, utility)
    for name, texts in sets.items():
        m, sd = members(texts)
        u = rater.utility(texts)
        scored[name] = (m, u)
        err = np.abs(a * m + b - u)
        out["sets"][name] = {"n": len(texts), "spearman_sd_abs_error": float(spearmanr(sd, err).statistic),
                             "mean_sd": float(sd.mean()), "mean_abs_error": float(err.mean()),
                             "r_mean_utility": float(np.corrcoef(m, u)[0, 1])}
        for k, v in (("mean", m), ("sd", sd), ("u", u)):
            pooled[k].append(v)
    m, sd, u = (np.concatenate(pooled[k]) for k in ("mean", "sd", "u"))
    rank_err = np.abs(rankdata(m) - rankdata(u)) / len(m)
    out["pooled"] = {"n": len(m), "spearman_sd_abs_error": float(spearmanr(sd, np.abs(a * m + b - u)).statistic),
                     "spearman_sd_rank_error": float(spearmanr(sd, rank_err).statistic)}
    (mv, uv), (mp, up) = scored["pitch variants"], (np.concatenate(x) for x in zip(*(scored[p] for p in parents)))
    gain, du = mv - mp, uv - up
    out["pitch_pair_accuracy"] = float(np.mean(np.sign(gain[du != 0]) == np.sign(du[du != 0])))
    return out


def main() -> None:
    args = parse_args()
    q, split = args.quick, eval_split(args.split)
    names = args.recipes.split(",")
    unknown = set(names) - set(rewardmodels.RECIPES)
    if unknown:
        raise SystemExit(f"unknown recipes {sorted(unknown)}; choose from {sorted(rewardmodels.RECIPES)}")
    c_start, wall0 = time.process_time(), time.perf_counter()
    log = start_run(args.threads)
    splits = cut_corpus(MAX_CHARS, TRAIN_COLLECTIONS)
    minutes = args.gen_minutes if args.gen_minutes is not None else (0.75 if q else 4.0)
    tok, gen, setup = load_or_train_generator(Path(args.work) / f"generator_{MAX_CHARS}", splits["train"],
                                              splits["val"], MAX_CHARS, minutes)
    log(f"generator ready ({setup['generator_cpu_s']:.0f} CPU s)")
    n = 16 if q else 40
    held = HELD_OUT[split.name]
    corpus_all = eval_corpus(splits, tok, split)
    held_all = whole_tunes(tok, held, CALIBRATION_ITEMS, seed=1 if split.name == "select" else 2)
    sets = {"corpus": corpus_all[:n], "held-out": held_all[:n]}
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    validate = gradopt.memo_validate(domains.ABCConstraint.from_texts(tok, splits["train"]).accepts)
    engine = gradopt.AscentConfig(steps=60, check_every=10, objective=gradopt.ObjectiveWeights(lm_weight=8.0))
    rng = np.random.default_rng(3)
    variant = lambda t: domains.pitch_edit(t, int(rng.integers(1, 7)), rng)  # noqa: E731
    calib_base = {"corpus": corpus_all[:CALIBRATION_ITEMS], "held-out": held_all}
    calib_base["pitch variants"] = [variant(t) for t in calib_base["corpus"] + calib_base["held-out"]]
    results = {}
    for name in names:
        recipe = scaled(rewardmodels.RECIPES[name], 0.3) if q else rewardmodels.RECIPES[name]
        c0 = time.process_time()
        pool = make_pool(recipe, gen, tok, splits["train"], seed=0)
        pool_u = rater.utility(pool.texts)
        ens, info = fit_recipe(recipe, pool, pool_u, gen, tok, rater, seed=0, members=args.members)
        r = {"recipe": repr(recipe), "members": args.members, "fit_cpu_s": time.process_time() - c0,
             "items": info["items"], "sets": {}}
        outputs = []
        for set_name, texts in sets.items():
            r["sets"][set_name], out = ascend(texts, ens, gen, tok, engine, validate, rater)
            outputs += [o for o, t in zip(out, texts) if o != t]
            for g in ("off", "on"):
                m = r["sets"][set_name][g]
                log(f"{name} {set_name} guard {g}: Δu {m['mean_du']:+.3f} ± {m['se_du']:.3f}, worse "
                    f"{m['frac_worse']:.2f}, kept {m['frac_kept']:.2f}, Δreward {m['mean_d_reward']:+.3f}")
        r["calibration"] = calibration(ens, gen, tok, pool.texts, pool_u, {**calib_base, "ascent outputs": outputs},
                                       rater)
        log(f"{name} calibration: Spearman(sd, |error|) pooled {r['calibration']['pooled']['spearman_sd_abs_error']:+.3f}")
        results[name] = r
    config = {"quick": q, "split": args.split, "recipes": names, "members": args.members, "tunes_per_set": n,
              "max_chars": MAX_CHARS, "train_collections": TRAIN_COLLECTIONS, "held_out": held,
              "engine": repr(engine), "guard_on": repr(gradopt.TrustConfig()), "edit": "pitch",
              "worse_threshold": WORSE, "calibration_items": CALIBRATION_ITEMS, "gen_minutes": minutes,
              "calibration": "affine fit of the ensemble mean to utility on the rating pool; Spearman(sd, |error|)"}
    out = {"benchmark": "music_ascent", "quick": q, "split": split.name, "setup": setup, "results": results,
           "cpu_s": time.process_time() - c_start, "wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"music_ascent{'_quick' if q else ''}{'_select' if split.name == 'select' else ''}.json",
                        out, config)
    print(f"music_ascent{' (quick)' if q else ''} ({split.name}): " + "; ".join(
        f"{k} Δu corpus/held-out off {r['sets']['corpus']['off']['mean_du']:+.3f}/{r['sets']['held-out']['off']['mean_du']:+.3f}"
        f" on {r['sets']['corpus']['on']['mean_du']:+.3f}/{r['sets']['held-out']['on']['mean_du']:+.3f}, kept "
        f"{r['sets']['corpus']['on']['frac_kept']:.0%}/{r['sets']['held-out']['on']['frac_kept']:.0%}, sd-error ρ "
        f"{r['calibration']['pooled']['spearman_sd_abs_error']:+.2f}" for k, r in results.items()) + f"; {path}")


if __name__ == "__main__":
    main()
