"""Did a refactor change a benchmark's figures? Compare result JSONs written at two commits on the
same seeds, figure by figure.

Every leaf of the two files (numbers, booleans, strings; lists element by element) is matched by
its path. Timing figures (CPU and wall seconds, throughput, load) may differ between runs on a
shared machine and are counted apart; every other figure (accuracies, correlations, gains,
validity, counts) is a quality figure and should be equal. Provenance fields (commit, machine,
command, config) are not compared. Each pair may carry an explanation of its differences (the
commit that caused them).

    python benchmarks/refactor_equivalence.py \\
        --pair ascent_quick fdf46f0 old/ascent_quick.json HEAD new/ascent_quick.json \\
        --explain ascent_quick="..."

Writes benchmarks/results/refactor_equivalence.json (or --out) with the provenance of
benchmarks/provenance.py and prints one summary line last.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from provenance import write_result

RESULTS = Path(__file__).parent / "results"
NOT_COMPARED = {"commit", "dirty", "dirty_paths", "machine", "command", "config", "config_hash", "work"}
TIMING = re.compile(r"cpu|second|wall|_s$|_s/|time|tok_s|flop|load_avg|throughput|per_cpu", re.I)


def leaves(x, path: str = ""):
    """(path, value) for every leaf of a JSON value; dict keys joined by '/', list items as [i]."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in NOT_COMPARED:
                yield from leaves(v, f"{path}/{k}" if path else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def equal(a, b) -> bool:
    """Exact equality; two NaNs are equal (a figure that is undefined on both sides)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(old: dict, new: dict) -> dict:
    """{"quality": {equal, different, diffs}, "timing": {equal, different}}: a figure present on one
    side only counts as different (its other side reads "<absent>")."""
    a, b = dict(leaves(old)), dict(leaves(new))
    out = {"quality": {"equal": 0, "different": 0, "diffs": {}}, "timing": {"equal": 0, "different": 0}}
    for path in sorted(set(a) | set(b)):
        x, y = a.get(path, "<absent>"), b.get(path, "<absent>")
        kind = "timing" if TIMING.search(path) else "quality"
        same = equal(x, y)
        out[kind]["equal" if same else "different"] += 1
        if kind == "quality" and not same:
            out[kind]["diffs"][path] = {"old": x, "new": y}
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", nargs=5, action="append", required=True,
                    metavar=("NAME", "OLD_COMMIT", "OLD_JSON", "NEW_COMMIT", "NEW_JSON"),
                    help="a benchmark's result at the old and the new commit (repeat for each benchmark)")
    ap.add_argument("--explain", action="append", default=[], metavar="NAME=TEXT",
                    help="what caused NAME's differences (repeatable)")
    ap.add_argument("--out", default=str(RESULTS / "refactor_equivalence.json"))
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    notes = {}
    for item in args.explain:
        name, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--explain {item!r}: write NAME=TEXT")
        notes[name] = text
    pairs = {}
    for name, old_commit, old_json, new_commit, new_json in args.pair:
        for p in (old_json, new_json):
            if not Path(p).is_file():
                raise SystemExit(f"--pair {name}: {p} is not a file")
        result = compare(json.loads(Path(old_json).read_text()), json.loads(Path(new_json).read_text()))
        pairs[name] = {"old_commit": old_commit, "new_commit": new_commit, **result,
                       "explanation": notes.get(name)}
    unknown = sorted(set(notes) - set(pairs))
    if unknown:
        raise SystemExit(f"--explain names {unknown} that no --pair has")
    out = {"benchmark": "refactor_equivalence", "pairs": pairs}
    path = write_result(Path(args.out), out, {"pairs": [p[0] + ":" + p[1] + ".." + p[3] for p in args.pair]})
    summary = ", ".join(f"{n} {r['quality']['equal']}/{r['quality']['equal'] + r['quality']['different']} quality "
                        f"figures equal" for n, r in pairs.items())
    print(f"refactor_equivalence: {summary}; {path}")


if __name__ == "__main__":
    main()
