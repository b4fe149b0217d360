"""Text domain: splitting a plain-text file into pieces, tokenizer round trips, validity, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains import CorpusError, Domain, TextConfig, TextDomain, split_text, validate_text

POEM = """The sea is calm tonight.
The tide is full, the moon lies fair
Upon the straits.

  Come to the window, sweet is the night-air!\r
Only, from the long line of spray   \r
\r
The sea is calm tonight.
The tide is full, the moon lies fair
Upon the straits.
\t
Listen! you hear the grating roar
"""


@pytest.fixture
def poem(tmp_path):
    path = tmp_path / "dover.txt"
    path.write_text(POEM, encoding="utf-8")
    return path


def test_split_by_paragraph_and_by_line():
    pieces = split_text(POEM)
    assert [line for line, _ in pieces] == [1, 5, 8, 12]
    assert pieces[1][1] == "  Come to the window, sweet is the night-air!\nOnly, from the long line of spray"
    assert pieces[0][1] == pieces[2][1]
    lines = split_text(POEM, by="line")
    assert len(lines) == 9 and lines[3] == (5, "  Come to the window, sweet is the night-air!")
    assert split_text("\n\n \n") == []
    with pytest.raises(ValueError):
        split_text(POEM, by="stanza")


def test_corpus_dedups_and_reports(poem):
    d = TextDomain(poem)
    assert isinstance(d, Domain) and d.name == "text"
    pieces = d.corpus()
    assert len(pieces) == 3 and d.report.duplicates == 1
    assert pieces[0].collection == "dover" and pieces[1].source == "dover.txt:5"
    assert d.report.as_dict()["tunes"] == 3
    by_line = TextDomain(poem, TextConfig(by="line")).corpus()
    assert len(by_line) == 6  # 9 lines, 3 repeated


def test_invalid_pieces_are_counted_and_skipped(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("a good line of verse\n\n" + "la " * 80 + "\n\n???!!!\n\nbell\x07ring\n", encoding="utf-8")
    d = TextDomain(path)
    assert [p.text for p in d.corpus()] == ["a good line of verse"]
    assert sum(d.report.skipped.values()) == 3


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_round_trip(poem, kind):
    d = TextDomain(poem)
    texts = [p.text for p in d.corpus()]
    tok = d.build_tokenizer(texts, kind=kind, vocab_size=120)
    for t in texts:
        ids = tok(t)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert d.decode(tok, ids) == t


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abcde ,.!\n\t'", min_size=1, max_size=60), min_size=1, max_size=4))
def test_char_tokenizer_round_trips_any_text_of_its_alphabet(texts):
    d = TextDomain("unused.txt")
    tok = d.build_tokenizer(["abcde ,.!\n\t'"])
    for t in texts:
        assert d.decode(tok, tok(t)["input_ids"]) == t


def test_missing_empty_and_unreadable_files_name_the_path(tmp_path):
    for name, content, match in [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "", "is empty"),
        ("blank.txt", " \n\n\t\n", "is empty"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("noise.txt", "!!!\n\n???\n", "no usable piece"),
    ]:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(CorpusError, match=match) as err:
            TextDomain(path).corpus()
        assert str(path) in str(err.value)
    with pytest.raises(CorpusError, match="not a file"):
        TextDomain(tmp_path).corpus()


def test_validate():
    assert validate_text("Ah, love, let us be true\nTo one another!")
    assert validate_text("").reason == "empty text"
    assert validate_text("   \n").reason == "empty text"
    assert "non-printable" in validate_text("tab\tok but bell\x07 is not").reason
    assert validate_text("... --- ...").reason == "no letters or digits"
    assert "repeated" in validate_text("no" + "o" * 40).reason
    assert "degenerate" in validate_text("the sea, " * 30).reason
    assert "longer than" in validate_text("word " * 500).reason
    assert not validate_text("hi", TextConfig(min_chars=5))


def test_render_writes_text(tmp_path):
    out = TextDomain("x.txt").render("two lines\nof verse", tmp_path / "out" / "p.txt")
    assert out.read_text(encoding="utf-8") == "two lines\nof verse\n"


def test_config_checks_its_fields():
    for bad in (dict(by="word"), dict(min_chars=0), dict(min_chars=10, max_chars=5), dict(max_run=1),
                dict(min_compression=1.0)):
        with pytest.raises(ValueError):
            TextConfig(**bad)
