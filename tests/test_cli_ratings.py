"""The ratings subcommands end to end on a tiny store and a tiny generator."""

import json

import pytest
import torch

from gradopt.cli import main

GOOD = "X:1\nT:a\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|\n"
OTHER = "X:1\nT:b\nM:4/4\nL:1/8\nK:G\nGFGA B2dB|c2ec B2dB|GFGA B2dB|A2F2 G4:|\n"
BROKEN = "X:1\nT:c\nK:G\nz|\n"


@pytest.fixture()
def store(tmp_path):
    recs = [{"query": "", "sample0": GOOD, "sample1": OTHER, "best": 0},
            {"query": "", "sample0": BROKEN, "sample1": OTHER, "best": 1}]
    (tmp_path / "in.json").write_text(json.dumps(recs))
    assert main(["ratings", "import", str(tmp_path / "in.json"), "--store", str(tmp_path / "s"),
                 "--format", "openai"]) == 0
    return tmp_path


def test_stats_fit_next_simulate_export(store, capsys):
    s = str(store / "s")
    assert main(["ratings", "stats", "--store", s, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparisons"] == 2
    assert main(["fit-bt", "--store", s, "--out", str(store / "sc.json")]) == 0
    capsys.readouterr()
    assert main(["next-pairs", "--store", s, "--scores", str(store / "sc.json"), "-k", "1"]) == 0
    pair = json.loads(capsys.readouterr().out.splitlines()[0])
    (store / "p.jsonl").write_text(json.dumps(pair) + "\n")
    assert main(["simulate-ratings", "--store", s, "--pairs", str(store / "p.jsonl"), "--judge"]) == 0
    assert "recorded 1 comparisons (0 simulated, 1 auto)" in capsys.readouterr().out  # GOOD vs BROKEN
    for fmt in ("openai", "trl", "pairs"):
        assert main(["ratings", "export", str(store / f"out.{fmt}"), "--store", s, "--format", fmt]) == 0
    assert main(["ratings", "stats", "--store", str(store / "missing")]) == 2  # clear error, no traceback


@pytest.fixture()
def generator_and_scores(store, tmp_path):
    """A tiny generator saved under tmp_path/gen and the store's BT scores in tmp_path/sc.json."""
    from domains import build_char_tokenizer, build_generator, save_tokenizer

    torch.set_num_threads(1)
    tok = build_char_tokenizer([GOOD, OTHER, BROKEN])
    gen = build_generator("tiny", tok)
    gen.save_pretrained(tmp_path / "gen")
    save_tokenizer(tok, tmp_path / "gen")
    assert main(["fit-bt", "--store", str(store / "s"), "--out", str(tmp_path / "sc.json")]) == 0
    return gen, tok


def test_train_reward_both_routes(store, tmp_path, generator_and_scores):
    from rewardmodels import RewardModel

    _, tok = generator_and_scores
    s = str(store / "s")
    common = ["--store", s, "--generator", str(tmp_path / "gen"), "--steps", "3", "--batch-size", "2"]
    assert main(["train-reward", *common, "--scores", str(tmp_path / "sc.json"), "--out", str(tmp_path / "rm")]) == 0
    assert main(["train-reward", *common, "--pairwise", "--out", str(tmp_path / "pw")]) == 0
    assert RewardModel.from_pretrained(tmp_path / "rm").embedding_matrix().shape[0] == len(tok)
    assert main(["train-reward", *common, "--out", str(tmp_path / "x")]) == 2  # regression needs scores


def test_train_reward_probe(store, tmp_path, generator_and_scores):
    from rewardmodels import RewardModel

    gen, _ = generator_and_scores
    s = str(store / "s")
    common = ["--store", s, "--generator", str(tmp_path / "gen"), "--scores", str(tmp_path / "sc.json")]
    assert main(["train-reward", *common, "--probe", "--pooling", "mean", "--out", str(tmp_path / "probe")]) == 0
    probe = RewardModel.from_pretrained(tmp_path / "probe")
    assert probe.pooling == "mean"
    # the backbone is the generator's, untouched; only the head was fitted
    for name, w in gen.transformer.state_dict().items():
        assert torch.equal(probe.transformer.state_dict()[name], w), name
    assert main(["train-reward", *common, "--probe", "--pairwise", "--out", str(tmp_path / "x")]) == 2
    assert main(["train-reward", *common, "--probe", "--pooling", "mean", "--ensemble", "3",
                 "--out", str(tmp_path / "ens")]) == 0
    from rewardmodels import RewardEnsemble, load_reward_model

    ens = load_reward_model(tmp_path / "ens")
    assert isinstance(ens, RewardEnsemble) and ens.members == 3 and ens.pooling == "mean"
    for name, w in gen.transformer.state_dict().items():
        assert torch.equal(ens.transformer.state_dict()[name], w), name
    assert main(["train-reward", *common, "--ensemble", "3", "--out", str(tmp_path / "x")]) == 2  # needs --probe


def test_import_twice_and_rate_the_queue(store, capsys):
    s = str(store / "s")
    capsys.readouterr()
    assert main(["ratings", "import", str(store / "in.json"), "--store", s, "--format", "openai"]) == 0
    assert "imported 0 new comparisons" in capsys.readouterr().out  # the fixture imported it already
    from rewardmodels import RatingStore

    rs = RatingStore(s)
    good, other, broken = (next(i.id for i in rs.items if i.text == t) for t in (GOOD, OTHER, BROKEN))
    rs.enqueue([(good, other), (good, broken)])
    assert [(e.a, e.b) for e in rs.pending()] == [(good, broken)]  # good vs other is rated already
    assert main(["simulate-ratings", "--store", s, "--queue", "-k", "5", "--judge"]) == 0
    assert "recorded 1 comparisons (0 simulated, 1 auto)" in capsys.readouterr().out
    assert RatingStore(s).pending() == []
    (store / "p.jsonl").write_text(json.dumps({"a": good, "b": "0" * 64}) + "\n")
    assert main(["simulate-ratings", "--store", s, "--pairs", str(store / "p.jsonl")]) == 2
