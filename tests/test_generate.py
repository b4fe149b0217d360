"""`gradopt.generate`: best-of-N by the reward model, then the engine on each pick; and the
`gradopt generate` command."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import domains
from ascent_doubles import TEXTS, save_tiny_models, tiny_setup
from gradopt import (POLISH_ENGINE, AscentConfig, GenerateConfig, ObjectiveWeights, PolishConfig, TrustConfig, generate,
                     header_frozen_masks, starts_from_generator)
from gradopt._baselines import _rewards
from gradopt.cli import main
from rewardmodels import RewardEnsemble

N = 5
ENGINE = AscentConfig(steps=3, check_every=1, objective=ObjectiveWeights(lm_weight=0.0),
                      polish=PolishConfig(rounds=2), trust=None, seed=0)


@pytest.fixture(scope="module")
def models():
    return tiny_setup(n_positions=48)


def test_best_of_n_keeps_each_pieces_highest_reward_sample(models):
    tok, gen, rm = models
    res = generate(gen, rm, tok, N, GenerateConfig(best_of=3, polish=None, seed=7, max_new_tokens=30))
    # the same draws, scored independently: sample 1 with the seed, round k with seed + k
    t = GenerateConfig().temperature
    draws = [starts_from_generator(gen, tok, N, seed=7, max_new_tokens=30, temperature=t)]
    draws += [starts_from_generator(gen, tok, N, seed=7 + k, temperature=t) for k in (2, 3)]
    rewards = np.stack([_rewards(rm, d, tok.pad_token_id) for d in draws])  # (3, N)
    best = rewards.argmax(0)
    assert [p.pick for p in res.pieces] == [domains.decode(tok, draws[b][i]) for i, b in enumerate(best)]
    assert [p.pick_reward for p in res.pieces] == pytest.approx(rewards.max(0))
    assert [p.first_reward for p in res.pieces] == pytest.approx(rewards[0])
    assert res.texts == [p.pick for p in res.pieces] and not any(p.changed for p in res.pieces)
    assert res.samples == 3 * N and res.engine_cpu_seconds == 0.0


def test_best_of_one_without_polish_is_plain_sampling(models):
    tok, gen, rm = models
    res = generate(gen, rm, tok, N, GenerateConfig(best_of=1, polish=None, seed=3, max_new_tokens=30))
    plain = starts_from_generator(gen, tok, N, seed=3, max_new_tokens=30, temperature=GenerateConfig().temperature)
    assert res.texts == [domains.decode(tok, r) for r in plain]
    assert [p.pick_reward for p in res.pieces] == pytest.approx([p.first_reward for p in res.pieces])


def test_the_engine_raises_each_picks_verified_reward_within_the_edit_space(models):
    tok, gen, rm = models
    res = generate(gen, rm, tok, N, GenerateConfig(best_of=2, polish=ENGINE, seed=1, max_new_tokens=30),
                   edits=lambda ids: header_frozen_masks(ids.tolist(), tok, "any"))
    rescored = _rewards(rm, [p.engine.tokens for p in res.pieces], tok.pad_token_id)
    assert [p.reward for p in res.pieces] == pytest.approx(rescored, abs=1e-6)  # verified, not a soft score
    assert all(p.reward >= p.pick_reward - 1e-9 for p in res.pieces)  # lm_weight 0: the objective is the reward
    assert any(p.changed for p in res.pieces) and any(p.reward > p.pick_reward + 1e-6 for p in res.pieces)
    assert res.engine_cpu_seconds > 0


def test_frozen_positions_of_the_edit_space_stay_as_picked(models):
    tok, gen, rm = models
    cut = 6

    def edits(ids):
        freeze = torch.zeros(ids.shape, dtype=torch.bool)
        freeze[:, :cut] = True
        return freeze, None

    res = generate(gen, rm, tok, N, GenerateConfig(best_of=2, polish=ENGINE, seed=1, max_new_tokens=30), edits=edits)
    assert any(p.changed for p in res.pieces)
    for p in res.pieces:
        assert p.text[:cut - 1] == p.pick[:cut - 1]  # BOS + cut - 1 characters


def test_the_guard_keeps_picks_an_ensemble_cannot_vouch_for(tmp_path):
    tok = domains.build_char_tokenizer(TEXTS)
    gen = save_tiny_models(tmp_path, tok, n_positions=48)
    ens = RewardEnsemble.from_generator(gen, "mean", members=4)
    torch.nn.init.normal_(ens.head.weight, std=1.0)  # members that disagree about everything
    guarded = dataclasses.replace(ENGINE, trust=TrustConfig(max_changed=1.0))
    res = generate(gen, ens, tok, N, GenerateConfig(best_of=2, polish=guarded, seed=2, max_new_tokens=30))
    assert all(p.engine.kept and not p.changed and p.text == p.pick for p in res.pieces)
    raw = generate(gen, ens, tok, N, GenerateConfig(best_of=2, polish=ENGINE, seed=2, max_new_tokens=30))
    assert [p.pick for p in raw.pieces] == [p.pick for p in res.pieces] and any(p.changed for p in raw.pieces)


@pytest.mark.parametrize("kw", [{"best_of": 0}, {"batch_size": 0}, {"temperature": 0.0}])
def test_generate_config_refuses_bad_settings(kw):
    with pytest.raises(ValueError):
        GenerateConfig(**kw)


def test_generate_refuses_no_pieces(models):
    tok, gen, rm = models
    with pytest.raises(ValueError, match="n"):
        generate(gen, rm, tok, 0)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("generate_cli")
    tok = domains.build_char_tokenizer(TEXTS)
    gen = save_tiny_models(d, tok, n_positions=96)
    domains.save_normalisation(domains.NormaliseConfig(), d / "gen")
    ens = RewardEnsemble.from_generator(gen, "mean", members=4)
    torch.nn.init.normal_(ens.head.weight, std=1.0)  # members that disagree about everything
    ens.save_pretrained(d / "ens")
    return d


def test_generate_command_writes_pieces_and_says_what_each_stage_gave(work, capsys):
    out, rows = work / "new.abc", work / "new.json"
    rc = main(["generate", "-n", "3", "--best-of", "2", "--out", str(out), "--generator", str(work / "gen"),
               "--reward", str(work / "rm"), "--no-validate", "--edit", "any", "--threads", "1", "--json", str(rows)])
    assert rc == 0
    printed = capsys.readouterr().out
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"3 pieces -> {out}") and "best-of-2" in last and "after the engine" in last
    assert "guard off" in last
    data = json.loads(rows.read_text())
    assert len(data) == 3 and all(r["pick_reward"] >= r["first_reward"] for r in data)
    assert all(r["engine"] is not None for r in data) and any(r["text"] != r["pick"] for r in data)
    written = out.read_text()
    assert all(r["text"].strip() in written for r in data)  # untrained models: the texts need not parse


def test_generate_command_with_the_guard_keeps_picks_an_ensemble_cannot_vouch_for(work, capsys):
    rows = work / "guarded.json"
    assert main(["generate", "-n", "2", "--best-of", "2", "--out", str(work / "guarded.abc"), "--guard",
                 "--max-changed", "1.0", "--no-validate", "--edit", "any", "--generator", str(work / "gen"),
                 "--reward", str(work / "ens"), "--threads", "1", "--json", str(rows)]) == 0
    assert "2 picks kept unchanged by the guard" in capsys.readouterr().out.strip().splitlines()[-1]
    assert all(r["engine"]["kept"] and r["text"] == r["pick"] for r in json.loads(rows.read_text()))


def test_generate_command_without_polish_returns_the_picks(work, capsys):
    rows = work / "picks.json"
    assert main(["generate", "-n", "2", "--best-of", "3", "--out", str(work / "picks.abc"), "--no-polish",
                 "--generator", str(work / "gen"), "--reward", str(work / "rm"), "--threads", "1",
                 "--json", str(rows)]) == 0
    data = json.loads(rows.read_text())
    assert all(r["engine"] is None and r["text"] == r["pick"] for r in data)


def test_generate_command_refuses_bad_counts(work, capsys):
    rc = main(["generate", "-n", "0", "--out", str(work / "x.abc"), "--generator", str(work / "gen"),
               "--reward", str(work / "rm")])
    assert rc == 2 and "-n" in capsys.readouterr().err


def test_polish_engine_is_the_setting_ascent_py_measures(monkeypatch):
    import sys
    from pathlib import Path

    # appended, not prepended: benchmarks/distill.py must not shadow the distill package
    monkeypatch.setattr("sys.path", [*sys.path, str(Path(__file__).resolve().parent.parent / "benchmarks")])
    import ascent

    monkeypatch.setattr("sys.argv", ["ascent.py"])
    measured, _, _ = ascent.engine_configs(ascent.parse_args())
    assert measured == POLISH_ENGINE and GenerateConfig().polish == POLISH_ENGINE
