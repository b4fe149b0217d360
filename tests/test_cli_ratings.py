"""The ratings subcommands end to end on a tiny store and a tiny generator."""

import json

import numpy as np
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
    from rewardmodels import load_reward_model

    model = load_reward_model(directory)  # a single model or an ensemble (then the members' mean)
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


# --- ratings add, and the README's path from one's own tunes to a reward model ------------------

_BARS = ["GABc dedB", "dedB dedB", "c2ec B2dB", "c2A2 A2BA", "GFGA B2dB", "BAGF G2G2", "d2d2 e2fg", "g2fe d2BG"]


def _own_tunes(n: int) -> list[str]:
    """`n` distinct four-bar tunes in G, normalised (X:1) and short enough (~100 characters) for the
    tiny generator's context."""
    rng = np.random.default_rng(0)
    tunes = set()
    while len(tunes) < n:
        bars = "|".join(_BARS[i] for i in rng.choice(len(_BARS), 4, replace=False))
        tunes.add(f"X:1\nT:own {len(tunes) + 1}\nM:4/4\nL:1/8\nK:G\n{bars}|]\n")
    return sorted(tunes)


def test_ratings_add_abc_text_midi(tmp_path, capsys):
    from domains import abc_to_midi
    from rewardmodels import RatingStore

    s = str(tmp_path / "s")
    tunes = _own_tunes(3)
    (tmp_path / "t.abc").write_text("\n".join(tunes) + "\nX:9\nT:no key\nabc|\n")
    assert main(["ratings", "add", str(tmp_path / "t.abc"), "--store", s, "--origin", "corpus"]) == 0
    out = capsys.readouterr()
    assert "added 3 new items" in out.out and "tune 4: no K:" in out.err  # the skipped tune is named
    store = RatingStore(s)
    assert [it.text for it in store.items] == tunes and {it.origin for it in store.items} == {"corpus"}
    # content-addressed: the same file again adds nothing, even under another origin
    lines = (tmp_path / "s" / "items.jsonl").read_text()
    assert main(["ratings", "add", str(tmp_path / "t.abc"), "--store", s, "--origin", "sample"]) == 0
    assert "added 0 new items" in capsys.readouterr().out
    assert (tmp_path / "s" / "items.jsonl").read_text() == lines

    (tmp_path / "t.txt").write_text("a first line\n\nsecond line\na first line\n")
    assert main(["ratings", "add", str(tmp_path / "t.txt"), "--store", s, "--origin", "sample",
                 "--domain", "text", "--iteration", "2"]) == 0
    texts = [it for it in RatingStore(s).items if it.domain == "text"]
    assert [t.text for t in texts] == ["a first line", "second line"] and {t.iteration for t in texts} == {2}

    midi = tmp_path / "midi"
    midi.mkdir()
    for i, tune in enumerate(tunes[:2]):
        abc_to_midi(tune, midi / f"{i}.mid")
    (midi / "notes.txt").write_text("not MIDI")
    assert main(["ratings", "add", str(midi), "--store", s, "--origin", "corpus", "--domain", "midi"]) == 0
    remi = [it for it in RatingStore(s).items if it.domain == "midi"]
    assert len(remi) == 2 and all("Pitch_" in it.text for it in remi)
    capsys.readouterr()

    # bad input: a clear error, nothing written
    before = (tmp_path / "s" / "items.jsonl").read_text()
    assert main(["ratings", "add", str(tmp_path / "missing.abc"), "--store", s, "--origin", "corpus"]) == 2
    assert main(["ratings", "add", str(midi), "--store", s, "--origin", "corpus"]) == 2  # a folder is not ABC
    assert main(["ratings", "add", str(tmp_path / "t.abc"), "--store", s, "--origin", "corpus",
                 "--iteration", "-1"]) == 2
    err = capsys.readouterr().err
    assert "missing.abc does not exist" in err and "is a folder" in err and "--iteration" in err
    assert (tmp_path / "s" / "items.jsonl").read_text() == before
    assert main(["ratings", "add", str(tmp_path / "t.abc"), "--store", str(tmp_path / "new"),
                 "--origin", "corpus", "--domain", "text"]) == 0  # any file is text, one piece per line


