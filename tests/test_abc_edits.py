"""ABC edit spaces (domains._abc_bars, _abc_moves, _abc_edits): every move keeps every bar's duration,
as music21 reads it; ending/cadence masks free only the end of the tune."""

import random
import re
import warnings
from fractions import Fraction

import pytest
import torch

import domains
from domains._abc_constraint import meter_length
from domains import abc_moves, bar_moves, edit_space, ending_classes, ending_edits, rhythm_moves

N_TUNES = 50


def m21_bar_durations(text: str) -> list[Fraction]:
    """Bar durations (whole notes) of the bars holding notes, read by music21's ABC tokens, not by
    the reader under test."""
    from music21 import abcFormat

    handler = abcFormat.ABCHandler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handler.process(text)
    out, cur, notes = [], Fraction(0), False
    for tok in handler.tokens:
        if isinstance(tok, abcFormat.ABCBar):
            if notes:
                out.append(cur)
            cur, notes = Fraction(0), False
        elif isinstance(tok, (abcFormat.ABCNote, abcFormat.ABCChord)) and not getattr(tok, "inGrace", False):
            ql = Fraction(tok.quarterLength).limit_denominator(96)
            if tok.activeTuplet is not None:
                ql *= Fraction(tok.activeTuplet.tupletMultiplier()).limit_denominator(96)
            cur, notes = cur + ql, True
    if notes:
        out.append(cur)
    return [d / 4 for d in out]


