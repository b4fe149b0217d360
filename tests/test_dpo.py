"""distill DPO family: the loss against a naive loop, completion log-probs batched vs one by one,
pairs from the rating store, one step of each method moves every parameter and leaves the
reference alone, online DPO learns a trivial reward, resume equals an uninterrupted run."""

import copy
import math

import numpy as np
import pytest
import torch

import domains
from distill import Budget, Task, completion_logps, dpo_loss, pairs_from_store, run_method
from distill._dpo import perturbed_copy
from rewardmodels import RatingStore, fit

TEXTS = ["abcab", "aab", "cba", "bbc", "acca"]


def count_a(texts):
    return np.array([t.count("a") for t in texts], dtype=float)


def _task(reward=count_a, prompts=("", "a"), max_new_tokens=16):
    tok = domains.build_tokenizer(TEXTS, "char")
    gen = domains.build_generator("tiny", tok, seed=0)
    return Task(generator=gen, tokenizer=tok, reward=reward, prompts=prompts,
                sample=domains.SampleConfig(max_new_tokens=max_new_tokens))


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_dpo_loss_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(7, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    beta = 0.3
    loss, stats = dpo_loss(pc, pr, rc, rr, beta)
    terms, margins = [], []
    for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist()):
        m = beta * ((a - c) - (b - d))
        margins.append(m)
        terms.append(-math.log(1.0 / (1.0 + math.exp(-m))))
    assert abs(float(loss) - sum(terms) / len(terms)) < 1e-6
    assert abs(stats["margin"] - sum(margins) / len(margins)) < 1e-6
    assert stats["accuracy"] == sum(m > 0 for m in margins) / len(margins)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(pc, pr[:3], rc, rr, beta)


def test_completion_logps_batched_equals_one_by_one_over_completion_tokens():
    task = _task()
    model = task.generator.eval()
    rows = [task.tokenizer(t)["input_ids"] for t in ("abcab", "ba", "ccabcaba")]  # BOS ... EOS
    plens = [3, 1, 4]
    ids, mask = domains.pad_ids(rows, task.tokenizer.pad_token_id)
    with torch.no_grad():
        got = completion_logps(model, ids, mask, plens)
        for row, n, value in zip(rows, plens, got):
            logits = model(input_ids=torch.tensor([row])).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            naive = sum(float(logp[j - 1, row[j]]) for j in range(n, len(row)))  # completion tokens only
            assert abs(float(value) - naive) < 1e-4
    with pytest.raises(ValueError, match="prompt_lens"):
        completion_logps(model, ids, mask, [0, 1, 1])


def test_pairs_from_store_orients_by_winner_or_scores_and_skips_ties(tmp_path):
    store = RatingStore(tmp_path / "store")
    x, y, z = (store.add_item(t, domain="text").id for t in ("X:1\nabc", "X:1\nbca", "X:1\ncab"))
    store.add_comparison(x, y, "a")
    store.add_comparison(y, z, "b")
    store.add_comparison(x, z, "tie")
    assert pairs_from_store(store) == [("X:1\n", "abc", "bca"), ("X:1\n", "cab", "bca")]
    scores = np.zeros(len(store))
    scores[store.index()[y]] = 1.0  # y best: both pairs turn around
    assert pairs_from_store(store, scores) == [("X:1\n", "bca", "abc"), ("X:1\n", "bca", "cab")]
    wins, ties = store.pairs()
    fitted = fit(wins, len(store), ties=ties)  # a Bradley-Terry fit of the same ratings agrees
    assert pairs_from_store(store, fitted) == pairs_from_store(store)
    with pytest.raises(ValueError, match="one value per store item"):
        pairs_from_store(store, np.zeros(2))


CASES = {
    "dpo": ("dpo", {}),
    "dpo_pairs": ("dpo", {"pairs": [("a", "aab", "bcb"), ("", "caa", "cbc")]}),
    "online_dpo": ("online_dpo", {}),
    "multi_dpo": ("multi_dpo", {}),
    "dpo_trl": ("dpo", {"engine": "trl"}),
}


