"""Reward-model recipes (rewardmodels/_recipes.py) and a recipe run with harvest rounds
(gradopt/_recipes.py), on a tiny generator and a slice of the bundled corpus."""

import dataclasses

import numpy as np
import pytest

import domains
from rewardmodels import (BASELINE, PRACTICAL, PRACTICAL_ATTENTION, PRACTICAL_BAR_AWARE, PRACTICAL_ENDING, PRACTICAL_MUSIC, RECIPES, Recipe, RewardModel, SimulatedRater,
                          fit_recipe, make_pool, root_groups, scale_recipe, simulate_comparisons)

TINY = Recipe(corpus=8, samples=4, char_edited=3, pitch_variants=2, comparisons=3, pooling="mean", fit="probe")


@pytest.fixture(scope="module")
def setup():
    corpus = [p.text for p in domains.load_abc_corpus(domains.FIDDLE) if len(p.text) < 300][:40]
    tok = domains.build_char_tokenizer(corpus)
    preset = domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=320)
    return corpus, tok, domains.build_generator(preset, tok, seed=0).eval()


def test_presets_are_the_named_recipes():
    assert RECIPES == {"baseline": BASELINE, "practical": PRACTICAL, "practical_bar_aware": PRACTICAL_BAR_AWARE,
                       "practical_ending": PRACTICAL_ENDING, "practical_attention": PRACTICAL_ATTENTION,
                       "practical_music": PRACTICAL_MUSIC}
    assert BASELINE == Recipe()
    assert PRACTICAL.fit == "probe" and PRACTICAL.pitch_variants == 1 and PRACTICAL.char_edited == 0
    assert PRACTICAL_BAR_AWARE == dataclasses.replace(PRACTICAL, sampling="bar-aware")
    assert PRACTICAL_ENDING == dataclasses.replace(PRACTICAL_BAR_AWARE, pooling="bars")
    assert PRACTICAL_ATTENTION == dataclasses.replace(PRACTICAL_BAR_AWARE, pooling="attention")
    assert PRACTICAL_MUSIC == dataclasses.replace(PRACTICAL_BAR_AWARE, annotations="channels+pooled")
    assert BASELINE.annotations == PRACTICAL_BAR_AWARE.annotations == "none"


def test_recipe_refuses_bad_settings():
    for bad in ({"char_edited": 300}, {"comparisons": 0}, {"fit": "ridge"}, {"sampling": "greedy"},
                {"corpus": 1, "samples": 0, "char_edited": 0}, {"harvest_starts": 0}, {"annotations": "abc"},
                {"annotations": "channels+pooled", "pooling": "attention"}):
        with pytest.raises(ValueError):
            Recipe(**bad)


def test_scale_recipe_scales_counts_and_keeps_nonzero_counts_nonzero():
    small = scale_recipe(BASELINE, 0.001)
    assert (small.corpus, small.samples, small.char_edited, small.train.steps) == (1, 1, 1, 1)
    assert small.pitch_variants == 0 and small.pooling == BASELINE.pooling
    half = scale_recipe(PRACTICAL, 0.5)
    assert (half.corpus, half.samples, half.char_edited, half.pitch_variants) == (200, 100, 0, 1)
    with pytest.raises(ValueError, match="factor"):
        scale_recipe(PRACTICAL, 0.0)


def test_a_tiny_recipe_builds_a_pool_with_the_right_counts(setup):
    corpus, tok, gen = setup
    pool = make_pool(TINY, gen, tok, corpus, seed=3)
    valid_samples = sum(bool(domains.validate_abc(t)) for t, o in zip(pool.texts, pool.origin) if o == "sample")
    counts = {o: pool.origin.count(o) for o in ("corpus", "sample", "char_edit", "pitch_edit")}
    assert counts == {"corpus": 8, "sample": 4, "char_edit": 3, "pitch_edit": 2 * (8 + valid_samples)}
    assert len(pool.texts) == len(pool.origin) == sum(counts.values())
    assert set(pool.texts[:8]) <= set(corpus)
    assert pool.edits.shape == (3 + 2 * (8 + valid_samples), 2)
    for parent, child in pool.edits:
        assert pool.origin[child] in ("char_edit", "pitch_edit") and pool.origin[parent] in ("corpus", "sample")
        if pool.origin[child] == "pitch_edit":  # only note letters differ, to note letters
            a, b, notes = pool.texts[parent], pool.texts[child], domains.note_letters(pool.texts[parent])
            assert len(a) == len(b) and all(notes[i] for i in range(len(a)) if a[i] != b[i])
    again = make_pool(TINY, gen, tok, corpus, seed=3)
    assert again.texts == pool.texts and np.array_equal(again.edits, pool.edits)
    assert make_pool(TINY, gen, tok, corpus, seed=4).texts != pool.texts


