"""Musical annotations of ABC text, checked against values worked out by hand from the tunes."""

import numpy as np
import pytest

import domains
from domains import ABC_CHANNELS, annotate_abc, read_key, token_annotations

CH = {c: i for i, c in enumerate(ABC_CHANNELS)}
HEAD = "X:1\nM:3/4\nL:1/8\n"


def _on(a, i):
    """Names of the channels set at character i (with their value when it is not 1)."""
    return {ABC_CHANNELS[k] if a[i, k] == 1 else (ABC_CHANNELS[k], round(float(a[i, k]), 3)) for k in np.flatnonzero(a[i])}


def _at(text, needle, start=0):
    return text.index(needle, start)


def test_key_signature_makes_f_sharp_in_d():
    # K:D: F is F# (pitch class 6), 4 semitones above the tonic D (2): in the scale.
    t = HEAD + "K:D\nF2 =F2 D2|\n"
    a = annotate_abc(t)
    f, natural = _at(t, "F", len(HEAD) + 3), _at(t, "=F") + 1
    assert a[f, CH["pc4"]] == 1 and a[f, CH["in_scale"]] == 1
    # =F is F natural: 3 semitones above D, not in D major; the interval F# -> F is a step down
    assert a[natural, CH["pc3"]] == 1 and a[natural, CH["in_scale"]] == 0
    assert a[natural, CH["step_down"]] == 1
    # the natural carries to the end of the bar: a later F in the same bar is still natural
    t2 = HEAD + "K:D\n=F2 F2 D2|F6|\n"
    a2 = annotate_abc(t2)
    second, next_bar = _at(t2, "F", _at(t2, "=F") + 2), _at(t2, "|F") + 1
    assert a2[second, CH["pc3"]] == 1
    assert a2[next_bar, CH["pc4"]] == 1  # the bar line restores the key signature


def test_minor_and_modal_keys():
    assert read_key("K:Em\n") == (4, (0, 2, 3, 5, 7, 8, 10), {"E": 0, "F": 1, "G": 0, "A": 0, "B": 0, "C": 0, "D": 0})
    tonic, scale, sig = read_key("K:Ador\n")
    assert tonic == 9 and scale == (0, 2, 3, 5, 7, 9, 10) and sig["F"] == 1 and sig["C"] == 0
    _, _, sig = read_key("K:F#\n")  # six sharps, E# among them (not F natural), B natural
    assert sig == {"F": 1, "G": 1, "A": 1, "B": 0, "C": 1, "D": 1, "E": 1}
    assert read_key("X:1\n")[0] == 0  # no key: C major


def test_a_seventh_is_a_wide_leap_and_directions_count():
    # K:D: D (62) up to c (c#, 73): 11 semitones, beyond a fifth, upwards; then c# -> A (69) down 4: a third.
    t = HEAD + "K:D\nD2 c2 A2|\n"
    a = annotate_abc(t)
    d, c, lower_a = _at(t, "D2"), _at(t, "c2"), _at(t, "A2")
    assert not any(a[d, CH[k]] for k in ("unison", "step_up", "step_down", "wide_up", "wide_down"))  # first note
    assert a[c, CH["wide_up"]] == 1 and a[c, CH["pc11"]] == 1
    assert a[lower_a, CH["third_down"]] == 1 and a[lower_a, CH["pc7"]] == 1
    assert a[c].sum() > 0 and a[:, CH["note"]].sum() == 3


def test_a_short_bar_is_flagged_at_its_bar_line():
    # 3/4 with L:1/8: a bar holds six eighths. "D2 E2 F2" is full, "G2 A2" (four eighths) is short,
    # "B2 c2 d4" (eight) is long.
    t = HEAD + "K:D\nD2 E2 F2|G2 A2|B2 c2 d4|\n"
    a = annotate_abc(t)
    lines = [i for i, ch in enumerate(t) if ch == "|"]
    assert [_on(a, i) for i in lines] == [{"bar_line", "bar_full"}, {"bar_line", "bar_short"}, {"bar_line", "bar_long"}]


