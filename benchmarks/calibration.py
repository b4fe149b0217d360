"""Which uncertainty signal predicts the reward model's error on held-out items?

The 64-member bootstrap ensemble's SD hardly tracks its error in the full music_ascent run
(Spearman 0.02, and 0.10 after the sampler fix): with ~1,200 rated items the bootstrap's spread is small and nearly the same
everywhere, while the error is mostly bias (what the features cannot express), which no resample
of the same items shows. This benchmark measures, on the same held-out items, signals that could
see more of it, all computed from the rated data alone (never the simulated rater):

    members_sd      the library's: SD over the ensemble's bootstrap members
    leverage        the ridge probe's own posterior variance, z' (Z'WZ + λI)^-1 z (centred features)
    knn_distance    mean distance to the 10 nearest rated items in the probe's standardised features
    block_disagree  |probe on the hidden states - probe on the musical annotations|: two members that
                    differ in kind (`rewardmodels.PRACTICAL_MUSIC` reads both feature blocks)
    error_head      a ridge head predicting the probe's out-of-fold absolute residual on the rated
                    items (5 folds grouped by root parent; target |bt - oof| or its square minus the
                    Bradley-Terry posterior variance), read on new items; "+len" heads also read the
                    item's log length and its square (the held-out collection's whole tunes are longer
                    than anything rated)
    knn_residual    the mean out-of-fold |residual| of the k (10, 30) nearest rated items: a local,
                    nonlinear error estimate (the error head is linear in the features)
    log_length      log of the item's length in characters, alone
    extremeness     |ensemble mean - its mean over the rated items|: how far out the model places the
                    item (a shrunk regression errs most at the extremes, where an optimiser goes)
    backbone_sd     SD of the item's score over backbones: the ensemble's mean beside a probe of the
                    same recipe on each of `--backbones - 1` more generators (same corpus, same CPU
                    minutes, other seeds), fitted to the same Bradley-Terry scores; members that
                    differ in their features, not only in their resample of the rated items
    backbone+members  sqrt(backbone_sd² + members_sd²)

`backbone_mean` is also scored as a reward model (the mean over backbones, its own affine fit to
the utility on the rated items): its mean absolute error and r with the utility per set, beside
the ensemble's.

Setting: that of benchmarks/music_ascent.py (tunes cut at a bar line to <= 150 characters, its
generator trained on the two training collections for 4 CPU-minutes or reused from --work, the
`practical_music` recipe's rating pool rated by the simulated rater at agreement 0.75, a
64-member ensemble). Held-out items per split: corpus tunes (select: val, report: test), whole tunes
of the split's unrated collection (`do_no_harm.HELD_OUT`) and a pitch variant of each; the unguarded
engine's outputs that music_ascent adds are left out here (they need engine runs). The error is
|a·mean + b - utility|, a and b an affine fit of the ensemble mean to the utility on the rated
items, as in music_ascent. The error head's target and λ are chosen on the select split (pooled
Spearman); the report split's figures are quoted. Spearman intervals: 2,000 bootstrap resamples of
the pooled items.

Writes benchmarks/results/calibration.json (--quick: calibration_quick.json); one summary line last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from provenance import write_result  # first: it records the tree's git state as the run starts

import numpy as np
import torch
from scipy.stats import spearmanr

import domains
import rewardmodels
from do_no_harm import HELD_OUT, TRAIN_COLLECTIONS
from music_ascent import CALIBRATION_ITEMS, MAX_CHARS, whole_tunes
from reward_recipes import BENCH_PRESET, cut_corpus, eval_corpus, eval_split, load_or_train_generator, make_pool, scaled, start_run
from rewardmodels._recipes import fit_recipe, root_groups, simulate_comparisons
from rewardmodels._model import POOLING_WIDTH
from rewardmodels._train import DEFAULT_L2, _ridge, choose_l2, group_folds, standardise

RESULTS = Path(__file__).parent / "results"
HEAD_L2 = (30.0, 300.0, 3000.0)  # the error head's λ grid (chosen on select)
HEAD_TARGETS = ("abs", "sq_minus_bt_var")
NEIGHBOURS = 10


def oof_predictions(Z: np.ndarray, y: np.ndarray, w: np.ndarray, groups, lam: float, folds: int = 5,
                    seed: int = 0) -> np.ndarray:
    """Out-of-fold ridge predictions (n,) of y from Z, folds grouped by `groups` (`group_folds`)."""
    fold = group_folds(groups, folds, seed)
    out = np.empty_like(y)
    for k in range(folds):
        tr = fold != k
        beta, b = _ridge(Z[tr], y[tr], w[tr], lam)
        out[~tr] = Z[~tr] @ beta + b
    return out


def error_target(y: np.ndarray, oof: np.ndarray, bt_sd: np.ndarray, kind: str) -> np.ndarray:
    """What the error head learns per rated item: |y - oof| ("abs") or (y - oof)² minus the target's
    own posterior variance ("sq_minus_bt_var": the part of the squared residual its noise does not explain)."""
    if kind == "abs":
        return np.abs(y - oof)
    if kind == "sq_minus_bt_var":
        return (y - oof) ** 2 - bt_sd ** 2
    raise ValueError(f"error target must be one of {HEAD_TARGETS}, got {kind!r}")


def leverage(Z_train: np.ndarray, w: np.ndarray, lam: float, Z: np.ndarray) -> np.ndarray:
    """z' (Zc' W Zc + λI)^-1 z for each row z of Z, centred at the training items' weighted mean:
    the ridge probe's posterior variance up to the noise scale."""
    mz = w @ Z_train / w.sum()
    Zc = Z_train - mz
    A = np.linalg.inv(Zc.T @ (w[:, None] * Zc) + lam * np.eye(Z.shape[1]))
    Q = Z - mz
    return np.einsum("ij,jk,ik->i", Q, A, Q)


