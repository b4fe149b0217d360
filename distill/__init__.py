"""Moving the generator: the end-to-end job, and the methods that train the generator toward the
reward model (expert iteration, DPO, PPO, RLOO/GRPO, REINFORCE, best-of-N) on one shared `Task`."""

from ._demo import EXPERT_METHOD, DemoConfig, DemoStages, run_demo
from ._loop import LoopConfig, remove_checkpoint, train_loop
from ._report import mean_ci, write_report
from ._task import METHODS, Budget, Clock, DistillRun, Method, RewardFn, Task, model_reward, register, run_method

__all__ = [
    "EXPERT_METHOD", "DemoConfig", "DemoStages", "run_demo", "LoopConfig", "remove_checkpoint", "train_loop", "mean_ci", "write_report",
    "METHODS", "Budget", "Clock", "DistillRun", "Method", "RewardFn", "Task", "model_reward", "register", "run_method",
]
