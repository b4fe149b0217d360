"""Moving the generator: the end-to-end job today; expert iteration, DPO, PPO and best-of-N later."""

from ._demo import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
