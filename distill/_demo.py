"""The main job on the bundled data: the whole loop, with a simulated rater standing in for people.

    corpus -> generator -> samples -> ratings (simulated) -> Bradley-Terry -> reward model
           -> gradient ascent on a batch -> harvest (rated) -> [expert iteration] -> report

Every stage is one function (`stage_*` in `_demo_stages`) and writes its files into one work directory, its
``<stage>.json`` last; a stage whose JSON is there is skipped and its output read back, so an
interrupted run resumes where it stopped (the generator's marker is ``generator/train_summary.json``).
Delete a stage's JSON (and the later ones) to redo it with other settings.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import domains
from domains import ABCDomain

from ._demo_stages import (EXPERT_METHOD, RATER_AGREEMENT, generator_tokenizer, heldout_tunes,  # noqa: F401  (EXPERT_METHOD: distill's)
                           rated_corpus, stage_ascent, stage_bradley_terry, stage_expert_iteration, stage_generator,
                           stage_harvest, stage_ratings, stage_reward_model, stage_samples)
from ._report import write_report

SHOWN_PAIRS = 4  # ascent rows whose tunes the report shows (before and after)


@dataclass(frozen=True, kw_only=True)
class DemoStages:
    """How much each stage after the generator does; the defaults fit the demo's 15 minutes."""

    rated_corpus: int = 200  # training-corpus tunes added to the rating store, each with one pitch variant
    comparisons: int = 6  # random comparisons per item (each pitch variant also meets its tune twice)
    active_rounds: int = 2  # rounds of racing pairs proposed from the current Bradley-Terry scores
    active_pairs: int = 60  # pairs per active round
    reward_recipe: str = "practical_bar_aware"  # reward model's fit: a name in rewardmodels.RECIPES (its model part)
    members: int = 5  # reward model: bootstrap ensemble of this many linear probes (0 = one probe)
    ascent_tunes: int = 16  # valid bar-aware samples (a fresh seed) the engine improves
    ascent_steps: int = 30  # gradient steps of the ascent (pitch edits, header lines frozen)
    guard: bool = True  # the do-no-harm guard (gradopt.TrustConfig) on the ascent
    harvest_starts: int = 16  # fresh samples the harvest edits (guard off) looking for blind spots
    expert_cpu_s: float = 120.0  # CPU budget of the expert-iteration round

    def __post_init__(self) -> None:
        counts = (self.rated_corpus, self.comparisons, self.ascent_tunes, self.harvest_starts)
        if min(counts) < 1 or min(self.active_rounds, self.active_pairs, self.ascent_steps) < 0:
            raise ValueError(f"DemoStages: item, comparison, tune and start counts must be >= 1, rounds, pairs "
                             f"and steps >= 0: {self}")
        if self.members == 1 or self.members < 0:
            raise ValueError(f"DemoStages.members is 0 (one probe) or an ensemble of >= 2, got {self.members}")
        from rewardmodels import RECIPES

        recipe = RECIPES.get(self.reward_recipe)
        if recipe is None:
            raise ValueError(f"DemoStages.reward_recipe {self.reward_recipe!r} is not a recipe; choose from {sorted(RECIPES)}")
        if recipe.targets != "bt" or (self.members and recipe.fit != "probe"):
            raise ValueError(f"DemoStages.reward_recipe {self.reward_recipe!r} (fit {recipe.fit!r}, targets "
                             f"{recipe.targets!r}) cannot be used here: the demo regresses on Bradley-Terry scores, "
                             "and an ensemble (members >= 2) needs a 'probe' fit; pick another recipe or members=0")
        if not self.expert_cpu_s > 0:
            raise ValueError(f"DemoStages.expert_cpu_s must be > 0, got {self.expert_cpu_s}")


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """What the demo trains and how much it samples; `stages` sizes the rest of the loop."""

    preset: str = "small"  # generator size (domains.PRESETS)
    tokenizer: str = "char"  # "char" or "bpe"
    minutes: float = 4.0  # generator training budget in process CPU-minutes (all threads)
    max_steps: int = 4000  # step cap for generator training (LR schedule spans these or the minutes)
    lr: float = 5e-3  # generator peak learning rate
    spaceless: bool = True  # drop spaces from tune bodies (seed essay; parse rate 91% vs 76% with spaces)
    n_samples: int = 100  # samples drawn at temperature 1.0, validated and rated
    essen: bool = False  # add the Essen folk songs to the training corpus
    seed: int = 0  # everything random
    threads: int = 1  # torch threads (1 gives the most tokens per CPU-minute on 2 cores; 0 = torch default)
    processes: int = 2  # worker processes for the music21 parses (validity, utility); 1 = none, same results
    bar_aware: bool = True  # sample under domains.ABCConstraint (bars never overrun); both rates are reported
    stages: DemoStages = field(default_factory=DemoStages)  # ratings, reward model, ascent, harvest, distill

    def __post_init__(self) -> None:
        if self.preset not in domains.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(domains.PRESETS)}")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError("tokenizer must be 'char' or 'bpe'")
        if self.minutes <= 0 or self.max_steps <= 0 or self.n_samples <= 0 or self.threads < 0:
            raise ValueError("minutes, max_steps and n_samples must be positive, threads >= 0")
        if self.processes < 1:
            raise ValueError(f"DemoConfig.processes must be >= 1 (1 = parse in this process), got {self.processes}")


