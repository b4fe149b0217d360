"""distill best_of_n and base: the analytic KL and the sampler's argmax."""

import math

import numpy as np
import pytest
from ascent_doubles import TEXTS, tiny_setup

from distill import Budget, Task, best_of_n_kl, best_of_n_sampler, run_method
from domains import SampleConfig


def test_best_of_n_kl_formula():
    for n in range(1, 12):
        assert best_of_n_kl(n) == pytest.approx(math.log(n) - (n - 1) / n, abs=1e-15)
    assert best_of_n_kl(1) == 0.0
    kls = [best_of_n_kl(n) for n in range(1, 200)]
    assert all(k >= 0 for k in kls) and all(b > a for a, b in zip(kls, kls[1:]))  # >= 0, grows with N
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="N >= 1"):
            best_of_n_kl(bad)


class Recorder:
    """A reward that records each call's texts: share of note letters."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([sum(c in "ABCDEFGabcdefg" for c in t) / max(len(t), 1) for t in texts])


def _task(reward):
    tok, gen, _ = tiny_setup()
    return Task(generator=gen, tokenizer=tok, reward=reward, prompts=("", "X:"), corpus=TEXTS,
                sample=SampleConfig(max_new_tokens=12))


def test_sampler_returns_the_argmax_of_reward_among_n():
    rec = Recorder()
    fn = best_of_n_sampler(_task(rec), 3)
    out = fn(5, 7)
    assert len(rec.calls) == 6  # per prompt, one call per candidate
    first_calls = rec.calls
    score = Recorder()
    expected, first = [None] * 5, [None] * 5
    for p, idx in enumerate([[0, 2, 4], [1, 3]]):
        cands = first_calls[3 * p: 3 * p + 3]  # candidate j of this prompt's outputs
        for slot, i in enumerate(idx):
            options = [c[slot] for c in cands]
            expected[i] = options[int(np.argmax(score(options)))]
            first[i] = options[0]
            if p == 1:
                assert all(o.startswith("X:") for o in options)  # candidates share their output's prompt
    assert out == expected
    assert out != first  # some output is not simply the first sample
    rec.calls.clear()
    assert fn(5, 7) == out and fn(5, 8) != out  # seeded


def test_best_of_n_and_base_methods(tmp_path):
    task = _task(Recorder())
    run = run_method("best_of_n", task, tmp_path, Budget(), n=5)
    assert run.kl == best_of_n_kl(5) and run.policy is task.generator and len(run.sample_fn(3, 0)) == 3
    base = run_method("base", task, tmp_path, Budget())
    assert base.kl == 0.0 and base.policy is task.generator and base.sample_fn is None
    with pytest.raises(ValueError, match="constraint_factory"):
        run_method("best_of_n", task, tmp_path, Budget(), bar_aware=True)
