"""Which uncertainty signal predicts the reward model's error on held-out items?

The 64-member bootstrap ensemble's SD hardly tracks its error in the full music_ascent run
(Spearman 0.02, and 0.10 after the sampler fix): with ~1,200 rated items the bootstrap's spread is small and nearly the same
everywhere, while the error is mostly bias (what the features cannot express), which no resample
of the same items shows. This benchmark measures, on the same held-out items, signals that could
see more of it, all computed from the rated data alone (never the simulated rater):

    members_sd      the library's: SD over the ensemble's bootstrap members
    subspace_sd     SD over 256 ridge probes, each on a random half of the feature columns and a
                    bootstrap resample of the items: members that differ in what they read
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

Two diagnoses beside the signals, both from the rater's side (the library can do neither):
`oracle_head`, ridge heads fitted to the *true* absolute errors of the other split's items and read
on this split's (the best λ quoted): how much of the error a linear function of the features can
rank when it is fitted to the errors themselves (a check on the error heads, not a strict bound:
it learns from a few hundred items, they from the rated pool); and `residual_terms`, the Pearson r of the signed
residual with each of the rater's weighted terms: which part of the utility the model misses.

`probe+repetition` is a what-if beside them: the ensemble's probe refitted (same ratings, λ by the
same cross-validation) with `repetition_features` appended (how many bars and half bars repeat an
earlier one, and their squares), scored like the ensemble, to see whether the repetition the
residual follows can be learned from the ratings once the model can see it; `/linear` appends the
two fractions alone (what an annotation channel pooled over bar lines would hand the probe).

`backbone_mean` is also scored as a reward model (the mean over backbones, its own affine fit to
the utility on the rated items): its mean absolute error and r with the utility per set, beside
the ensemble's.

Setting: that of benchmarks/music_ascent.py (tunes cut at a bar line to <= 150 characters, its
generator trained on the two training collections for 4 CPU-minutes or reused from --work, the
`practical_music` recipe's rating pool rated by the simulated rater at agreement 0.75, a
64-member ensemble), in `--replicates` (3) replicates: replicate r reads generator seed r, which
samples its rating pool (seed r), the comparisons drawn with seed r, its backbone_sd read from the
other generators. Figures are means over replicates (per replicate beside them); one run of one
generator moves them by about 0.1. Held-out items per split: corpus tunes (select: val, report: test), whole tunes
of the split's unrated collection (`do_no_harm.HELD_OUT`) and a pitch variant of each; the unguarded
engine's outputs that music_ascent adds are left out here (they need engine runs). The error is
|a·mean + b - utility|, a and b an affine fit of the ensemble mean to the utility on the rated
items, as in music_ascent. The error head's target and λ are chosen on the select split (pooled
Spearman); the report split's figures are quoted. Spearman intervals: 2,000 bootstrap resamples of
the pooled items (the same items in every replicate).

Writes benchmarks/results/calibration.json (--quick: calibration_quick.json); one summary line last.
"""

from __future__ import annotations

import argparse
import re
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
from rewardmodels._ensemble import bootstrap_heads
from rewardmodels._model import POOLING_WIDTH
from rewardmodels._simulated import WEIGHTS as UTILITY_WEIGHTS, music_features
from rewardmodels._train import DEFAULT_L2, _ridge, choose_l2, group_folds, standardise

RESULTS = Path(__file__).parent / "results"
HEAD_L2 = (30.0, 300.0, 3000.0)  # the error head's λ grid (chosen on select)
HEAD_TARGETS = ("abs", "sq_minus_bt_var")
NEIGHBOURS = 10
SUBSPACE_MEMBERS = 256  # members of the feature-subspace ensemble (its SD is noisy with fewer)
SUBSPACE_FRACTION = 0.5  # of the feature columns each reads
BAR_SPLIT = re.compile(r"[|:]+")  # bar lines and repeat signs, for `repetition_features`
REPETITION_WHAT_IFS = {"probe+repetition": [0, 1, 2, 3],  # the fractions and their squares
                       "probe+repetition/linear": [0, 1]}  # the fractions alone (what a pooled channel gives)
ORACLE_L2 = (10.0, 100.0, 1000.0, 10000.0)  # the oracle head's λ grid (the best is quoted)


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


