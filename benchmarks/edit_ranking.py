"""Edit ranking: does the editing objective put the edits the rater values first?

The ascent engine (benchmarks/ascent.py) climbs `reward + lm_weight * mean log-likelihood` and keeps
the best *verified* edits, so it can only gain utility when that objective ranks utility-raising
edits high. This benchmark measures that ranking directly, without any search: for `starts`
generator samples (bar-aware, drawn as ascent.py draws its starts for the same --split: the report
split by default, `reward_recipes.SPLITS`) it scores *every* single pitch
edit (one note letter changed to another, header frozen: ascent.py's default edit space) exactly
with the generator and several reward models side by side, and with the simulated rater's hidden
utility (`rewardmodels.SimulatedRater`). The starts are the first samples whose utility is above the
rater's clip floor (valid, not clipped); the fraction of the 64 samples at the floor is reported,
as ascent.py's engine spends its budget on those too.

Reward models (all fitted here on one pool of simulated ratings, `rewardmodels.PRACTICAL` with
bar-aware samples, the recipe ascent.py uses):

  practical            Bradley-Terry posterior means, ridge probe on mean-pooled features
  practical_mean_last  the same probe reading mean and last-token features
  practical_music      the probe also reading musical annotations (`rewardmodels.PRACTICAL_MUSIC`:
                       annotation input channels + pooled annotations), same pool and ratings
  ceiling_utility      the practical probe fitted to the hidden utility itself: the best this
                       probe architecture can do with perfect ratings (a reference, not usable)
  ceiling_music        practical_music fitted to the hidden utility (a reference, not usable)
  loglik_only          no reward term: the generator's log-likelihood alone

Per reward model and lm_weight, means over starts:

  top1_gain        utility gain of the edit the objective ranks first (what one exact-swap
                   step with perfect search would keep)
  top5_best_gain   the best utility gain among the objective's top 5
  best_gain        the best single edit's gain (perfect judgement; the same for every row)
  capture          top1_gain / best_gain
  rank_of_best     median rank of the best edit under the objective (0 = first)
  spearman         mean over starts of Spearman(objective change, utility change), over the
                   edits that change the utility
  plateau_fraction fraction of starts where no single edit changes the utility

Writes benchmarks/results/edit_ranking.json (--quick: edit_ranking_quick.json; --split select adds
"_select"), with its commit, machine and config (benchmarks/provenance.py); one summary line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import domains
import rewardmodels
from gradopt import exact_scores
from provenance import write_result
from reward_recipes import (PRACTICAL, edit_space, eval_samples, eval_split, fit_recipe,
                            load_or_train_generator, make_pool, run_parser, scaled, start_corpus_run)

RESULTS = Path(__file__).parent / "results"
MAX_CHARS = 150  # as benchmarks/ascent.py, so a --work directory serves both
LM_WEIGHTS = (0.0, 2.0, 8.0)  # 8 is ascent.py's default
MUSIC = rewardmodels.PRACTICAL_MUSIC  # the row reading musical annotations


def pool_fields(r) -> tuple:
    """What `make_pool` reads of a recipe: recipes with equal fields rate one pool."""
    return r.corpus, r.samples, r.char_edited, r.pitch_variants, r.sampling


def single_pitch_edits(start: list[int], tok) -> tuple[list[list[int]], list[int]]:
    """Every single pitch edit of a token row -> (rows, edited position of each row)."""
    freeze, allowed = edit_space([start], tok, "pitch")
    rows, where = [], []
    for p in (~freeze[0]).nonzero()[:, 0].tolist():
        for v in allowed[0, p].nonzero()[:, 0].tolist():
            if v != start[p]:
                rows.append(start[:p] + [v] + start[p + 1 :])
                where.append(p)
    return rows, where


def rank_stats(d_obj: np.ndarray, d_util: np.ndarray) -> dict:
    """Ranking quality of one start's edits: objective changes against utility changes."""
    order = np.argsort(-d_obj, kind="stable")
    best = int(np.argmax(d_util))
    moving = np.abs(d_util) > 1e-9
    rho = spearmanr(d_obj[moving], d_util[moving]).correlation if moving.sum() > 5 else np.nan
    return {"top1_gain": float(d_util[order[0]]), "top5_best_gain": float(d_util[order[:5]].max()),
            "best_gain": float(d_util[best]), "rank_of_best": int((d_obj > d_obj[best]).sum()),
            "spearman": float(rho)}


