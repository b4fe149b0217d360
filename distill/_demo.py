"""The main job on the bundled data: corpus -> generator -> samples -> report.

Every stage writes into one work directory and is skipped when its output is already there,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import domains
from domains import ABCDomain, SampleConfig, GeneratorTrainConfig


N_MIDI = 5  # valid samples written as MIDI
BATCH_SIZE = 8  # generator training batch (windows of the context length)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """What the demo trains and how much it samples."""

    preset: str = "small"  # generator size (domains.PRESETS)
    tokenizer: str = "char"  # "char" or "bpe"
    minutes: float = 10.0  # generator training budget in process CPU-minutes (all threads)
    max_steps: int = 4000  # step cap for generator training (LR schedule spans these or the minutes)
    lr: float = 5e-3  # generator peak learning rate
    spaceless: bool = True  # drop spaces from tune bodies (seed essay; parse rate 91% vs 76% with spaces)
    n_samples: int = 100  # samples drawn at temperature 1.0 and validated
    essen: bool = False  # add the Essen folk songs to the training corpus
    seed: int = 0  # everything random
    threads: int = 1  # torch threads (1 gives the most tokens per CPU-minute on 2 cores; 0 = torch default)
    bar_aware: bool = True  # sample under domains.ABCConstraint (bars never overrun); both rates are reported

    def __post_init__(self) -> None:
        if self.preset not in domains.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(domains.PRESETS)}")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError("tokenizer must be 'char' or 'bpe'")
        if self.minutes <= 0 or self.max_steps <= 0 or self.n_samples <= 0 or self.threads < 0:
            raise ValueError("minutes, max_steps and n_samples must be positive, threads >= 0")


def run_demo(workdir: str | Path, cfg: DemoConfig = DemoConfig(), progress: bool = True) -> Path:
    """Run the pipeline; returns the path of ``report.json``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    collections = domains.FIDDLE + (domains.ESSEN if cfg.essen else ())
    domain = ABCDomain(collections)
    report_c = domains.CorpusReport()
    norm = domains.NormaliseConfig(spaceless=cfg.spaceless)
    pieces = domains.load_abc_corpus(collections, norm, report=report_c)
    split = domains.split_corpus(pieces)
    train_texts = [p.text for p in split["train"]]
    val_texts = [p.text for p in split["val"]]
    gen_dir = workdir / "generator"
    say = print if progress else (lambda *a, **k: None)
    say(f"corpus: {len(pieces)} distinct tunes {dict(report_c.kept)}; "
        f"train {len(train_texts)} / val {len(val_texts)} / test {len(split['test'])}")

    if (gen_dir / "tokenizer.json").exists():
        tok = domains.load_tokenizer(gen_dir)
    else:
        tok = domains.build_tokenizer(train_texts, cfg.tokenizer)
    if (gen_dir / "train_summary.json").exists():  # written only after training finished
        model = domains.load_generator(gen_dir)
        summary = json.loads((gen_dir / "train_summary.json").read_text())
        say(f"generator already trained in {gen_dir}")
    else:
        model = domains.build_generator(cfg.preset, tok, seed=cfg.seed)
        tcfg = GeneratorTrainConfig(max_steps=cfg.max_steps, cpu_minutes=cfg.minutes, batch_size=BATCH_SIZE,
                           lr=cfg.lr, warmup=30, eval_every=250, seed=cfg.seed)
        summary = domains.train_generator(model, tok, train_texts, val_texts, tcfg, gen_dir, progress=progress,
                                          normalisation=norm)
        (gen_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))

    train_ids = domains.encode_corpus(tok, train_texts)
    val_ids = domains.encode_corpus(tok, val_texts)
    val_ce = domains.evaluate(model, val_ids, tok.pad_token_id)
    uni_ce = domains.unigram_cross_entropy(train_ids, val_ids, len(tok))

    scfg = SampleConfig(temperature=1.0, max_new_tokens=domains.context_length(model) - 1)
    constraint = domains.ABCConstraint.from_texts(tok, train_texts)
    # Both ways, same seed: free sampling shows what the network alone has learnt.
    t0 = time.time()
    free = domains.sample(model, tok, cfg.n_samples, scfg, seed=cfg.seed)
    free_s = time.time() - t0
    t0 = time.time()
    aware = domains.sample(model, tok, cfg.n_samples, scfg, seed=cfg.seed, constraint=constraint)
    aware_s = time.time() - t0
    free_verdicts = [domain.validate(s) for s in free]
    aware_verdicts = [domain.validate(s) for s in aware]
    free_valid = sum(v.ok for v in free_verdicts) / len(free)
    aware_valid = sum(v.ok for v in aware_verdicts) / len(aware)
    samples, sample_s, verdicts = (aware, aware_s, aware_verdicts) if cfg.bar_aware else (free, free_s, free_verdicts)
    valid = [s for s, v in zip(samples, verdicts) if v.ok]
    # Looser view for diagnosis only: parses, known key/meter, has notes, bar lengths ignored.
    lenient = sum(domains.validate_abc(s, max_overlong_bars=10**9).ok for s in samples)
    reasons: dict[str, int] = {}
    for v in verdicts:
        if not v.ok:
            key = re.sub(r"\d+", "N", re.sub(r"'.*'", "'...'", v.reason.split(":")[0]))
            reasons[key] = reasons.get(key, 0) + 1
    (workdir / "samples.abc").write_text("\n".join(samples))
    midi_dir = workdir / "midi"
    midi_files = []
    for i, s in enumerate(valid[: N_MIDI]):
        try:
            midi_files.append(str(domain.to_midi(s, midi_dir / f"sample_{i:02d}.mid")))
        except domains.RenderError as err:
            say(f"could not render sample {i}: {err}")

    report = {
        "corpus": report_c.as_dict(),
        "split": {k: len(v) for k, v in split.items()},
        "generator": {"preset": cfg.preset, "tokenizer": cfg.tokenizer, "vocab_size": len(tok),
                      "parameters": sum(p.numel() for p in model.parameters()), **summary},
        "val_cross_entropy": val_ce,
        "unigram_cross_entropy": uni_ce,
        "ce_ratio_to_unigram": val_ce / uni_ce,
        "val_perplexity": math.exp(val_ce),
        "n_samples": len(samples),
        "sampling": "bar-aware (domains.ABCConstraint)" if cfg.bar_aware else "free",
        "valid_fraction": len(valid) / len(samples),
        "valid_fraction_free_sampling": free_valid,
        "valid_fraction_bar_aware_sampling": aware_valid,
        "sampling_seconds_free": free_s,
        "sampling_seconds_bar_aware": aware_s,
        "valid_fraction_ignoring_bar_lengths": lenient / len(samples),
        "invalid_reasons": reasons,
        "sampling_seconds": sample_s,
        "example_tunes": valid[:3],
        "midi_files": midi_files,
        "machine": {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()},
        "config": asdict(cfg),
    }
    path = workdir / "report.json"
    path.write_text(json.dumps(report, indent=1))
    say(f"\nvalidation cross-entropy {val_ce:.3f} nats/token (unigram {uni_ce:.3f}; ratio {val_ce / uni_ce:.2f}), "
        f"perplexity {math.exp(val_ce):.2f}")
    say(f"valid samples: {len(valid)}/{len(samples)} ({100 * len(valid) / len(samples):.0f}%, "
        f"{'bar-aware' if cfg.bar_aware else 'free'} sampling); {lenient} parse with known key/meter if bar "
        f"lengths are not checked")
    say(f"valid with free sampling {free_valid:.0%}, with bar-aware sampling {aware_valid:.0%} (same seed)")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:8]:
        say(f"  invalid: {n:>3}  {reason[:70]}")
    for s in valid[:2]:
        say("\n" + s)
    say(f"MIDI: {midi_dir}")
    return path
