import json
import shutil

import pytest
import torch

from ascent_doubles import TEXTS, save_tiny_models
from domains import (
    NORMALISATION_FILE, NormaliseConfig, build_char_tokenizer, load_abc_file, save_normalisation,
)
from gradopt.cli import main
from rewardmodels import RewardEnsemble

TUNE = "X:1\nT:Test\nM:4/4\nL:1/8\nK:G\nGABc dedB|cBAG E2D2|GABc dedB|cBAG G4|\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("ascent_cli")
    tok = build_char_tokenizer(TEXTS + [TUNE])
    gen = save_tiny_models(d, tok, n_positions=96)
    save_normalisation(NormaliseConfig(), d / "gen")  # a generator trained on tunes with spaces
    ens = RewardEnsemble.from_generator(gen, "mean", members=4)
    torch.nn.init.normal_(ens.head.weight, std=1.0)  # members that disagree about everything
    ens.save_pretrained(d / "ens")
    (d / "in.abc").write_text(TUNE + "\n" + TUNE.replace("X:1", "X:2").replace("E2D2", "EDD2"))
    return d


def test_optimize_writes_tunes_and_prints_a_summary(work, capsys):
    out = work / "out.abc"
    rc = main(["optimize", "--in", str(work / "in.abc"), "--out", str(out), "--freeze", "header,1",
               "--generator", str(work / "gen"), "--reward", str(work / "rm"), "--steps", "4",
               "--check-every", "2", "--polish-rounds", "1", "--no-utility", "--threads", "1", "--json", str(work / "rows.json")])
    assert rc == 0
    text = out.read_text()
    assert text.count("X:") == 2 and text.startswith("X:1\nT:Test\nM:4/4\nL:1/8\nK:G\nGABc dedB|")
    assert text.split("\n\n")[1].split("\n", 1)[1].startswith("T:Test\nM:4/4\nL:1/8\nK:G\n")  # headers kept
    printed = capsys.readouterr().out
    assert "->reward" in printed and printed.strip().splitlines()[-1].startswith("2 tunes")
    rows = json.loads((work / "rows.json").read_text())
    assert len(rows) == 2 and all(r["valid_after"] for r in rows)


