"""distill expert iteration: the likelihood fine-tune, thresholds, empty rounds, resume."""

import math

import numpy as np
import pytest
import torch
from ascent_doubles import TEXTS, tiny_setup

import distill
from distill import Budget, ExpertConfig, LoopConfig, Task, finetune, finetune_batch, nll, run_method
from domains import SampleConfig, build_char_tokenizer, build_generator, encode_batch, log_likelihood

LOOP = LoopConfig(lr=1e-2, checkpoint_every=5)
BIG = Budget(cpu_seconds=1e6, max_steps=10_000)  # the step caps bind, so runs are deterministic


def reward_of(text: str) -> float:
    """A reward the tests control: the share of note letters in the text."""
    return sum(c in "ABCDEFGabcdefg" for c in text) / max(len(text), 1)


class Counted:
    """`task.reward` that counts its calls and the texts it scored."""

    def __init__(self):
        self.calls, self.texts = 0, 0

    def __call__(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return np.array([reward_of(t) for t in texts])


def make_task(reward=None, validate=None, rm=False):
    tok, gen, reward_model = tiny_setup()
    return Task(generator=gen, tokenizer=tok, reward=reward or Counted(), prompts=("", "X:"), corpus=TEXTS,
                sample=SampleConfig(max_new_tokens=16), validate=validate, reward_model=reward_model if rm else None)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_finetune_changes_parameters_and_lowers_nll(tmp_path):
    task = make_task()
    policy = task.policy_copy()
    ids, mask = encode_batch(task.tokenizer, TEXTS)
    before_ll = log_likelihood(policy, ids, mask)  # measured apart from the loss being trained
    before = params(policy)
    hist = finetune(policy, task.tokenizer, TEXTS, Budget(max_steps=30), tmp_path, cfg=LOOP, batch_size=4)
    assert len(hist) == 30
    after_ll = log_likelihood(policy, ids, mask)
    assert (after_ll > before_ll + 10).all()
    assert hist[-1]["loss"] < hist[0]["loss"]
    with torch.no_grad():  # the reported loss is the mean next-token NLL
        rows = [task.tokenizer(t)["input_ids"] for t in TEXTS]
        assert float(nll(policy, rows, task.tokenizer.pad_token_id)) == pytest.approx(
            float(-after_ll.sum() / (mask[:, 1:].sum())), rel=1e-5)
    assert all(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_finetune_batch_mixes_replay_and_is_a_function_of_seed_and_step():
    own, replay = [[1, 5, 2]] * 3, [[1, 6, 6, 2]] * 3
    rows = finetune_batch(own, replay, 3, seed=0, batch_size=8, replay_fraction=0.25, context=64)
    assert sum(r == [1, 6, 6, 2] for r in rows) == 2 and sum(r == [1, 5, 2] for r in rows) == 6
    assert finetune_batch(own, (), 3, seed=0, batch_size=8, replay_fraction=0.25, context=64) == [[1, 5, 2]] * 8
    long = [list(range(100))]
    a = finetune_batch(long, (), 4, seed=1, batch_size=4, replay_fraction=0.0, context=10)
    assert a == finetune_batch(long, (), 4, seed=1, batch_size=4, replay_fraction=0.0, context=10)
    assert all(len(r) == 10 and r == list(range(r[0], r[0] + 10)) for r in a)


def test_finetune_rejects_bad_input(tmp_path):
    task = make_task()
    with pytest.raises(ValueError, match="texts is empty"):
        finetune(task.policy_copy(), task.tokenizer, [], Budget(max_steps=1), tmp_path)
    with pytest.raises(ValueError, match="replay_fraction"):
        finetune(task.policy_copy(), task.tokenizer, TEXTS, Budget(max_steps=1), tmp_path, replay_fraction=1.0)


def _rows(after, before=None, valid=None):
    before = before or [0.0] * len(after)
    valid = valid or [True] * len(after)
    return [{"after": a, "before": b, "valid": v} for a, b, v in zip(after, before, valid)]


def test_select_thresholds():
    rows = _rows([0.1, 0.5, 0.9, 0.7, math.nan], before=[0.0, 0.6, 0.1, 0.0, 0.0],
                 valid=[True, True, True, False, True])
    assert distill.select(rows, ExpertConfig(threshold="prev_mean"), 0.3)[0] == [1, 2]
    assert distill.select(rows, ExpertConfig(threshold="margin", margin=0.05), None)[0] == [0, 2]
    keep, bar = distill.select(rows, ExpertConfig(threshold="top_fraction", top_fraction=0.5), None)
    assert keep == [1, 2] and bar == 0.5  # ceil(0.5 * 3 eligible) = 2 best; the invalid 0.7 never counts


def test_round_keeps_only_valid_rows_above_the_bar(tmp_path):
    reward = Counted()
    task = make_task(reward, validate=lambda t: "|" not in t)
    run = run_method("expert", task, tmp_path, BIG, seed=0, loop=LOOP,
                     cfg=ExpertConfig(rounds=1, n_per_round=12, k=3, finetune_steps=3))
    rows = distill._expert._read_jsonl(tmp_path / "round_1" / "improved.jsonl")
    kept = distill._expert._read_jsonl(tmp_path / "round_1" / "kept.jsonl")
    bar = np.mean([reward_of(r["start"]) for r in rows])  # round 1's bar: the starts' mean verified reward
    for r in rows:
        assert r["after"] == reward_of(r["text"]) and r["valid"] == ("|" not in r["text"])  # verified
    assert kept == [r for r in rows if r["valid"] and r["after"] > bar]
    assert 0 < len(kept) < len(rows)
    assert any(not r["valid"] and r["after"] > bar for r in rows)  # the validity filter had work to do
    h = run.history[0]
    assert (h["n_kept"], h["n_started"], h["finetune_steps"]) == (len(kept), 12, 3)
    assert h["kept_mean"] == pytest.approx(np.mean([r["after"] for r in kept]))
    assert h["bar"] == pytest.approx(bar) and not run.notes


def test_empty_round_is_reported_and_leaves_the_policy(tmp_path):
    task = make_task()
    base = params(task.generator)
    run = run_method("expert", task, tmp_path, BIG, loop=LOOP,
                     cfg=ExpertConfig(rounds=1, n_per_round=4, k=2, threshold="margin", margin=10.0))
    assert run.history[0]["n_kept"] == 0 and run.history[0]["finetune_steps"] == 0
    assert any(n.startswith("round 1: no row passed") for n in run.notes)
    assert all(torch.equal(a, b) for a, b in zip(base, run.policy.parameters()))
    assert (tmp_path / "round_1" / "kept.jsonl").read_text() == ""
    assert not (tmp_path / "round_1" / "finetune").exists()


def _files(d):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.parametrize("improver", ["best_of_n", "optimize", "best_of_n+optimize"])
def test_resume_skips_finished_rounds_and_equals_an_uninterrupted_run(tmp_path, improver):
    from gradopt import AscentConfig, PolishConfig, TrustConfig

    # guard on, trusting the single tiny reward model; margin 0 because its random gains are small
    ascent = AscentConfig(steps=6, check_every=2, polish=PolishConfig(rounds=2),
                          trust=TrustConfig(margin=0.0, single_model=True))
    cfg = ExpertConfig(n_per_round=4, k=2, improver=improver, threshold="top_fraction", top_fraction=0.5,
                       finetune_steps=4)
    whole_r, part_r, rest_r = Counted(), Counted(), Counted()
    whole = run_method("expert", make_task(whole_r, rm=True), tmp_path / "a", BIG, seed=3, loop=LOOP,
                       ascent=ascent, cfg=cfg, rounds=2)
    run_method("expert", make_task(part_r, rm=True), tmp_path / "b", BIG, seed=3, loop=LOOP, ascent=ascent, cfg=cfg,
               rounds=1)
    first = _files(tmp_path / "b" / "round_1")
    resumed = run_method("expert", make_task(rest_r, rm=True), tmp_path / "b", BIG, seed=3, loop=LOOP,
                         ascent=ascent, cfg=cfg, rounds=2)
    assert _files(tmp_path / "b" / "round_1") == first  # round 1 untouched
    assert part_r.calls > 0 and rest_r.calls == whole_r.calls - part_r.calls  # and its rewards not recomputed
    assert all(torch.equal(a, b) for a, b in zip(whole.policy.parameters(), resumed.policy.parameters()))
    drop = lambda h: [{k: v for k, v in r.items() if k != "cpu_s"} for r in h]  # noqa: E731
    assert drop(whole.history) == drop(resumed.history) and len(whole.history) == 2
    assert any(not torch.equal(a, b) for a, b in zip(params(make_task().generator), resumed.policy.parameters()))
    improved = distill._expert._read_jsonl(tmp_path / "b" / "round_1" / "improved.jsonl")
    assert any(r["text"] != r["start"] for r in improved)  # the improver changed something


def test_best_then_optimize_ascends_from_the_best_of_k_pick_not_the_start():
    from gradopt import AscentConfig, PolishConfig, TrustConfig

    task = make_task(rm=True)
    ascent = AscentConfig(steps=4, check_every=2, polish=PolishConfig(rounds=1), trust=TrustConfig(margin=0.0,
                                                                                                    single_model=True))
    cfg = ExpertConfig(n_per_round=6, k=3, improver="best_of_n+optimize")
    prefixes = ["", "X:"] * 3  # the policy's own samples, as a round draws them
    starts = distill._expert._sample_starts(task.generator, task, prefixes, seed=5, context=64, constraint_factory=None)
    kw = dict(policy=task.generator, task=task, cfg=cfg, ascent=ascent, seed=5, context=64)
    picks = distill._expert.improve_best_of_n(starts, prefixes, **kw)
    out = distill._expert.improve_best_then_optimize(starts, prefixes, **kw)
    from_picks = distill._expert.improve_optimize([task.tokenizer(t)["input_ids"] for t in picks], prefixes, **kw)
    assert out == from_picks
    start_texts = [distill._expert.decode(task.tokenizer, r) for r in starts]
    assert picks != start_texts  # best-of-3 replaced some starts, so the ascent began elsewhere
    assert out != distill._expert.improve_optimize(starts, prefixes, **kw)


def test_resume_inside_a_round_reuses_its_improvement_and_fine_tune(tmp_path):
    cfg = ExpertConfig(rounds=1, n_per_round=4, k=2, threshold="top_fraction", finetune_steps=4)
    whole = run_method("expert", make_task(), tmp_path, BIG, loop=LOOP, cfg=cfg)
    (tmp_path / "round_1" / "done.json").unlink()  # killed after the fine-tune, before the round was marked
    (tmp_path / "round_1" / "policy.pt").unlink()
    again_r = Counted()
    again = run_method("expert", make_task(again_r), tmp_path, BIG, loop=LOOP, cfg=cfg)
    assert again_r.calls == 0  # improvement read back from improved.jsonl
    assert all(torch.equal(a, b) for a, b in zip(whole.policy.parameters(), again.policy.parameters()))
    assert again.history[0]["finetune_steps"] == 4 and (tmp_path / "round_1" / "done.json").exists()


def test_curriculum_starts_complete_shrinking_corpus_prefixes(tmp_path):
    cfg = ExpertConfig(rounds=2, n_per_round=4, k=1, threshold="top_fraction", finetune_steps=1, curriculum=True)
    assert [distill.prefix_fraction(cfg, k) for k in (1, 2)] == [0.5, 0.0]
    run = run_method("expert", make_task(), tmp_path, BIG, loop=LOOP, cfg=cfg)
    starts = [r["start"] for r in distill._expert._read_jsonl(tmp_path / "round_1" / "improved.jsonl")]
    assert all(any(s.startswith(t[: len(t) // 2]) for t in TEXTS) for s in starts)
    later = [r["start"] for r in distill._expert._read_jsonl(tmp_path / "round_2" / "improved.jsonl")]
    assert not all(any(s.startswith(t[:8]) for t in TEXTS) for s in later)  # round 2 samples from the prompts
    assert [h["prefix_fraction"] for h in run.history] == [0.5, 0.0]


def test_bad_settings_raise(tmp_path):
    from gradopt import AscentConfig

    with pytest.raises(ValueError, match="improver"):
        ExpertConfig(improver="ppo")
    with pytest.raises(ValueError, match="top_fraction"):
        ExpertConfig(top_fraction=0.0)
    with pytest.raises(ValueError, match="corpus"):
        ExpertConfig(source="corpus", curriculum=True)
    with pytest.raises(ValueError, match="rounds >= 1"):
        ExpertConfig(curriculum=True)  # rounds=0 (until the budget) has no last round to shrink the prefix to
    with pytest.raises(ValueError, match="unknown option"):
        run_method("expert", make_task(), tmp_path, BIG, roundz=2)
    with pytest.raises(ValueError, match="reward_model"):
        run_method("expert", make_task(), tmp_path, BIG, improver="optimize")
    with pytest.raises(ValueError, match="do-no-harm"):
        run_method("expert", make_task(rm=True), tmp_path, BIG, improver="optimize", ascent=AscentConfig(trust=None))
    with pytest.raises(ValueError, match="reward_model"):
        run_method("expert", make_task(), tmp_path, BIG, improver="best_of_n+optimize")
    with pytest.raises(ValueError, match="corpus pieces"):
        ExpertConfig(source="corpus", improver="best_of_n+optimize")
    with pytest.raises(ValueError, match="constraint_factory"):
        run_method("expert", make_task(), tmp_path, BIG, source="bar_aware")
    run_method("expert", make_task(), tmp_path / "w", BIG, loop=LOOP, rounds=1, n_per_round=2, k=1, finetune_steps=1)
    with pytest.raises(ValueError, match="other settings"):
        run_method("expert", make_task(), tmp_path / "w", BIG, loop=LOOP, rounds=1, n_per_round=3, k=1)


def test_prev_mean_bar_is_the_previous_rounds_kept_mean(tmp_path):
    run = run_method("expert", make_task(), tmp_path, BIG, loop=LOOP,
                     cfg=ExpertConfig(rounds=2, n_per_round=6, k=2, finetune_steps=1))
    first, second = run.history
    assert first["n_kept"] > 0 and first["bar"] == pytest.approx(first["reward_before"])
    assert second["bar"] == first["kept_mean"] > first["bar"]


def test_cpu_budget_is_split_over_rounds_and_max_steps_caps_the_fine_tune(tmp_path):
    cfg = ExpertConfig(rounds=2, n_per_round=4, k=2, threshold="top_fraction", finetune_steps=100_000)
    run = run_method("expert", make_task(), tmp_path / "cpu", Budget(cpu_seconds=2.0), loop=LOOP, cfg=cfg)
    first, second = run.history
    assert 0 < first["finetune_steps"] < 100_000 and 0 < second["finetune_steps"] < 100_000  # CPU bound
    assert 0.9 <= first["cpu_s"] < 1.5  # round 1 may use half of the budget
    assert second["cpu_s"] < 2.5  # the whole run about within it (a step may run over)
    capped = run_method("expert", make_task(), tmp_path / "steps", Budget(max_steps=5), loop=LOOP,
                        cfg=ExpertConfig(rounds=2, n_per_round=4, k=1, threshold="top_fraction", finetune_steps=4))
    assert [h["finetune_steps"] for h in capped.history] == [4, 1]


def test_default_run_fills_the_cpu_budget_with_as_many_rounds_as_fit(tmp_path):
    budget = 4.0  # small rounds (4 starts, 2 fine-tune steps) take a fraction of a second each
    run = run_method("expert", make_task(), tmp_path, Budget(cpu_seconds=budget), loop=LOOP,
                     n_per_round=4, k=2, threshold="top_fraction", finetune_steps=2)
    assert len(run.history) > 3 and [h["round"] for h in run.history] == list(range(1, len(run.history) + 1))
    assert ExpertConfig().rounds == 0  # the default: rounds until the budget is spent
    assert run.history[-1]["cpu_s"] >= 0.9 * budget  # it stopped because the budget was spent, not before
    cpu = [h["cpu_s"] for h in run.history]
    assert run.history[-1]["cpu_s"] < budget + 3 * max(np.diff(cpu))  # and about within it
    assert all(h["finetune_steps"] == 2 for h in run.history[:-1])
    # only the last round, cut short by the budget, may say that its fine-tune got no CPU left
    assert all(n.startswith(f"round {len(run.history)}: the round's CPU share was used up") for n in run.notes)


def test_budget_filling_run_stops_at_max_steps_and_resumes_with_a_larger_budget(tmp_path):
    cfg = ExpertConfig(n_per_round=4, k=2, threshold="top_fraction", finetune_steps=2)
    short_r, whole_r, rest_r = Counted(), Counted(), Counted()
    short = run_method("expert", make_task(short_r), tmp_path / "b", Budget(max_steps=4), seed=1, loop=LOOP, cfg=cfg)
    assert [h["finetune_steps"] for h in short.history] == [2, 2]
    assert short.notes == ["Budget.max_steps (4) used up after round 2; no further round"]
    whole = run_method("expert", make_task(whole_r), tmp_path / "a", Budget(max_steps=8), seed=1, loop=LOOP, cfg=cfg)
    resumed = run_method("expert", make_task(rest_r), tmp_path / "b", Budget(max_steps=8), seed=1, loop=LOOP, cfg=cfg)
    assert len(whole.history) == len(resumed.history) == 4
    drop = lambda h: [{k: v for k, v in r.items() if k != "cpu_s"} for r in h]  # noqa: E731
    assert drop(whole.history) == drop(resumed.history)
    assert all(torch.equal(a, b) for a, b in zip(whole.policy.parameters(), resumed.policy.parameters()))
    assert short_r.calls > 0 and rest_r.calls == whole_r.calls - short_r.calls  # rounds 1, 2 were read back


def test_bar_aware_source_improves_grammar_samples_and_keeps_valid_tunes(tmp_path):
    from domains import ABCConstraint, validate_abc

    texts = TEXTS + ["X:3\nT:Test\nM:4/4\nL:1/8\nK:G\nGABc dedB|cBAG E2D2|\n"]  # every header the grammar needs
    tok = build_char_tokenizer(texts)
    torch.manual_seed(0)
    gen = build_generator("tiny", tok)
    grammar = ABCConstraint.from_texts(tok, texts)
    task = Task(generator=gen, tokenizer=tok, reward=Counted(), corpus=texts, sample=SampleConfig(max_new_tokens=100),
                constraint_factory=lambda: grammar, validate=lambda t: bool(validate_abc(t)))
    cfg = ExpertConfig(source="bar_aware", rounds=1, n_per_round=6, k=3, finetune_steps=2)
    run = run_method("expert", task, tmp_path, BIG, loop=LOOP, cfg=cfg)
    rows = distill._expert._read_jsonl(tmp_path / "round_1" / "improved.jsonl")
    assert len(rows) == 6 and any(r["text"] != r["start"] for r in rows)  # best-of-3 picked other samples
    assert all(grammar.accepts(r["start"]) and grammar.accepts(r["text"]) for r in rows)  # all drawn under the grammar
    kept = distill._expert._read_jsonl(tmp_path / "round_1" / "kept.jsonl")
    assert run.history[0]["n_kept"] == len(kept) > 0 and all(r["valid"] for r in kept)
