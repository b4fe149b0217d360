"""Benchmark glue around the library's reward-model recipes: corpus cuts, held-out splits, the
benchmarks' generator (trained once, cached in a --work directory) and run setup.

The recipes themselves are library code: `rewardmodels.Recipe`, the named presets
(`rewardmodels.PRACTICAL`, `BASELINE`, `PRACTICAL_BAR_AWARE`), `rewardmodels.make_pool`,
`simulate_comparisons`, `fit_recipe`, and `gradopt.build_reward_model` with its harvest rounds.
They are re-exported here under the names the benchmark scripts use.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import domains
import gradopt
from domains import char_edit, pitch_edit  # noqa: F401  (re-exported for the benchmark scripts)
from gradopt import build_reward_model, harvest_round  # noqa: F401
from gradopt import header_frozen_masks as edit_space  # noqa: F401
from rewardmodels import PRACTICAL, Recipe, make_pool, root_groups  # noqa: F401
from rewardmodels import RatingPool as Pool  # noqa: F401
from rewardmodels import fit_recipe  # noqa: F401  (re-exported for the benchmarks)
from rewardmodels import scale_recipe as scaled  # noqa: F401
from rewardmodels import simulate_comparisons as compare  # noqa: F401


def cut_tune(text: str, max_chars: int) -> str | None:
    """Header + as many whole bars as fit in `max_chars` (None when not even one bar fits)."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("|", 0, max_chars - 1)  # the cut keeps the bar line and adds a newline
    body = text.find("\n", text.find("\nK:") + 1)
    return text[: cut + 1] + "\n" if cut > body > 0 else None


def cut_corpus(max_chars: int, collections=domains.FIDDLE) -> dict[str, list[str]]:
    """The ABC corpus of `collections` split train/val/test (`domains.split_corpus`), each tune cut
    by `cut_tune` (tunes where not even one bar fits are dropped)."""
    pieces = domains.split_corpus(domains.load_abc_corpus(collections))
    return {k: [c for c in (cut_tune(p.text, max_chars) for p in ps) if c] for k, ps in pieces.items()}


@dataclass(frozen=True, kw_only=True)
class EvalSplit:
    """Which held-out items a benchmark run measures on. Settings (a reward-model recipe, the
    engine's defaults) are chosen on the ``select`` split; reported figures come from ``report``,
    whose items were never looked at while choosing: other corpus tunes, other sample seeds."""

    name: str  # "select" | "report"
    corpus: str  # the corpus split (`domains.split_corpus`) whose tunes are held-out items
    sample_seed: int  # seed of the generator samples used as held-out items (+ a run's --seed)
    baseline_seed: int  # first seed of the samples a baseline draws (best-of-N), away from every other seed

    def __post_init__(self) -> None:
        if self.corpus not in ("val", "test"):
            raise ValueError(f"EvalSplit.corpus must be 'val' or 'test' (never the training split), not {self.corpus!r}")


# Seeds elsewhere: rating pools draw samples with seed 99 + seed, harvest rounds 199 + 100 * seed + k.
SPLITS = {"select": EvalSplit(name="select", corpus="val", sample_seed=1, baseline_seed=20_000),
          "report": EvalSplit(name="report", corpus="test", sample_seed=1001, baseline_seed=30_000)}


def eval_split(name: str) -> EvalSplit:
    """The split called `name` (a --split argument)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}: use 'select' to choose settings, 'report' for figures")
    return SPLITS[name]


def eval_corpus(splits: dict[str, list[str]], tok, split: EvalSplit) -> list[str]:
    """The split's held-out corpus tunes the tokenizer can encode (no unknown characters)."""
    return [t for t in splits[split.corpus] if tok.unk_token_id not in tok(t)["input_ids"]]


def eval_samples(gen, tok, n: int, split: EvalSplit, constraint=None, seed: int = 0, temperature: float = 0.8):
    """`n` generator samples (token rows) drawn as the split's held-out items: seed
    `split.sample_seed + seed`, bar-aware with `constraint` (e.g. `domains.ABCConstraint`)."""
    return gradopt.starts_from_generator(gen, tok, n, seed=split.sample_seed + seed, temperature=temperature,
                                         constraint=constraint)


def run_parser(doc: str, quick_help: str, work_help: str = "directory with generator/ to reuse (written if absent)",
               seed_help: str | None = None) -> argparse.ArgumentParser:
    """The command line the generator-reusing benchmarks share (--quick, --work, --threads, --seed);
    each script adds its own options to it."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--work", help=work_help)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--seed", type=int, default=0, help=seed_help)
    return ap


def start_run(threads: int):
    """The benchmarks' run setup: torch threads, no hub downloads; returns a log function that
    prefixes each message with the wall time since this call."""
    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    wall0 = time.perf_counter()
    return lambda msg: print(f"[{time.perf_counter() - wall0:6.1f}s] {msg}", flush=True)


def start_corpus_run(threads: int, max_chars: int):
    """`start_run`, then the corpus cut to whole bars within `max_chars` -> (log, {"train", "val", "test"})."""
    log = start_run(threads)
    return log, cut_corpus(max_chars)


BENCH_PRESET = "bench"  # the benchmarks' own generator: 2 layers, 2 heads, width 64


def load_or_train_generator(gdir: Path, train: list[str], val: list[str], max_chars: int, minutes: float,
                            seed: int = 0, preset: str = BENCH_PRESET):
    """(tokenizer, generator, info): the benchmarks' char-level generator, reused from `gdir`
    when it holds one, else trained there for `minutes` CPU-minutes (`seed`: initial weights and
    data order; the tokenizer depends on the texts only). `preset`: BENCH_PRESET (2 layers, width
    64) or a name of `domains.PRESETS`, its context cut to the tunes' length."""
    t0 = time.process_time()
    if (gdir / "config.json").exists():
        tok, gen = domains.load_tokenizer(gdir), domains.load_generator(gdir)
        info: dict = {"generator": "reused"}
    else:
        tok = domains.build_char_tokenizer(train + val)
        sizes = (domains.GeneratorPreset(n_layer=2, n_head=2, n_embd=64, n_positions=max_chars + 2)
                 if preset == BENCH_PRESET else
                 dataclasses.replace(domains.PRESETS[preset], n_positions=max_chars + 2))
        gen = domains.build_generator(sizes, tok, seed=seed)
        cfg = domains.GeneratorTrainConfig(max_steps=100_000, cpu_minutes=minutes, batch_size=16, lr=3e-3,
                                           warmup=50, eval_every=100_000, seed=seed)
        summary = domains.train_generator(gen, tok, train, val[:50], cfg, gdir, progress=True,
                                          normalisation=domains.NormaliseConfig())  # cut_corpus keeps spaces
        gen = domains.load_generator(gdir)
        info = {"generator": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}
    info["generator_cpu_s"] = time.process_time() - t0
    return tok, gen.eval(), info
