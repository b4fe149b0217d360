"""distill RL methods: GAE, the adaptive KL controller, PPO's losses, running moments, per-token
KL rewards, and PPO / REINFORCE / RLOO / GRPO on a tiny generator."""

import math

import numpy as np
import pytest
import torch

import domains
from distill import (AdaptiveKLController, Budget, GroupRLConfig, LoopConfig, PPOConfig, ReinforceConfig,
                     RunningMoments, Task, build_value_head, gae, kl_rewards, loo_baseline, ppo_losses,
                     prompt_tokenizer, reinforce_loss, rollout, run_method)

TEXTS = ["abc", "abd", "bca", "cab", "dab"]


def _task(seed=0):
    tok = domains.build_tokenizer(TEXTS, "char")
    gen = domains.build_generator("tiny", tok, seed=seed)

    def reward(texts):  # more 'a', shorter: varies across samples of a random model
        return np.array([t.count("a") - 0.1 * len(t) for t in texts])

    return Task(generator=gen, tokenizer=tok, reward=reward, prompts=("", "a"),
                sample=domains.SampleConfig(max_new_tokens=12, batch_size=8))


# ---------------------------------------------------------------- pure pieces

def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.1, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma, lam)
    # row 0: delta = (1 - .3, 0 + .9*.3 - .4, 0 + .9*.4 - .5) backwards; A_t = delta_t + .72 A_{t+1}
    a2 = 0.7
    a1 = -0.13 + 0.72 * a2
    a0 = -0.14 + 0.72 * a1
    # row 1 ends at t=1 (the padded reward 5 and value 9 must not leak in)
    b1 = 1.0 - 0.1
    b0 = 0.9 * 0.1 - 0.2 + 0.72 * b1
    expect = torch.tensor([[a0, a1, a2], [b0, b1, 0.0]], dtype=torch.float64)
    assert torch.allclose(adv, expect)
    assert torch.allclose(ret, (expect + values) * mask)
    with pytest.raises(ValueError, match="lam"):
        gae(rewards, values, mask, 0.9, 1.5)


def test_adaptive_kl_controller_moves_beta_toward_target():
    up = AdaptiveKLController(0.1, target=2.0, horizon=100)
    up.update(3.0, n_steps=10)  # err = +0.5 -> clipped to +0.2
    assert up.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    down = AdaptiveKLController(0.1, target=2.0, horizon=100)
    down.update(1.8, n_steps=10)  # err = -0.1
    assert down.value == pytest.approx(0.1 * (1 - 0.1 * 10 / 100))
    assert down.value < 0.1 < up.value
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=100)


def test_ppo_losses_clip_on_hand_example():
    old = torch.zeros(1, 4, dtype=torch.float64)
    # ratios 1.5 (A=+1: clipped to 1.2), 0.5 (A=+1: the unclipped -0.5 is the max), 0.5 (A=-1: clipped to 0.8), masked
    new = torch.log(torch.tensor([[1.5, 0.5, 0.5, 3.0]], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, 7.0]], dtype=torch.float64)
    v_old = torch.zeros(1, 4, dtype=torch.float64)
    v_new = torch.tensor([[0.5, 0.1, -0.3, 9.0]], dtype=torch.float64)
    ret = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0]])
    pg, vf, stats = ppo_losses(new, old, adv, v_new, v_old, ret, mask, clip=0.2, vf_clip=0.2)
    assert float(pg) == pytest.approx((-1.2 - 0.5 + 0.8) / 3)
    # value: max((.5-1)^2, (.2-1)^2)=.64, .01, max(.09, (-.2)^2)=.09
    assert float(vf) == pytest.approx(0.5 * (0.64 + 0.01 + 0.09) / 3)
    assert float(stats["clipfrac"]) == pytest.approx(2 / 3)
    pg.backward()
    # clipped tokens pass no gradient; the unclipped one gets -A * ratio / 3; the masked one none
    assert torch.allclose(new.grad, torch.tensor([[0.0, -0.5 / 3, 0.0, 0.0]], dtype=torch.float64))


def test_running_moments_match_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, n) for n in (1, 5, 17, 2)]
    m = RunningMoments()
    for b in batches:
        m.update(b)
    allx = np.concatenate(batches)
    assert m.count == allx.size
    assert m.mean == pytest.approx(allx.mean(), rel=1e-12)
    assert m.std == pytest.approx(allx.std(ddof=1), rel=1e-12)
    again = RunningMoments(**m.state())
    assert again.std == m.std


def test_kl_rewards_penalise_each_token_and_score_the_last():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    r = kl_rewards(logp, ref, mask, torch.tensor([10.0, 20.0]), beta=0.5)
    assert torch.allclose(r, torch.tensor([[-0.25, 0.0, 0.5 + 10.0], [-0.5, 0.0 + 20.0, 0.0]]))


def test_loo_baseline_is_mean_of_the_others():
    r = torch.tensor([1.0, 2.0, 6.0])
    assert torch.allclose(loo_baseline(r), torch.tensor([4.0, 3.5, 1.5]))


