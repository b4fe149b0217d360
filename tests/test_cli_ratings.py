"""The ratings subcommands end to end on a tiny store and a tiny generator."""

import json

import pytest
import torch

from gradopt.cli import main
from rewardmodels import RatingStore, item_id

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
    # Each export, imported into an empty store, gives back the same decisions between the same tunes.
    original = _decisions(RatingStore(s))
    assert len(original) == 3 and (GOOD, BROKEN) in original
    for fmt in ("openai", "trl", "pairs"):
        again = store / f"again-{fmt}"
        if fmt == "pairs":  # index pairs name their items by id: the items come first, in another order
            RatingStore(again).add_items([it.text for it in reversed(RatingStore(s).items)])
        assert main(["ratings", "import", str(store / f"out.{fmt}"), "--store", str(again), "--format", fmt]) == 0
        assert _decisions(RatingStore(again)) == original, fmt


def _decisions(store):
    """Sorted (winner text, loser text) of a store's decisive comparisons."""
    return sorted((store[c.a if c.winner == "a" else c.b].text, store[c.loser].text)
                  for c in store.comparisons if c.winner != "tie")


def _train_scores(directory, tok, gen):
    """The saved reward model's scores of GOOD, OTHER and BROKEN (the store's items)."""
    from domains import encode_batch
    from rewardmodels import RewardModel

    model = RewardModel.from_pretrained(directory)
    ids, mask = encode_batch(tok, [GOOD, OTHER, BROKEN], gen)
    return model.predict(ids, mask).tolist()


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

    gen, tok = generator_and_scores
    s = str(store / "s")
    # 20 steps (~1 s each route) fit three items; after 3 the order was still wrong.
    common = ["--store", s, "--generator", str(tmp_path / "gen"), "--steps", "20", "--batch-size", "2"]
    assert main(["train-reward", *common, "--scores", str(tmp_path / "sc.json"), "--out", str(tmp_path / "rm")]) == 0
    assert main(["train-reward", *common, "--pairwise", "--out", str(tmp_path / "pw")]) == 0
    assert RewardModel.from_pretrained(tmp_path / "rm").embedding_matrix().shape[0] == len(tok)
    # The store says GOOD > OTHER > BROKEN (and so do the BT scores): both saved models, loaded
    # back, rank their training items that way.
    bt = json.loads((tmp_path / "sc.json").read_text())
    by_id = dict(zip(bt["ids"], bt["mean"]))
    assert by_id[item_id(GOOD)] > by_id[item_id(OTHER)] > by_id[item_id(BROKEN)]
    for route in ("rm", "pw"):
        good, other, broken = _train_scores(tmp_path / route, tok, gen)
        assert good > other > broken, (route, good, other, broken)
    assert main(["train-reward", *common, "--out", str(tmp_path / "x")]) == 2  # regression needs scores


def test_train_reward_probe(store, tmp_path, generator_and_scores):
    from rewardmodels import RewardModel

    gen, _ = generator_and_scores
    s = str(store / "s")
    common = ["--store", s, "--generator", str(tmp_path / "gen"), "--scores", str(tmp_path / "sc.json")]
    assert main(["train-reward", *common, "--probe", "--pooling", "mean", "--out", str(tmp_path / "probe")]) == 0
    probe = RewardModel.from_pretrained(tmp_path / "probe")
    assert probe.pooling == "mean"
    good, other, broken = _train_scores(tmp_path / "probe", generator_and_scores[1], gen)
    assert good > other > broken
    # the backbone is the generator's, untouched; only the head was fitted
    for name, w in gen.transformer.state_dict().items():
        assert torch.equal(probe.transformer.state_dict()[name], w), name
    assert main(["train-reward", *common, "--probe", "--pairwise", "--out", str(tmp_path / "x")]) == 2
