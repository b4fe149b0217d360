"""domains._abc_text: the one home of ABC's note letters, header-line pattern, body and title."""

import re

import domains
import domains._abc_bars
import domains._abc_constraint
import domains._abc_edits
import gradopt
import gradopt._masks
import rewardmodels
import rewardmodels._judges


def _old_body(text):  # the auto-judges' copy, as it was
    return "\n".join(l for l in text.splitlines() if not re.match(r"^[A-Za-z]:", l))


def _old_title(text):  # the command line's copy, as it was
    return next((l[2:].strip() for l in text.splitlines() if l.startswith("T:")), "")


def test_every_module_uses_the_one_definition():
    assert domains.NOTE_LETTERS == frozenset("ABCDEFGabcdefg")
    for letters in (domains._abc_constraint.NOTE_LETTERS, domains._abc_edits.NOTE_LETTERS, gradopt.NOTE_LETTERS):
        assert letters is domains.NOTE_LETTERS
    for pattern in (domains._abc_bars.HEADER_LINE, domains._abc_edits.HEADER_LINE, gradopt._masks.HEADER_LINE):
        assert pattern is domains.HEADER_LINE
    assert rewardmodels.abc_body is domains.abc_body
    assert not hasattr(rewardmodels._judges, "_HEADER_LINE") and not hasattr(gradopt._masks, "_HEADER_LINE")


def test_helpers_behave_as_the_copies_did_on_corpus_tunes(fiddle_pieces):
    texts = [p.text for p in fiddle_pieces[:300]]
    assert sum(bool(_old_title(t)) for t in texts) > 200  # the corpus keeps its titles
    for t in texts + ["", "T:  Spaced title \nK:G\nGAB|", "X:1\nK:D\nT:late\nd2|", "K:C\nabc|\nw: words"]:
        assert domains.abc_title(t) == _old_title(t)
        assert domains.abc_body(t) == _old_body(t)
        body = re.sub(r'"[^"]*"', "", domains.abc_body(t))
        assert sum(c in domains.NOTE_LETTERS for c in body) == len(re.findall(r"[A-Ga-g]", body))
    assert domains.abc_title("X:1\nT:Out on the Ocean\nT:second\nK:G\n") == "Out on the Ocean"