def repetition_features(texts: list[str]) -> np.ndarray:
    """(n, 4) for a what-if probe: the fraction of a tune's bars that repeat an earlier bar exactly,
    the fraction whose first half repeats an earlier bar's first half, and the square of each (a
    linear probe cannot otherwise prefer a middling amount). Bars: the body split at bar lines and
    repeat signs, spaces dropped; a tune without bars gives zeros."""
    rows = []
    for t in texts:
        bars = [b for b in (re.sub(r"\s", "", x) for x in BAR_SPLIT.split(domains.abc_body(t))) if b]
        whole = halves = 0
        seen, seen_half = set(), set()
        for b in bars:
            half = b[: max(1, len(b) // 2)]
            whole, halves = whole + (b in seen), halves + (half in seen_half)
            seen.add(b)
            seen_half.add(half)
        f = np.array([whole, halves], dtype=float) / max(len(bars), 1)
        rows.append(np.concatenate([f, f ** 2]))
    return np.array(rows).reshape(len(texts), 4)


def spearman_ci(signals, errs, resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman(signal, err) with a 95% bootstrap interval over items. `signals`, `errs`: one array
    each, or lists of arrays (one per replicate, the same items in the same order): then the
    figure is the mean over replicates, each resample draws the same items for every replicate, and
    "per_replicate" lists each replicate's own figure."""
    if isinstance(signals, np.ndarray):
        signals, errs = [signals], [errs]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(errs[0]), (resamples, len(errs[0])))
    per = [float(spearmanr(s, e).statistic) for s, e in zip(signals, errs)]
    boot = [np.mean([spearmanr(s[i], e[i]).statistic for s, e in zip(signals, errs)]) for i in idx]
    out = {"spearman": float(np.mean(per)),
           "ci95": [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))], "n": len(errs[0])}
    if len(per) > 1:
        out["per_replicate"] = per
    return out


def subspace_heads(Z: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float, members: int, fraction: float,
                   seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """`members` ridge probes, member k on a random `fraction` of the feature columns (at least one)
    and a bootstrap resample of the groups (`bootstrap_heads`, seed + k) -> [(columns, β, intercept)]:
    members that differ in what they read as well as in which items they saw."""
    rng = np.random.default_rng(seed)
    heads = []
    for k in range(members):
        cols = rng.random(Z.shape[1]) < fraction
        cols[rng.integers(Z.shape[1])] = True
        beta, b = bootstrap_heads(Z[:, cols], y, w, lam, 1, seed + k, groups)
        heads.append((cols, beta[0], float(b[0])))
    return heads


def subspace_sd(heads, Z: np.ndarray) -> np.ndarray:
    """SD over `subspace_heads` members of their scores of the rows of Z."""
    return np.stack([Z[:, cols] @ beta + b for cols, beta, b in heads], 1).std(1, ddof=1)


def oracle_head(Z_fit: np.ndarray, err_fit: np.ndarray, Z: np.ndarray, err: np.ndarray) -> dict[str, float]:
    """A check, not a signal: Spearman with `err` of ridge heads fitted to the *true* absolute
    errors `err_fit` of other held-out items (which a library never knows), per λ of ORACLE_L2."""
    out = {}
    for lam in ORACLE_L2:
        beta, b = _ridge(Z_fit, err_fit, np.ones_like(err_fit), lam)
        out[f"l{lam:g}"] = float(spearmanr(Z @ beta + b, err).statistic)
    return out


def residual_terms(feats: list, residual: np.ndarray, utility: np.ndarray) -> dict:
    """Which of the simulated rater's terms the reward model misses, over the valid tunes: "utility",
    the Pearson r of the signed residual (fitted reward - utility) with the utility (negative: a
    shrunk regression overrates bad items and underrates good ones), then for each weighted term
    w_k f_k its partial r with the residual given the utility (what the residual follows beyond
    that shrinkage). `feats`: each item's `music_features` (None: not a valid tune). A diagnosis
    from the rater's side; the reward model never reads these."""
    ok = np.array([f is not None for f in feats])
    res, u = residual[ok], utility[ok]

    def given_u(v):
        return v - np.polyval(np.polyfit(u, v, 1), u)

    out = {"valid": int(ok.sum()), "n": len(feats), "utility": float(np.corrcoef(res, u)[0, 1])}
    for k, wk in UTILITY_WEIGHTS.items():
        v = given_u(np.array([wk * f[k] for f in feats if f is not None]))
        out[k] = float(np.corrcoef(v, given_u(res))[0, 1]) if v.std() > 1e-12 else None
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.3x rating pool, 0.75-minute generator, 40 items per set")
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent.parent / "work" / "music_ascent"),
                    help="cache directory for the generators (music_ascent's; reused when it holds them)")
    ap.add_argument("--members", type=int, default=rewardmodels.DEFAULT_MEMBERS)
    ap.add_argument("--backbones", type=int, default=3,
                    help="generators (seeds 0..N-1) whose probes' spread is the backbone_sd signal; 1 = off")
    ap.add_argument("--replicates", type=int, default=3,
                    help="replicate r rates a pool sampled by generator seed r (comparison seed r) and reads "
                         "that generator's features; figures are means over replicates")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gen-minutes", type=float, default=None,
                    help="CPU-minutes to train each generator (default 4; --quick 0.75); other than the default, "
                         "the generators have their own directories and the result its own file")
    ap.add_argument("--preset", default=BENCH_PRESET, choices=[BENCH_PRESET, *domains.PRESETS],
                    help="the generator's sizes: the benchmarks' 2x64 or a library preset (context cut to the tunes)")
    args = ap.parse_args()
    if args.replicates < 1 or args.backbones < 1:
        ap.error("--replicates and --backbones must be >= 1")
    return args


