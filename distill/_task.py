"""What every way of moving the generator shares: the task, the budget, the run record, the registry.

A *method* (expert iteration, DPO, PPO, RLOO, best-of-N, ...) takes a `Task` — the base generator,
its tokenizer, a verified reward over decoded texts, the prompts to sample from and the corpus —
and a `Budget`, trains a copy of the generator in a work directory, and returns a `DistillRun`:
the trained policy plus one history row per step or round. `distill.evaluate` then measures every
method's policy the same way. Methods register themselves under a name in `METHODS` with
`register`, so the command line and the benchmark list them without knowing each one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from domains import SampleConfig

RewardFn = Callable[[Sequence[str]], np.ndarray]  # decoded texts -> (n,) float rewards, higher is better


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How long a method may train: process CPU-seconds (all threads) and a step cap, whichever
    binds first. Equal budgets make methods comparable."""

    cpu_seconds: float = 60.0
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        if not self.cpu_seconds > 0 or self.max_steps <= 0:
            raise ValueError(f"Budget needs cpu_seconds > 0 and max_steps > 0, got {self.cpu_seconds}, {self.max_steps}")


class Clock:
    """Process CPU time since construction, against a `Budget`."""

    def __init__(self, budget: Budget, spent: float = 0.0) -> None:
        self.budget = budget
        self._start = time.process_time() - spent

    @property
    def spent(self) -> float:
        return time.process_time() - self._start

    def out(self, step: int, spent: float | None = None) -> bool:
        """True once the CPU budget or the step cap is used up; `spent`: the CPU seconds to judge
        (a reading the caller recorded), else the time spent now."""
        return (self.spent if spent is None else spent) >= self.budget.cpu_seconds or step >= self.budget.max_steps


@dataclass(kw_only=True)
class Task:
    """The shared starting point of every method.

    generator: the base policy (a causal LM, e.g. `domains.build_generator`); methods train a deep
      copy (`policy_copy`) and keep this one frozen as the KL reference.
    reward: verified reward of decoded texts (invalid pieces already scored low by whoever built it).
    prompts: prefixes to sample from ("" = from BOS); cycled when a method needs more.
    corpus: training texts (replay for expert iteration, prompts/references elsewhere).
    sample: how samples are drawn (length, temperature, batch size).
    constraint_factory: optional zero-argument callable returning a sampling grammar
      (e.g. `domains.ABCConstraint`) for bar-aware samples; None = free sampling.
    validate: optional text -> bool (the domain's validity), used by judges and evaluation.
    reward_model: optional differentiable model behind `reward` (a `rewardmodels.RewardModel` on
      the generator's tokenizer), for methods that ascend it (expert iteration via
      `gradopt.optimize`); blackbox methods use only `reward`.
    """

    generator: object
    tokenizer: object
    reward: RewardFn
    prompts: Sequence[str] = ("",)
    corpus: Sequence[str] = ()
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(max_new_tokens=128))
    constraint_factory: Callable[[], object] | None = None
    validate: Callable[[str], bool] | None = None
    reward_model: object | None = None

    def __post_init__(self) -> None:
        if not callable(self.reward):
            raise ValueError("Task.reward must be a callable texts -> rewards")
        if not self.prompts:
            raise ValueError("Task.prompts must hold at least one prefix ('' samples from BOS)")

    def policy_copy(self):
        """A trainable deep copy of the base generator."""
        policy = copy.deepcopy(self.generator)
        policy.train()
        for p in policy.parameters():
            p.requires_grad_(True)
        return policy

    def reference(self):
        """The frozen base generator (eval mode, no gradients)."""
        self.generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        return self.generator


@dataclass
class DistillRun:
    """What a method returns: the trained policy and its history (one dict per step or round,
    each with at least "step" and "cpu_s"; methods add "reward", "kl", "loss", ...).

    sample_fn: for methods whose output is a sampling procedure rather than new weights (best-of-N):
      ``sample_fn(n, seed) -> n decoded texts``; evaluation then samples through it, not `policy`.
    kl: the method's KL to the base generator when known analytically (best-of-N: log N - (N-1)/N);
      None = estimate it from samples."""

    method: str
    policy: object
    history: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "round 3: no row passed the threshold"
    sample_fn: Callable[[int, int], list[str]] | None = None
    kl: float | None = None


class Method(Protocol):
    def __call__(self, task: Task, workdir: Path, budget: Budget, *, seed: int = 0,
                 progress: bool = False, **options) -> DistillRun: ...


METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Decorator: make a method available as ``METHODS[name]`` (names are the benchmark's keys)."""

    def deco(fn: Method) -> Method:
        if name in METHODS and METHODS[name] is not fn:
            raise ValueError(f"distill method {name!r} registered twice")
        METHODS[name] = fn
        return fn

    return deco


def run_method(name: str, task: Task, workdir: str | Path, budget: Budget = Budget(), *, seed: int = 0,
               progress: bool = False, **options) -> DistillRun:
    """Run the method registered as `name` (see `METHODS`)."""
    if name not in METHODS:
        raise ValueError(f"unknown distill method {name!r}; choose from {sorted(METHODS)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return METHODS[name](task, workdir, budget, seed=seed, progress=progress, **options)


def model_reward(reward_model, tokenizer, validate: Callable[[str], bool] | None = None,
                 invalid: float = -3.0, batch_size: int = 64) -> RewardFn:
    """A `RewardFn` from a trained reward model: its (normalised) score of each decoded text, and
    `invalid` for texts that `validate` rejects (so no method can gain by breaking pieces) or that
    do not fit the reward model's context. The reward model must share the tokenizer."""
    import torch  # noqa: F401  (the reward model's tensors)

    from domains import check_length, encode_batch

    def reward(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.full(len(texts), float(invalid))
        keep = [i for i, t in enumerate(texts) if validate is None or validate(t)]
        fits = []
        for i in keep:
            n = len(tokenizer(texts[i])["input_ids"])
            try:
                check_length(reward_model, n)
                fits.append(i)
            except ValueError:
                pass
        if fits:
            ids, mask = encode_batch(tokenizer, [texts[i] for i in fits])
            out[fits] = reward_model.predict(ids, mask, batch_size=batch_size).numpy()
        return out

    return reward


def sample_prompts(model, task: Task, prompts: Sequence[str], per_prompt: int,
                   seed_of: Callable[[int], int]) -> tuple[list[list[list[int]]], list[int]]:
    """`per_prompt` samples of each entry of `prompts` from `model` under the task's sampling
    config and grammar -> (rows[i][k] token ids with BOS and prefix, prefix length of row i incl.
    BOS). One `domains.sample_ids` call per distinct prompt, the j-th drawn with seed ``seed_of(j)``,
    so a method's samples are a function of its seeds (and resume draws the same)."""
    from domains import sample_ids

    tok = task.tokenizer
    rows: list[list[list[int]]] = [[] for _ in prompts]
    prefix_len = [0] * len(prompts)
    for j, prompt in enumerate(dict.fromkeys(prompts)):
        where = [i for i, p in enumerate(prompts) if p == prompt]
        constraint = task.constraint_factory() if task.constraint_factory is not None else None
        got = sample_ids(model, tok, len(where) * per_prompt, task.sample, prefix=prompt, seed=seed_of(j),
                         constraint=constraint)
        n_prefix = 1 + len(tok(prompt, add_special_tokens=False)["input_ids"])
        for k, i in enumerate(where):
            rows[i] = got[k * per_prompt:(k + 1) * per_prompt]
            prefix_len[i] = n_prefix
    return rows, prefix_len
