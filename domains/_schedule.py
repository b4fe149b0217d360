"""The learning-rate schedule shared by the training loops: linear warm-up, then cosine to a floor."""

from __future__ import annotations

import math


def lr_schedule(step: int, *, total: int, warmup: int, floor: float, ramp: int | None = None,
                min_progress: float = 0.0, peak: float = 1.0) -> float:
    """Learning rate at 0-based `step` of a `total`-step run.

    Warm-up (``step < warmup``): ``peak * (step + 1) / ramp``, a line that reaches `peak` at step
    ``ramp - 1`` (ramp defaults to `warmup`; ``warmup + 1`` puts the peak on the first step after
    the warm-up). Then, with ``x = (step - warmup) / max(1, total - warmup)`` raised to at least
    `min_progress` (a time budget running out before the steps) and capped at 1,

        lr = peak * (floor + (1 - floor) * (1 + cos(pi x)) / 2)

    a cosine from `peak` down to ``floor * peak``; ``floor=1`` holds the peak (a constant schedule).
    `peak` = 1 gives a multiplier for ``torch.optim.lr_scheduler.LambdaLR``.
    """
    if total <= 0 or warmup < 0 or not 0.0 <= floor <= 1.0:
        raise ValueError(f"lr_schedule needs total > 0, warmup >= 0 and floor in [0, 1]; got "
                         f"total={total}, warmup={warmup}, floor={floor}")
    if step < warmup:
        return peak * (step + 1) / (warmup if ramp is None else ramp)
    x = max((step - warmup) / max(1, total - warmup), min_progress)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(x, 1.0))))