def test_make_pool_refuses_a_corpus_smaller_than_the_recipe(setup):
    corpus, tok, gen = setup
    with pytest.raises(ValueError, match="corpus has 5"):
        make_pool(TINY, gen, tok, corpus[:5])


def test_comparisons_are_reproducible_for_a_seed_and_cover_every_edit_twice(setup):
    corpus, tok, gen = setup
    pool = make_pool(TINY, gen, tok, corpus, seed=0)
    rater = SimulatedRater(agreement=0.75, seed=0)
    u = rater.utility(pool.texts)
    wins, ties = simulate_comparisons(TINY, pool, u, rater, seed=5)
    wins2, ties2 = simulate_comparisons(TINY, pool, u, rater, seed=5)
    assert np.array_equal(wins, wins2) and np.array_equal(ties, ties2)
    other = simulate_comparisons(TINY, pool, u, rater, seed=6)[0]
    assert not (len(other) == len(wins) and np.array_equal(other, wins))
    pairs = np.concatenate([wins, ties])
    assert len(pairs) == len(pool.texts) * TINY.comparisons + 2 * len(pool.edits)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    as_sets = [frozenset(p) for p in pairs.tolist()]
    assert all(as_sets.count(frozenset(e)) >= 2 for e in pool.edits.tolist())
    with pytest.raises(ValueError, match="utilities"):
        simulate_comparisons(TINY, pool, u[:-1], rater)


def test_root_groups_follow_chains_of_edits():
    edits = np.array([[0, 3], [3, 4], [1, 5]])
    assert root_groups(6, edits).tolist() == [0, 1, 2, 0, 0, 1]


def test_fit_recipe_probe_fits_a_reward_model(setup):
    corpus, tok, gen = setup
    pool = make_pool(TINY, gen, tok, corpus, seed=0)
    rater = SimulatedRater(agreement=0.75, seed=0)
    u = rater.utility(pool.texts)
    rm, info = fit_recipe(TINY, pool, u, gen, tok, rater, seed=0)
    assert isinstance(rm, RewardModel) and not rm.training and rm.pooling == "mean"
    assert info["items"] == len(pool.texts) and info["probe_l2"] > 0
    assert info["origins"]["pitch_edit"] == pool.origin.count("pitch_edit")
    rm2, _ = fit_recipe(TINY, pool, u, gen, tok, rater, seed=0)
    ids, mask = domains.encode_batch(tok, pool.texts, gen)
    assert np.array_equal(rm.predict(ids, mask).numpy(), rm2.predict(ids, mask).numpy())


def test_build_reward_model_runs_harvest_rounds(setup):
    from gradopt import AscentConfig, PolishConfig, build_reward_model

    corpus, tok, gen = setup
    recipe = dataclasses.replace(TINY, char_edited=0, pitch_variants=0, harvest_rounds=1, harvest_starts=3)
    with pytest.raises(ValueError, match="ascent"):
        build_reward_model(recipe, gen, tok, corpus)
    ascent = AscentConfig(steps=4, check_every=2, restarts=1, polish=PolishConfig(rounds=1, top_k=4, candidates=4))
    rm, info = build_reward_model(recipe, gen, tok, corpus, seed=0, ascent=ascent)
    edited = info["harvest_rounds"][0]["edited"]
    assert len(info["harvest_rounds"]) == 1 and 0 <= edited <= 3
    assert info["items"] == 8 + 4 + 2 * edited and info["origins"].get("harvested", 0) == edited


def test_build_reward_model_fits_an_ensemble_through_its_harvest_rounds(setup):
    from gradopt import AscentConfig, PolishConfig, build_reward_model
    from rewardmodels import RewardEnsemble

    corpus, tok, gen = setup
    recipe = dataclasses.replace(TINY, char_edited=0, pitch_variants=0, harvest_rounds=1, harvest_starts=3)
    ascent = AscentConfig(steps=4, check_every=2, restarts=1, polish=PolishConfig(rounds=1, top_k=4, candidates=4))
    rm, _ = build_reward_model(recipe, gen, tok, corpus, seed=0, ascent=ascent, members=3)
    assert isinstance(rm, RewardEnsemble) and rm.members == 3  # the model after the round's refit
    single, _ = build_reward_model(TINY, gen, tok, corpus, seed=0)
    assert not isinstance(single, RewardEnsemble)
