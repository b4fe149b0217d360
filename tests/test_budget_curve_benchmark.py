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
