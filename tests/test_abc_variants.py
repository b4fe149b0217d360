"""Random tune variants for rating pools (domains/_abc_variants.py): what each one may change."""

import numpy as np
import pytest

from domains import NOTE_LETTERS, char_edit, corrupt, note_letters, pitch_edit

TUNE = 'X:1\nT:Gab Reel\nM:4/4\nL:1/8\nK:G\n"G"GABc dedB|!trill!d2 [K:D]^f=e d2 {g}A2|[CEG]2 z2 G4|]\n'


def _header(text: str) -> str:
    return text[: text.index("\n", text.index("\nK:") + 1) + 1]


@pytest.mark.parametrize("k", [0, 1, 3, 6, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pitch_edit_changes_exactly_min_k_note_letters_and_nothing_else(k, seed):
    out = pitch_edit(TUNE, k, np.random.default_rng(seed))
    notes = note_letters(TUNE)
    changed = [i for i, (a, b) in enumerate(zip(TUNE, out)) if a != b]
    assert len(out) == len(TUNE)
    assert len(changed) == min(k, sum(notes))
    assert all(notes[i] and out[i] in NOTE_LETTERS for i in changed)


def test_pitch_edit_leaves_a_tune_without_notes_alone():
    text = "X:1\nK:C\nz4 | x2 z2 |\n"
    assert pitch_edit(text, 5, np.random.default_rng(0)) == text


def test_small_tunes_of_the_corpus_keep_their_header(small_texts):
    for seed, text in enumerate(small_texts[:20]):
        for edit in (char_edit, pitch_edit):
            out = edit(text, 6, np.random.default_rng(seed))
            assert _header(out) == _header(text) and len(out) == len(text)
        assert _header(corrupt(text, np.random.default_rng(seed), 6)) == _header(text)


@pytest.mark.parametrize("seed", range(5))
def test_char_edit_changes_at_most_k_body_characters_and_keeps_the_line_breaks(seed):
    out = char_edit(TUNE, 4, np.random.default_rng(seed))
    head = len(_header(TUNE))
    assert out[:head] == TUNE[:head]
    changed = [i for i, (a, b) in enumerate(zip(TUNE, out)) if a != b]
    assert len(out) == len(TUNE) and len(changed) <= 4
    assert all(TUNE[i] != "\n" for i in changed)


def test_corrupt_keeps_the_header_and_damages_the_body():
    outs = [corrupt(TUNE, np.random.default_rng(seed), 3) for seed in range(10)]
    assert all(o.startswith(_header(TUNE)) for o in outs)
    assert sum(o != TUNE for o in outs) >= 8  # a swapcase twice on one note can undo itself, rarely
    assert corrupt(TUNE, np.random.default_rng(0), 0) == TUNE


@pytest.mark.parametrize("edit", [
    lambda t, rng: pitch_edit(t, 5, rng), lambda t, rng: char_edit(t, 5, rng), lambda t, rng: corrupt(t, rng, 5)])
def test_same_seed_same_variant_other_seeds_other_variants(edit):
    same = {edit(TUNE, np.random.default_rng(7)) for _ in range(3)}
    assert len(same) == 1
    assert len({edit(TUNE, np.random.default_rng(s)) for s in range(8)}) > 1


def test_negative_counts_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="pitch_edit"):
        pitch_edit(TUNE, -1, rng)
    with pytest.raises(ValueError, match="char_edit"):
        char_edit(TUNE, -1, rng)
    with pytest.raises(ValueError, match="corrupt"):
        corrupt(TUNE, rng, -1)