def _squared_distances(Z_train: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """(len(Z), len(Z_train)) squared Euclidean distances, clipped at 0 (rounding)."""
    return np.maximum((Z ** 2).sum(1)[:, None] + (Z_train ** 2).sum(1)[None, :] - 2 * Z @ Z_train.T, 0.0)


def knn_distance(Z_train: np.ndarray, Z: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Mean Euclidean distance from each row of Z to its k nearest rows of Z_train."""
    return np.sqrt(np.sort(_squared_distances(Z_train, Z), axis=1)[:, :k]).mean(1)


def knn_residual(Z_train: np.ndarray, residual: np.ndarray, Z: np.ndarray, k: int) -> np.ndarray:
    """Mean of `residual` over each row of Z's k nearest rows of Z_train (Euclidean)."""
    return residual[np.argsort(_squared_distances(Z_train, Z), axis=1)[:, :k]].mean(1)


def log_lengths(texts: list[str]) -> np.ndarray:
    """log of each text's length in characters (an empty text counts as 1)."""
    return np.log([max(len(t), 1) for t in texts])


def length_columns(texts: list[str], centre: float, scale: float) -> np.ndarray:
    """(n, 2): the standardised log length of each text and its square."""
    z = (log_lengths(texts) - centre) / scale
    return np.stack([z, z ** 2], 1)


def spearman_ci(signal: np.ndarray, err: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman(signal, err) with a 95% bootstrap interval over items."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(err), (resamples, len(err)))
    boot = [spearmanr(signal[i], err[i]).statistic for i in idx]
    return {"spearman": float(spearmanr(signal, err).statistic),
            "ci95": [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))], "n": len(err)}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.3x rating pool, 0.75-minute generator, 40 items per set")
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent.parent / "work" / "music_ascent"),
                    help="cache directory for the generator (music_ascent's; reused when it holds one)")
    ap.add_argument("--members", type=int, default=rewardmodels.DEFAULT_MEMBERS)
    ap.add_argument("--backbones", type=int, default=3,
                    help="generators (seeds 0..N-1) whose probes' spread is the backbone_sd signal; 1 = off")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gen-minutes", type=float, default=None,
                    help="CPU-minutes to train the generator (default 4; --quick 0.75); other than the default, "
                         "the generator has its own directory and the result its own file")
    ap.add_argument("--preset", default=BENCH_PRESET, choices=[BENCH_PRESET, *domains.PRESETS],
                    help="the generator's sizes: the benchmarks' 2x64 or a library preset (context cut to the tunes)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    q = args.quick
    c_start, wall0 = time.process_time(), time.perf_counter()
    log = start_run(args.threads)
    splits = cut_corpus(MAX_CHARS, TRAIN_COLLECTIONS)
    default_minutes = 0.75 if q else 4.0
    minutes = default_minutes if args.gen_minutes is None else args.gen_minutes
    variant = ("" if (minutes, args.preset) == (default_minutes, BENCH_PRESET)
               else f"_{args.preset}_{minutes:g}min")  # a backbone other than music_ascent's
    gdir = Path(args.work) / f"generator_{MAX_CHARS}{'_quick' if q else ''}{variant}"
    tok, gen, setup = load_or_train_generator(gdir, splits["train"], splits["val"], MAX_CHARS, minutes,
                                              preset=args.preset)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    recipe = scaled(rewardmodels.PRACTICAL_MUSIC, 0.3) if q else rewardmodels.PRACTICAL_MUSIC
    pool = make_pool(recipe, gen, tok, splits["train"], seed=0)
    u_pool = rater.utility(pool.texts)
    c0 = time.process_time()
    ens, info = fit_recipe(recipe, pool, u_pool, gen, tok, rater, seed=0, members=args.members)
    fit_cpu = time.process_time() - c0
    wins, ties = simulate_comparisons(recipe, pool, u_pool, rater, 0)  # the same draws fit_recipe made
    bt = rewardmodels.fit(wins, len(pool.texts), ties=ties if len(ties) else None)
    log(f"ensemble of {args.members} on {len(pool.texts)} rated items ({fit_cpu:.0f} CPU s)")

    def score(texts):
        ids, mask = domains.encode_batch(tok, texts, gen)
        with torch.no_grad():
            return ens.features(ids, mask).double().numpy(), ens.predict_members(ids, mask).double().numpy()

    X, M = score(pool.texts)
    y, bt_sd, groups = bt.mean, bt.sd, root_groups(len(pool.texts), pool.edits)
    w = 1.0 / bt_sd ** 2
    w = w / w.mean()
    Z, sd = standardise(X, w)
    lam, _ = choose_l2(Z, y, w, DEFAULT_L2, 5, 0, groups)  # as the ensemble's own fit
    oof = oof_predictions(Z, y, w, groups, lam)
    a, b = np.polyfit(M.mean(1), u_pool, 1)
    hidden = slice(0, POOLING_WIDTH[ens.pooling] * gen.config.n_embd)  # then the pooled annotations
    annots = slice(hidden.stop, Z.shape[1])
    block_heads = {}
    for name, sl in (("hidden", hidden), ("annotations", annots)):
        lb, _ = choose_l2(Z[:, sl], y, w, (1.0, 10.0, 100.0, 1000.0), 5, 0, groups)
        block_heads[name] = (sl, *_ridge(Z[:, sl], y, w, lb))
    heads = {(t, l): _ridge(Z, error_target(y, oof, bt_sd, t), np.ones_like(y), l)
             for t in HEAD_TARGETS for l in HEAD_L2}
    log_len = log_lengths(pool.texts)
    len_centre, len_scale = float(log_len.mean()), float(log_len.std() or 1.0)
    Zl = np.concatenate([Z, length_columns(pool.texts, len_centre, len_scale)], 1)
    len_heads = {(t, l): _ridge(Zl, error_target(y, oof, bt_sd, t), np.ones_like(y), l)
                 for t in HEAD_TARGETS for l in HEAD_L2}
    abs_residual = np.abs(y - oof)
    backbones, setup["backbones"] = [], []
    for seed in range(1, args.backbones):
        tok_k, gen_k, info_k = load_or_train_generator(gdir.with_name(f"{gdir.name}_seed{seed}"), splits["train"],
                                                       splits["val"], MAX_CHARS, minutes, seed=seed,
                                                       preset=args.preset)
        if tok_k.get_vocab() != tok.get_vocab():
            raise RuntimeError(f"backbone seed {seed}: its tokenizer differs from the main generator's")
        c0 = time.process_time()
        ids_k, mask_k = domains.encode_batch(tok, pool.texts, gen_k)
        model_k, fit_k = rewardmodels.fit_model(recipe, gen_k, tok, ids_k, mask_k, y, 1.0 / bt_sd ** 2, groups, seed=0)
        backbones.append((gen_k, model_k))
        setup["backbones"].append({"seed": seed, **info_k, "probe_l2": fit_k.get("probe_l2"),
                                   "fit_cpu_s": time.process_time() - c0})
        log(f"backbone seed {seed}: probe fitted ({time.process_time() - c0:.0f} CPU s)")

    def backbone_scores(texts, mean):
        """(n, backbones): the ensemble's mean, then each other backbone's probe."""
        cols = [mean]
        for gen_k, model_k in backbones:
            ids, mask = domains.encode_batch(tok, texts, gen_k)
            with torch.no_grad():
                cols.append(model_k.predict(ids, mask).double().numpy())
        return np.stack(cols, 1)

    centre = M.mean(1).mean()
    B_pool = backbone_scores(pool.texts, M.mean(1))
    a_bb, b_bb = np.polyfit(B_pool.mean(1), u_pool, 1)

    rng = np.random.default_rng(3)
    per_split = {}
    for split_name in ("select", "report"):
        split = eval_split(split_name)
        n = 40 if q else CALIBRATION_ITEMS
        corpus = eval_corpus(splits, tok, split)[:n]
        held = whole_tunes(tok, HELD_OUT[split_name], n, seed=1 if split_name == "select" else 2)
        sets = {"corpus": corpus, "held-out": held,
                "pitch variants": [domains.pitch_edit(t, int(rng.integers(1, 7)), rng) for t in corpus + held]}
        rows = {"err": [], "set": []}
        accuracy = {}
        for set_name, texts in sets.items():
            Xs, Ms = score(texts)
            Zs = Xs / sd
            mean = Ms.mean(1)
            u = rater.utility(texts)
            rows["err"].append(np.abs(a * mean + b - u))
            rows["set"] += [set_name] * len(texts)
            Bs = backbone_scores(texts, mean)
            accuracy[set_name] = {
                "ensemble": {"mae": float(np.abs(a * mean + b - u).mean()), "r": float(np.corrcoef(mean, u)[0, 1])},
                "backbone_mean": {"mae": float(np.abs(a_bb * Bs.mean(1) + b_bb - u).mean()),
                                  "r": float(np.corrcoef(Bs.mean(1), u)[0, 1])}}
            sig = {"members_sd": Ms.std(1, ddof=1), "leverage": leverage(Z, w, lam, Zs),
                   "knn_distance": knn_distance(Z, Zs), "extremeness": np.abs(mean - centre)}
            if backbones:
                sig["backbone_sd"] = Bs.std(1, ddof=1)
                sig["backbone+members"] = np.sqrt(sig["backbone_sd"] ** 2 + sig["members_sd"] ** 2)
            (sh, bh, ch), (sa, ba, ca) = block_heads["hidden"], block_heads["annotations"]
            sig["block_disagree"] = np.abs((Zs[:, sh] @ bh + ch) - (Zs[:, sa] @ ba + ca))
            for (t, l), (beta, c) in heads.items():
                sig[f"error_head/{t}/l{l:g}"] = Zs @ beta + c
            Zls = np.concatenate([Zs, length_columns(texts, len_centre, len_scale)], 1)
            for (t, l), (beta, c) in len_heads.items():
                sig[f"error_head/{t}+len/l{l:g}"] = Zls @ beta + c
            for k in (NEIGHBOURS, 3 * NEIGHBOURS):
                sig[f"knn_residual/k{k}"] = knn_residual(Z, abs_residual, Zs, k)
            sig["log_length"] = log_lengths(texts)
            for k, v in sig.items():
                rows.setdefault(k, []).append(v)
        err, set_of = np.concatenate(rows.pop("err")), np.array(rows.pop("set"))
        per_split[split_name] = {"pooled": {}, "sets": {s: {"n": int((set_of == s).sum())} for s in sets},
                                 "mean_abs_error": float(err.mean()), "accuracy": accuracy}
        for k, v in rows.items():
            v = np.concatenate(v)
            per_split[split_name]["pooled"][k] = spearman_ci(v, err)
            for s in sets:
                per_split[split_name]["sets"][s][k] = float(spearmanr(v[set_of == s], err[set_of == s]).statistic)
        log(f"{split_name}: " + ", ".join(f"{k} {r['spearman']:+.2f}" for k, r in per_split[split_name]["pooled"].items()))

    sel = per_split["select"]["pooled"]
    head = max((k for k in sel if k.startswith("error_head/")), key=lambda k: sel[k]["spearman"])
    best = max(sel, key=lambda k: sel[k]["spearman"])
    rep = per_split["report"]["pooled"]
    config = {"quick": q, "members": args.members, "backbones": args.backbones, "recipe": repr(recipe), "max_chars": MAX_CHARS,
              "train_collections": TRAIN_COLLECTIONS, "held_out": HELD_OUT, "items_per_set": 40 if q else CALIBRATION_ITEMS,
              "gen_minutes": minutes, "probe_l2": lam, "head_l2_grid": HEAD_L2, "head_targets": HEAD_TARGETS,
              "neighbours": NEIGHBOURS, "preset": args.preset,
              "generator_sizes": {k: getattr(gen.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")}}
    out = {"benchmark": "calibration", "quick": q, "setup": setup, "rated_items": len(pool.texts),
           "bt_corr_utility": info["bt_corr_utility"], "oof_r_bt": float(np.corrcoef(oof, y)[0, 1]),
           "splits": per_split, "chosen_error_head": head, "best_signal_on_select": best,
           "goal": {"ensemble_sd_error_spearman": rep["members_sd"]["spearman"],
                    "chosen_error_head_spearman": rep[head]["spearman"],
                    "best_signal_on_select": best, "best_signal_spearman": rep[best]["spearman"], "target": 0.3},
           "cpu_s": time.process_time() - c_start, "wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"calibration{'_quick' if q else ''}{variant}.json", out, config)
    print(f"calibration{' (quick)' if q else ''}: Spearman(signal, |error|) on report items: members' SD "
          f"{rep['members_sd']['spearman']:+.2f}, {head} (chosen on select) {rep[head]['spearman']:+.2f} "
          f"[{rep[head]['ci95'][0]:+.2f}, {rep[head]['ci95'][1]:+.2f}], best on select {best} "
          f"{rep[best]['spearman']:+.2f}; goal 0.3; {path}")


if __name__ == "__main__":
    main()