@dataclass
class DemoRun:
    """What the stages share: work directory, settings, corpus, the models as they are made."""

    workdir: Path
    cfg: DemoConfig
    progress: bool
    corpus: dict  # CorpusReport.as_dict()
    split: dict  # split name -> pieces
    norm: domains.NormaliseConfig
    domain: ABCDomain
    tok: object = None
    gen: object = None
    constraint: object = None  # domains.ABCConstraint of the training corpus
    reward: object = None  # the reward model once trained or loaded
    rater: object = None  # rewardmodels.SimulatedRater, for utilities (cached by text)
    pool: object = None  # domains.ProcessPool for the parses (validity checks, utilities)
    checked: dict = field(default_factory=dict)  # text -> domains.Validity: each tune is checked once
    times: dict = field(default_factory=dict)  # stage -> {"seconds", "cpu_seconds", "worker_cpu_seconds", "reused"}

    @property
    def train(self) -> list[str]:
        return [p.text for p in self.split["train"]]

    def say(self, *args) -> None:
        if self.progress:
            print(*args, flush=True)

    def utility(self, texts: list[str]) -> np.ndarray:
        """The simulated rater's hidden utility of each text (cached; the parses spread over the
        pool's workers, reusing known validity verdicts and recording new ones)."""
        return self.rater.utility(list(texts), pool=_Labelled(self, "utility"), checked=self.checked)

    def valid(self, texts: list[str]) -> list[domains.Validity]:
        """`domains.validate_abc` of each text, checked once per text (in the pool's workers)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.checked))
        self.checked.update(zip(todo, _Labelled(self, "validate").map(domains.validate_abc, todo)))
        return [self.checked[t] for t in texts]

    def prefetch(self, texts: list[str]) -> Callable[[], None]:
        """Start computing the utilities (and validity) of `texts` on one worker, in the background,
        while this process trains the generator on the other core -> a function that waits for
        them and caches them. Only texts a later stage scores anyway belong here."""
        from rewardmodels import checked_utility, text_key

        jobs = [(t, None, self.rater.length_aware) for t in dict.fromkeys(texts) if text_key(t) not in self.rater.cache]
        wait = self.pool.submit(checked_utility, jobs, one_worker=True)

        def collect() -> None:
            for (t, *_), (validity, u) in zip(jobs, wait()):
                self.rater.cache[text_key(t)] = u
                self.checked[t] = validity
        return collect

    def store(self):
        from rewardmodels import RatingStore

        return RatingStore(self.workdir / "ratings", create=False)

    def reward_model(self):
        if self.reward is None:
            from rewardmodels import load_reward_model

            self.reward = load_reward_model(self.workdir / "reward")
        return self.reward


class _Labelled:
    """The run's pool with a progress bar over its chunks (a ``map(fn, items)`` for the rater)."""

    def __init__(self, run: DemoRun, desc: str) -> None:
        self.run, self.desc = run, desc

    def map(self, fn, items) -> list:
        show = self.run.progress and len(items) >= 20
        return self.run.pool.map(fn, items, desc=self.desc if show else None)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return str(x)


