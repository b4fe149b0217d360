"""Moving the generator: the end-to-end job, and the methods that train the generator toward the
reward model (expert iteration, DPO, PPO, RLOO/GRPO, REINFORCE, best-of-N) on one shared `Task`."""

from ._demo import DemoConfig, run_demo
from ._loop import LoopConfig, remove_checkpoint, train_loop
from ._ppo import PPOConfig, build_value_head, policy_and_values, ppo
from ._rl import (AdaptiveKLController, ReinforceConfig, Rollout, RunningMoments, gae, kl_rewards, loo_baseline,
                  masked_mean, ppo_losses, reinforce, reinforce_loss, rollout, whiten)
from ._trl_rl import GroupRLConfig, grpo, prompt_tokenizer, rloo
from ._task import METHODS, Budget, Clock, DistillRun, Method, RewardFn, Task, model_reward, register, run_method

__all__ = [
    "DemoConfig", "run_demo", "LoopConfig", "remove_checkpoint", "train_loop",
    "METHODS", "Budget", "Clock", "DistillRun", "Method", "RewardFn", "Task", "model_reward", "register", "run_method",
    "PPOConfig", "build_value_head", "policy_and_values", "ppo",
    "AdaptiveKLController", "ReinforceConfig", "Rollout", "RunningMoments", "gae", "kl_rewards", "loo_baseline",
    "masked_mean", "ppo_losses", "reinforce", "reinforce_loss", "rollout", "whiten",
    "GroupRLConfig", "grpo", "prompt_tokenizer", "rloo",
]
