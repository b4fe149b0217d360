"""benchmarks/rating_efficiency.py helpers on a tiny generator: the probe fitted on cached features
scores items as `rewardmodels.fit_model` / `fit_pairwise_head` do, seeds run in forked processes
give the sequential results, and per-seed tallies merge in seed order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import domains
import rewardmodels as rm

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))
reff = pytest.importorskip("rating_efficiency")

TUNES = [f"X:{i}\nT:t{i}\nM:4/4\nL:1/8\nK:{'DGA'[i % 3]}\n{'ABcd efga|bagf edcB|GABc defg|'[i % 7:i % 7 + 12 + i % 9]}\n"
         for i in range(40)]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    tok = domains.build_char_tokenizer(TUNES)
    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=64), tok, seed=0)
    ids, mask = domains.encode_batch(tok, TUNES, gen)
    return gen, tok, ids, mask


def test_cached_probe_scores_as_the_library_fit(setup):
    gen, tok, ids, mask = setup
    rng = np.random.default_rng(0)
    y, w = rng.normal(size=30), rng.uniform(0.5, 2.0, 30)
    cfg = rm.RewardTrainConfig(seed=3)
    cache = reff.FeatureCache(gen, tok, ids, mask)
    ours = reff.train_model(gen, ids[:30], mask[:30], cfg, targets=y, weights=w, kind="probe_music", tok=tok,
                            cache=cache)
    ref = rm.fit_model(reff.PROBE_RECIPE, gen, tok, ids[:30], mask[:30], y, w, np.arange(30), 3)[0]
    np.testing.assert_allclose(ours.predict(ids[30:], mask[30:]).numpy(), ref.predict(ids[30:], mask[30:]).numpy(),
                               atol=1e-4)
    pairs = np.stack([rng.integers(0, 30, 200), rng.integers(0, 30, 200)], 1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    ours = reff.train_model(gen, ids[:30], mask[:30], cfg, pairs=pairs, kind="probe_music", tok=tok, cache=cache)
    ref = reff.probe_model(gen, tok, None)
    rm.fit_pairwise_head(ref, ids[:30], mask[:30], pairs, None, seed=3)
    np.testing.assert_allclose(ours.predict(ids[30:], mask[30:]).numpy(), ref.predict(ids[30:], mask[30:]).numpy(),
                               atol=1e-4)


def test_feature_cache_looks_up_rows_not_positions(setup):
    gen, tok, ids, mask = setup
    cache = reff.FeatureCache(gen, tok, ids[:10], mask[:10])
    order = [7, 2, 9]
    torch.testing.assert_close(cache.features(ids[order]), cache.X[order])
    with pytest.raises(KeyError):
        cache.features(ids[10:11])


def _job(seed: int) -> dict:
    return {"seed": seed, "draw": float(np.random.default_rng(seed).random())}


def test_run_seeds_in_processes_equals_sequential():
    seeds = [4, 1, 7]
    assert reff.run_seeds(_job, seeds, jobs=2) == reff.run_seeds(_job, seeds, jobs=1) == [_job(s) for s in seeds]


def test_merge_tallies_keeps_seed_order_and_sums_seconds():
    def tally(acc, ceiling, secs):
        t = reff.new_tally(("a",), [10])
        t["per_seed"]["a"]["10"].append(acc)
        t["true_acc"]["a"]["10"].append(acc + 1)
        t["extra"]["10"].append(secs)
        t["ceiling"].append(ceiling)
        t["train_seconds"]["a"] += secs
        return t

    out = reff.merge_tallies([tally(0.6, 0.8, 1.0), tally(0.7, 0.9, 2.0)])
    assert out["per_seed"]["a"]["10"] == [0.6, 0.7] and out["true_acc"]["a"]["10"] == [1.6, 1.7]
    assert out["ceiling"] == [0.8, 0.9] and out["extra"]["10"] == [1.0, 2.0]
    assert out["train_seconds"]["a"] == 3.0