def test_optimize_with_an_ensemble_keeps_tunes_it_cannot_vouch_for(work, capsys):
    args = ["optimize", "--in", str(work / "in.abc"), "--generator", str(work / "gen"), "--reward", str(work / "ens"),
            "--steps", "4", "--check-every", "2", "--polish-rounds", "1", "--no-utility", "--threads", "1",
            "--max-changed", "1.0"]
    capsys.readouterr()
    assert main([*args, "--out", str(work / "guarded.abc"), "--json", str(work / "guarded.json")]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((work / "guarded.json").read_text())
    assert all(r["kept"] and r["changed"] == 0 for r in rows)
    assert [r["text"] for r in rows] == load_abc_file(work / "in.abc")  # the inputs, unchanged
    assert printed.count("kept the input: no confident improvement") == 2 and "±" in printed
    assert "(2 kept unchanged)" in printed.strip().splitlines()[-1]
    assert main([*args, "--no-guard", "--out", str(work / "raw.abc"), "--json", str(work / "raw.json")]) == 0
    raw = json.loads((work / "raw.json").read_text())
    assert not any(r["kept"] for r in raw) and any(r["changed"] for r in raw)
    assert [r["gain_mean"] for r in raw] == pytest.approx([r["gain_mean"] for r in rows])


def test_optimize_refuses_a_tune_longer_than_the_context(work, capsys):
    (work / "long.abc").write_text(TUNE.replace("|\n", "|" + "GABc dedB|" * 10 + "\n"))
    rc = main(["optimize", "--in", str(work / "long.abc"), "--out", str(work / "x.abc"),
               "--generator", str(work / "gen"), "--reward", str(work / "rm")])
    assert rc == 2 and "context" in capsys.readouterr().err


def test_harvest_queues_items(work, capsys):
    rc = main(["harvest", "--store", str(work / "store"), "--in", str(work / "in.abc"), "--corpus",
               str(work / "in.abc"), "--generator", str(work / "gen"), "--reward", str(work / "rm"),
               "--steps", "4", "--check-every", "2", "--polish-rounds", "1", "--min-reward", "-1000"])
    assert rc == 0
    assert "likely blind spots" in capsys.readouterr().out
    assert (work / "store" / "items.jsonl").exists()


def test_harvest_with_pitch_edits_changes_only_note_letters(work, capsys):
    rc = main(["harvest", "--store", str(work / "store_pitch"), "--in", str(work / "in.abc"), "--corpus",
               str(work / "in.abc"), "--generator", str(work / "gen"), "--reward", str(work / "rm"),
               "--steps", "6", "--check-every", "2", "--polish-rounds", "2", "--min-reward", "-1000",
               "--edit", "pitch", "--json", str(work / "suspects.json")])
    assert rc == 0
    suspects = json.loads((work / "suspects.json").read_text())
    assert suspects, "with --min-reward -1000 every changed tune is a suspect"
    for s in suspects:
        a, b = s["parent_text"], s["text"]
        assert len(a) == len(b) and a != b
        assert all(x == y or (x in "ABCDEFGabcdefg" and y in "ABCDEFGabcdefg") for x, y in zip(a, b))


def _pitch_only_run(work, gen_dir, out):
    """optimize with pitch edits only: the output keeps every character but note letters, so its
    spacing is the spacing the input was normalised to."""
    return main(["optimize", "--in", str(work / "in.abc"), "--out", str(out), "--generator", str(gen_dir),
                 "--reward", str(work / "rm"), "--edit", "pitch", "--steps", "2", "--check-every", "1",
                 "--polish-rounds", "1", "--no-utility", "--threads", "1"])


def _bodies(abc_text):
    return [line for line in abc_text.splitlines() if line and line[1:2] != ":"]


def test_optimize_normalises_tunes_like_the_generator_corpus(work, tmp_path):
    spaceless = tmp_path / "gen_spaceless"
    shutil.copytree(work / "gen", spaceless)
    save_normalisation(NormaliseConfig(spaceless=True), spaceless)
    assert _pitch_only_run(work, spaceless, tmp_path / "a.abc") == 0
    bodies = _bodies((tmp_path / "a.abc").read_text())
    assert len(bodies) == 2 and all(" " not in b for b in bodies), bodies
    # the same tunes with the spaced generator keep their spaces
    assert _pitch_only_run(work, work / "gen", tmp_path / "b.abc") == 0
    assert all(" " in b for b in _bodies((tmp_path / "b.abc").read_text()))


def test_generator_without_normalisation_file_warns_and_keeps_spaces(work, tmp_path):
    old = tmp_path / "gen_old"
    shutil.copytree(work / "gen", old)
    (old / NORMALISATION_FILE).unlink()
    with pytest.warns(UserWarning, match=NORMALISATION_FILE):
        assert _pitch_only_run(work, old, tmp_path / "c.abc") == 0
    assert all(" " in b for b in _bodies((tmp_path / "c.abc").read_text()))
    (old / NORMALISATION_FILE).write_text('{"spaceles": true}')
    assert _pitch_only_run(work, old, tmp_path / "d.abc") == 2  # a clear error, not a silent default


@pytest.mark.parametrize("command", [["optimize", "--in", "x.abc", "--out", "y.abc"], ["improve-corpus", "x.abc", "y.abc"]])
def test_the_likelihood_limit_reaches_the_guard(command):
    from gradopt import TrustConfig
    from gradopt.cli import build_parser
    from gradopt.cli._ascent import _config

    models = ["--generator", "g", "--reward", "r"]
    args = build_parser().parse_args([*command, *models, "--max-loglik-drop", "0.07"])
    assert _config(args).trust.max_loglik_drop == 0.07
    default = build_parser().parse_args([*command, *models])
    assert _config(default).trust == TrustConfig()


@pytest.mark.parametrize("command", [["optimize", "--in", "x.abc", "--out", "y.abc"], ["improve-corpus", "x.abc", "y.abc"]])
def test_the_likelihood_floor_reaches_the_objective(command):
    from gradopt.cli import build_parser
    from gradopt.cli._ascent import _config

    models = ["--generator", "g", "--reward", "r"]
    args = build_parser().parse_args([*command, *models, "--lm-weight", "4", "--lm-floor"])
    assert _config(args).objective.lm_floor and _config(args).objective.lm_weight == 4
    assert not _config(build_parser().parse_args([*command, *models])).objective.lm_floor