def test_reinforce_loss_raises_log_prob_of_returns_above_baseline():
    logp_sum = torch.zeros(2, requires_grad=True)
    reinforce_loss(logp_sum, torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])).backward()
    assert torch.allclose(logp_sum.grad, torch.tensor([-0.5, 0.5]))  # descent raises row 0, lowers row 1


def test_rollout_marks_only_sampled_tokens_as_actions():
    task = _task()
    ro = rollout(task.generator, task, 4, seed=0)  # prompts "", "a", "", "a"
    assert [t.startswith("a") for t in ro.texts[1::2]] == [True, True]
    n_prefix = torch.tensor([1, 2, 1, 2])  # BOS (+ "a"): never actions
    lengths = ro.attn.sum(1)
    assert torch.equal(ro.actions.sum(1), lengths - n_prefix)
    assert torch.equal(ro.actions[1, :1], torch.tensor([0]))
    assert torch.allclose(ro.scores, torch.as_tensor(task.reward(ro.texts), dtype=torch.float32))


def test_prompt_tokenizer_adds_bos_only():
    tok = domains.build_tokenizer(TEXTS, "char")
    ptok = prompt_tokenizer(tok)
    assert ptok("ab")["input_ids"] == tok("ab")["input_ids"][:-1]
    assert ptok("")["input_ids"] == [tok.bos_token_id]
    assert tok("ab")["input_ids"][-1] == tok.eos_token_id  # the original keeps its EOS


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="minibatch_size"):
        PPOConfig(batch_size=4, minibatch_size=8)
    with pytest.raises(ValueError, match="baseline"):
        ReinforceConfig(baseline="median")
    with pytest.raises(ValueError, match="num_generations"):
        GroupRLConfig(num_generations=1)


# ---------------------------------------------------------------- methods on a tiny generator

OPTIONS = {
    "ppo": {"config": PPOConfig(batch_size=4, minibatch_size=4, epochs=1), "loop": LoopConfig(lr=1e-3)},
    "reinforce": {"config": ReinforceConfig(batch_size=4), "loop": LoopConfig(lr=1e-3)},
    "rloo": {"config": GroupRLConfig(num_generations=4, prompts_per_step=1, lr=1e-3)},
    "grpo": {"config": GroupRLConfig(num_generations=4, prompts_per_step=1, lr=1e-3)},
}


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_one_step_changes_every_parameter_and_not_the_reference(method, tmp_path):
    task = _task()
    base = {k: v.detach().clone() for k, v in task.generator.state_dict().items()}
    # rloo/grpo: the first batch of TRL's dataloader may hold a group whose rewards are all equal
    # (zero advantage); two steps make sure a batch with signal was used
    steps = 1 if method in ("ppo", "reinforce") else 2
    run = run_method(method, task, tmp_path, Budget(cpu_seconds=120, max_steps=steps), seed=0, **OPTIONS[method])
    assert run.method == method and len(run.history) == steps
    row = run.history[-1]
    assert {"step", "cpu_s", "loss", "reward", "kl"} <= set(row) and row["step"] == steps
    for name, p in run.policy.named_parameters():
        assert not torch.equal(p.detach(), base[name]), f"{method}: {name} did not change"
    for name, v in task.generator.state_dict().items():
        assert torch.equal(v, base[name]), f"{method}: the reference's {name} changed"
    if method == "ppo":
        head0 = build_value_head(run.policy, seed=0).state_dict()
        head1 = torch.load(tmp_path / "loop.pt", weights_only=False)["modules"]["value_head"]
        for name in head0:
            assert not torch.equal(head0[name], head1[name]), f"value head {name} did not change"


def test_trl_methods_stop_at_the_cpu_budget(tmp_path):
    # building the trainer alone spends more than 0.2 CPU-s, so the budget binds after the first step
    run = run_method("grpo", _task(), tmp_path, Budget(cpu_seconds=0.2, max_steps=4), **OPTIONS["grpo"])
    assert [r["step"] for r in run.history] == [1]


def test_ppo_resume_restores_step_and_beta(tmp_path):
    opts = {"config": PPOConfig(batch_size=4, minibatch_size=4, epochs=1, init_kl=0.1, target_kl=1.0, horizon=8),
            "loop": LoopConfig(lr=1e-3)}
    first = run_method("ppo", _task(), tmp_path, Budget(max_steps=2), **opts)
    saved = torch.load(tmp_path / "loop.pt", weights_only=False)["extra"]
    assert first.history[1]["beta"] != pytest.approx(0.1)  # the controller moved beta during the first run
    assert saved["rollouts"] == 2
    again = run_method("ppo", _task(), tmp_path, Budget(max_steps=3), **opts)
    assert [r["step"] for r in again.history] == [1, 2, 3]
    # the resumed rollout is penalised with the beta the first run ended on, not init_kl
    assert again.history[2]["beta"] == pytest.approx(saved["beta"])
    assert math.isfinite(again.history[2]["loss"])
