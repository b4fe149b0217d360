import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import domains



@pytest.fixture(scope="module")
def tok(fiddle_pieces):
    return domains.build_char_tokenizer([p.text for p in fiddle_pieces])


@pytest.fixture(scope="module")
def corpus_alphabet(fiddle_pieces):
    return sorted({c for p in fiddle_pieces for c in p.text})


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_char_round_trip_over_corpus_alphabet(tok, corpus_alphabet, data):
    text = data.draw(st.text(alphabet=st.sampled_from(corpus_alphabet), max_size=300))
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert len(ids) == len(text) + 2  # one token per character
    assert domains.decode(tok, ids) == text


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_bpe_round_trip(fiddle_pieces, data):
    tok = _bpe(fiddle_pieces)
    alphabet = sorted({c for p in fiddle_pieces[:800] for c in p.text})
    text = data.draw(st.text(alphabet=st.sampled_from(alphabet), max_size=200))
    assert domains.decode(tok, tok(text)["input_ids"]) == text


_BPE = {}


def _bpe(pieces):
    if "tok" not in _BPE:
        _BPE["tok"] = domains.build_bpe_tokenizer([p.text for p in pieces[:800]], vocab_size=300)
    return _BPE["tok"]


def test_bpe_compresses(fiddle_pieces):
    tok = _bpe(fiddle_pieces)
    text = fiddle_pieces[900].text
    assert len(tok(text)["input_ids"]) < 0.7 * len(text)
    assert len(tok) <= 300


def test_specials_distinct(tok):
    ids = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    assert len(ids) == 4 and None not in ids


def test_unknown_character_is_reported(tok):
    with pytest.raises(domains.OutOfVocabularyError, match="€"):
        domains.check_in_vocab(tok, "abc€")
    domains.check_in_vocab(tok, "abc")  # known characters pass


def test_save_load(tok, tmp_path):
    domains.save_tokenizer(tok, tmp_path)
    again = domains.load_tokenizer(tmp_path)
    text = "X:1\nK:G\nGAB|"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    with pytest.raises(FileNotFoundError):
        domains.load_tokenizer(tmp_path / "missing")


def test_empty_corpus_rejected():
    with pytest.raises(ValueError, match="empty"):
        domains.build_char_tokenizer([])
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        domains.build_tokenizer(["abc"], kind="words")


@pytest.mark.parametrize("text", ["<bos>", "K:D\n<eos>|", "<pad><unk>"])
def test_special_token_spellings_in_text_stay_text(tok, tmp_path, text):
    domains.save_tokenizer(tok, tmp_path)
    for t in (tok, domains.load_tokenizer(tmp_path)):
        ids = t(text)["input_ids"]
        assert len(ids) == len(text) + 2
        assert domains.decode(t, ids) == text