def meter_of(text: str) -> Fraction:
    return meter_length(re.search(r"^M:(.*)$", text, re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def tunes(fiddle_pieces):
    """50 corpus tunes of at most 400 characters, spread over the collection."""
    texts = [p.text for p in fiddle_pieces if len(p.text) <= 400]
    return texts[:: max(1, len(texts) // N_TUNES)][:N_TUNES]


def test_the_reader_agrees_with_music21_on_corpus_bar_durations(tunes):
    read = [domains.bar_durations(t) for t in tunes]
    assert sum(r is not None for r in read) >= 45  # the strict reader follows almost every tune
    agree = sum(r == m21_bar_durations(t) for r, t in zip(read, tunes) if r is not None)
    assert agree >= 0.9 * sum(r is not None for r in read)  # music21 misreads a few decorated notes


def test_every_rhythm_move_keeps_every_bar_duration(tunes):
    n = 0
    for i, tune in enumerate(tunes):
        before = m21_bar_durations(tune)
        for cand in rhythm_moves(tune, limit=8, seed=i):
            assert cand != tune
            assert m21_bar_durations(cand) == before, (tune, cand)
            n += 1
    assert n >= 8 * 40


def test_every_bar_move_changes_only_full_bars(tunes):
    n = 0
    for i, tune in enumerate(tunes):
        before, meter = m21_bar_durations(tune), meter_of(tune)
        for cand in bar_moves(tune, limit=8, seed=i):
            after = m21_bar_durations(cand)
            assert cand != tune and abs(len(after) - len(before)) <= 1, (tune, cand)
            # the bars that are not full (pickups, endings) are the same ones, in the same order
            assert [d for d in after if d != meter] == [d for d in before if d != meter], (tune, cand)
            n += 1
    assert n >= 8 * 30


def test_moves_pass_validate_abc(tunes):
    picked = [t for t in tunes[:: len(tunes) // 10] if domains.validate_abc(t).ok]
    assert len(picked) >= 8
    for i, tune in enumerate(picked):
        for cand in rhythm_moves(tune, limit=1, seed=i) + bar_moves(tune, limit=1, seed=i):
            assert domains.validate_abc(cand).ok, (tune, cand, domains.validate_abc(cand).reason)


HEAD = "X:1\nM:2/4\nL:1/8\nK:G\n"


@pytest.mark.parametrize("body, expected", [
    ("A2 Bc|d4|\n", "AA Bc|d4|\n"),  # split
    ("AA Bc|d4|\n", "A2 Bc|d4|\n"),  # merge
    ("AB cd|d4|\n", "A>B cd|d4|\n"),  # dot
    ("AB cd|d4|\n", "A<B cd|d4|\n"),  # dot, the other way
    ("A>B cd|d4|\n", "AB cd|d4|\n"),  # undot
    ("A>B cd|d4|\n", "A<B cd|d4|\n"),  # flip
    ("A2B c|d4|\n", "AB2 c|d4|\n"),  # swap lengths
    ("^F/G/ A3|d4|\n", "^F/4^F/4G/ A3|d4|\n"),  # split keeps the accidental
])
def test_each_rhythm_move_kind(body, expected):
    cands = rhythm_moves(HEAD + body)
    assert HEAD + expected in cands
    assert all(domains.bar_durations(c) == domains.bar_durations(HEAD + body) for c in cands)


def test_rhythm_moves_leave_tied_tuplet_and_decorated_notes_alone():
    assert rhythm_moves(HEAD + "A4-|A4|\n") == []  # both notes of the tie keep their lengths
    for body, kept in (("(3ABc d2|d4|\n", "(3ABc "), ("TA2 B2|d4|\n", "TA2 ")):
        cands = rhythm_moves(HEAD + body)
        assert cands and all(c.startswith(HEAD + kept) for c in cands)


def test_each_bar_move_kind():
    tune = HEAD + "AB cd|ef ga|b4|c2 d2|\n"  # bars 1, 2, 4 are full and closed by '|'; bar 3 too
    cands = bar_moves(tune)
    assert HEAD + "AB cd|AB cd|ef ga|b4|c2 d2|\n" in cands  # duplicate
    assert HEAD + "ef ga|b4|c2 d2|\n" in cands  # delete
    assert HEAD + "ef ga|AB cd|b4|c2 d2|\n" in cands  # swap neighbours
    assert HEAD + "c2 d2|ef ga|b4|AB cd|\n" in cands  # swap at distance 3
    pickup = HEAD + "G|AB cd|ef ga:|\n"  # a pickup and a repeat-closed bar are never moved
    for cand in bar_moves(pickup):
        assert cand.startswith(HEAD + "G|") and cand.endswith("ef ga:|\n")


def test_moves_are_deterministic_given_a_seed(tunes):
    tune = max(tunes[:10], key=lambda t: len(rhythm_moves(t)))
    assert len(rhythm_moves(tune)) > 10
    for kind in ("rhythm", "bars", "any"):
        assert abc_moves(tune, kind, limit=5, seed=3) == abc_moves(tune, kind, limit=5, seed=3)
    assert rhythm_moves(tune, limit=5, seed=3) != rhythm_moves(tune, limit=5, seed=4)
    assert rhythm_moves(tune) == rhythm_moves(tune)
    assert set(rhythm_moves(tune, limit=5, seed=3)) <= set(rhythm_moves(tune))
    assert abc_moves(tune, "pitch") == [] and abc_moves(tune, "ending") == []
    with pytest.raises(ValueError, match="unknown edit kind 'tempo'"):
        abc_moves(tune, "tempo")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        rhythm_moves(tune, limit=-1)


def last_bar_start(text: str) -> int:
    """Offset where the last bar holding a note letter begins, found with string operations only."""
    end = max(text.rfind(ch) for ch in "ABCDEFGabcdefg")
    return max(text.rfind("|", 0, end), text.rfind("\n", 0, end), text.rfind(":", 0, end)) + 1


def test_ending_masks_free_only_the_pitch_of_the_last_bar(tunes, char_tokenizer):
    plain = [t for t in tunes if not re.search(r'["!{\[]', t.split("K:", 1)[1])]
    unread = [t for t in plain if domains.read_bars(t) is None]
    assert all(c == "" for t in unread for c in ending_classes(t))  # nothing free where the reader gives up
    plain = [t for t in plain if t not in unread][:20]
    assert len(plain) >= 10
    rows = [char_tokenizer(t)["input_ids"] for t in plain]
    t = max(map(len, rows))
    ids = torch.tensor([r + [char_tokenizer.pad_token_id] * (t - len(r)) for r in rows])
    freeze, allowed = ending_edits(ids, char_tokenizer)
    pieces = domains.char_pieces(char_tokenizer)
    for r, tune in enumerate(plain):
        start = last_bar_start(tune)
        free = (~freeze[r]).nonzero()[:, 0].tolist()
        assert free and all(p - 1 >= start for p in free), tune  # position p holds character p - 1 (BOS)
        letters = [p for p in range(start, len(tune)) if tune[p] in "ABCDEFGabcdefg"]
        assert [p - 1 for p in free if tune[p - 1] in "ABCDEFGabcdefg"] == letters  # every letter of the bar
        for p in free:
            options = {pieces[k] for k in allowed[r, p].nonzero()[:, 0].tolist()}
            expected = {"ABCDEFGabcdefg": set("ABCDEFGabcdefg"), "^_=": set("^_="), ",'": set(",'")}
            assert options == next(v & set(pieces) for k, v in expected.items() if tune[p - 1] in k)
        assert torch.equal(allowed[r][freeze[r]], torch.nn.functional.one_hot(ids[r][freeze[r]], len(pieces)).bool())


def test_cadence_frees_the_final_note_and_redrawn_endings_stay_valid(tunes, char_tokenizer):
    tune = HEAD + "AB cd|e2 ^f,2|\n"
    classes = ending_classes(tune, cadence=True)
    assert {i: c for i, c in enumerate(classes) if c} == {len(HEAD) + 9: "accidental", len(HEAD) + 10: "letter",
                                                          len(HEAD) + 11: "octave"}
    assert [c for c in ending_classes(tune, last_notes=3) if c == "letter"] == ["letter"] * 3
    with pytest.raises(ValueError, match="last_notes must be >= 1"):
        ending_classes(tune, last_notes=0)
    rng = random.Random(0)
    for tune in [t for t in tunes[:12] if domains.validate_abc(t).ok][:6]:
        cls = ending_classes(tune)
        choices = {"letter": "ABCDEFGabcdefg", "accidental": "^_=", "octave": ",'"}
        new = "".join(rng.choice(choices[c]) if c else ch for ch, c in zip(tune, cls))
        assert domains.validate_abc(new).ok, (tune, new)
        assert m21_bar_durations(new) == m21_bar_durations(tune)


def test_edit_space_gathers_masks_and_moves(tunes, char_tokenizer):
    tune = tunes[0]
    space = edit_space(tune, char_tokenizer, "ending")
    n = len(char_tokenizer(tune)["input_ids"])
    assert space.freeze.shape == (n,) and space.allowed.shape == (n, len(char_tokenizer)) and space.moves == []
    assert (~space.freeze).sum() > 0
    rhythm = edit_space(tune, char_tokenizer, "rhythm", limit=4, seed=1)
    assert rhythm.freeze.all() and rhythm.allowed is None and rhythm.moves == rhythm_moves(tune, 4, 1)
    anything = edit_space(tune, char_tokenizer, "any")
    assert anything.freeze is None and set(anything.moves) == set(rhythm_moves(tune)) | set(bar_moves(tune))
    assert domains.ABCDomain().moves(tune, "bars") == bar_moves(tune)
    with pytest.raises(ValueError, match="unknown edit kind"):
        edit_space(tune, char_tokenizer, "tempo")


@pytest.mark.parametrize("mark", ["(0", "(3:0"])
def test_a_zero_tuplet_is_no_tuplet(mark):
    # a free edit can write "(0" (the engine's free edits crashed the annotator on one): it reads as
    # an inert mark, and the notes after it keep their lengths
    plain = "X:1\nT:t\nM:2/4\nL:1/8\nK:D\nABcd|dcBA|\n"
    marked = plain.replace("|dcBA", "|" + mark + "dcBA")
    a, b = domains.read_bars(plain), domains.read_bars(marked)
    assert b is not None and [bar.duration for bar in b.bars] == [bar.duration for bar in a.bars]
    assert domains.annotate_abc(marked).shape[0] > 0