def _stage(run: DemoRun, name: str, fn: Callable[[DemoRun], dict | None]) -> dict | None:
    """Run ``fn(run)`` unless ``<name>.json`` exists (then read it back); the dict it returns is
    written there last, with the stage's times and settings. None (nothing to do) writes nothing."""
    path = run.workdir / f"{name}.json"
    if path.exists():
        out = json.loads(path.read_text())
        run.times[name] = {**out.get("time", {}), "reused": True}
        run.say(f"[{name}] done before: reusing {path.name}")
        if out.get("settings") != json.loads(json.dumps(asdict(run.cfg))):
            run.say(f"  (its settings differ from this run's; delete {path} and the later stages to redo it)")
        return out
    run.say(f"[{name}]")
    t0, c0, w0 = time.perf_counter(), time.process_time(), run.pool.cpu_seconds
    out = fn(run)
    if out is None:
        return None
    out["time"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                   "worker_cpu_seconds": run.pool.cpu_seconds - w0}
    out["settings"] = asdict(run.cfg)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=_jsonable))
    tmp.replace(path)
    run.times[name] = {**out["time"], "reused": False}
    return out


def run_demo(workdir: str | Path, cfg: DemoConfig = DemoConfig(), progress: bool = True) -> Path:
    """Run the loop (see the module docstring); writes report.json and report.html, returns the
    path of ``report.json``."""
    from rewardmodels import SimulatedRater

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    collections = domains.FIDDLE + (domains.ESSEN if cfg.essen else ())
    report_c = domains.CorpusReport()
    norm = domains.NormaliseConfig(spaceless=cfg.spaceless)
    pieces = domains.load_abc_corpus(collections, norm, report=report_c)
    run = DemoRun(workdir=workdir, cfg=cfg, progress=progress, corpus=report_c.as_dict(), norm=norm,
                  split=domains.split_corpus(pieces), domain=ABCDomain(collections),
                  rater=SimulatedRater(agreement=RATER_AGREEMENT, seed=cfg.seed), pool=domains.ProcessPool(cfg.processes))
    run.say(f"corpus: {len(pieces)} distinct tunes {dict(report_c.kept)}; "
            + " / ".join(f"{k} {len(v)}" for k, v in run.split.items()))
    with run.pool:
        run.tok = generator_tokenizer(run)
        summary, parts = _run_stages(run)
    report = assemble_report(run, summary, parts)
    path = workdir / "report.json"
    path.write_text(json.dumps(report, indent=1, default=_jsonable))
    write_report(workdir, report, audio=True)
    _print_summary(run, report)
    return path


def _run_stages(run: DemoRun) -> tuple[dict, dict]:
    """The generator (while it trains, the corpus tunes later stages score are scored on the spare
    core), then each later stage -> (the generator's training summary, each stage's output)."""
    later = []
    if not (run.workdir / "generator" / "train_summary.json").exists():  # else the stages score them, on all workers
        later += [] if (run.workdir / "ratings.json").exists() else [t for pair in rated_corpus(run) for t in pair]
        later += [] if (run.workdir / "reward_model.json").exists() else heldout_tunes(run)
    t0 = time.perf_counter()
    collect = run.prefetch(later)
    summary = stage_generator(run)
    t1, w0 = time.perf_counter(), run.pool.cpu_seconds
    collect()
    if later:  # worker time is the scoring itself; wall time is what waiting for it added
        run.times["prefetch"] = {"seconds": time.perf_counter() - t1, "cpu_seconds": 0.0,
                                 "worker_cpu_seconds": run.pool.cpu_seconds - w0, "reused": False,
                                 "tunes": len(later), "background_seconds": time.perf_counter() - t0}
    parts = {"samples": _stage(run, "samples", stage_samples)}
    for name, fn in (("ratings", stage_ratings), ("bradley_terry", stage_bradley_terry),
                     ("reward_model", stage_reward_model), ("ascent", stage_ascent), ("harvest", stage_harvest),
                     ("distill", stage_expert_iteration)):
        parts[name] = _stage(run, name, fn)
    return summary, parts


