"""The Rater protocol: the simulated rater, the auto-judges and any object with compare() rate pairs."""

import pytest

import rewardmodels as rm

SOUND = "X:1\nT:a\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|\n"
OTHER = "X:1\nT:b\nM:4/4\nL:1/8\nK:G\nGFGA B2dB|c2ec B2dB|A2F2 G4:|\n"  # shorter than SOUND
BROKEN = "X:1\nT:c\nM:4/4\nL:1/8\nK:G\nGABcdedBGABc|dedB dedB|\n"  # first bar 12 eighths in 4/4


class Person:
    """A stand-in for a human rating tool: always prefers the shorter text, skips equal lengths."""

    name, kind = "ann", "human"

    def __init__(self):
        self.asked = []

    def compare(self, a, b):
        self.asked.append((a, b))
        return None if len(a) == len(b) else ("a" if len(a) < len(b) else "b")


def test_raters_satisfy_the_protocol():
    assert isinstance(rm.SimulatedRater(), rm.Rater)
    assert isinstance(rm.JudgeRater(), rm.Rater)
    assert isinstance(Person(), rm.Rater)
    assert rm.SimulatedRater(agreement=0.8).name == "simulated@0.8"


def test_judge_rater_verdicts():
    judge = rm.JudgeRater()
    assert judge.compare(SOUND, BROKEN) == "a" and judge.compare(BROKEN, SOUND) == "b"
    assert judge.compare(BROKEN, BROKEN) == "tie"
    assert judge.compare(SOUND, OTHER) is None


def test_rate_pairs_with_any_rater_records_its_name_and_skips_no_verdicts(tmp_path):
    store = rm.RatingStore(tmp_path / "s")
    a, b, c = (i.id for i in store.add_items([SOUND, OTHER, BROKEN], origin="corpus"))
    person = Person()
    done = rm.rate_pairs(store, [(a, b), (a, c), (b, a)], person, rm.JudgeConfig())
    # a vs c is decided by the auto-check (c is broken); the person sees only the sound pairs
    assert [(x.winner, x.rater, x.kind) for x in done] == [
        ("a" if len(SOUND) < len(OTHER) else "b", "ann", "human"), ("a", rm.JudgeRater().name, "auto"),
        ("b" if len(SOUND) < len(OTHER) else "a", "ann", "human")]
    assert len(person.asked) == 2
    person_skips = Person()
    same = SOUND.replace("T:a", "T:z")  # same length: the person gives no verdict
    d = store.add_items([same], origin="corpus")[0].id
    assert rm.rate_pairs(store, [(a, d)], person_skips) == []
    assert len(rm.RatingStore(tmp_path / "s").comparisons) == 3


def test_a_bad_verdict_is_an_error(tmp_path):
    class Wrong(Person):
        def compare(self, a, b):
            return "left"

    store = rm.RatingStore(tmp_path / "s")
    a, b = (i.id for i in store.add_items([SOUND, OTHER], origin="corpus"))
    with pytest.raises(ValueError, match="answered 'left'"):
        rm.rate_pairs(store, [(a, b)], Wrong())
    assert store.comparisons == []
