"""New tunes from Python: draw 4 samples per tune, keep the one the reward model likes best, then
let the engine edit its pitches (with --guard, a pick is returned unchanged when the reward model is
unsure the edit is better).

    python examples/generate_tunes.py                      # models from `make demo` (runs/demo)
    python examples/generate_tunes.py -n 8 --best-of 8 --out runs/examples/new.abc

Each stage's reward is shown, with the simulated rater's utility of the pick and of the result:
a reward that rises while the utility falls would mean the reward model is being gamed.
"""

import argparse
import dataclasses

import domains
import gradopt
from rewardmodels import SimulatedRater, load_reward_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--generator", default="runs/demo/generator", help="a trained generator directory")
parser.add_argument("--reward", default="runs/demo/reward", help="a trained reward model directory")
parser.add_argument("-n", type=int, default=4, help="tunes to generate")
parser.add_argument("--best-of", type=int, default=4, help="samples drawn per tune")
parser.add_argument("--guard", action="store_true", help="the do-no-harm guard on each pick")
parser.add_argument("--out", default="runs/examples/generated.abc")
args = parser.parse_args()

tok = domains.load_tokenizer(args.generator)
generator = domains.load_generator(args.generator)
reward_model = load_reward_model(args.reward)
corpus = [p.text for p in domains.load_abc_corpus(domains.FIDDLE, domains.load_normalisation(args.generator))]

engine = gradopt.POLISH_ENGINE  # the setting benchmarks/generate_recipe.py measured
if args.guard:
    engine = dataclasses.replace(engine, trust=gradopt.TrustConfig())
cfg = gradopt.GenerateConfig(best_of=args.best_of, polish=engine)
result = gradopt.generate(
    generator, reward_model, tok, args.n, cfg,
    constraint=domains.ABCConstraint.from_texts(tok, corpus),  # bar-aware samples: every bar full
    edits=lambda ids: gradopt.header_frozen_masks(ids.tolist(), tok, "pitch"),  # note letters only, header kept
    validate=domains.validate_abc)

rater = SimulatedRater(seed=0)
picks, finals = rater.utility([p.pick for p in result.pieces]), rater.utility(result.texts)
for i, (p, u0, u1) in enumerate(zip(result.pieces, picks, finals), 1):
    verdict = "kept as drawn" if not p.changed else f"{p.engine.changed} notes changed"
    print(f"tune {i}: reward sample {p.first_reward:+.2f}, best-of-{args.best_of} {p.pick_reward:+.2f}, "
          f"after the engine {p.reward:+.2f}; utility {u0:+.2f} -> {u1:+.2f} ({verdict})")
domains.domain_from_name("abc", normalise=domains.load_normalisation(args.generator)).write(result.texts, args.out)
print(f"wrote {len(result.texts)} tunes to {args.out}")