def _moved(params: dict, start: dict) -> list[str]:
    return [k for k, p in params.items() if not torch.equal(p.detach(), start[k])]


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_moves_every_parameter_and_leaves_the_reference(case, tmp_path):
    # Tensor-level, like TRL's test: a position embedding changes in the rows the batch reached.
    name, opts = CASES[case]
    task = _task()
    base = _snapshot(task.generator)
    if name == "multi_dpo":
        opts = {"partner": perturbed_copy(task.generator, 0.05, seed=1)}
        partner_start = _snapshot(opts["partner"])
    run = run_method(name, task, tmp_path, Budget(max_steps=1), lr=1e-3, **opts)
    assert len(run.history) == 1 and {"step", "cpu_s", "loss", "reward", "margin"} <= set(run.history[0])
    params = {k: p for k, p in run.policy.named_parameters() if p.requires_grad}
    assert len(params) == len(list(task.generator.parameters()))  # every parameter is trainable
    start = base if name != "multi_dpo" or run.notes[0].startswith("returned the policy") else partner_start
    assert len(_moved(params, start)) == len(params), f"{case}: parameters not updated"
    assert all(torch.equal(v, base[k]) for k, v in task.generator.state_dict().items()), "reference changed"
    if name == "multi_dpo":  # the policy not returned was trained too
        saved = torch.load(tmp_path / "loop.pt", weights_only=False)["modules"]
        assert len(_moved({k: saved["policy"][k] for k in params}, base)) == len(params)
        assert len(_moved({k: saved["partner"][k] for k in params}, partner_start)) == len(params)
        assert all(torch.equal(v, partner_start[k]) for k, v in opts["partner"].state_dict().items()), "partner mutated"


def test_multi_dpo_default_partner_diverges_where_an_identical_copy_would_not(tmp_path):
    # Two identical copies get identical gradients from the same pairs and never diverge, whatever
    # seeds they sample with; the default partner therefore starts from a perturbed copy.
    task = _task()
    run_method("multi_dpo", task, tmp_path / "same", Budget(max_steps=2), lr=1e-3, partner_noise=0.0)
    same = torch.load(tmp_path / "same" / "loop.pt", weights_only=False)["modules"]
    assert all(torch.equal(same["policy"][k], same["partner"][k]) for k in same["policy"])
    run = run_method("multi_dpo", task, tmp_path / "default", Budget(max_steps=2), lr=1e-3)
    diff = torch.load(tmp_path / "default" / "loop.pt", weights_only=False)["modules"]
    assert not torch.equal(diff["policy"]["transformer.wte.weight"], diff["partner"]["transformer.wte.weight"])
    assert {"reward_policy", "reward_partner", "wins_policy"} <= set(run.history[0])
    assert "mean reward of the last 32 samples" in run.notes[0]


@pytest.mark.parametrize("name", ["dpo", "online_dpo", "multi_dpo"])
def test_resume_equals_uninterrupted_run(name, tmp_path):
    whole = run_method(name, _task(), tmp_path / "whole", Budget(max_steps=4), seed=3, lr=1e-3)
    run_method(name, _task(), tmp_path / "split", Budget(max_steps=2), seed=3, lr=1e-3)
    torch.manual_seed(123)  # the process RNG must come from the checkpoint, not from here
    resumed = run_method(name, _task(), tmp_path / "split", Budget(max_steps=4), seed=3, lr=1e-3)
    assert [r["step"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    assert [r["reward"] for r in resumed.history] == [r["reward"] for r in whole.history]
    a, b = whole.policy.state_dict(), resumed.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if name == "multi_dpo":
        assert resumed.notes == whole.notes  # the recent rewards that pick the policy were restored


def test_online_dpo_raises_a_trivially_learnable_reward(tmp_path):
    # reward = number of 'a'; the history's reward is the mean over the current policy's own samples
    task = _task(prompts=("",), max_new_tokens=12)
    run = run_method("online_dpo", task, tmp_path, Budget(max_steps=40), lr=3e-3, beta=0.5)
    r = [row["reward"] for row in run.history]
    first, last = np.mean(r[:8]), np.mean(r[-8:])
    assert last > first + 1.0, (first, last)


@pytest.mark.parametrize("name", ["dpo", "online_dpo", "multi_dpo"])
def test_no_pair_is_a_clear_error(name, tmp_path):
    task = _task(reward=lambda texts: np.zeros(len(texts)), max_new_tokens=4)
    with pytest.raises(ValueError, match="no preference pair could be formed"):
        run_method(name, task, tmp_path, Budget(max_steps=1), tries=1, batch=2, n_pairs=2)
    assert not (tmp_path / "loop.pt").exists()


def test_bad_options_are_clear_errors(tmp_path):
    task = _task()
    with pytest.raises(ValueError, match="unknown option"):
        run_method("online_dpo", task, tmp_path, Budget(max_steps=1), betta=0.1)
    with pytest.raises(ValueError, match="beta > 0"):
        run_method("online_dpo", task, tmp_path, Budget(max_steps=1), beta=0.0)
    with pytest.raises(ValueError, match="engine"):
        run_method("dpo", task, tmp_path, Budget(max_steps=1), engine="fast")
    with pytest.raises(ValueError, match="same text"):
        run_method("dpo", task, tmp_path, Budget(max_steps=1), pairs=[("", "ab", "ab")])
    with pytest.raises(ValueError, match="outside the tokenizer"):
        run_method("dpo", task, tmp_path, Budget(max_steps=1), pairs=[("", "ab", "zz")])
