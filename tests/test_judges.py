"""Auto-checks and the auto-ratings they record."""

import pytest

from rewardmodels import JudgeConfig, RatingStore, auto_compare, auto_winner, broken_reasons, compression_ratio

GOOD = "X:1\nT:t\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|\nGABc dedB|dedB dedB|c2ec B2dB|A2F2 G4|]\n"


def _no_parse(text):
    return False


def test_sound_tune_passes():
    assert broken_reasons(GOOD, JudgeConfig(check_validity=False)) == []


def test_each_check_fires():
    cfg = JudgeConfig(check_validity=False, blacklist=("http",))
    assert any("blacklisted" in r for r in broken_reasons(GOOD + "% http://x\n", cfg))
    assert any("too short" in r for r in broken_reasons("X:1\nK:C\nCDE|\n", cfg))
    assert "no notes" in broken_reasons("X:1\nK:C\n| z4 | z4 | z4 | z4 | z4 | z4 | z4 |\n", cfg)
    degenerate = "X:1\nK:C\n" + "C" * 400 + "\n"
    assert compression_ratio("C" * 400) < 0.05
    assert any("degenerate" in r for r in broken_reasons(degenerate, cfg))
    assert any("does not parse" in r for r in broken_reasons(GOOD, JudgeConfig(), validator=_no_parse))


def test_auto_winner_table():
    assert auto_winner(False, False) is None
    assert auto_winner(True, False) == "b"
    assert auto_winner(False, True) == "a"
    assert auto_winner(True, True) == "tie"


def test_auto_compare_records_auto_kind(tmp_path):
    s = RatingStore(tmp_path)
    good = s.add_item(GOOD).id
    bad = s.add_item("X:1\nK:C\nCDE|\n").id
    bad2 = s.add_item("X:1\nK:C\n" + "z" * 100 + "\n").id
    cfg = JudgeConfig(check_validity=False)
    c = auto_compare(s, bad, good, cfg)
    assert (c.winner, c.kind, c.broken) == ("b", "auto", (bad,))
    assert auto_compare(s, bad, bad2, cfg).winner == "tie"
    good2 = s.add_item(GOOD.replace("T:t", "T:u")).id
    assert auto_compare(s, good, good2, cfg) is None  # two sound tunes need a person
    assert len(RatingStore(tmp_path).comparisons) == 2
    assert s.pairs(kinds=("human",))[0].shape == (0, 2)


def test_config_validates():
    with pytest.raises(ValueError):
        JudgeConfig(min_compression=1.5)
    with pytest.raises(ValueError):
        JudgeConfig(blacklist=("",))