def test_readme_path_from_own_tunes_to_a_reward_model(tmp_path, capsys):
    """The README's sequence through the `gradopt` entry point, on tiny settings: train a generator,
    sample from it, add one's own tunes and the samples, rate, fit, pick pairs, rate them, refit,
    fit a probe reward model, and load it."""
    import domains
    from rewardmodels import RatingStore, RewardModel

    w = tmp_path
    s = str(w / "store")
    tunes = _own_tunes(12)
    long_tune = "X:99\nT:long\nM:4/4\nL:1/8\nK:G\n" + "|".join(_BARS * 2) + "|]\n"  # beyond 128 tokens
    broken = "X:98\nT:overlong bar\nM:4/4\nL:1/8\nK:G\nGABcdedBGABc|dedB dedB|]\n"
    (w / "tunes.abc").write_text("\n".join(tunes + [long_tune, broken]))
    long_tune, broken = domains.normalise(long_tune), domains.normalise(broken)  # as stored (X:1)
    assert main(["train-generator", "--work", str(w / "gen"), "--preset", "tiny", "--collections", "miscFolk",
                 "--steps", "3", "--eval-every", "3", "--batch-size", "2", "--minutes", "0"]) == 0
    assert main(["sample", "--work", str(w / "gen"), "-n", "4", "--bar-aware", "--max-new-tokens", "60",
                 "--out", str(w / "samples.abc")]) == 0
    assert main(["ratings", "add", str(w / "tunes.abc"), "--store", s, "--origin", "corpus"]) == 0
    assert main(["ratings", "add", str(w / "samples.abc"), "--store", s, "--origin", "sample",
                 "--iteration", "1"]) == 0
    store = RatingStore(s)
    n_samples = sum(it.origin == "sample" for it in store.items)
    assert sum(it.origin == "corpus" for it in store.items) == 14 and n_samples >= 1
    n = len(store)

    assert main(["simulate-ratings", "--store", s, "-k", "40", "--judge"]) == 0
    assert "recorded 40 comparisons" in capsys.readouterr().out
    store = RatingStore(s)
    assert len(store.comparisons) == 40 and len({(c.a, c.b) for c in store.comparisons}) == 40
    with_broken = [c for c in store.comparisons if rm_id(broken) in (c.a, c.b)]
    assert with_broken and all(c.kind == "auto" and rm_id(broken) in c.broken for c in with_broken)
    assert {c.kind for c in store.comparisons} == {"auto", "simulated"}

    scores_path = w / "store" / "scores.json"
    assert main(["fit-bt", "--store", s, "--out", str(scores_path)]) == 0
    scores = json.loads(scores_path.read_text())
    assert scores["ids"] == store.ids and len(scores["mean"]) == len(scores["sd"]) == n
    assert np.isfinite(scores["mean"]).all() and (np.asarray(scores["sd"]) > 0).all()
    assert np.isfinite(scores["sd"]).all()
    capsys.readouterr()

    assert main(["next-pairs", "--store", s, "--scores", str(scores_path), "-k", "5", "--strategy", "racing"]) == 0
    pairs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rated = {frozenset((c.a, c.b)) for c in store.comparisons}
    keys = {frozenset((p["a"], p["b"])) for p in pairs}
    assert len(pairs) == 5 and len(keys) == 5 and not keys & rated
    assert all(p["a"] in store and p["b"] in store and p["a"] != p["b"] for p in pairs)
    (w / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert main(["simulate-ratings", "--store", s, "--pairs", str(w / "pairs.jsonl")]) == 0
    assert len(RatingStore(s).comparisons) == 45
    assert main(["fit-bt", "--store", s, "--out", str(scores_path)]) == 0

    with pytest.warns(UserWarning, match=r"1 of \d+ items .* longer than the generator's context \(128"):
        assert main(["train-reward", "--store", s, "--scores", str(scores_path), "--generator", str(w / "gen"),
                     "--probe", "--pooling", "mean", "--out", str(w / "reward")]) == 0
    assert "fitted a linear probe" in capsys.readouterr().out
    model = RewardModel.from_pretrained(w / "reward")
    tok = domains.load_tokenizer(w / "reward")
    texts = [it.text for it in RatingStore(s).items if it.text != long_tune]
    ids, mask = domains.encode_batch(tok, texts, model)
    with torch.no_grad():
        r = model.score(ids, mask)
    assert r.shape == (len(texts),) and torch.isfinite(r).all() and r.std() > 0


def rm_id(text: str) -> str:
    from rewardmodels import item_id

    return item_id(text)


def test_train_reward_recipe(store, tmp_path, generator_and_scores, capsys):
    """--recipe fits the named recipe's way: practical_ending is a probe with per-bar pooling whose
    bar tokens come from the generator's tokenizer; the saved model ranks the store as BT does."""
    from rewardmodels import PRACTICAL_ENDING, RECIPES, load_reward_model

    gen, tok = generator_and_scores
    common = ["--store", str(store / "s"), "--generator", str(tmp_path / "gen"), "--scores", str(tmp_path / "sc.json")]
    assert main(["train-reward", *common, "--recipe", "practical_ending", "--out", str(tmp_path / "end")]) == 0
    assert "fitted recipe practical_ending (bars pooling, fit probe" in capsys.readouterr().out
    model = load_reward_model(tmp_path / "end")
    assert model.pooling == PRACTICAL_ENDING.pooling == "bars"
    assert [tok.decode([i]) for i in model.bar_ids] == ["|"]
    good, other, broken = _train_scores(tmp_path / "end", tok, gen)
    assert good > other > broken
    for name, w in gen.transformer.state_dict().items():  # a probe: the backbone is the generator's
        assert torch.equal(model.transformer.state_dict()[name], w), name
    # a fine-tune recipe, shortened by --steps
    assert main(["train-reward", *common, "--recipe", "baseline", "--steps", "3", "--batch-size", "2",
                 "--out", str(tmp_path / "base")]) == 0
    assert "3 fine-tune steps" in capsys.readouterr().out
    assert load_reward_model(tmp_path / "base").pooling == RECIPES["baseline"].pooling
    # unknown recipe, and --recipe with a low-level flag: exit 2 with the reason, nothing written
    assert main(["train-reward", *common, "--recipe", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'nope'" in err and all(name in err for name in RECIPES)
    assert main(["train-reward", *common, "--recipe", "practical", "--probe", "--out", str(tmp_path / "x")]) == 2
    assert "drop --probe" in capsys.readouterr().err
    assert main(["train-reward", *common, "--recipe", "practical", "--pooling", "mean",
                 "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_train_reward_recipe_with_musical_annotations(store, tmp_path, generator_and_scores, capsys):
    """--recipe practical_music: the saved model reads ABC annotations (token texts from the
    generator's tokenizer), loads with them and ranks the store's items as Bradley-Terry does."""
    from rewardmodels import load_reward_model, token_texts

    gen, tok = generator_and_scores
    common = ["--store", str(store / "s"), "--generator", str(tmp_path / "gen"), "--scores", str(tmp_path / "sc.json")]
    assert main(["train-reward", *common, "--recipe", "practical_music", "--out", str(tmp_path / "music")]) == 0
    assert "fitted recipe practical_music" in capsys.readouterr().out
    model = load_reward_model(tmp_path / "music")
    assert (model.annotations, model.annotation_features) == ("abc", True)
    assert model.token_texts[: len(tok)] == token_texts(tok)
    good, other, broken = _train_scores(tmp_path / "music", tok, gen)
    assert good > other > broken


def test_train_reward_recipe_ensemble_with_musical_annotations(store, tmp_path, generator_and_scores, capsys):
    """--recipe practical_music --ensemble 3: three bootstrap probes reading ABC annotations, saved
    and loaded as an ensemble, ranking the store as Bradley-Terry does; a fine-tune recipe refuses
    --ensemble (exit 2, nothing written)."""
    from rewardmodels import RewardEnsemble, load_reward_model

    gen, tok = generator_and_scores
    common = ["--store", str(store / "s"), "--generator", str(tmp_path / "gen"), "--scores", str(tmp_path / "sc.json")]
    assert main(["train-reward", *common, "--recipe", "practical_music", "--ensemble", "3",
                 "--out", str(tmp_path / "ens")]) == 0
    assert "an ensemble of 3 bootstrap probes" in capsys.readouterr().out
    model = load_reward_model(tmp_path / "ens")
    assert isinstance(model, RewardEnsemble) and model.members == 3
    assert (model.annotations, model.annotation_features) == ("abc", True)
    good, other, broken = _train_scores(tmp_path / "ens", tok, gen)
    assert good > other > broken
    assert main(["train-reward", *common, "--recipe", "baseline", "--ensemble", "3", "--out", str(tmp_path / "x")]) == 2
    assert "drop --ensemble" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