def replicate(r: int, gens, recipe, rater, corpus: list[str], items: dict, members: int, backbones: int, log) -> dict:
    """One replicate: generator r samples the rating pool (seed r), the simulated rater compares it
    (seed r), the ensemble and every signal are fitted on those ratings and read on `items`
    ({split: {set: texts}}). Returns per split the items' absolute and signed errors, their set,
    each signal, the standardised features (for the oracle head) and the accuracy figures, plus the
    replicate's setup."""
    tok, gen = gens[r]
    pool = make_pool(recipe, gen, tok, corpus, seed=r)
    u_pool = rater.utility(pool.texts)
    c0 = time.process_time()
    ens, info = fit_recipe(recipe, pool, u_pool, gen, tok, rater, seed=r, members=members)
    fit_cpu = time.process_time() - c0
    wins, ties = simulate_comparisons(recipe, pool, u_pool, rater, r)  # the same draws fit_recipe made
    bt = rewardmodels.fit(wins, len(pool.texts), ties=ties if len(ties) else None)
    log(f"replicate {r}: ensemble of {members} on {len(pool.texts)} rated items ({fit_cpu:.0f} CPU s)")

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
    subspace = subspace_heads(Z, y, w, lam, SUBSPACE_MEMBERS, SUBSPACE_FRACTION, seed=r, groups=groups)
    # what-if: the same probe also reading how much of the tune repeats itself
    rep_probes = {}  # name -> (repetition columns, feature SDs, (β, intercept), affine fit to the utility)
    R_pool = repetition_features(pool.texts)
    for name, cols in REPETITION_WHAT_IFS.items():
        Zr, sd_r = standardise(np.concatenate([X, R_pool[:, cols]], 1), w)
        lam_r, _ = choose_l2(Zr, y, w, DEFAULT_L2, 5, 0, groups)
        beta_r, c_r = _ridge(Zr, y, w, lam_r)
        rep_probes[name] = (cols, sd_r, (beta_r, c_r), np.polyfit(Zr @ beta_r + c_r, u_pool, 1))
    setup = {"replicate": r, "rated_items": len(pool.texts), "fit_cpu_s": fit_cpu, "probe_l2": lam,
             "bt_corr_utility": info["bt_corr_utility"], "oof_r_bt": float(np.corrcoef(oof, y)[0, 1]),
             "backbones": []}
    others = []
    for k in [k for k in range(backbones) if k != r][:backbones - 1]:
        gen_k = gens[k][1]
        c0 = time.process_time()
        ids_k, mask_k = domains.encode_batch(tok, pool.texts, gen_k)
        model_k, fit_k = rewardmodels.fit_model(recipe, gen_k, tok, ids_k, mask_k, y, 1.0 / bt_sd ** 2, groups, seed=0)
        others.append((gen_k, model_k))
        setup["backbones"].append({"seed": k, "probe_l2": fit_k.get("probe_l2"), "fit_cpu_s": time.process_time() - c0})

    def backbone_scores(texts, mean):
        """(n, backbones): the ensemble's mean, then each other backbone's probe."""
        cols = [mean]
        for gen_k, model_k in others:
            ids, mask = domains.encode_batch(tok, texts, gen_k)
            with torch.no_grad():
                cols.append(model_k.predict(ids, mask).double().numpy())
        return np.stack(cols, 1)

    centre = M.mean(1).mean()
    B_pool = backbone_scores(pool.texts, M.mean(1))
    a_bb, b_bb = np.polyfit(B_pool.mean(1), u_pool, 1)
    out = {"setup": setup}
    for split_name, sets in items.items():
        rows = {"residual": [], "utility": [], "set": [], "Z": [], "signals": {}}
        accuracy = {}
        for set_name, texts in sets.items():
            Xs, Ms = score(texts)
            Zs = Xs / sd
            mean = Ms.mean(1)
            u = rater.utility(texts)
            rows["residual"].append(a * mean + b - u)
            rows["utility"].append(u)
            rows["set"] += [set_name] * len(texts)
            rows["Z"].append(Zs)
            Bs = backbone_scores(texts, mean)
            accuracy[set_name] = {
                "ensemble": {"mae": float(np.abs(a * mean + b - u).mean()), "r": float(np.corrcoef(mean, u)[0, 1])},
                "backbone_mean": {"mae": float(np.abs(a_bb * Bs.mean(1) + b_bb - u).mean()),
                                  "r": float(np.corrcoef(Bs.mean(1), u)[0, 1])}}
            R = repetition_features(texts)
            for name, (cols, sd_r, (beta_r, c_r), (a_r, b_r)) in rep_probes.items():
                pred = (np.concatenate([Xs, R[:, cols]], 1) / sd_r) @ beta_r + c_r
                accuracy[set_name][name] = {"mae": float(np.abs(a_r * pred + b_r - u).mean()),
                                            "r": float(np.corrcoef(pred, u)[0, 1])}
            sig = {"members_sd": Ms.std(1, ddof=1), "subspace_sd": subspace_sd(subspace, Zs),
                   "leverage": leverage(Z, w, lam, Zs), "knn_distance": knn_distance(Z, Zs),
                   "extremeness": np.abs(mean - centre)}
            if others:
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
                rows["signals"].setdefault(k, []).append(v)
        residual = np.concatenate(rows["residual"])
        out[split_name] = {"err": np.abs(residual), "residual": residual,
                           "utility": np.concatenate(rows["utility"]),
                           "set": np.array(rows["set"]), "Z": np.concatenate(rows["Z"]), "accuracy": accuracy,
                           "signals": {k: np.concatenate(v) for k, v in rows["signals"].items()}}
        log(f"replicate {r}, {split_name}: " + ", ".join(
            f"{k} {spearmanr(v, out[split_name]['err']).statistic:+.2f}" for k, v in out[split_name]["signals"].items()))
    return out


