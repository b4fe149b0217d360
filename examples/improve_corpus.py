"""Improve a small corpus of tunes from Python: sharded over worker processes, resumable, every
tune written back exactly as it was unless the do-no-harm guard trusts its edit.

    python examples/improve_corpus.py                  # models from `make demo` (runs/demo)
    python examples/improve_corpus.py --tunes 20 --workers 4

A handful of held-out bundled tunes go to an .abc file; `gradopt.run_corpus_job` improves them
(the same job as `gradopt improve-corpus`) and returns the summary: reward and simulated-utility
gains with 95% intervals, and how many tunes were kept unchanged and why. Running the job again
with resume=True finds every shard finished and redoes none.
"""

import argparse
import shutil
from pathlib import Path

import domains
import gradopt


def interval(stat: dict) -> str:
    ci = stat["ci95"]
    return f"{stat['mean']:+.3f}" + (f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="runs/demo/generator", help="a trained generator directory")
    parser.add_argument("--reward", default="runs/demo/reward", help="a trained reward model directory")
    parser.add_argument("--tunes", type=int, default=8, help="held-out bundled tunes to improve")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--shard-size", type=int, default=2, help="tunes per shard (the unit of resumption)")
    parser.add_argument("--steps", type=int, default=40, help="ascent steps")
    parser.add_argument("--out", default="runs/examples/corpus", help="folder for the tunes, the job and the output")
    args = parser.parse_args()

    # Held-out tunes, normalised like the generator's corpus and short enough for its context.
    tok = domains.load_tokenizer(args.generator)
    context = domains.context_length(domains.load_generator(args.generator))
    split = domains.split_corpus(domains.load_abc_corpus(domains.FIDDLE, domains.load_normalisation(args.generator)))
    tunes = [p.text for p in split["test"] if len(tok(p.text)["input_ids"]) <= context][: args.tunes]

    out = Path(args.out)
    shutil.rmtree(out / "job", ignore_errors=True)  # this example's own job: start afresh each time
    domain = gradopt.job_domain(args.generator)  # the generator's domain (ABC): reads and writes .abc files
    domain.write(tunes, out / "tunes.abc")

    cfg = gradopt.CorpusJobConfig(ascent=gradopt.AscentConfig(steps=args.steps),  # its default guard: do no harm
                                  moves=gradopt.MoveConfig(rounds=1, candidates=16), shard_size=args.shard_size)
    models = gradopt.ModelsSpec(generator=args.generator, reward=args.reward)
    job = dict(out_file=out / "improved.abc", workers=args.workers, progress=False)

    summary = gradopt.run_corpus_job(out / "tunes.abc", out / "job", cfg, models, **job)
    print(f"{summary['tunes']} tunes -> {out / 'improved.abc'}: {summary['changed']} changed, {summary['kept']} kept")
    print(f"reward gain  {interval(summary['reward_gain'])}")
    print(f"utility gain {interval(summary['utility_gain'])}   (simulated rater)")
    for why, n in summary["kept_why"].items():
        print(f"kept {n}: {why}")

    # Again with resume=True: every shard file is finished and belongs to this job, so none is redone.
    shards = sorted((out / "job" / "shards").glob("*.jsonl"))
    stamps = [f.stat().st_mtime_ns for f in shards]
    again = gradopt.run_corpus_job(out / "tunes.abc", out / "job", cfg, models, resume=True, **job)
    redone = sum(f.stat().st_mtime_ns != t for f, t in zip(shards, stamps))
    print(f"resumed: {redone} of {len(shards)} shards redone; same summary: {again == summary}")


if __name__ == "__main__":  # the workers are spawned processes that import this file: run only here
    main()