def test_durations_beats_and_the_last_note():
    # L:1/8 in 3/4: G3/2 lasts 3/16 (a dotted eighth), A/2 1/16 from onset 3/16 (off the beat, at a
    # quarter of the bar), B2 a quarter from onset 1/4 (on the second beat), d6 a whole 3/4 bar.
    t = HEAD + "K:G\nG3/2A/2 B2 c2|d6|\n"
    a = annotate_abc(t)
    g, la, b, d = _at(t, "G3"), _at(t, "A/"), _at(t, "B2"), _at(t, "d6")
    assert _on(a, g) >= {"note", "dur_dotted", "downbeat", "on_beat"}
    assert a[la, CH["dur_short"]] == 1 and a[la, CH["on_beat"]] == 0 and a[la, CH["downbeat"]] == 0
    assert a[la, CH["bar_position"]] == pytest.approx(0.25)
    assert a[b, CH["dur_quarter"]] == 1 and a[b, CH["on_beat"]] == 1
    assert a[b, CH["bar_position"]] == pytest.approx(1 / 3)
    assert a[d, CH["dur_long"]] == 1 and a[d, CH["last_note"]] == 1 and a[d, CH["pc7"]] == 1  # d is G's fifth
    assert a[:, CH["last_note"]].sum() == 1


def test_header_characters_are_blank_and_unreadable_bodies_say_so():
    t = HEAD + "K:D\nD2 E2 F2|\n"
    a = annotate_abc(t)
    assert not a[: len(HEAD) + 4].any()
    bad = HEAD + "K:D\nD2 E2 [L:1/4] F2|\n"  # an inline field: the bar reader does not follow it
    b = annotate_abc(bad)
    body = len(HEAD) + 4
    assert b[body:, CH["unread"]].all() and not b[:body].any()
    assert b[:, [k for k in range(len(ABC_CHANNELS)) if k != CH["unread"]]].sum() == 0


def test_token_annotations_align_with_characters():
    t = HEAD + "K:D\nF2 A2 d2|\n"
    chars = annotate_abc(t)
    pieces = [""] + list(t) + ["", ""]  # <bos> one token per character <eos> <pad>
    rows = token_annotations(pieces)
    np.testing.assert_array_equal(rows[1:-2], chars)
    assert not rows[0].any() and not rows[-2:].any()
    merged = token_annotations([t[:-3], t[-3:]])  # a token of several characters sums their rows
    np.testing.assert_array_equal(merged, np.stack([chars[:-3].sum(0), chars[-3:].sum(0)]))


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="annotate_abc"):
        annotate_abc(b"X:1")


def test_a_zero_length_denominator_is_unread_not_a_crash():
    # free edits can write "A/0"; the reward model annotates every candidate, so this must not raise
    text = "X:1\nM:4/4\nL:1/8\nK:C\nA/0 B|c2 d2|\n"
    assert domains.read_bars(text) is None and domains.bar_durations(text) is None
    ann = domains.annotate_abc(text)
    unread = domains.ABC_CHANNELS.index("unread")
    assert ann.shape[0] == len(text) and ann[text.index("A"):, unread].all()


def _fresh(text):
    """Annotations computed with every cache empty."""
    from domains import _abc_annotate

    _abc_annotate._annotate.cache_clear()
    _abc_annotate._timing.cache_clear()
    return annotate_abc(text)


def test_pitch_variants_share_the_rhythm_reading_but_not_the_pitches():
    # The rhythm part is cached by the text with note letters read as C: a variant read after its
    # sibling must get its own pitches, accidental carries, intervals and last note.
    t = HEAD + "K:D\n\"Am\"F2 ^c2 d2|c4 B2|(3ABc d3|\n"
    variants = [t, t.replace("F2", "G2"), t.replace("^c2 d2", "^c2 c2"), t.replace("d3|", "e3|"),
                t.replace("(3ABc", "(3aBg")]
    fresh = [_fresh(v) for v in variants]
    assert len({a.tobytes() for a in fresh}) == len(variants)  # every edit changes some channel
    from domains import _abc_annotate

    _abc_annotate._annotate.cache_clear()
    _abc_annotate._timing.cache_clear()
    warm = [annotate_abc(v) for v in variants]  # the first fills the rhythm cache, the rest reuse it
    assert _abc_annotate._timing.cache_info().hits == len(variants) - 1
    for a, b in zip(warm, fresh):
        np.testing.assert_array_equal(a, b)
    # in the second variant the G (pitch class 5 above D) opens the tune: no interval before it
    g = _at(variants[1], "G2")
    assert _on(warm[1], g) >= {"note", "pc5", "in_scale", "dur_quarter", "downbeat", "on_beat"}