def _mean_tree(trees: list):
    """The element-wise mean of nested dicts of numbers with the same keys (None where every tree
    has None; Nones are left out of a mean)."""
    if isinstance(trees[0], dict):
        return {k: _mean_tree([t[k] for t in trees]) for k in trees[0]}
    values = [t for t in trees if t is not None]
    return float(np.mean(values)) if values else None


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
    gens, setup = [], {"generators": []}
    for seed in range(max(args.backbones, args.replicates)):
        tok_k, gen_k, info_k = load_or_train_generator(gdir if seed == 0 else gdir.with_name(f"{gdir.name}_seed{seed}"),
                                                       splits["train"], splits["val"], MAX_CHARS, minutes, seed=seed,
                                                       preset=args.preset)
        if gens and tok_k.get_vocab() != gens[0][0].get_vocab():
            raise RuntimeError(f"generator seed {seed}: its tokenizer differs from seed 0's")
        gens.append((tok_k, gen_k))
        setup["generators"].append({"seed": seed, **info_k})
    tok = gens[0][0]
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    recipe = scaled(rewardmodels.PRACTICAL_MUSIC, 0.3) if q else rewardmodels.PRACTICAL_MUSIC
    rng = np.random.default_rng(3)
    items = {}
    for split_name in ("select", "report"):  # the same held-out items in every replicate
        split = eval_split(split_name)
        n = 40 if q else CALIBRATION_ITEMS
        corpus = eval_corpus(splits, tok, split)[:n]
        held = whole_tunes(tok, HELD_OUT[split_name], n, seed=1 if split_name == "select" else 2)
        items[split_name] = {"corpus": corpus, "held-out": held,
                             "pitch variants": [domains.pitch_edit(t, int(rng.integers(1, 7)), rng) for t in corpus + held]}
    runs = [replicate(r, gens, recipe, rater, splits["train"], items, args.members, args.backbones, log)
            for r in range(args.replicates)]
    setup["replicates"] = [run["setup"] for run in runs]

    per_split = {}
    for split_name, sets in items.items():
        other = "report" if split_name == "select" else "select"
        set_of = runs[0][split_name]["set"]
        errs = [run[split_name]["err"] for run in runs]
        texts = [t for ts in sets.values() for t in ts]
        feats = [music_features(t) for t in texts]
        res = {"pooled": {}, "sets": {s: {"n": int((set_of == s).sum())} for s in sets},
               "mean_abs_error": float(np.mean([e.mean() for e in errs])),
               "accuracy": _mean_tree([run[split_name]["accuracy"] for run in runs]),
               "residual_terms": _mean_tree([residual_terms(feats, run[split_name]["residual"],
                                                                      run[split_name]["utility"]) for run in runs])}
        for k in runs[0][split_name]["signals"]:
            sigs = [run[split_name]["signals"][k] for run in runs]
            res["pooled"][k] = spearman_ci(sigs, errs)
            for s in sets:
                res["sets"][s][k] = float(np.mean([spearmanr(v[set_of == s], e[set_of == s]).statistic
                                                   for v, e in zip(sigs, errs)]))
        oracle = _mean_tree([oracle_head(run[other]["Z"], run[other]["err"], run[split_name]["Z"], run[split_name]["err"])
                             for run in runs])
        res["oracle_head"] = {"by_l2": oracle, "best": max(oracle.values()), "fitted_on": other}
        per_split[split_name] = res
        log(f"{split_name}: " + ", ".join(f"{k} {r['spearman']:+.2f}" for k, r in res["pooled"].items())
            + f"; oracle head {res['oracle_head']['best']:+.2f}")

    sel = per_split["select"]["pooled"]
    head = max((k for k in sel if k.startswith("error_head/")), key=lambda k: sel[k]["spearman"])
    best = max(sel, key=lambda k: sel[k]["spearman"])
    rep = per_split["report"]["pooled"]
    config = {"quick": q, "members": args.members, "backbones": args.backbones, "replicates": args.replicates,
              "recipe": repr(recipe), "max_chars": MAX_CHARS, "train_collections": TRAIN_COLLECTIONS,
              "held_out": HELD_OUT, "items_per_set": 40 if q else CALIBRATION_ITEMS, "gen_minutes": minutes,
              "head_l2_grid": HEAD_L2, "head_targets": HEAD_TARGETS, "neighbours": NEIGHBOURS,
              "subspace": {"members": SUBSPACE_MEMBERS, "fraction": SUBSPACE_FRACTION}, "oracle_l2_grid": ORACLE_L2,
              "preset": args.preset,
              "generator_sizes": {k: getattr(gens[0][1].config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")}}
    out = {"benchmark": "calibration", "quick": q, "setup": setup,
           "rated_items": float(np.mean([run["setup"]["rated_items"] for run in runs])),
           "bt_corr_utility": float(np.mean([run["setup"]["bt_corr_utility"] for run in runs])),
           "oof_r_bt": float(np.mean([run["setup"]["oof_r_bt"] for run in runs])),
           "splits": per_split, "chosen_error_head": head, "best_signal_on_select": best,
           "goal": {"ensemble_sd_error_spearman": rep["members_sd"]["spearman"],
                    "chosen_error_head_spearman": rep[head]["spearman"],
                    "best_signal_on_select": best, "best_signal_spearman": rep[best]["spearman"],
                    "oracle_head_spearman": per_split["report"]["oracle_head"]["best"], "target": 0.3},
           "cpu_s": time.process_time() - c_start, "wall_s": time.perf_counter() - wall0}
    path = write_result(RESULTS / f"calibration{'_quick' if q else ''}{variant}.json", out, config)
    print(f"calibration{' (quick)' if q else ''}: Spearman(signal, |error|) on report items, mean of {args.replicates} "
          f"replicate(s): members' SD {rep['members_sd']['spearman']:+.2f}, subspace members' SD "
          f"{rep['subspace_sd']['spearman']:+.2f}, {head} (chosen on select) {rep[head]['spearman']:+.2f} "
          f"[{rep[head]['ci95'][0]:+.2f}, {rep[head]['ci95'][1]:+.2f}], best on select {best} "
          f"{rep[best]['spearman']:+.2f}; an oracle head fitted to the select items' true errors "
          f"{per_split['report']['oracle_head']['best']:+.2f}; goal 0.3; {path}")


if __name__ == "__main__":
    main()
