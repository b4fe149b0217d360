"""Bradley-Terry fit time for 10^3 ... 10^6 comparisons (items = comparisons / 10).

Simulated comparisons of items with N(0, 1) true scores; reports wall time of `fit` (MAP +
Laplace SDs), Newton iterations, and the correlation of the fit with the truth.
Writes benchmarks/results/bt_scale.json (with the commit, machine and config:
benchmarks/provenance.py) and prints one summary line last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from provenance import write_result
from rewardmodels import fit

RESULTS = Path(__file__).parent / "results"


def simulate(n_items: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_items)
    i = rng.integers(0, n_items, m)
    j = (i + rng.integers(1, n_items, m)) % n_items
    win = rng.random(m) < 1 / (1 + np.exp(-(theta[i] - theta[j])))
    return theta, np.where(win[:, None], np.stack([i, j], 1), np.stack([j, i], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-exp", type=int, default=6, help="largest size is 10^max_exp comparisons")
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per size (the best is reported)")
    args = ap.parse_args()
    rows = []
    for e in range(3, args.max_exp + 1):
        m = 10**e
        n = max(m // 10, 10)
        theta, pairs = simulate(n, m, seed=e)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            s = fit(pairs, n)
            times.append(time.perf_counter() - t0)
        rows.append({
            "comparisons": m, "items": n, "seconds_best": min(times), "seconds_all": times,
            "newton_iterations": s.n_iter, "converged": s.converged,
            "sd_method": "exact" if n <= 3000 else "neumann-2",
            "corr_with_truth": float(np.corrcoef(theta, s.mean)[0, 1]),
        })
        print(f"{m:>8} comparisons / {n:>6} items: {min(times):7.3f} s  ({s.n_iter} Newton steps, "
              f"r={rows[-1]['corr_with_truth']:.3f})", flush=True)
    out = {"benchmark": "bt_scale", "rows": rows}
    write_result(RESULTS / "bt_scale.json", out, {**vars(args), "items_per_comparison": 0.1, "seeds": "size exponent"})
    last = rows[-1]
    print(f"bt_scale: {last['comparisons']:.0e} comparisons over {last['items']:.0e} items fit in "
          f"{last['seconds_best']:.2f} s (MAP + SDs, {last['newton_iterations']} Newton steps); "
          f"10^3 in {rows[0]['seconds_best'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
