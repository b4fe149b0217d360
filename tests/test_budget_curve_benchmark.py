"""benchmarks/budget_curve.py's --rounds parsing: sorted unique positive rounds, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))
budget_curve = pytest.importorskip("budget_curve")


def test_rounds_are_sorted_and_unique():
    assert budget_curve.parse_rounds("8, 1,2,8") == [1, 2, 8]


@pytest.mark.parametrize("text", ["", "0,2", "two", "1,-3"])
def test_bad_rounds_are_refused(text):
    with pytest.raises(SystemExit, match="--rounds"):
        budget_curve.parse_rounds(text)


def _row(rounds, ratio):
    r = {"ratio": ratio, "ci95": [ratio - 1, ratio + 1]}
    return {"rounds": rounds, "ratio": r, "ratio_vs_polish_only": r, "engine": {"cpu_s": 1.0, "utility_gain": 0.1}}


def test_the_quoted_budget_is_the_selection_runs_best(tmp_path):
    import json

    sel = tmp_path / "budget_curve_select.json"
    assert budget_curve.goal_from_select([_row(1, 2.0)], sel) is None  # no selection run: nothing quoted
    sel.write_text(json.dumps({"commit": "abc", "curve": [_row(1, 2.0), _row(2, 5.0), _row(4, 1.0)]}))
    report = [_row(1, 9.0), _row(2, 3.0), _row(4, 4.0)]
    goal = budget_curve.goal_from_select(report, sel)
    assert goal["chosen_on_select"] == 2 and goal["ratio_vs_hill_climb"] == 3.0  # report's own row, not its best
    assert budget_curve.goal_from_select([_row(8, 1.0)], sel) is None  # none of the selection's rounds measured


def test_ratio_text_survives_undefined_ratios():
    assert budget_curve.ratio_text({"ratio": 1.234, "ci95": [1.0, 1.5]}) == "1.23x [1.00, 1.50]"
    assert budget_curve.ratio_text({"ratio": "inf", "ci95": None}) == "infx [no interval]"
    assert budget_curve.ratio_text({"ratio": None, "ci95": None}, interval=False) == "n/ax"
