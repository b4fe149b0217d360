"""screen_abc: pathological ABC is turned away cheaply, corpus tunes never are."""

import time

import pytest

import domains
from domains._abc_screen import MAX_CHARS, MAX_NOTE_BARS, screen_abc

HEAD = "X:1\nT:t\nM:C|\nL:1/8\nK:Bb\n"  # a bar of C| is 8 eighths

PATHOLOGIES = {
    "G2222222|2d/-^eB2|": "7-digit",  # the note that kept music21 busy for 15 minutes
    "G33|d/|": "4.125 bars",  # just over the bound
    "z4096|d/|": "512 bars",  # rests count too
    "[GB]64|d/|": "8 bars",  # a chord's length multiplies its notes
    "[G64B]|": "8 bars",
    "(2:16 G16|": "6 bars",  # a tuplet stretches its notes
    "{G2222}A|": "277.8 bars",  # grace notes too
    "G/1024|": "1/8192",
    "G//////////|": "10 slashes",
    "G/0|": "divides by zero",
    "(99GAB|": "tuplet '(99'",
    "(0GAB|": "tuplet '(0'",
    "(3:2:999GAB|": "tuplet '(3:2:999'",
    "[CEGcegc'e'g'c''e''g''CEGce]|": "more than 16 notes",
    "[[CE]G]A|": "chord opens inside a chord",
    "[CE|GA|": "chord '[' is never closed",
    "{ga{f}e}A|": "grace group opens inside a grace group",
    "{gA|B|": "grace group '{' is never closed",
    "[C{g}E]|": "grace group opens inside a chord",
    "Z12345|": "5-digit",
    "[M:9999/1]G|": "bar of 9999 whole notes",
    "[L:1/99999]G|": "5-digit",
    "M:3/4\nG2222|": "370.3 bars of M:3/4",  # a body M: line changes the bar
}


@pytest.mark.parametrize("body,reason", PATHOLOGIES.items())
def test_pathologies_are_named(body, reason):
    got = screen_abc(HEAD + body + "\n")
    assert got is not None and reason in got, got


def test_bounds_are_inclusive():
    assert screen_abc(HEAD + f"G{8 * MAX_NOTE_BARS}|\n") is None  # exactly MAX_NOTE_BARS bars
    assert screen_abc(HEAD + "G/64|\n") is None  # 1/512 of a whole note
    assert screen_abc(HEAD + "(9:16:64" + "G" * 9 + "|\n") is None
    long = HEAD + "GABc " * ((MAX_CHARS - len(HEAD)) // 5) + "\n"
    assert len(long) <= MAX_CHARS and screen_abc(long) is None
    assert "characters" in screen_abc(long + "GABc|\n" * 2)


def test_quotes_comments_and_fields_are_skipped():
    """Chord names, decorations, comments, lyrics and inline fields hold letters and digits that
    are not notes; chords may sit in grace groups and span a line break (the corpus has both)."""
    body = '"G7/9999"G2 !trill!A2 +fermata+B2|[K:D][P:A]c8|% G99999\nw: G9999 lyrics\n{[Ge]}[f3a\n3]|\n'
    assert screen_abc(HEAD + body) is None


def test_header_values_in_range():
    assert "unit length" in screen_abc("X:1\nM:6/8\nL:1/9999\nK:G\nGAB|\n")
    assert "bar of" in screen_abc("X:1\nM:1/128\nL:1/8\nK:G\nGAB|\n")
    assert screen_abc("X:1\nM:none\nK:G\nGAB|\n") is None  # no meter: bars of 4/4


def test_corpus_passes_quickly(fiddle_pieces):
    """Every bundled fiddle tune passes, at well under a millisecond each."""
    texts = [p.text for p in fiddle_pieces]
    start = time.process_time()
    failed = [(t, r) for t in texts if (r := screen_abc(t)) is not None]
    per_tune = (time.process_time() - start) / len(texts)
    assert failed == []
    assert per_tune < 2e-3, per_tune  # CPU time: a regex walk, ~0.2 ms for a corpus tune


def test_the_validator_uses_the_screen():
    """validate_abc reports the screen's reason (and does not wait for music21)."""
    text = HEAD + "G2222222|2d/-^eB2|\n"
    v = domains.validate_abc(text)
    assert not v.ok and v.reason == screen_abc(text)