def _shown_tunes(ascent: dict) -> list[dict]:
    """The report's tunes: up to `SHOWN_PAIRS` ascent rows, changed ones first (largest reward gain
    first), each before and after (once when the guard kept it unchanged)."""
    rows = sorted(ascent["rows"], key=lambda r: (r["after"] == r["before"], -(r["reward_after"] - r["reward_before"])))
    tunes = []
    for i, r in enumerate(rows[:SHOWN_PAIRS], 1):
        scores = lambda w: f"reward {r[f'reward_{w}']:+.2f}, utility {r[f'utility_{w}']:+.2f}"  # noqa: E731
        if r["after"] == r["before"]:
            tunes.append({"name": f"tune {i}: unchanged", "abc": r["before"], "caption": f"{scores('before')}; {r['status']}"})
            continue
        tunes.append({"name": f"tune {i}: before", "abc": r["before"], "caption": scores("before")})
        tunes.append({"name": f"tune {i}: after", "abc": r["after"],
                      "caption": f"{scores('after')}; {r['changed']} notes changed"})
    return tunes


def assemble_report(run: DemoRun, summary: dict, parts: dict) -> dict:
    """report.json: the generator and sampling figures (the first demo's keys), then one key per
    later stage, the tunes the page shows, stage times, machine and settings."""
    samples = {k: v for k, v in parts["samples"].items() if k not in ("samples", "time", "settings")}
    report = {
        "corpus": run.corpus, "split": {k: len(v) for k, v in run.split.items()},
        "generator": {"preset": run.cfg.preset, "tokenizer": run.cfg.tokenizer, "vocab_size": len(run.tok),
                      "parameters": sum(p.numel() for p in run.gen.parameters()), **summary},
        **samples,
    }
    for name in ("ratings", "bradley_terry", "reward_model", "ascent", "harvest", "distill"):
        if parts.get(name) is not None:
            report[name] = {k: v for k, v in parts[name].items() if k != "settings"}
    report["tunes"] = _shown_tunes(parts["ascent"])
    report["stages"] = run.times
    report["machine"] = {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                         "python": platform.python_version()}
    report["config"] = asdict(run.cfg)
    return report


def _print_summary(run: DemoRun, r: dict) -> None:
    run.say(f"\nvalidation cross-entropy {r['val_cross_entropy']:.3f} nats/token (unigram "
            f"{r['unigram_cross_entropy']:.3f}; ratio {r['ce_ratio_to_unigram']:.2f}); valid samples "
            f"{r['valid_fraction']:.0%} ({r['sampling']}), free {r['valid_fraction_free_sampling']:.0%}, "
            f"bar-aware {r['valid_fraction_bar_aware_sampling']:.0%}")
    for reason, n in sorted(r["invalid_reasons"].items(), key=lambda kv: -kv[1])[:8]:
        run.say(f"  invalid: {n:>3}  {reason[:70]}")
    run.say(f"ratings: {r['ratings']['comparisons']} comparisons of {r['ratings']['items']} items; Bradley-Terry "
            f"vs utility r = {r['bradley_terry']['corr_utility']:.2f}; reward model vs utility on held-out tunes "
            f"r = {r['reward_model']['heldout_corr_utility']:.2f}")
    s = r["ascent"]["summary"]
    run.say(f"ascent on {len(r['ascent']['rows'])} tunes ({r['ascent']['kept']} kept unchanged): reward gain "
            f"{s['reward_gain']['mean']:+.3f} [{s['reward_gain']['lo']:+.3f}, {s['reward_gain']['hi']:+.3f}], "
            f"utility gain {s['utility_gain']['mean']:+.3f} [{s['utility_gain']['lo']:+.3f}, {s['utility_gain']['hi']:+.3f}]")
    run.say(f"harvest: {r['harvest']['suspects']} likely blind spots from {r['harvest']['starts']} starts, "
            f"{r['harvest']['rated']} comparisons recorded")
    ran = [v["seconds"] for v in r["stages"].values() if not v["reused"]]
    run.say("stages: " + ", ".join(f"{k} {v['seconds']:.0f}s{' (reused)' if v['reused'] else ''}"
                                   for k, v in r["stages"].items())
            + (f"; {sum(ran):.0f}s wall for the stages run now" if ran else ""))
