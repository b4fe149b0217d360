"""Harvest the reward model's likely blind spots — edits it likes that are unlikely under the
generator and far from the corpus — and queue them for people to rate.

    python examples/harvest_blind_spots.py     # models from `make demo` (runs/demo)

Rate the queue with `gradopt rate STORE` (terminal) or `gradopt serve-ratings STORE` (browser),
then fit Bradley-Terry and retrain the reward model: its blind spots become training data.
"""

import argparse

import domains
import gradopt
from rewardmodels import RatingStore, load_reward_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--generator", default="runs/demo/generator")
parser.add_argument("--reward", default="runs/demo/reward")
parser.add_argument("--store", default="runs/examples/store")
parser.add_argument("-n", type=int, default=16, help="generator samples to start from")
parser.add_argument("--steps", type=int, default=40, help="ascent steps per start")
parser.add_argument("--min-reward", type=float, default=0.0,
                    help="reward a suspect must reach (the reward model scores the corpus at mean 0, SD 1)")
args = parser.parse_args()

tok = domains.load_tokenizer(args.generator)
generator = domains.load_generator(args.generator)
reward_model = load_reward_model(args.reward)
corpus = [p.text for p in domains.load_abc_corpus(domains.FIDDLE, domains.load_normalisation(args.generator))]

starts = gradopt.starts_from_generator(generator, tok, args.n, seed=0)
cfg = gradopt.HarvestConfig(ascent=gradopt.AscentConfig(steps=args.steps, require_valid=False), max_items=8,
                            min_reward=args.min_reward)
suspects = gradopt.harvest(starts, reward_model, generator, tok, RatingStore(args.store), corpus=corpus, cfg=cfg)

print(f"{len(suspects)} suspects queued in {args.store}")
for s in suspects[:5]:
    print(f"  reward {s.reward:+.2f}  why: {', '.join(s.reasons) or '-'}")
