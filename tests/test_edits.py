"""Edit kinds: rhythm-preserving pitch edits of ABC tunes, alone and through the CLI."""

import json
import random
import re

import pytest
import torch

import domains
from ascent_doubles import TEXTS, encode, save_tiny_models
from gradopt import NOTE_LETTERS, edit_masks, note_letters, pad_batch, pitch_edits
from gradopt.cli import main


def masked(text: str) -> str:
    """The text with every free note letter replaced by '*'."""
    return "".join("*" if free else ch for ch, free in zip(text, note_letters(text)))


def relettered(text: str, seed: int) -> str:
    rng = random.Random(seed)
    letters = sorted(NOTE_LETTERS)
    return "".join(rng.choice(letters) if free else ch for ch, free in zip(text, note_letters(text)))


def test_note_letters_are_the_letters_of_real_notes_only():
    text = ('X:1\nT:Bag of Cats\nM:4/4\nK:G\n"Am"AB c2|!trill!d>e [K:D] f|[CEG]2 {g}a z|\n'
            "K:Em\nB,C ^D=E % comment Bc\nd|e2!fe T~g +fine+ [1 G :|\n")
    assert masked(text) == ('X:1\nT:Bag of Cats\nM:4/4\nK:G\n"Am"** *2|!trill!*>* [K:D] *|[***]2 {*}* z|\n'
                            "K:Em\n*,* ^*=* % comment Bc\n*|*2!** T~* +fine+ [1 * :|\n")
    assert masked('K:C\n"unclosed A|B\n') == 'K:C\n"unclosed A|B\n'  # an unclosed span freezes, never frees
    assert len(note_letters("K:C\r\nAB\r\n")) == len("K:C\r\nAB\r\n")


@pytest.fixture(scope="module")
def valid_tunes(fiddle_pieces):
    """Short corpus tunes that pass validate_abc: plain ones and ones with chords, grace notes,
    lone '!' line breaks and inline fields."""
    texts = [p.text for p in fiddle_pieces if len(p.text) < 260]
    features = [r"\[[A-Ga-g]", r"\{", r"!", r"\[[A-Za-z]:"]
    picked = texts[:4] + [next(t for t in texts if re.search(f, t)) for f in features]
    assert all(domains.validate_abc(t).ok for t in picked)
    return picked


def test_pitch_edits_free_exactly_the_note_letters_of_a_corpus_tune(valid_tunes):
    tune = valid_tunes[0]  # plain: no decorations, inline fields or annotations
    tok = domains.build_char_tokenizer(TEXTS + valid_tunes)
    ids, _ = pad_batch(encode(tok, [tune, TEXTS[0]]), tok.pad_token_id)
    freeze, allowed = pitch_edits(ids, tok)
    v = len(tok)
    assert freeze.shape == ids.shape and allowed.shape == (*ids.shape, v)
    free = ~freeze
    row = ids[0].tolist()
    body = tune.index("\n", tune.index("K:")) + 1  # positions shift by one for BOS
    chars = [tok.decode([i]) for i in row]
    expected = [0 < i <= len(tune) and i - 1 >= body and chars[i] in NOTE_LETTERS for i in range(len(row))]
    assert free[0].tolist() == expected
    letters = torch.tensor([tok.decode([i]) in NOTE_LETTERS for i in range(v)])
    assert (allowed[free] == letters).all()  # any note letter of the vocabulary
    assert torch.equal(allowed[freeze], torch.nn.functional.one_hot(ids[freeze], v).bool())  # the rest: itself
    assert freeze[:, 0].all() and freeze[1, len(encode(tok, TEXTS[:1])[0]):].all()  # BOS, EOS, PAD


def test_relettering_the_free_positions_keeps_tunes_valid_and_rhythm_identical(valid_tunes):
    for i, tune in enumerate(valid_tunes):
        new = relettered(tune, seed=i)
        assert new != tune and masked(new) == masked(tune)
        assert domains.validate_abc(new).ok, (tune, new, domains.validate_abc(new).reason)


def test_edit_kinds_and_clear_errors():
    tok = domains.build_char_tokenizer(TEXTS)
    ids, _ = pad_batch(encode(tok, TEXTS), tok.pad_token_id)
    assert edit_masks("any", ids, tok) == (None, None)
    assert torch.equal(edit_masks("pitch", ids, tok)[1], pitch_edits(ids, tok)[1])
    with pytest.raises(ValueError, match="unknown edit kind 'tempo'"):
        edit_masks("tempo", ids, tok)
    bpe = domains.build_bpe_tokenizer(TEXTS * 4, vocab_size=60)
    with pytest.raises(ValueError, match="need a character-level tokenizer"):
        pitch_edits(pad_batch(encode(bpe, TEXTS), bpe.pad_token_id)[0], bpe)
    with pytest.raises(ValueError, match=r"must be \(b, t\)"):
        pitch_edits(ids[0], tok)


@pytest.fixture(scope="module")
def models(tmp_path_factory, valid_tunes):
    d = tmp_path_factory.mktemp("edits_cli")
    save_tiny_models(d, domains.build_char_tokenizer(TEXTS + valid_tunes), n_positions=272)
    return d


def test_cli_pitch_edits_keep_corpus_tunes_valid_and_their_rhythm(models, valid_tunes, capsys):
    tunes = valid_tunes[:3]
    (models / "in.abc").write_text("\n".join(tunes))
    rc = main(["optimize", "--in", str(models / "in.abc"), "--out", str(models / "out.abc"), "--edit", "pitch",
               "--generator", str(models / "gen"), "--reward", str(models / "rm"), "--steps", "6",
               "--check-every", "2", "--restarts", "2", "--polish-rounds", "2", "--lm-weight", "0",
               "--no-validate", "--no-guard", "--no-utility", "--threads", "1", "--json", str(models / "rows.json")])
    assert rc == 0
    rows = json.loads((models / "rows.json").read_text())
    before = domains.load_abc_file(models / "in.abc")
    assert len(rows) == 3 and sum(r["changed"] for r in rows) > 0
    for tune, row in zip(before, rows):
        assert masked(row["text"]) == masked(tune)  # only note letters moved
        assert domains.validate_abc(row["text"]).ok  # by construction, not by the engine's veto
