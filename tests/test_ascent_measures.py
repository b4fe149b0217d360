"""The ascent benchmark's measures (benchmarks/ascent_measures.py and the functions of
benchmarks/ascent.py that use them): the whole-tune corpus, per-CPU-s ratios of the engine's own
objective, the batch recipe at equal measured CPU, polish-only at equal CPU, do no harm with the
library's defaults and the acceptance block. Tiny models, fixed seeds."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import domains
import gradopt
from ascent_doubles import TEXTS, encode, tiny_setup

# Appended, not prepended: benchmarks/distill.py must not shadow the distill package in later tests.
sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

CFG = gradopt.AscentConfig(steps=2, check_every=1, polish=gradopt.PolishConfig(rounds=1, candidates=4, top_k=4),
                           trust=None)


def count_c(texts) -> np.ndarray:
    """A stand-in utility the tests can predict: how many 'c' a text holds."""
    return np.array([t.count("c") for t in texts], float)


@pytest.fixture(scope="module")
def setup():
    tok, gen, rm = tiny_setup()
    return tok, gen, rm, encode(tok, TEXTS + ["X:3\nM:4/4\nK:A\nABcd|efga|\n"])


# ---------------------------------------------------------------- the whole-tune corpus


def test_bench_corpus_keeps_held_out_tunes_whole_and_the_held_out_collection_unseen():
    from ascent_measures import bench_corpus
    from do_no_harm import HELD_OUT, TRAIN_COLLECTIONS

    whole = bench_corpus(300, whole=True)
    originals = {p.text for p in domains.load_abc_corpus(TRAIN_COLLECTIONS)}
    for split in ("val", "test"):
        assert whole[split] and all(len(t) <= 300 and t in originals for t in whole[split])
    assert all(len(t) <= 300 for t in whole["train"])
    cut = bench_corpus(300, whole=False)
    assert len(cut["test"]) > len(whole["test"]), "a cut corpus also keeps (cut) tunes longer than 300 characters"
    held = {p.text for c in HELD_OUT.values() for p in domains.load_abc_corpus((c,))}
    assert not held & {t for ts in whole.values() for t in ts}


# ---------------------------------------------------------------- ratios per CPU second


def summary(method, cpu, objective=None, utility=None, **kw) -> dict:
    """The fields of an `ascent.summarise` row the measures read."""
    out = {"method": method, "cpu_s": cpu, "objective_gain_per_slot": list(objective or [0.0]),
           "utility_gain_per_slot": list(utility or [0.0]), "valid_fraction": 1.0, "valid_kept_fraction": 1.0,
           "valid_fraction_start": 1.0}
    out["utility_gain"] = float(np.mean(out["utility_gain_per_slot"]))
    out["reward_gain"] = kw.pop("reward_gain", 0.5)
    return {**out, **kw}


def test_per_cpu_ratio_divides_each_gain_by_its_own_cpu():
    from ascent_measures import per_cpu_ratio

    gains = [0.1, 0.4, 0.7, 1.0]
    engine = summary("engine", 2.0, [2 * g for g in gains])
    hill = summary("hill_climb", 4.0, gains)
    r = per_cpu_ratio(engine, hill)  # (2 g / 2 s) / (g / 4 s) = 4
    assert r["ratio"] == pytest.approx(4.0) and r["ci95"] == pytest.approx([4.0, 4.0])
    assert per_cpu_ratio(hill, engine)["ratio"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="CPU"):
        per_cpu_ratio(engine, summary("oracle", 0.0, gains))


def results_for(ratio_hill: float, ratio_polish: float, oracle_fraction: float, corpus_utility: float) -> dict:
    """A results table whose engine has the given per-CPU-s ratios and oracle fraction."""
    g = [0.2, 0.4, 0.6]
    res = {}
    for origin in ("samples", "corpus"):
        util = [corpus_utility] * 3 if origin == "corpus" else [oracle_fraction * x for x in g]
        res[f"engine/{origin}"] = summary("engine", 1.0, g, util)
        res[f"hill_climb_equal_time/{origin}"] = summary("hill_climb_equal_time", 1.0, [x / ratio_hill for x in g])
        res[f"polish_only_equal_time/{origin}"] = summary("polish_only_equal_time", 2.0,
                                                          [2 * x / ratio_polish for x in g])
    res["oracle_hill_climb_equal_evals/samples"] = summary("oracle", 0.0, None, g, slots=3)
    res["engine_free_edits/samples"] = summary("engine_free_edits", 1.0, g, valid_fraction=0.95, valid_kept_fraction=0.95)
    return res


DNH_OK = {"corpus": {"mean_du": 0.01, "frac_worse": 0.05}, "held-out": {"mean_du": 0.0, "frac_worse": 0.1},
          "pooled": {"frac_worse": 0.075}}


def test_acceptance_reports_the_goal_keys_and_judges_each_criterion():
    from ascent import acceptance

    goal = acceptance(results_for(3.5, 1.6, 0.7, 0.1), DNH_OK, q=False)
    assert goal["ratio_vs_hill_climb"] == pytest.approx(3.5) and goal["ratio_vs_polish_only"] == pytest.approx(1.6)
    assert goal["utility_fraction_of_oracle"] == pytest.approx(0.7)
    assert goal["ratio_vs_hill_climb_95ci"] == pytest.approx([3.5, 3.5])
    assert set(goal["do_no_harm"]) >= {"corpus_mean_utility_change", "heldout_collection_mean_utility_change",
                                       "fraction_worse"}
    assert goal["do_no_harm"]["fraction_worse"] == 0.075
    assert all(goal["criteria"].values()) and goal["met"] is True
    for args, criterion in (((2.9, 1.6, 0.7, 0.1), "objective_vs_hill_climb_3x"),
                            ((3.5, 1.4, 0.7, 0.1), "objective_vs_polish_only_1.5x"),
                            ((3.5, 1.6, 0.5, 0.1), "utility_60pct_of_oracle"),
                            ((3.5, 1.6, 0.7, -0.1), "corpus_utility_not_down_while_reward_rises")):
        g = acceptance(results_for(*args), DNH_OK, q=False)
        assert g["criteria"][criterion] is False and g["met"] is False, criterion
    harm = {**DNH_OK, "pooled": {"frac_worse": 0.15}}
    assert acceptance(results_for(3.5, 1.6, 0.7, 0.1), harm, q=False)["criteria"]["do_no_harm"] is False
    assert acceptance(results_for(3.5, 1.6, 0.7, 0.1), DNH_OK, q=True)["met"] is None  # quick: not judged
    # validity under free edits counts the outputs of valid starts: 95% of all outputs valid is not
    # enough when only 85% of those from valid starts are
    res = results_for(3.5, 1.6, 0.7, 0.1)
    res["engine_free_edits/samples"]["valid_kept_fraction"] = 0.85
    g = acceptance(res, DNH_OK, q=False)
    assert g["valid_fraction_free_edits"] == 0.95 and g["valid_kept_fraction_free_edits"] == 0.85
    assert g["criteria"]["valid_90pct_free_edits"] is False and g["met"] is False


def test_method_dicts_hold_every_method():
    from ascent import method_dicts

    res = results_for(3.5, 1.6, 0.7, 0.1)
    for r in res.values():
        r["objective_gain_per_cpu_s"] = r["utility_gain_per_cpu_s"] = None
    d = method_dicts(res)
    assert set(d) >= {"objective_gain_per_cpu_s", "utility_gain", "valid_fraction"}
    for name in ("engine", "hill_climb", "polish_only", "oracle"):
        assert any(name in k for k in d["utility_gain"]), name
    assert d["valid_fraction"]["engine_free_edits/samples"] == 0.95


# ---------------------------------------------------------------- the engine's objective, re-scored


@pytest.mark.parametrize("floor", [False, True])
def test_rescored_objective_gain_is_the_engines_own(setup, floor):
    from ascent import run_engine, summarise

    tok, gen, rm, starts = setup
    cfg = dataclasses.replace(CFG, objective=gradopt.ObjectiveWeights(lm_weight=2.0, lm_floor=floor))
    res, _, _ = run_engine(starts, rm, gen, tok, cfg, None)
    ctx = (rm, gen, tok, SimpleNamespace(utility=count_c), lambda t: True, 2.0, floor)
    s = summarise("engine", res.tokens, starts, ctx, res.cpu_seconds, res.seconds, res.reward_evals)
    own = [r.objective_after - r.objective_before for r in res.rows]
    assert any(abs(x) > 1e-6 for x in own), "the engine should move some row"
    np.testing.assert_allclose(s["objective_gain_per_slot"], own, rtol=1e-6, atol=1e-9)
    assert s["objective_gain_per_cpu_s"] == pytest.approx(np.mean(own) / res.cpu_seconds, rel=1e-6)


# ---------------------------------------------------------------- polish-only at equal CPU


def test_polish_only_is_the_engine_without_steps_and_reaches_the_engines_cpu(setup):
    from ascent import measure_polish_only, run_engine

    tok, gen, rm, starts = setup
    cfg = dataclasses.replace(CFG, steps=40, check_every=10)  # many steps: the engine costs more than its polish
    engine, _, _ = run_engine(starts, rm, gen, tok, cfg, None)
    ctx = (rm, gen, tok, SimpleNamespace(utility=count_c), lambda t: True, 1.0, False)
    results: dict = {}
    measure_polish_only(results, "x", starts, SimpleNamespace(edit="pitch"), ctx, cfg, engine.cpu_seconds, None,
                        lambda msg: None)
    freeze, allowed = gradopt.header_frozen_masks(starts, tok, "pitch")
    ref = gradopt.optimize(starts, rm, gen, dataclasses.replace(cfg, steps=0), tokenizer=tok, freeze=freeze,
                           allowed=allowed, validate=gradopt.memo_validate())
    same = results["polish_only/x"]
    assert same["polish_rounds"] == 1 and same["reward_evals"] == ref.reward_evals  # no gradient step counted
    assert same["objective_gain_per_slot"] == pytest.approx([r.objective_after - r.objective_before for r in ref.rows],
                                                            abs=1e-9)
    eq = results["polish_only_equal_time/x"]
    assert eq["cpu_s"] >= engine.cpu_seconds and not eq["cpu_capped"]
    assert eq["polish_rounds"] > 1


# ---------------------------------------------------------------- the batch recipe


def test_recipe_verdict_follows_the_paired_interval():
    from ascent_measures import recipe_verdict

    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 30)
    assert recipe_verdict(base + 0.5, base)[1] == "polish"
    assert recipe_verdict(base, base + 0.5)[1] == "more_samples"
    diff, better = recipe_verdict(base + rng.normal(0, 0.1, 30), base)
    assert better is None and diff["ci95"][0] < 0 < diff["ci95"][1]


def test_batch_recipe_polishes_the_best_of_n_pick_and_gives_more_samples_the_same_cpu(setup):
    from ascent_measures import batch_recipe

    tok, gen, rm, starts = setup
    kw = dict(seed=7, temperature=1.0)
    out = batch_recipe(starts, rm, gen, tok, CFG, count_c, n=2, n_cap=40, validate=gradopt.memo_validate(), **kw)
    picks = gradopt.best_of_n(starts, rm, gen, tok, n_max=2, **kw)[-1].rows
    freeze, allowed = gradopt.header_frozen_masks(picks, tok, "pitch")
    ref = gradopt.optimize(picks, rm, gen, CFG, tokenizer=tok, freeze=freeze, allowed=allowed,
                           validate=gradopt.memo_validate())
    assert out["polish"]["rows"] == ref.tokens  # best-of-2, then the engine on the pick
    assert out["polish"]["picks"] == picks and out["polish"]["kept"] == sum(r.kept for r in ref.rows)
    more = out["more_samples"]
    assert more["cpu_s"] >= out["polish"]["cpu_s"] and not more["n_capped"]  # measured, at least (a)'s CPU
    assert more["n"] > 2
    assert more["rows"] == gradopt.best_of_n(starts, rm, gen, tok, n_max=more["n"], **kw)[-1].rows  # same draws
    u0 = count_c([domains.decode(tok, r) for r in starts])
    gain = count_c([domains.decode(tok, r) for r in ref.tokens]) - u0
    assert out["utility_gain"]["polish"]["mean"] == pytest.approx(gain.mean())  # against the starts, not the picks
    assert out["better"] in ("polish", "more_samples", None) and "batch recipe" in out["line"]
    with pytest.raises(ValueError, match="n "):
        batch_recipe(starts, rm, gen, tok, CFG, count_c, n=0, **kw)


# ---------------------------------------------------------------- do no harm with the defaults


@pytest.fixture(scope="module")
def dnh_models(char_tokenizer):
    import torch
    from rewardmodels import RewardModel

    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=256),
                                  char_tokenizer, seed=0).eval()
    torch.manual_seed(1)
    return gen, RewardModel.from_generator(gen, pooling="mean").eval()


def test_do_no_harm_default_runs_the_library_defaults_on_both_sets(dnh_models, char_tokenizer):
    from ascent_measures import do_no_harm_default

    gen, rm = dnh_models
    rater = SimpleNamespace(utility=count_c)
    out = do_no_harm_default(rm, gen, char_tokenizer, rater, gradopt.memo_validate(), max_chars=250, n=2)
    assert out["config"] == repr(gradopt.AscentConfig())  # the defaults, guard included
    assert out["held_out_collection"] == "airdsAirs"
    n = [out[s]["n"] for s in ("corpus", "held-out")]
    assert n == [2, 2] and out["pooled"]["n"] == 4
    assert out["pooled"]["mean_du"] == pytest.approx(np.average([out[s]["mean_du"] for s in ("corpus", "held-out")],
                                                                weights=n))
    # a guard that trusts nothing keeps every tune: no change, nobody worse
    closed = dataclasses.replace(gradopt.AscentConfig(steps=4, check_every=2), trust=gradopt.TrustConfig(margin=1e9))
    shut = do_no_harm_default(rm, gen, char_tokenizer, rater, gradopt.memo_validate(), max_chars=250, n=2, cfg=closed)
    for s in ("corpus", "held-out"):
        assert shut[s]["frac_kept"] == 1.0 and shut[s]["mean_du"] == 0.0 and shut[s]["frac_worse"] == 0.0


def test_acceptance_line_states_every_figure_even_when_undefined():
    from ascent import acceptance, acceptance_line

    res = results_for(3.5, 1.6, 0.7, 0.1)
    res["hill_climb_equal_time/samples"]["objective_gain_per_slot"] = [-0.1, -0.2, -0.3]  # hill-climbing loses
    goal = acceptance(res, None, q=True)
    assert goal["ratio_vs_hill_climb"] == "inf" and goal["do_no_harm"] is None
    line = acceptance_line(goal, {"improve_corpus": "more best-of-N samples"}, True, "x.json")
    assert line.startswith("ascent (quick): ") and "inf" in line and "n/a" in line and line.endswith("x.json")
    full = acceptance_line(acceptance(results_for(3.5, 1.6, 0.7, 0.1), DNH_OK, q=False), {"improve_corpus": "-"},
                           False, "y.json")
    assert "3.5x" in full and "worse 8%" in full and "goal met" in full
