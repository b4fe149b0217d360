"""Rate a few pairs of tunes and fit Bradley-Terry scores with posterior SDs.

    python examples/rate_and_fit.py            # the simulated rater stands in for a person
    python examples/rate_and_fit.py --me       # you answer 1 / 2 / t (tie) / s (skip) at the prompt

The rating store is a folder of append-only JSON-lines files: rate more later and fit again.
Active selection (`propose_pairs`, strategy "racing") asks for the pairs that tell the most.
"""

import argparse

import numpy as np

import domains
from rewardmodels import RatingStore, SimulatedRater, fit_store, propose_pairs, rate_pairs


class Person:
    """A rater at the terminal: the `Rater` protocol is one method, compare(a, b)."""

    name = "you"

    def compare(self, a: str, b: str) -> str | None:
        print(f"\n--- 1 ---\n{a}\n--- 2 ---\n{b}")
        answer = input("better: 1, 2, t (tie), s (skip)? ").strip().lower()
        return {"1": "a", "2": "b", "t": "tie"}.get(answer)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--store", default="runs/examples/store", help="the rating store's folder")
parser.add_argument("--tunes", type=int, default=12, help="bundled tunes to add")
parser.add_argument("--rounds", type=int, default=3, help="rounds of active selection")
parser.add_argument("--pairs", type=int, default=8, help="pairs per round")
parser.add_argument("--me", action="store_true", help="rate them yourself")
args = parser.parse_args()

store = RatingStore(args.store)
tunes = domains.load_abc_corpus(("oneills1850",), domains.NormaliseConfig())[: args.tunes]
store.add_items([p.text for p in tunes], origin="corpus")  # idempotent: items are keyed by their text
rater = Person() if args.me else SimulatedRater(seed=0)

scores = fit_store(store)
for round_ in range(args.rounds):
    pairs = propose_pairs(store, scores, args.pairs, strategy="racing", seed=round_)
    rate_pairs(store, pairs, rater)
    scores = fit_store(store)
    print(f"round {round_ + 1}: {len(store.comparisons)} comparisons, mean posterior SD {scores.sd.mean():.3f}")

order = np.argsort(-scores.mean)
print("\nbest first (score ± posterior SD):")
for i in order[:5]:
    print(f"  {scores.mean[i]:+.2f} ± {scores.sd[i]:.2f}  {domains.abc_title(store.items[i].text)}")
