"""improve-corpus at scale: throughput over workers and backends, and exact resumption after kill -9.

Setting: --tunes tunes of the bundled fiddle corpus (those of at most --max-chars characters, cycled
when there are fewer), tiny untrained models (1-layer char generator, reward model initialised
from it; the job's cost, not its gains, is measured here), a short ascent (--steps, one polish
round, one round of 16 whole-tune moves, the default do-no-harm guard). Each run is the
`gradopt improve-corpus` command in a subprocess, timed wall-clock from start to exit (process
start-up, model loading and Ray start-up included):

    local w1     the reference: one worker process, uninterrupted
    local w2     two worker processes
    ray w2       Ray tasks on a local Ray started with 2 CPUs
    killed       local w2, SIGKILLed (process group) at a random moment after a shard finished, twice,
                 then resumed with --resume to the end

Every run's output file and summary.json must equal the reference's byte for byte (`identical`).
Throughput = tunes / wall seconds. Writes benchmarks/results/improve_corpus.json (--quick: 60 tunes,
improve_corpus_quick.json); one summary line last. CPU: the full run is about 1,000 tunes x 4 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import domains
import torch
from provenance import ROOT, write_result
from rewardmodels import RewardModel

RESULTS = Path(__file__).parent / "results"
CLI = "import sys; from gradopt.cli import main; sys.exit(main())"


def corpus(n: int, max_chars: int) -> list[str]:
    """`n` normalised fiddle tunes of at most `max_chars` characters, in corpus order, cycled if needed."""
    texts = [p.text for p in domains.load_abc_corpus(domains.FIDDLE) if len(p.text) <= max_chars]
    return [texts[i % len(texts)] for i in range(n)]


def save_models(d: Path, texts: list[str], n_positions: int) -> None:
    """A tiny char generator (d/gen, with tokenizer and normalisation) and a reward model from it (d/rm)."""
    tok = domains.build_tokenizer(texts, "char")
    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=32, n_positions=n_positions),
                                  tok, seed=0)
    gen.save_pretrained(d / "gen")
    domains.save_tokenizer(tok, d / "gen")
    domains.save_normalisation(domains.NormaliseConfig(), d / "gen")
    torch.manual_seed(1)
    RewardModel.from_generator(gen).save_pretrained(d / "rm")


def command(d: Path, out: Path, args, *extra) -> list[str]:
    return [sys.executable, "-c", CLI, "improve-corpus", str(d / "in.abc"), str(out), "--generator", str(d / "gen"),
            "--reward-model", str(d / "rm"), "--steps", str(args.steps), "--check-every", str(max(1, args.steps // 2)),
            "--polish-rounds", "1", "--move-rounds", "1", "--move-candidates", "16", "--shard-size",
            str(args.shard_size), "--seed", str(args.seed), "--no-progress", *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def shards_done(job: Path) -> int:
    return len(list((job / "shards").glob("shard-*.jsonl")))


def killed_run(cmd: list[str], job: Path, kills: int, rng: random.Random, log) -> tuple[float, list[dict]]:
    """Run `cmd`, SIGKILL its process group `kills` times at a random moment after one more shard
    finished, resuming each time, then resume to the end -> (wall seconds, what each kill hit)."""
    t0, events = time.perf_counter(), []
    for k in range(kills):
        before = shards_done(job)
        proc = subprocess.Popen(cmd + (["--resume"] if k else []), env=env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while shards_done(job) <= before and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        exited = proc.poll() is not None
        if not exited:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        events.append({"kill": k + 1, "shards_done_at_kill": shards_done(job), "had_finished": exited})
        log(f"  kill {k + 1}: {events[-1]}")
    timed(cmd + ["--resume"])
    return time.perf_counter() - t0, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 tunes, shards of 10 (about 15 min wall on a busy shared 2-core machine)")
    ap.add_argument("--tunes", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--max-chars", type=int, default=300, help="longest tune taken from the corpus")
    ap.add_argument("--steps", type=int, default=8, help="ascent steps per tune")
    ap.add_argument("--seed", type=int, default=0, help="run seed, and the seed of the kill times")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = ap.parse_args()
    if args.quick:
        args.tunes, args.shard_size = 60, 10
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="improve_corpus_") as tmp:
        d = Path(tmp)
        texts = corpus(args.tunes, args.max_chars)
        save_models(d, texts, n_positions=args.max_chars + 8)
        (d / "in.abc").write_text("\n".join(texts))
        runs = {"local_w1": ("--workers", "1"), "local_w2": ("--workers", "2")}
        if not args.no_ray:
            runs["ray_w2"] = ("--backend", "ray", "--workers", "2")
        results = {}
        for name, extra in runs.items():
            seconds = timed(command(d, d / name / "out.abc", args, *extra))
            results[name] = {"seconds": seconds, "tunes_per_s": args.tunes / seconds}
            log(f"{name}: {seconds:.1f} s, {args.tunes / seconds:.2f} tunes/s")
        seconds, events = killed_run(command(d, d / "killed" / "out.abc", args, "--workers", "2"),
                                     d / "killed" / "out.job", 2, random.Random(args.seed), log)
        results["killed_w2"] = {"seconds": seconds, "tunes_per_s": args.tunes / seconds, "kills": events}
        log(f"killed_w2: {seconds:.1f} s over {len(events)} kills and a resume")
        ref = {f: (d / "local_w1" / f).read_bytes() for f in ("out.abc", "out.job/summary.json")}
        for name, r in results.items():
            r["identical"] = all((d / name.replace("killed_w2", "killed") / f).read_bytes() == b
                                 for f, b in ref.items())
        summary = json.loads(ref["out.job/summary.json"])
    config = {**vars(args), "n_positions": args.max_chars + 8, "workers_compared": [1, 2],
              "benchmark": "improve_corpus"}
    out = {"benchmark": "improve_corpus", "quick": args.quick, "tunes": args.tunes, "runs": results,
           "speedup_w2_over_w1": results["local_w1"]["seconds"] / results["local_w2"]["seconds"],
           "all_identical": all(r["identical"] for r in results.values()), "job_summary": summary}
    path = write_result(RESULTS / f"improve_corpus{'_quick' if args.quick else ''}.json", out, config)
    rates = ", ".join(f"{k} {r['tunes_per_s']:.2f}" for k, r in results.items())
    print(f"improve_corpus{' (quick)' if args.quick else ''}: {args.tunes} tunes; tunes/s {rates}; "
          f"w2/w1 speedup {out['speedup_w2_over_w1']:.2f}x; outputs identical: {out['all_identical']} -> {path}")


if __name__ == "__main__":
    main()
