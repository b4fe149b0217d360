"""Exact search over domain-proposed whole tunes (gradopt._moves) and the edit kinds on the command line."""

import json
from fractions import Fraction

import pytest
import torch

import domains
from transformers import GPT2Config, GPT2LMHeadModel

from ascent_doubles import TinyReward, save_tiny_models
from gradopt import MoveConfig, ObjectiveWeights, move_search, score_texts
from gradopt.cli import main

TUNES = ["X:1\nT:A\nM:2/4\nL:1/8\nK:G\nG2 AB|c2 BA|G2 B2|d4|\n", "X:2\nT:B\nM:2/4\nL:1/8\nK:D\nFA dc|B2 AG|FA d2|D4|\n"]


@pytest.fixture(scope="module")
def tok():
    return domains.build_char_tokenizer(TUNES + ["<>/34 ^=_,'"])


def tiny_models(tok, seed=0):
    """(reward model, generator), float64, tiny, with room for the test tunes."""
    torch.manual_seed(seed)
    gen = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).double().eval()
    return TinyReward(len(tok), 96, seed + 1).double().eval(), gen


def test_move_search_keeps_the_best_candidate_scored_one_by_one(tok):
    rm, gen = tiny_models(tok)
    w = ObjectiveWeights(lm_weight=0.5)
    propose = lambda t: domains.abc_moves(t, "any")  # noqa: E731
    out = move_search(TUNES, propose, rm, gen, tok, MoveConfig(rounds=1, candidates=1000), weights=w)
    for tune, res in zip(TUNES, out):
        cands = propose(tune)
        alone = torch.cat([score_texts([c], rm, gen, tok, w)[0] for c in cands])  # one by one
        before = float(score_texts([tune], rm, gen, tok, w)[0][0])
        assert res.objective_before == pytest.approx(before)
        best = int(alone.argmax())
        if float(alone[best]) > before:
            assert res.text == cands[best] and res.moves == 1
            assert res.objective_after == pytest.approx(float(alone[best]))
        else:
            assert res.text == tune and res.moves == 0
        assert res.objective_after >= res.objective_before
    again = move_search(TUNES, propose, rm, gen, tok, MoveConfig(rounds=2, candidates=5, seed=1), weights=w)
    assert [r.text for r in again] == [r.text for r in
                                       move_search(TUNES, propose, rm, gen, tok, MoveConfig(rounds=2, candidates=5, seed=1), weights=w)]


def test_move_search_respects_validate_and_bad_configs(tok):
    rm, gen = tiny_models(tok)
    propose = lambda t: domains.abc_moves(t, "rhythm")  # noqa: E731
    out = move_search(TUNES, propose, rm, gen, tok, MoveConfig(rounds=2), validate=lambda t: t in TUNES)
    assert [r.text for r in out] == TUNES and all(r.valid_after for r in out)  # every move vetoed
    oov = move_search(TUNES[:1], lambda t: [t.replace("G2", "G#")], rm, gen, tok)  # '#' is not in the vocabulary
    assert oov[0].text == TUNES[0]
    with pytest.raises(ValueError, match="rounds must be >= 0"):
        MoveConfig(rounds=-1)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("moves_cli")
    save_tiny_models(d, tok, n_positions=96)
    (d / "in.abc").write_text("\n".join(TUNES))
    return d


def run(models, kind, *extra):
    """The command with the do-no-harm guard off: these tests are about which edits the kinds make."""
    out = models / f"out_{kind}.abc"
    rc = main(["optimize", "--in", str(models / "in.abc"), "--out", str(out), "--edit", kind,
               "--generator", str(models / "gen"), "--reward", str(models / "rm"), "--steps", "6",
               "--check-every", "2", "--restarts", "2", "--polish-rounds", "2", "--lm-weight", "0",
               "--no-utility", "--threads", "1", "--no-guard", "--json", str(models / f"rows_{kind}.json"), *extra])
    assert rc == 0
    return json.loads((models / f"rows_{kind}.json").read_text())


def test_cli_ending_edits_change_only_the_last_bar(models, capsys):
    rows = run(models, "ending", "--no-validate")
    assert sum(r["changed"] for r in rows) > 0
    for tune, row in zip(TUNES, rows):
        new, tune = row["text"].split("\n", 1)[1], tune.split("\n", 1)[1]  # the file's X: numbers are renumbered
        cut = tune.rstrip("|\n").rfind("|") + 1  # the last bar starts after the last inner bar line
        assert len(new) == len(tune) and new[:cut] == tune[:cut]


def bar_durations_m21(text):
    from test_abc_edits import m21_bar_durations

    return m21_bar_durations(text)


@pytest.mark.parametrize("kind", ["rhythm", "bars"])
def test_cli_move_kinds_keep_bars_full(models, kind, capsys):
    rows = run(models, kind, "--move-rounds", "3")
    assert any(r["text"] != t for r, t in zip(rows, TUNES)) and all(r["valid_after"] for r in rows)
    for tune, row in zip(TUNES, rows):
        after = bar_durations_m21(row["text"])
        if kind == "rhythm":
            assert after == bar_durations_m21(tune)
        else:
            assert set(after) == {Fraction(1, 2)}  # every bar of these 2/4 tunes is full, and stays full
            assert row["text"].split("K:")[0].split("\n", 1)[1] == tune.split("K:")[0].split("\n", 1)[1]
