"""Summary statistics the reports share: a mean with its Student-t confidence interval."""

from __future__ import annotations

import math
from typing import Sequence


def mean_interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) over the finite values of `xs` (None skipped): the Student-t interval at
    `level`; lo = hi = mean for one value, all NaN (n = 0) for none."""
    x = [float(v) for v in xs if v is not None and math.isfinite(v)]
    if not x:
        return math.nan, math.nan, math.nan, 0
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, m, m, 1
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(x) - 1)) * math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1) / len(x))
    return m, m - half, m + half, len(x)
