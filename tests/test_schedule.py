"""domains.lr_schedule: both training loops' schedules are this one function with their own floor."""

import math

import pytest

import domains
from domains import GeneratorTrainConfig, lr_schedule
from domains._train import _lr_at
from rewardmodels import RewardTrainConfig
from rewardmodels._train import lr_factor


def _generator_schedule_as_written_before(step, cfg, minutes=0.0):
    """The generator loop's own schedule before it moved to lr_schedule (reference)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup)
    if cfg.cpu_minutes:
        frac = max(frac, minutes / cfg.cpu_minutes)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _reward_schedule_as_written_before(step, cfg):
    """The reward-model loop's own multiplier before it moved to lr_schedule (reference)."""
    warm = min(1.0, (step + 1) / (cfg.warmup + 1))
    if cfg.schedule == "constant" or step < cfg.warmup:
        return warm
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@pytest.mark.parametrize("warmup", [0, 1, 7, 100])
@pytest.mark.parametrize("cpu_minutes", [0.0, 3.0])
def test_generator_loop_schedule_is_unchanged_bit_for_bit(warmup, cpu_minutes):
    cfg = GeneratorTrainConfig(max_steps=300, warmup=warmup, lr=2.7e-3, cpu_minutes=cpu_minutes)
    for step in range(0, 320):
        for minutes in (0.0, 0.4, 2.9, 5.0):
            old = _generator_schedule_as_written_before(step, cfg, minutes)
            assert _lr_at(step, cfg, minutes) == old, (step, minutes)
            assert old == lr_schedule(step, total=300, warmup=warmup, floor=0.1, peak=2.7e-3,
                                      min_progress=minutes / cpu_minutes if cpu_minutes else 0.0)


@pytest.mark.parametrize("warmup", [0, 1, 10, 60])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_reward_loop_schedule_is_unchanged_bit_for_bit(warmup, schedule):
    cfg = RewardTrainConfig(steps=200, warmup=warmup, schedule=schedule)
    for step in range(0, 220):
        old = _reward_schedule_as_written_before(step, cfg)
        assert lr_factor(step, cfg) == old, step
        floor = 1.0 if schedule == "constant" else 0.0
        assert old == lr_schedule(step, total=200, warmup=warmup, ramp=warmup + 1, floor=floor)


def test_schedule_shape_and_bad_arguments():
    lrs = [lr_schedule(s, total=50, warmup=5, floor=0.2, peak=2.0) for s in range(60)]
    assert lrs[4] == 2.0 and lrs[5] == 2.0  # the default ramp peaks at the last warm-up step
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))
    assert lrs[50] == pytest.approx(0.4) and lrs[59] == lrs[50]  # floor * peak, held after `total`
    with pytest.raises(ValueError, match="floor"):
        lr_schedule(0, total=10, warmup=0, floor=1.5)
    with pytest.raises(ValueError, match="total"):
        lr_schedule(0, total=0, warmup=0, floor=0.0)
    assert domains.lr_schedule is lr_schedule
