"""Moving the generator: the end-to-end job, and the methods that train the generator toward the
reward model (expert iteration, DPO, PPO, RLOO/GRPO, REINFORCE, best-of-N) on one shared `Task`."""

from ._demo import DemoConfig, run_demo
from ._dpo import DPOConfig, completion_logps, dpo_loss, encode_pairs, pair_step, pairs_from_store, rollout
from ._loop import LoopConfig, remove_checkpoint, train_loop
from ._task import METHODS, Budget, Clock, DistillRun, Method, RewardFn, Task, model_reward, register, run_method

__all__ = [
    "DemoConfig", "run_demo",
    "DPOConfig", "completion_logps", "dpo_loss", "encode_pairs", "pair_step", "pairs_from_store", "rollout", "LoopConfig", "remove_checkpoint", "train_loop",
    "METHODS", "Budget", "Clock", "DistillRun", "Method", "RewardFn", "Task", "model_reward", "register", "run_method",
]
