"""Improve one tune from Python: keep its header and first two bars, let the reward model say how
to edit the rest, and write MIDI of the tune before and after.

    python examples/optimize_one_tune.py                      # models from `make demo` (runs/demo)
    python examples/optimize_one_tune.py --tune my.abc --freeze header,1-4

The result is the verified discrete tune (its reward re-scored exactly), with the simulated
rater's utility beside the reward; the do-no-harm guard keeps the input when it cannot vouch for
an edit, and says why.
"""

import argparse
from pathlib import Path

import domains
import gradopt
from rewardmodels import SimulatedRater, load_reward_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--generator", default="runs/demo/generator", help="a trained generator directory")
parser.add_argument("--reward", default="runs/demo/reward", help="a trained reward model directory")
parser.add_argument("--tune", help="an .abc file (its first tune); default: a held-out bundled tune")
parser.add_argument("--freeze", default="header,1-2", help="bars to keep as they are")
parser.add_argument("--steps", type=int, default=60, help="ascent steps")
parser.add_argument("--out", default="runs/examples/one_tune", help="where to write the MIDI files")
args = parser.parse_args()

# The generator's tokenizer, model and normalisation (user tunes are normalised like its corpus).
tok = domains.load_tokenizer(args.generator)
generator = domains.load_generator(args.generator)
norm = domains.load_normalisation(args.generator)
reward_model = load_reward_model(args.reward)

if args.tune:
    tune = domains.load_abc_file(args.tune, norm)[0]
else:
    test = domains.split_corpus(domains.load_abc_corpus(domains.FIDDLE, norm))["test"]
    tune = next(p.text for p in test if len(tok(p.text)["input_ids"]) <= domains.context_length(generator))

starts = gradopt.starts_from_texts(tok, [tune], max_tokens=domains.context_length(generator))
ids = gradopt.pad_batch(starts, tok.pad_token_id)[0]
freeze = gradopt.freeze_bars(ids, tok, args.freeze)
result = gradopt.optimize(starts, reward_model, generator, gradopt.AscentConfig(steps=args.steps),
                          tokenizer=tok, freeze=freeze, validate=domains.validate_abc)
row = result.rows[0]

utility_before, utility_after = SimulatedRater(seed=0).utility([tune, row.text])
print(f"reward  {row.reward_before:+.3f} -> {row.reward_after:+.3f}   (verified, discrete)")
print(f"utility {utility_before:+.3f} -> {utility_after:+.3f}   (simulated rater)")
print(f"{row.changed} characters changed; {row.status}")
print(row.text)

out = Path(args.out)
for name, text in (("before", tune), ("after", row.text)):
    print("wrote", domains.abc_to_midi(text, out / f"{name}.mid"))