def parse_args() -> argparse.Namespace:
    ap = run_parser(__doc__, "reduced run (< 5 minutes): 3 starts, 0.3x rating pool",
                    "directory with generator/ to reuse (written if absent), as benchmarks/ascent.py",
                    "seeds the rating pool and fits (and offsets the starts' seed)")
    ap.add_argument("--split", choices=["select", "report"], default="report",
                    help="starts drawn as benchmarks/ascent.py draws them for this split (reward_recipes.SPLITS)")
    ap.add_argument("--starts", type=int, default=0, help="generator samples whose edits are ranked (0: 12, 3 with --quick)")
    return ap.parse_args()


def setup_generator(args, train, val, log):
    """The generator of --work (trained there, or in a fresh temporary directory, when absent)."""
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edit_ranking_"))
    tok, gen, setup = load_or_train_generator(work / "generator", train, val, MAX_CHARS, 0.75 if args.quick else 4.0)
    if domains.context_length(gen) != MAX_CHARS + 2:
        raise SystemExit(f"{work / 'generator'} has context {domains.context_length(gen)}, not {MAX_CHARS + 2}")
    setup["work"] = str(work)
    log(f"generator ready ({setup['generator_cpu_s']:.0f} CPU s)")
    return tok, gen, setup


def fit_reward_models(args, gen, tok, train, log):
    """The reward models (practical, its mean+last pooling, the music recipe, their utility
    ceilings) fitted on one rated pool; returns them, what each fit reports, and the rater."""
    recipe = dataclasses.replace(scaled(PRACTICAL, 0.3) if args.quick else PRACTICAL, sampling="bar-aware")
    music = scaled(MUSIC, 0.3) if args.quick else MUSIC
    if pool_fields(music) != pool_fields(recipe):
        raise SystemExit(f"the music recipe rates another pool than {recipe}: {music}")
    pool = make_pool(recipe, gen, tok, train, args.seed)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=args.seed)
    utility = rater.utility(pool.texts)
    variants = {"practical": recipe, "practical_mean_last": dataclasses.replace(recipe, pooling="mean+last"),
                "practical_music": music, "ceiling_utility": dataclasses.replace(recipe, targets="utility"),
                "ceiling_music": dataclasses.replace(music, targets="utility")}
    models, fits = {}, {}
    for name, rec in variants.items():
        models[name], info = fit_recipe(rec, pool, utility, gen, tok, rater, args.seed)
        fits[name] = {"recipe": repr(rec), "probe_l2": info.get("probe_l2"), "items": info["items"],
                      "comparisons": info["comparisons"]}
    log(f"reward models fitted on {len(pool.texts)} rated items")
    return models, fits, rater


def rank_start(i, start, u_start, models, gen, tok, rater, stats) -> dict:
    """Every single pitch edit of `start` ranked by each objective (rank statistics appended to
    `stats`); returns the start's own line."""
    rows, where = single_pitch_edits(list(start), tok)
    d_util = rater.utility([domains.decode(tok, r) for r in rows]) - u_start
    n_tok = max(len(start) - 1, 1)
    d_ll = None
    for name, rm in models.items():
        r0, ll0, _ = exact_scores(rm, gen, [list(start)], tok.pad_token_id, 0.0)
        r1, ll1, _ = exact_scores(rm, gen, rows, tok.pad_token_id, 0.0)
        d_ll = (ll1 - ll0[0]) / n_tok
        for w in LM_WEIGHTS:
            stats.setdefault(f"{name}/lm{w:g}", []).append(rank_stats(r1 - r0[0] + w * d_ll, d_util))
    stats.setdefault("loglik_only", []).append(rank_stats(d_ll, d_util))
    best = int(np.argmax(d_util))
    return {"sample": i, "utility": float(u_start), "edits": len(rows),
            "edits_changing_utility": int((np.abs(d_util) > 1e-9).sum()),
            "best_gain": float(d_util[best]),
            "best_edit_is_last_note": bool(where[best] == max(where)) if d_util[best] > 0 else None}


def rankings(stats: dict[str, list[dict]]) -> dict:
    """Each objective's rank statistics averaged over starts."""
    rows_out = {}
    for key, s in stats.items():
        top1 = float(np.mean([x["top1_gain"] for x in s]))
        best = float(np.mean([x["best_gain"] for x in s]))
        rows_out[key] = {"top1_gain": top1, "top5_best_gain": float(np.mean([x["top5_best_gain"] for x in s])),
                         "best_gain": best, "capture": top1 / best if best > 0 else None,
                         "rank_of_best": float(np.median([x["rank_of_best"] for x in s])),
                         "spearman": float(np.nanmean([x["spearman"] for x in s]))
                         if any(np.isfinite(x["spearman"]) for x in s) else None}
    return rows_out


