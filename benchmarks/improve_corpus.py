"""improve-corpus at scale: throughput over workers and backends, and exact resumption after kill -9.

Setting: --tunes tunes of the bundled fiddle corpus (those of at most --max-chars characters, cycled
when there are fewer), tiny untrained models (1-layer char generator, reward model initialised
from it; the job's cost, not its gains, is measured here), a short ascent (--steps, --polish-rounds
rounds of polish, --move-rounds rounds of 16 whole-tune moves, the default do-no-harm guard;
--no-utility skips the simulated rater's utility in the summary). Each run is the
`gradopt improve-corpus` command in a subprocess, timed wall-clock from start to exit (process
start-up, model loading and Ray start-up included):

    local_w1         the reference: one worker process, uninterrupted
    local_w2         two worker processes
    ray_w2           Ray tasks on a local Ray started with 2 CPUs
    killed_local_w2  local w2, SIGKILLed (its whole session) at a random moment after a shard
                     finished, twice, then resumed with --resume to the end
    killed_ray_w2    the same on Ray

--runs picks some of them; the first, uninterrupted, is the reference for identity.
Every run's output file and summary.json must equal the reference's byte for byte (`identical`).
Throughput = tunes / wall seconds. The machine is shared: each run records the load average
(`os.getloadavg`, as `uptime` prints it) before and after, and the CPU seconds of the processes it
started that were reaped (`children_cpu_s`; Ray's own processes are not all counted), so a
throughput can be read against how busy the machine was. Writes
benchmarks/results/improve_corpus.json (--quick: 60 tunes, improve_corpus_quick.json); one
summary line last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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
            "--polish-rounds", str(args.polish_rounds), "--move-rounds", str(args.move_rounds), "--move-candidates",
            "16", "--shard-size", str(args.shard_size), "--seed", str(args.seed), "--no-progress",
            *(["--no-utility"] if args.no_utility else []), *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


def children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (what `uptime` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def shards_done(job: Path) -> int:
    return len(list((job / "shards").glob("shard-*.jsonl")))


def session_pids(sid: int) -> list[int]:
    """Processes still alive in session `sid` (Linux /proc), e.g. Ray's, left by a killed run."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def killed_run(cmd: list[str], job: Path, kills: int, rng: random.Random, log) -> tuple[float, list[dict]]:
    """Run `cmd`, SIGKILL its session `kills` times at a random moment after one more shard
    finished, resuming each time, then resume to the end -> (wall seconds, what each kill hit)."""
    t0, events = time.perf_counter(), []
    for k in range(kills):
        before = shards_done(job)
        proc = subprocess.Popen(cmd + (["--resume"] if k else []), env=env(), cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while shards_done(job) <= before and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        exited = proc.poll() is not None
        if not exited:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        left = session_pids(proc.pid)  # processes that left the process group but not the session
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        events.append({"kill": k + 1, "shards_done_at_kill": shards_done(job), "had_finished": exited,
                       "left_alive_after_killpg": len(left)})
        log(f"  kill {k + 1}: {events[-1]}")
    timed(cmd + ["--resume"])
    return time.perf_counter() - t0, events


def save(d: Path, args, picked: list[str], results: dict, complete: bool) -> tuple[dict, Path]:
    """Compare the finished runs' files with the reference's and write the result JSON (after
    every run, so a long benchmark stopped part-way leaves the runs it finished; `complete` says)."""
    reference = picked[0]
    ref = {f: (d / reference / f).read_bytes() for f in ("out.abc", "out.job/summary.json")}
    for name, r in results.items():
        r["identical"] = all((d / name / f).read_bytes() == b for f, b in ref.items())
    config = {**vars(args), "runs": picked, "n_positions": args.max_chars + 8, "benchmark": "improve_corpus"}
    w1, w2 = results.get("local_w1"), results.get("local_w2")
    out = {"benchmark": "improve_corpus", "quick": args.quick, "tunes": args.tunes, "complete": complete,
           "reference": reference, "runs": results,
           "speedup_w2_over_w1": w1["seconds"] / w2["seconds"] if w1 and w2 else None,
           "all_identical": all(r["identical"] for r in results.values()),
           "job_summary": json.loads(ref["out.job/summary.json"])}
    return out, write_result(RESULTS / f"improve_corpus{'_quick' if args.quick else ''}.json", out, config)


RUNS = {"local_w1": ("--workers", "1"), "local_w2": ("--workers", "2"), "ray_w2": ("--backend", "ray", "--workers", "2"),
        "killed_local_w2": ("--workers", "2"), "killed_ray_w2": ("--backend", "ray", "--workers", "2")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 tunes, shards of 10 (about 15 min wall on a busy shared 2-core machine)")
    ap.add_argument("--tunes", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--max-chars", type=int, default=300, help="longest tune taken from the corpus")
    ap.add_argument("--steps", type=int, default=8, help="ascent steps per tune")
    ap.add_argument("--polish-rounds", type=int, default=1, help="exact-swap rounds after the ascent")
    ap.add_argument("--move-rounds", type=int, default=1, help="rounds of whole-tune moves (0 = off)")
    ap.add_argument("--no-utility", action="store_true", help="no simulated-rater utility in the job's summary")
    ap.add_argument("--seed", type=int, default=0, help="run seed, and the seed of the kill times")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    args = ap.parse_args()
    if args.quick:
        args.tunes, args.shard_size = 60, 10
    picked = [r for r in args.runs.split(",") if r and not (args.no_ray and "ray" in r)]
    unknown = sorted(set(picked) - set(RUNS))
    if unknown or not picked or picked[0].startswith("killed"):
        ap.error(f"--runs: unknown {unknown}, or the first is not an uninterrupted run (the reference); choose "
                 f"from {', '.join(RUNS)}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="improve_corpus_") as tmp:
        d = Path(tmp)
        texts = corpus(args.tunes, args.max_chars)
        save_models(d, texts, n_positions=args.max_chars + 8)
        (d / "in.abc").write_text("\n".join(texts))
        results, rng = {}, random.Random(args.seed)
        for name in picked:
            before, cpu0 = load(), children_cpu()
            target = d / name / "out.abc"
            if name.startswith("killed"):
                seconds, events = killed_run(command(d, target, args, *RUNS[name]), d / name / "out.job", 2, rng, log)
            else:
                seconds, events = timed(command(d, target, args, *RUNS[name])), None
            results[name] = {"seconds": seconds, "tunes_per_s": args.tunes / seconds,
                             "children_cpu_s": children_cpu() - cpu0, "load_before": before, "load_after": load(),
                             **({"kills": events} if events is not None else {})}
            log(f"{name}: {seconds:.1f} s, {args.tunes / seconds:.2f} tunes/s, load {before} -> {load()}")
            out, path = save(d, args, picked, results, complete=name == picked[-1])  # as it goes
    reference = out["reference"]
    rates = ", ".join(f"{k} {r['tunes_per_s']:.2f}" for k, r in results.items())
    speedup = f"w2/w1 speedup {out['speedup_w2_over_w1']:.2f}x; " if out["speedup_w2_over_w1"] else ""
    print(f"improve_corpus{' (quick)' if args.quick else ''}: {args.tunes} tunes; tunes/s {rates}; "
          f"{speedup}outputs identical to {reference}: {out['all_identical']} -> {path}")


if __name__ == "__main__":
    main()
