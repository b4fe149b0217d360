from hypothesis import given, settings
from hypothesis import strategies as st

from gradopt import dedup, edit_distance, nearest_distance, normalized_distance


def _naive(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


@settings(max_examples=80, deadline=None)
@given(st.text("abc|é", max_size=12), st.text("abc|é", max_size=12))
def test_edit_distance_matches_naive_dp(a, b):
    assert edit_distance(a, b) == _naive(a, b) == edit_distance(b, a)


def test_normalised_nearest_and_dedup():
    assert normalized_distance("abcd", "abcd") == 0 and normalized_distance("ab", "cd") == 1
    assert nearest_distance(["abcx"], ["zzzz", "abcd"]) == [0.25]
    assert dedup(["abcdefghij", "abcdefghiX", "zzzzzzzzzz"], 0.1) == [0, 2]