def print_summary(rows_out, out, n_starts: int, plateau: float, q: bool, path) -> None:
    print(f"{'objective':<32}{'top1 gain':>10}{'top5 best':>10}{'best':>7}{'capture':>9}{'rank best':>10}{'spearman':>9}")
    for key, r in rows_out.items():
        cap = "-" if r["capture"] is None else f"{r['capture']:.2f}"
        rho = "-" if r["spearman"] is None else f"{r['spearman']:.2f}"
        print(f"{key:<32}{r['top1_gain']:>10.3f}{r['top5_best_gain']:>10.3f}{r['best_gain']:>7.3f}{cap:>9}"
              f"{r['rank_of_best']:>10.0f}{rho:>9}")
    p8, m8, c8 = rows_out["practical/lm8"], rows_out["practical_music/lm8"], rows_out["ceiling_utility/lm8"]
    cap = lambda r: "-" if r["capture"] is None else f"{r['capture']:.2f}"  # noqa: E731
    print(f"edit_ranking{' (quick)' if q else ''}: {n_starts} starts, best single pitch edit {p8['best_gain']:+.3f} "
          f"utility; the objective's first pick {p8['top1_gain']:+.3f} (practical, lm 8, capture {cap(p8)}), "
          f"{m8['top1_gain']:+.3f} (practical_music, capture {cap(m8)}), "
          f"{c8['top1_gain']:+.3f} (ceiling fitted to the utility); plateau starts {plateau:.0%}, samples at the "
          f"utility floor {out['samples_at_floor_fraction']:.0%}; {path}")


def main() -> None:
    args = parse_args()
    q = args.quick
    n_starts = args.starts or (3 if q else 12)
    wall0 = time.perf_counter()
    log, splits = start_corpus_run(args.threads, MAX_CHARS)
    train, val = splits["train"], splits["val"]
    tok, gen, setup = setup_generator(args, train, val, log)
    models, fits, rater = fit_reward_models(args, gen, tok, train, log)

    constraint = domains.ABCConstraint.from_texts(tok, train)
    split = eval_split(args.split)
    samples = eval_samples(gen, tok, 64, split, constraint, seed=args.seed)
    u_samples = rater.utility([domains.decode(tok, s) for s in samples])
    for name, rm in models.items():
        fits[name]["start_corr_reward_utility"] = float(np.corrcoef(exact_scores(rm, gen, samples, tok.pad_token_id, 0.0)[0],
                                                                    u_samples)[0, 1])
    floor = rewardmodels.FLOOR  # the rater clips valid tunes' utilities here (invalid ones: INVALID, lower)
    above = [i for i in range(len(samples)) if u_samples[i] > floor + 1e-9][:n_starts]
    if not above:
        raise SystemExit("every generator sample is at the rater's utility floor: no start to rank edits of")
    per_start: list[dict] = []
    stats: dict[str, list[dict]] = {}
    for k, i in enumerate(above):
        per_start.append(rank_start(i, samples[i], u_samples[i], models, gen, tok, rater, stats))
        log(f"start {k + 1}/{len(above)} (sample {i}): {per_start[-1]['edits']} edits, best single edit "
            f"{per_start[-1]['best_gain']:+.2f}")

    rows_out = rankings(stats)
    plateau = float(np.mean([p["edits_changing_utility"] == 0 for p in per_start]))
    improvable = [p for p in per_start if p["best_gain"] > 0]
    out = {
        "benchmark": "edit_ranking", "quick": q, "split": split.name,
        "setup": setup, "starts": len(above),
        "samples_at_floor_fraction": float(np.mean(u_samples <= floor + 1e-9)), "max_chars": MAX_CHARS, "lm_weights": list(LM_WEIGHTS),
        "reward_models": fits, "rankings": rows_out, "plateau_fraction": plateau,
        "best_edit_is_last_note_fraction": (float(np.mean([p["best_edit_is_last_note"] for p in improvable]))
                                            if improvable else None),
        "per_start": per_start, "total_wall_s": time.perf_counter() - wall0,
    }
    path = RESULTS / f"edit_ranking{'_quick' if q else ''}{'_select' if split.name == 'select' else ''}.json"
    config = {**vars(args), "starts": n_starts, "split": dataclasses.asdict(split), "max_chars": MAX_CHARS,
              "lm_weights": list(LM_WEIGHTS), "gen_minutes": 0.75 if q else 4.0,
              "reward_models": {k: v["recipe"] for k, v in fits.items()}}
    write_result(path, out, config)
    print_summary(rows_out, out, len(above), plateau, q, path)


if __name__ == "__main__":
    main()
