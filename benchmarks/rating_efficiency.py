"""Rating efficiency: held-out pairwise accuracy of a reward model vs the number of ratings.

Methods (same network, same final training budget, same simulated rater):
  bt_racing     Bayesian BT (prior mean from the current reward model's predictions) + racing
                pair selection, reward model regressed on BT posterior means (precision-weighted)
  bt_random     random pairs, BT fit, same regression
  pairwise      random pairs (the same ones bt_random rated), -log σ(r_w - r_l) on the raw pairs

Items: ABC tunes from the corpus (<= MAX_CHARS characters), corrupted copies of other corpus tunes
(random note/accidental/octave/deletion/bar-repeat edits, a spread of quality) and samples of a
small generator trained briefly on the corpus here. The reward model is initialised from that
generator. A disjoint held-out pool is scored by each trained model and compared with *fresh*
comparisons by the simulated rater (ties excluded); the accuracy of the hidden utility itself on
those comparisons is the ceiling. bt_racing also spends extra compute on intermediate reward
models (to supply covariates); that time is recorded separately.

--model probe_music swaps the fine-tuned network for the annotated probe (`rewardmodels.PRACTICAL_MUSIC`'s
model part: a closed-form ridge head on the frozen generator's mean-pooled hidden states and pooled
musical annotations, `rewardmodels.fit_head` as `rewardmodels.fit_model` runs it, λ by 5-fold
cross-validation; the frozen features are computed once per item, `FeatureCache`); the pairwise baseline
is then a logistic regression on the same standardised features over the same rated pairs
(`rewardmodels.fit_pairwise_head`: ties as half wins, λ by 5-fold cross-validation over the pairs).
It also runs bt_uncertainty and bt_infogain (as bt_racing with `next_pairs(..., "uncertainty")` or
"infogain"). Results go to
rating_efficiency[_quick]_probe_music.json.

Writes benchmarks/results/rating_efficiency.json (or rating_efficiency_quick.json with --quick)
as {method: {n_ratings: mean_accuracy}} plus per-seed values, with the commit, machine and config
(benchmarks/provenance.py), and prints one summary line last. --seed-base B (a selection run: seeds
B, B+1, ..., another train/test item split) adds "_seedbaseB" to the file name. --jobs K runs the
seeds in K forked processes (same results, less wall time).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import domains
import rewardmodels as rm
from provenance import write_result

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache"
MAX_CHARS = 254  # + <bos>/<eos> = the reward model's 256-token context
PRESET = domains.GeneratorPreset(n_layer=2, n_head=4, n_embd=64, n_positions=256)
N_POOL = 1200  # items built once (cached generator); --quick rates a random subset of them


def build_pool(n_items: int, seed: int = 0, progress=print, gen_minutes: float = 1.5):
    """(texts, origins, generator, tokenizer): corpus tunes, corrupted tunes, generator samples."""
    corpus = [p.text for p in domains.load_abc_corpus() if len(p.text) <= MAX_CHARS]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(corpus))
    tok = domains.build_char_tokenizer(corpus)
    gen_dir = CACHE / f"generator_{n_items}_{seed}_{gen_minutes}"  # trained on corpus tunes outside the pool
    gen = domains.build_generator(PRESET, tok, seed=seed)
    t0 = time.time()
    if (gen_dir / "config.json").exists():
        gen = domains.load_generator(gen_dir)
    else:
        train_texts = [corpus[i] for i in order[n_items:]]
        domains.train_generator(gen, tok, train_texts, [], domains.GeneratorTrainConfig(
            max_steps=400, cpu_minutes=gen_minutes, batch_size=16, lr=3e-3, warmup=40, eval_every=400, seed=seed),
            gen_dir, progress=False)
        gen = domains.load_generator(gen_dir)
    progress(f"generator ready ({time.time() - t0:.0f} s)")
    n_gen, n_bad = n_items // 6, n_items // 3
    n_corpus = n_items - n_gen - n_bad
    texts = [corpus[i] for i in order[:n_corpus]]
    origins = ["corpus"] * n_corpus
    k = n_corpus
    while len(texts) < n_corpus + n_bad:
        t = domains.corrupt(corpus[order[k]], rng, int(rng.geometric(0.3)))
        k += 1
        if len(t) <= MAX_CHARS and t not in texts:
            texts.append(t)
            origins.append("corrupted")
    samples = domains.sample(gen, tok, 2 * n_gen, domains.SampleConfig(max_new_tokens=MAX_CHARS, temperature=0.9),
                             seed=seed)
    for s in samples:
        if len(texts) < n_items and s.strip() and s not in texts and len(s) <= MAX_CHARS:
            texts.append(s)
            origins.append("sample")
    return texts, origins, gen, tok


def utilities(rater: rm.SimulatedRater, texts: list[str]) -> np.ndarray:
    """The rater's utilities, cached on disk per version of the rater's source (a changed rater
    never reads utilities an older one computed)."""
    import hashlib
    import inspect

    version = hashlib.sha256(inspect.getsource(inspect.getmodule(rm.SimulatedRater)).encode()).hexdigest()[:12]
    path = CACHE / f"utility_{version}.json"
    if path.exists():
        rater.cache.update(json.loads(path.read_text()))
    known = len(rater.cache)
    u = rater.utility(texts)
    if len(rater.cache) > known:  # written whole, then renamed: parallel seeds never read half a file
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rater.cache))
        os.replace(tmp, path)
    return u


MODELS = ("network", "probe_music")
PROBE_RECIPE = rm.PRACTICAL_MUSIC  # only its model part (pooling, probe fit, annotations) is used here


class FeatureCache:
    """The probe's pooled features (frozen backbone + pooled annotations: fixed per item) of every
    token row of ids (n, t), computed once; probes built by `probe_model` look their rows up here
    instead of running the backbone again (the same values up to float rounding)."""

    def __init__(self, gen, tok, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.X = probe_model(gen, tok, None).features(ids, mask)  # (n, w)
        self.row = {ids[i].numpy().tobytes(): i for i in range(len(ids))}

    def features(self, ids: torch.Tensor, attention_mask=None, batch_size: int = 64) -> torch.Tensor:
        """Cached features of the rows of ids (b, t) -> (b, w); a row not cached raises KeyError."""
        return self.X[[self.row[r.tobytes()] for r in ids.numpy()]]


def probe_model(gen, tok, cache: FeatureCache | None) -> rm.RewardModel:
    """An unfitted annotated probe (`PROBE_RECIPE`'s pooling and annotations) from `gen`; with a
    `cache`, its `features` and `predict` read the cached features (the head is applied to them)."""
    model = rm.RewardModel.from_generator(gen, pooling=PROBE_RECIPE.pooling, annotations="abc",
                                          token_texts=rm.token_texts(tok), annotation_features=True)
    if cache is not None:
        def predict(ids, attention_mask=None, batch_size=64, raw=False):
            with torch.no_grad():
                r = model.head(cache.features(ids).to(model.head.weight.dtype)).squeeze(-1)
            return r if raw else (r - model.norm_mean) / model.norm_std

        model.features, model.predict = cache.features, predict
    return model.eval()


def train_model(gen, ids, mask, cfg, *, targets=None, weights=None, pairs=None, ties=None, kind="network", tok=None,
                cache: FeatureCache | None = None):
    """A reward model from `gen`: the fine-tuned network (kind "network") or the annotated probe
    ("probe_music": what `rm.fit_model(PROBE_RECIPE, ...)` fits, on `cache`'s features), regressed on
    BT targets (precision weights) or fitted on [winner, loser] pairs."""
    if kind == "probe_music":
        torch.manual_seed(cfg.seed)
        model = probe_model(gen, tok, cache)
        if pairs is not None:
            rm.fit_pairwise_head(model, ids, mask, pairs, ties, seed=cfg.seed)
        else:
            rm.fit_head(model, ids, mask, targets, weights, seed=cfg.seed, groups=np.arange(len(ids)))
        return model.eval()
    model = rm.RewardModel.from_generator(gen)
    if pairs is not None:
        rm.train_pairwise(model, ids, mask, pairs, ties, cfg)
    else:
        rm.train_reward_model(model, ids, mask, targets, weights, cfg)
    return model


def split_outcomes(pairs: np.ndarray, winners: list[str]):
    """[winner, loser] rows and tie rows from rated (i, j) pairs."""
    w = np.array(winners)
    wins = np.where((w == "a")[:, None], pairs, pairs[:, ::-1])[w != "tie"]
    return wins.reshape(-1, 2), pairs[w == "tie"].reshape(-1, 2)


def fit_and_regress(gen, ids, mask, pairs, winners, cfg, covariates=None, fitter=train_model):
    wins, ties = split_outcomes(pairs, winners)
    scores = rm.fit(wins, len(ids), ties=ties, covariates=covariates, exact_sd_limit=0)
    rated = np.unique(pairs)
    return fitter(gen, ids[rated], mask[rated], cfg, targets=scores.mean[rated],
                       weights=1.0 / scores.sd[rated] ** 2)


def racing_ratings(gen, ids, mask, texts, rater, n, cfg, seed, batch=10, strategy="racing", fitter=train_model):
    """Rate `n` pairs: 25% random, then `strategy` (`rewardmodels.next_pairs`) from BT refits every
    `batch` pairs, with the prior mean from a reward model retrained (cfg.steps // 4 steps) at
    25/50/75% of the budget."""
    rng = np.random.default_rng(seed)
    n0 = max(batch, n // 4)
    pairs = rm.next_pairs(rm.Scores(mean=np.zeros(len(ids)), sd=np.ones(len(ids)), coef=np.zeros(0)), n0,
                          "random", seed=int(rng.integers(1 << 30)))
    winners = rater.simulate(texts, pairs)
    checkpoints = [n // 2, 3 * n // 4]  # retrain the covariate model once these many are rated
    covariates, extra_seconds = None, 0.0
    small = rm.RewardTrainConfig(**{**cfg.__dict__, "steps": max(10, cfg.steps // 4)})
    while len(pairs) < n:
        if covariates is None or (checkpoints and len(pairs) >= checkpoints[0]):
            t0 = time.perf_counter()
            model = fit_and_regress(gen, ids, mask, pairs, winners, small, covariates, fitter)
            pred = model.predict(ids, mask).numpy()
            covariates = ((pred - pred.mean()) / (pred.std() + 1e-9))[:, None]
            extra_seconds += time.perf_counter() - t0
            checkpoints = [c for c in checkpoints if c > len(pairs)]
        wins, ties = split_outcomes(pairs, winners)
        scores = rm.fit(wins, len(ids), ties=ties, covariates=covariates, exact_sd_limit=0)
        new = rm.next_pairs(scores, min(batch, n - len(pairs)), strategy, seed=int(rng.integers(1 << 30)),
                            exclude=pairs)
        if len(new) == 0:
            break
        pairs = np.concatenate([pairs, new])
        winners = winners + rater.simulate(texts, new)
    return pairs, winners, covariates, extra_seconds


def accuracy(scores: np.ndarray, pairs: np.ndarray, winners: list[str]) -> float:
    w = np.array(winners)
    keep = w != "tie"
    pred_a = scores[pairs[:, 0]] > scores[pairs[:, 1]]
    return float(np.mean(pred_a[keep] == (w[keep] == "a")))


METHODS = ("bt_racing", "bt_random", "pairwise")
# active methods -> their `next_pairs` strategy
ACTIVE = {"bt_racing": "racing", "bt_uncertainty": "uncertainty", "bt_infogain": "infogain"}


def methods_for(model: str) -> tuple[str, ...]:
    """The methods run with reward model `model` (bt_uncertainty and bt_infogain only with the probe:
    it is cheap)."""
    return METHODS if model == "network" else ("bt_racing", "bt_uncertainty", "bt_infogain", "bt_random", "pairwise")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sizes, 1 seed, smaller pools (< 5 min)")
    ap.add_argument("--agreement", type=float, default=0.75, help="simulated rater agreement")
    ap.add_argument("--steps", type=int, default=0, help="reward-model training steps (0 = default)")
    ap.add_argument("--model", choices=MODELS, default="network",
                    help="reward model: the fine-tuned network (default) or the annotated probe (probe_music)")
    ap.add_argument("--seeds", type=int, default=0, help="number of seeds (0 = 1 with --quick, else 3)")
    ap.add_argument("--sizes", default="", help="comma-separated numbers of ratings (default: 1000,3000 with "
                    "--quick, else 100,300,1000,3000); other than the default adds '_n<sizes>' to the file name")
    ap.add_argument("--methods", default="", help="comma-separated subset of the model's methods (default: all); "
                    "a subset adds '_<methods>' to the file name")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel in this many processes")
    ap.add_argument("--seed-base", type=int, default=0,
                    help="first seed (seeds are seed-base, seed-base + 1, ...); it also draws the train/test "
                         "item split, so selection runs (e.g. --seed-base 100) hold out other items than the "
                         "report run (0)")
    return ap.parse_args()


def load_pool(quick: bool, n_train: int, n_test: int, log, split_seed: int = 0):
    """The rated items (a random subset of the cached pool, drawn with seed 123 + `split_seed`; the
    first `n_train` are the training items), encoded, with their hidden utilities."""
    texts, origins, gen, tok = build_pool(N_POOL, progress=log, gen_minutes=0.75 if quick else 1.5)
    keep = np.random.default_rng(123 + split_seed).permutation(len(texts))[: n_train + n_test]
    texts, origins = [texts[i] for i in keep], [origins[i] for i in keep]
    ids, mask = domains.encode_batch(tok, texts, gen)
    u = utilities(rm.SimulatedRater(), texts)
    log(f"pool: {len(texts)} items ({', '.join(f'{o}={origins.count(o)}' for o in sorted(set(origins)))}), "
        f"{np.mean(u == rm.INVALID):.0%} invalid")
    return texts, origins, gen, tok, ids, mask, u


def measure_size(n, seed, args, cfg, pool, record, tally, log) -> None:
    """The three methods trained on `n` simulated ratings of the training items with rater `seed`."""
    gen, ids, mask, tr, tr_texts, n_train, fitter = pool
    rater = rm.SimulatedRater(args.agreement, seed=seed)
    utilities(rater, tr_texts)
    cfg_s = rm.RewardTrainConfig(**{**cfg.__dict__, "seed": seed})
    # random pairs, shared by bt_random and pairwise
    pairs = rm.next_pairs(rm.Scores(mean=np.zeros(n_train), sd=np.ones(n_train), coef=np.zeros(0)), n,
                          "random", seed=1000 * seed + n)
    winners = rater.simulate(tr_texts, pairs)
    if "bt_random" in tally["per_seed"]:
        t0 = time.perf_counter()
        model = fit_and_regress(gen, ids[tr], mask[tr], pairs, winners, cfg_s, fitter=fitter)
        tally["train_seconds"]["bt_random"] += time.perf_counter() - t0
        record("bt_random", n, model)
    if "pairwise" in tally["per_seed"]:
        wins, ties = split_outcomes(pairs, winners)
        t0 = time.perf_counter()
        model = fitter(gen, ids[tr], mask[tr], cfg_s, pairs=wins, ties=ties)
        tally["train_seconds"]["pairwise"] += time.perf_counter() - t0
        record("pairwise", n, model)
    rated = {}
    for method in [m for m in ACTIVE if m in tally["per_seed"]]:
        r_pairs, r_win, cov, extra_s = racing_ratings(gen, ids[tr], mask[tr], tr_texts, rater, n, cfg_s, seed,
                                                      strategy=ACTIVE[method], fitter=fitter)
        t0 = time.perf_counter()
        model = fit_and_regress(gen, ids[tr], mask[tr], r_pairs, r_win, cfg_s, cov, fitter)
        tally["train_seconds"][method] += time.perf_counter() - t0
        if method == "bt_racing":
            tally["extra"][str(n)].append(extra_s)
        record(method, n, model)
        rated[method] = len(np.unique(r_pairs))
    log(f"seed {seed} n={n}: " + ", ".join(f"{m}={v[str(n)][-1]:.3f}" for m, v in tally["per_seed"].items())
        + f" (ceiling {tally['ceiling'][-1]:.3f}; items rated: "
        + ", ".join(f"{m} {k}" for m, k in rated.items()) + f", random {len(np.unique(pairs))})")


def measure_seed(seed, sizes, args, cfg, pool, te, te_texts, u, tally, log) -> None:
    """One seed: fresh held-out comparisons, the ceiling on them, then every size."""
    gen, ids, mask = pool[:3]
    n_test = len(te)
    eval_rater = rm.SimulatedRater(args.agreement, seed=10_000 + seed)
    utilities(eval_rater, te_texts)
    ev_pairs = rm.next_pairs(rm.Scores(mean=np.zeros(n_test), sd=np.ones(n_test), coef=np.zeros(0)),
                             3000, "random", seed=50 + seed)
    ev_win = eval_rater.simulate(te_texts, ev_pairs)
    tally["ceiling"].append(accuracy(u[te], ev_pairs, ev_win))
    true_win = ["tie" if u[te][a] == u[te][b] else ("a" if u[te][a] > u[te][b] else "b") for a, b in ev_pairs]

    def record(method, n, model):
        pred = model.predict(ids[te], mask[te]).numpy()
        tally["per_seed"][method][str(n)].append(accuracy(pred, ev_pairs, ev_win))
        tally["true_acc"][method][str(n)].append(accuracy(pred, ev_pairs, true_win))

    for n in sizes:
        measure_size(n, seed, args, cfg, pool, record, tally, log)


def new_tally(methods, sizes) -> dict:
    """Empty per-seed records of one run: accuracies, covariate seconds, ceilings, training seconds."""
    return {"per_seed": {m: {str(n): [] for n in sizes} for m in methods},
            "true_acc": {m: {str(n): [] for n in sizes} for m in methods},  # vs the noiseless utility order
            "extra": {str(n): [] for n in sizes}, "ceiling": [],
            "train_seconds": {m: 0.0 for m in methods}}


def merge_tallies(tallies: list[dict]) -> dict:
    """One tally from per-seed tallies (in seed order): lists concatenated, seconds summed."""
    out = tallies[0]
    for t in tallies[1:]:
        for key in ("per_seed", "true_acc"):
            for m, by_n in t[key].items():
                for n, v in by_n.items():
                    out[key][m][n] += v
        for n, v in t["extra"].items():
            out["extra"][n] += v
        out["ceiling"] += t["ceiling"]
        for m, v in t["train_seconds"].items():
            out["train_seconds"][m] += v
    return out


_SEED_JOB = None  # the per-seed function of `run_seeds`, inherited by forked workers


def _run_seed(seed: int) -> dict:
    return _SEED_JOB(seed)


def run_seeds(job, seeds: list[int], jobs: int) -> list[dict]:
    """[job(seed) for seed in seeds], in `jobs` forked processes when jobs > 1 (each seed's results
    depend only on its seed, so they equal a sequential run's)."""
    global _SEED_JOB
    if jobs <= 1:
        return [job(s) for s in seeds]
    import multiprocessing

    _SEED_JOB = job
    with multiprocessing.get_context("fork").Pool(min(jobs, len(seeds))) as workers:
        return workers.map(_run_seed, seeds, chunksize=1)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    t_start = time.time()
    default_sizes = [1000, 3000] if args.quick else [100, 300, 1000, 3000]
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else default_sizes
    if min(sizes) < 1:
        raise ValueError(f"--sizes must be positive numbers of ratings, got {args.sizes!r}")
    if args.seed_base < 0:
        raise ValueError(f"--seed-base must be >= 0, got {args.seed_base}")
    seeds = list(range(args.seed_base, args.seed_base + (args.seeds or (1 if args.quick else 3))))
    methods = methods_for(args.model)
    if args.methods:
        unknown = set(args.methods.split(",")) - set(methods)
        if unknown:
            raise ValueError(f"--methods: {sorted(unknown)} not among {methods} (model {args.model})")
        methods = tuple(m for m in methods if m in args.methods.split(","))
    n_train, n_test = (300, 150) if args.quick else (900, 300)
    steps = args.steps or (100 if args.quick else 200)
    cfg = rm.RewardTrainConfig(steps=steps, batch_size=16, lr=1e-3, warmup=20)
    log = lambda msg: print(f"[{time.time() - t_start:6.0f} s] {msg}", flush=True)  # noqa: E731

    texts, origins, gen, tok, ids, mask, u = load_pool(args.quick, n_train, n_test, log, args.seed_base)
    tr, te = np.arange(n_train), np.arange(n_train, n_train + n_test)
    tr_texts, te_texts = [texts[i] for i in tr], [texts[i] for i in te]
    cache = FeatureCache(gen, tok, ids, mask) if args.model == "probe_music" else None
    fitter = functools.partial(train_model, kind=args.model, tok=tok, cache=cache)
    pool = (gen, ids, mask, tr, tr_texts, n_train, fitter)

    def one_seed(seed: int) -> dict:
        t = new_tally(methods, sizes)
        measure_seed(seed, sizes, args, cfg, pool, te, te_texts, u, t, log)
        return t

    tally = merge_tallies(run_seeds(one_seed, seeds, args.jobs))
    per_seed, true_acc, ceiling = tally["per_seed"], tally["true_acc"], tally["ceiling"]

    mean = {m: {n: float(np.mean(v)) for n, v in per_seed[m].items()} for m in methods}
    out = {
        "benchmark": "rating_efficiency", "quick": args.quick, "metric": "held-out pairwise accuracy vs fresh "
        "simulated comparisons (ties excluded)",
        **mean, "per_seed": per_seed,
        "true_order_accuracy": {m: {n: float(np.mean(v)) for n, v in true_acc[m].items()} for m in methods},
        "true_order_accuracy_per_seed": true_acc, "ceiling_true_utility": {"mean": float(np.mean(ceiling)), "per_seed": ceiling},
        "racing_extra_seconds_for_covariates": tally["extra"], "final_training_seconds_total": tally["train_seconds"],
        "setup": {"sizes": sizes, "seeds": seeds, "n_train_pool": n_train, "n_test_pool": n_test,
                  "eval_pairs": 3000, "agreement": args.agreement, "train_config": cfg.__dict__,
                  "network": PRESET.__dict__, "pool_origins": {o: origins.count(o) for o in set(origins)},
                  "invalid_fraction": float(np.mean(u == rm.INVALID))},
        "wall_seconds": time.time() - t_start,
    }
    hyp = mean.get("bt_racing", {}).get("1000"), mean.get("pairwise", {}).get("3000")
    out["hypothesis_a1000_ge_c3000"] = None if None in hyp else bool(hyp[0] >= hyp[1])
    active = [m for m in ACTIVE if m in methods]
    if active and "1000" in mean.get(active[0], {}) and "3000" in mean.get("pairwise", {}):  # the essay's claim
        best = max(active, key=lambda m: mean[m]["1000"])
        out["best_active_1000_vs_pairwise_3000"] = {
            "method": best, "active_at_1000": mean[best]["1000"], "pairwise_at_3000": mean["pairwise"]["3000"],
            "holds": bool(mean[best]["1000"] >= mean["pairwise"]["3000"])}
    if args.model != "network":
        out["setup"]["reward_model"] = {"model": args.model, "recipe": dataclasses.asdict(PROBE_RECIPE)}
    suffix = "" if args.model == "network" else f"_{args.model}"
    suffix += f"_seedbase{args.seed_base}" if args.seed_base else ""  # a selection run keeps the report's file
    suffix += f"_n{'-'.join(map(str, sizes))}" if sizes != default_sizes else ""
    suffix += f"_{'-'.join(methods)}" if methods != methods_for(args.model) else ""
    name = f"rating_efficiency{'_quick' if args.quick else ''}{suffix}.json"
    kept = {k: v for k, v in vars(args).items()  # --jobs changes the wall time only
            if k != "jobs" and (k not in ("model", "seeds", "seed_base") or args.model != "network")}
    config = {**kept, "sizes": sizes, "seeds": seeds, "n_train": n_train, "n_test": n_test,
              "train_config": cfg.__dict__, "network": PRESET.__dict__, "n_pool": N_POOL, "max_chars": MAX_CHARS,
              "gen_minutes": 0.75 if args.quick else 1.5, "eval_pairs": 3000}
    write_result(RESULTS / name, out, config)
    row = lambda m: "/".join(f"{mean[m][str(n)]:.3f}" for n in sizes)  # noqa: E731
    print(f"rating_efficiency{' (quick)' if args.quick else ''}: acc at n={'/'.join(map(str, sizes))}: "
          + ", ".join(f"{m} {row(m)}" for m in methods) + "; "
          f"ceiling {np.mean(ceiling):.3f}; hypothesis racing@1000 >= pairwise@3000: "
          f"{out['hypothesis_a1000_ge_c3000']} ({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
