"""Offline DPO through TRL's `DPOTrainer`: ``dpo`` with ``engine="trl"`` (`_dpo`) on the same pairs
and loss as the compact engine, for checking the compact loop against a reference implementation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._task import Budget, Clock
from ._trl_rl import prompt_tokenizer

if TYPE_CHECKING:
    from ._dpo import DPOConfig


def train_trl(policy, reference, tokenizer, state: dict, cfg: DPOConfig, budget: Budget, workdir: Path,
               seed: int, progress: bool) -> list[dict]:
    """The same pairs and loss through TRL's `DPOTrainer` (CPU, constant lr, batches of `cfg.batch`
    pairs), stopped by `budget` (steps, and CPU seconds by a callback). Sequences are BOS, prompt,
    completion, EOS as in the compact engine (the tokenizer adds BOS only: TRL appends the EOS text
    itself). Not resumable: the compact engine is. History rows:
    step, cpu_s, loss, margin, accuracy, and reward = mean task reward of all pairs (TRL does not
    expose a step's batch)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    clock = Clock(budget)
    reward = float(np.mean(state["rewards"]))
    history: list[dict] = []

    class Budgeted(TrainerCallback):
        def on_step_end(self, args, st, control, **kw):
            if clock.out(st.global_step):
                control.should_training_stop = True

        def on_log(self, args, st, control, logs=None, **kw):
            if logs and "loss" in logs:
                history.append({"step": st.global_step, "cpu_s": round(clock.spent, 3), "loss": float(logs["loss"]),
                                "lr": float(logs.get("learning_rate", cfg.lr)),
                                "margin": float(logs.get("rewards/margins", float("nan"))),
                                "accuracy": float(logs.get("rewards/accuracies", float("nan"))), "reward": reward})

    args = TRLConfig(output_dir=str(workdir / "trl"), max_steps=budget.max_steps, per_device_train_batch_size=cfg.batch,
                     learning_rate=cfg.lr, lr_scheduler_type="constant", beta=cfg.beta, max_grad_norm=1.0,
                     max_length=int(policy.config.n_positions), use_cpu=True, bf16=False, report_to="none",
                     logging_steps=1, save_strategy="no", seed=seed, disable_tqdm=not progress)
    data = Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in state["pairs"]])
    trainer = DPOTrainer(model=policy, ref_model=copy.deepcopy(reference), args=args, train_dataset=data,
                         processing_class=prompt_tokenizer(tokenizer), callbacks=[Budgeted()])
    trainer.train()
    return history
