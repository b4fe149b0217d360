"""Moving the generator: the end-to-end job, and the methods that train the generator toward the
reward model (expert iteration, DPO, PPO, RLOO/GRPO, REINFORCE, best-of-N) on one shared `Task`."""

from ._task import (METHODS, Budget, Clock, DistillRun, Method, RewardFn, Task, model_reward, register, run_method,
                    sample_prompts)
from ._loop import LoopConfig, remove_checkpoint, train_loop
from ._best_of_n import best_of_n_kl, best_of_n_sampler, run_base, run_best_of_n
from ._expert import BENCHMARK_EXPERT, ExpertConfig, prefix_fraction, run_expert, select
from ._finetune import FINETUNE_LOOP, finetune, finetune_batch, nll
from ._dpo import DPOConfig, completion_logps, dpo_loss, pair_step
from ._dpo_pairs import encode_pairs, pairs_from_store
from ._ppo import PPOConfig, build_value_head, policy_and_values, ppo
from ._rl import (AdaptiveKLController, ReinforceConfig, Rollout, RunningMoments, gae, kl_rewards, loo_baseline,
                  masked_mean, ppo_losses, reinforce, reinforce_loss, rollout, whiten)
from ._trl_rl import GroupRLConfig, grpo, prompt_tokenizer, rloo
from ._evaluate import EVALUATION_KEYS, draw_samples, evaluate, plot_curves, plot_reward_kl, sampled_kl
from ._metrics import (abc_notes, copied_fraction, distinct_ngrams, js_divergence, key_signature, music_histograms,
                       pairwise_distance)
from ._report import mean_ci, write_report
from ._demo import EXPERT_METHOD, DemoConfig, DemoStages, run_demo

__all__ = [
    "METHODS", "Budget", "Clock", "DistillRun", "Method", "RewardFn", "Task", "model_reward", "register", "run_method",
    "sample_prompts",
    "LoopConfig", "remove_checkpoint", "train_loop",
    "best_of_n_kl", "best_of_n_sampler", "run_base", "run_best_of_n",
    "BENCHMARK_EXPERT", "ExpertConfig", "prefix_fraction", "run_expert", "select",
    "FINETUNE_LOOP", "finetune", "finetune_batch", "nll",
    "DPOConfig", "completion_logps", "dpo_loss", "encode_pairs", "pair_step", "pairs_from_store",
    "PPOConfig", "build_value_head", "policy_and_values", "ppo",
    "AdaptiveKLController", "ReinforceConfig", "Rollout", "RunningMoments", "gae", "kl_rewards", "loo_baseline",
    "masked_mean", "ppo_losses", "reinforce", "reinforce_loss", "rollout", "whiten",
    "GroupRLConfig", "grpo", "prompt_tokenizer", "rloo",
    "EVALUATION_KEYS", "draw_samples", "evaluate", "plot_curves", "plot_reward_kl", "sampled_kl",
    "abc_notes", "copied_fraction", "distinct_ngrams", "js_divergence", "key_signature", "music_histograms",
    "pairwise_distance", "mean_ci", "write_report",
    "EXPERT_METHOD", "DemoConfig", "DemoStages", "run_demo",
]
