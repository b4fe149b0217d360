"""The one training loop of the distill methods: optimiser, schedule, clipping, budget, history,
checkpoint and resume. A method supplies only ``step_fn(step) -> (loss, stats)`` — build its batch
(sample, score, pair, ...) and return its own small loss — and the modules the loss trains."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm

from domains import lr_schedule, write_atomic, write_atomic_with

from ._task import Budget, Clock

StepFn = Callable[[int], tuple[torch.Tensor, dict]]


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Optimiser and schedule of a distill method's training."""

    lr: float = 1e-4  # peak learning rate (AdamW)
    warmup: int = 0  # linear warm-up steps
    floor: float = 1.0  # cosine floor as a fraction of lr over budget.max_steps (1.0 = constant)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    checkpoint_every: int = 20  # steps between checkpoints (and at the end)

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.warmup < 0 or not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"LoopConfig needs lr > 0, warmup >= 0, floor in [0, 1]; got {self}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.checkpoint_every <= 0:
            raise ValueError(f"LoopConfig needs weight_decay >= 0, grad_clip >= 0, checkpoint_every > 0; got {self}")


def _save(path: Path, modules: Mapping[str, torch.nn.Module], opt, step: int, spent: float,
          history: list[dict], extra: dict) -> None:
    """Write the checkpoint atomically (`domains.write_atomic_with`)."""
    state = {"modules": {k: m.state_dict() for k, m in modules.items()}, "optimizer": opt.state_dict(),
             "step": step, "cpu_s": spent, "history": history, "extra": extra, "rng": torch.get_rng_state()}
    write_atomic_with(path, lambda tmp: torch.save(state, tmp))


def train_loop(modules: Mapping[str, torch.nn.Module], step_fn: StepFn, budget: Budget, workdir: str | Path,
               cfg: LoopConfig = LoopConfig(), *, progress: bool = False, desc: str = "train",
               extra_state: dict | None = None) -> list[dict]:
    """Optimise the trainable parameters of `modules` with AdamW on ``step_fn(step)``'s loss until
    `budget` runs out; returns the history (one dict per step: step, cpu_s, loss, lr, and step_fn's
    stats).

    Resumable: ``workdir/loop.pt`` holds modules, optimiser, step, CPU spent, history, the torch
    RNG and `extra_state` (a dict the method may update in place, e.g. an adaptive-KL coefficient);
    a run finding it continues where the last one stopped, counting the CPU already spent against
    the budget. ``workdir/history.jsonl`` is rewritten at each checkpoint.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "loop.pt"
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"train_loop({desc}): no trainable parameters in {sorted(modules)}")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, spent, history = 0, 0.0, []
    extra = extra_state if extra_state is not None else {}
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        opt.load_state_dict(state["optimizer"])
        step, spent, history = state["step"], state["cpu_s"], state["history"]
        extra.update(state["extra"])
        torch.set_rng_state(state["rng"])
    clock = Clock(budget, spent=spent)
    bar = tqdm(total=budget.max_steps, initial=step, disable=not progress, desc=desc, unit="step")
    last_saved = step
    now = clock.spent  # one reading per step, recorded and judged alike: the last record shows the budget used up
    while not clock.out(step, now):
        lr = lr_schedule(step, total=budget.max_steps, warmup=cfg.warmup, floor=cfg.floor, peak=cfg.lr,
                         min_progress=clock.spent / budget.cpu_seconds)
        for group in opt.param_groups:
            group["lr"] = lr
        for m in modules.values():
            m.train()
        loss, stats = step_fn(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {float(loss)} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        now = clock.spent
        history.append({"step": step, "cpu_s": round(now, 3), "loss": float(loss.detach()), "lr": lr,
                        **{k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in stats.items()}})
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if step - last_saved >= cfg.checkpoint_every:
            _save(ckpt, modules, opt, step, clock.spent, history, extra)
            last_saved = step
    bar.close()
    _save(ckpt, modules, opt, step, clock.spent, history, extra)
    write_atomic(workdir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    (workdir / "loop_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return history


def remove_checkpoint(workdir: str | Path) -> None:
    """Forget a finished loop's state (to start over in the same directory)."""
    (Path(workdir) / "loop.pt").unlink(missing_ok=True)
