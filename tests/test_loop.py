"""distill.train_loop: budget, history, checkpoint and exact resume."""

import torch

import distill
from distill import Budget, LoopConfig, train_loop


def _setup(seed=0):
    g = torch.Generator().manual_seed(0)  # the same data and initial weights every time
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 3, generator=g))
        model.bias.zero_()
    x = torch.randn(16, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(16, generator=g)
    torch.manual_seed(seed)  # the batches' RNG

    def step_fn(step):
        i = torch.randint(0, 16, (4,))  # draws from the torch RNG, which the checkpoint keeps
        loss = ((model(x[i])[:, 0] - y[i]) ** 2).mean()
        return loss, {"batch_first": int(i[0])}

    return model, step_fn


def test_stops_at_step_cap_and_records_history(tmp_path):
    model, step_fn = _setup()
    before = model.weight.detach().clone()
    hist = train_loop({"m": model}, step_fn, Budget(cpu_seconds=60, max_steps=7), tmp_path, LoopConfig(lr=0.05))
    assert [r["step"] for r in hist] == list(range(1, 8))
    assert all("batch_first" in r and r["cpu_s"] >= 0 for r in hist)
    assert not torch.equal(before, model.weight)
    assert (tmp_path / "history.jsonl").read_text().count("\n") == 7


def test_resume_equals_uninterrupted_run(tmp_path):
    a, fa = _setup()
    train_loop({"m": a}, fa, Budget(max_steps=10), tmp_path / "a", LoopConfig(lr=0.05, checkpoint_every=3))
    b, fb = _setup()
    train_loop({"m": b}, fb, Budget(max_steps=6), tmp_path / "b", LoopConfig(lr=0.05, checkpoint_every=3))
    b2, fb2 = _setup(seed=1)  # fresh process state: everything must come from the checkpoint
    hist = train_loop({"m": b2}, fb2, Budget(max_steps=10), tmp_path / "b", LoopConfig(lr=0.05, checkpoint_every=3))
    assert len(hist) == 10
    assert torch.allclose(a.weight, b2.weight) and torch.allclose(a.bias, b2.bias)


def test_cpu_budget_binds(tmp_path):
    model, step_fn = _setup()

    def slow(step):
        t = torch.randn(200, 200)
        for _ in range(20):
            t = t @ t / 200
        return step_fn(step)

    hist = train_loop({"m": model}, slow, Budget(cpu_seconds=0.2, max_steps=10_000), tmp_path, LoopConfig(lr=0.01))
    assert 1 <= len(hist) < 10_000
    assert hist[-1]["cpu_s"] >= 0.2


def test_the_last_record_shows_the_cpu_budget_used_up(tmp_path, monkeypatch):
    # a clock that advances 0.03 s at every reading: the loop must judge the budget on the reading
    # it records, or its last record can fall short of the budget it stopped on
    import time

    ticks = iter(i * 0.03 for i in range(100_000))
    monkeypatch.setattr(time, "process_time", lambda: next(ticks))
    model, step_fn = _setup()
    hist = train_loop({"m": model}, step_fn, Budget(cpu_seconds=0.2, max_steps=10_000), tmp_path, LoopConfig(lr=0.01))
    assert hist[-1]["cpu_s"] >= 0.2 and hist[-2]["cpu_s"] < 0.2


def test_extra_state_survives_resume(tmp_path):
    model, step_fn = _setup()
    extra = {"beta": 0.1}

    def fn(step):
        extra["beta"] *= 2
        return step_fn(step)

    train_loop({"m": model}, fn, Budget(max_steps=3), tmp_path, extra_state=extra)
    again = {"beta": 0.1}
    train_loop({"m": model}, step_fn, Budget(max_steps=3), tmp_path, extra_state=again)  # nothing left to do
    assert again["beta"] == 0.8
    distill.remove_checkpoint(tmp_path)
    assert not (tmp_path / "loop.pt").exists()
