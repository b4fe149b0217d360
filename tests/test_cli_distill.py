"""`gradopt distill` end to end on tiny models with test-registered methods."""

import json

import pytest

import distill
import domains
from ascent_doubles import TEXTS, save_tiny_models
import distill_doubles
from distill_doubles import lm_steps, noop
from gradopt.cli import main

TUNE = "X:3\nT:Test\nM:4/4\nL:1/8\nK:G\nGABc dedB|cBAG E2D2|\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill_cli")
    tok = domains.build_char_tokenizer(TEXTS + [TUNE])
    save_tiny_models(d, tok, n_positions=64)
    domains.save_normalisation(domains.NormaliseConfig(), d / "gen")
    (d / "corpus.abc").write_text("\n\n".join(TEXTS))
    (d / "heldout.abc").write_text(TUNE)
    return d


@pytest.fixture
def methods(monkeypatch):
    monkeypatch.setitem(distill.METHODS, "noop", noop)
    monkeypatch.setitem(distill.METHODS, "lm_steps", lm_steps)


def _args(work, method, *extra):
    return ["distill", "--method", method, "--generator", str(work / "gen"), "--reward-model", str(work / "rm"),
            "--work", str(work / "runs"), "--corpus", str(work / "corpus.abc"), "--heldout", str(work / "heldout.abc"),
            "--n-eval", "4", "--max-new-tokens", "20", "--no-progress", "--threads", "1", *extra]


def test_distill_trains_saves_evaluates_and_resumes(work, methods, capsys):
    distill_doubles.STEPS_RUN.clear()
    assert main(_args(work, "lm_steps", "--max-steps", "2", "--bar-aware")) == 0
    out = work / "runs" / "lm_steps"
    rec = json.loads((out / "evaluation.json").read_text())
    ev = rec["evaluation"]
    assert set(ev) == set(distill.EVALUATION_KEYS) and rec["steps"] == 2 and rec["corpus_tunes"] == 2
    assert ev["kl"] > 0 and ev["kl_source"] == "sampled"
    assert ev["bar_aware_reward"] is not None and ev["histogram_heldout_read"] == 1
    policy = domains.load_generator(out / "policy")
    assert domains.load_tokenizer(out / "policy").get_vocab() == domains.load_tokenizer(work / "gen").get_vocab()
    printed = capsys.readouterr().out
    assert "utility" in printed and printed.strip().splitlines()[-1].startswith("distill lm_steps: 2 steps")
    # re-running continues from the checkpoint: two more steps, not four from scratch
    assert main(_args(work, "lm_steps", "--max-steps", "4")) == 0
    assert distill_doubles.STEPS_RUN == [0, 1, 2, 3]  # steps 0 and 1 were not run again
    assert json.loads((out / "evaluation.json").read_text())["steps"] == 4
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    changed = domains.load_generator(out / "policy")  # the saved policy is the trained one
    assert any((a != b).any() for a, b in zip(policy.parameters(), changed.parameters()))


def test_distill_noop_has_zero_kl(work, methods, capsys):
    assert main(_args(work, "noop", "--header-prompts")) == 0
    ev = json.loads((work / "runs" / "noop" / "evaluation.json").read_text())["evaluation"]
    assert ev["kl"] == pytest.approx(0.0, abs=1e-9)
    assert ev["bar_aware_reward"] is None  # no --bar-aware


def test_distill_errors(work, methods, capsys, tmp_path):
    assert main([*_args(work, "noop")[:4], str(tmp_path / "nothing"), *_args(work, "noop")[5:]]) == 2
    assert "--generator" in capsys.readouterr().err
    args = _args(work, "noop")
    rm_at = args.index("--reward-model") + 1
    assert main([*args[:rm_at], str(tmp_path), *args[rm_at + 1:]]) == 2
    assert "--reward-model" in capsys.readouterr().err and not (tmp_path / "noop").exists()
    with pytest.raises(SystemExit) as err:  # argparse: not a registered method
        main(_args(work, "no_such_method"))
    assert err.value.code == 2 and "no_such_method" in capsys.readouterr().err
    for flag, value in (("--cpu-seconds", "0"), ("--cpu-seconds", "nan"), ("--max-steps", "0"), ("--n-eval", "1")):
        assert main(_args(work, "noop", flag, value)) == 2
        assert flag in capsys.readouterr().err
