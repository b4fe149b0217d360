"""The README's Python blocks run as written, on tiny settings (a one-layer generator, a few steps)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# README text -> its tiny stand-in. Each must occur in the README: a changed README fails here
# instead of silently running the full 10-minute settings.
TINY = {
    '"small"': "domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=512)",
    "domains.GeneratorTrainConfig(cpu_minutes=10)": "domains.GeneratorTrainConfig(max_steps=3, eval_every=3, warmup=1, batch_size=4)",
    "rm.fit_store(store))": "rm.fit_store(store), cfg=rm.RewardTrainConfig(steps=2, batch_size=4))",
    "gradopt.AscentConfig()": "gradopt.AscentConfig(steps=2, check_every=1, polish=gradopt.PolishConfig(rounds=1))",
    "distill.Budget(cpu_seconds=600)": "distill.Budget(cpu_seconds=600, max_steps=2), rounds=1, n_per_round=4",
    "n=64, heldout=[p.text for p in split[\"test\"]]": "n=4, heldout=[p.text for p in split[\"test\"]][:20], corpus=train[:50]",
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_runs(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 3
    code = "\n".join(blocks)
    for old, new in TINY.items():
        assert old in code, f"README no longer contains {old!r}; update TINY"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # the blocks write runs/gen, runs/store and tune.mid
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    assert (tmp_path / "runs/gen/config.json").exists() and (tmp_path / "tune.mid").stat().st_size > 0
    store = ns["store"]
    assert len(store.comparisons) == 1 + len(ns["pairs"]) and len(ns["pairs"]) > 0
    result, pitch_only, valid = ns["result"], ns["pitch_only"], ns["valid"]
    assert len(result.rows) == len(pitch_only.rows) == len(valid) > 0  # 7 of 8 bar-aware samples were valid
    for row in result.rows:  # the kept sequence is verified: never worse than the start by J
        assert row.objective_after >= row.objective_before - 1e-9
    run, report = ns["run"], ns["report"]  # the distill block: one expert round, evaluated
    assert run.method == "expert" and len(run.history) == 1 and (tmp_path / "runs/expert").is_dir()
    assert set(report) >= {"utility", "reward", "kl", "free_valid_fraction"}
    # The second run changes note letters only, each to another note letter.
    letters = set("ABCDEFGabcdefg")
    for start, row in zip(valid, pitch_only.rows):
        assert len(row.text) == len(start), row.text
        assert all(a == b or (a in letters and b in letters) for a, b in zip(start, row.text))
