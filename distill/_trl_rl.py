"""RLOO and GRPO through TRL's `RLOOTrainer` / `GRPOTrainer`, on the shared `Task`.

Both sample `num_generations` completions per prompt and use the group as the baseline:
RLOO (Ahmadian et al. 2024) the mean of the other k-1 rewards, GRPO (Shao et al. 2024) the group
mean and standard deviation; both take a clipped-ratio step with a KL penalty to the reference.
task.reward scores prompt + completion (the whole decoded text, as `domains.sample` returns it).

Adapting our models to TRL: the trainer builds its frozen reference from the policy's
``config._name_or_path``, so the base generator is saved under ``workdir/reference`` first (the
task's generator itself is never touched); our tokenizers append EOS to every encoding, so TRL
gets a copy that adds only BOS (a prompt must not end the sequence before the completion starts).
Training stops at the CPU budget through a callback; TRL keeps no resumable state here (a rerun
starts over).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._task import Budget, Clock, DistillRun, Task, register


@dataclass(frozen=True, kw_only=True)
class GroupRLConfig:
    """Sizes and coefficients of `rloo` / `grpo` (mapped onto TRL's config)."""

    num_generations: int = 4  # completions per prompt (the group); >= 2
    prompts_per_step: int = 2  # prompts per optimiser step
    beta: float = 0.05  # KL coefficient to the reference
    clip: float = 0.2  # ratio clip epsilon
    lr: float = 1e-4  # learning rate (TRL's AdamW, constant)
    num_iterations: int = 1  # optimiser passes over each generated batch

    def __post_init__(self) -> None:
        if self.num_generations < 2 or self.prompts_per_step < 1 or self.num_iterations < 1:
            raise ValueError(f"GroupRLConfig needs num_generations >= 2, prompts_per_step >= 1, num_iterations >= 1; got {self}")
        if self.beta < 0 or not self.clip > 0 or not self.lr > 0:
            raise ValueError(f"GroupRLConfig needs beta >= 0, clip > 0, lr > 0; got {self}")


def prompt_tokenizer(tokenizer):
    """A copy of `tokenizer` whose encodings are ``<bos> text`` (no EOS): TRL's prompt encoding."""
    from tokenizers import processors

    tok = copy.deepcopy(tokenizer)
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)])
    return tok


def _callback(clock: Clock, rows: list[dict]):
    from transformers import TrainerCallback

    class BudgetAndHistory(TrainerCallback):
        """Stop at the CPU budget; keep one history row per training log. TRL logs the mean KL per
        token; "kl" is that times the mean completion length, a per-sequence KL like the other
        methods' (approximate: the mean of a product is not the product of means)."""

        def on_step_end(self, args, state, control, **kwargs):
            if clock.out(state.global_step):
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                kl_token = float(logs.get("kl", np.nan))
                length = float(logs.get("completions/mean_length", np.nan))
                rows.append({"step": state.global_step, "cpu_s": round(clock.spent, 3), "loss": float(logs["loss"]),
                             "reward": float(logs.get("reward", np.nan)), "kl": kl_token * length,
                             "kl_token": kl_token, "reward_std": float(logs.get("reward_std", np.nan))})

    return BudgetAndHistory()


def _train_group(kind: str, task: Task, workdir: Path, budget: Budget, seed: int, progress: bool,
                 config: GroupRLConfig) -> DistillRun:
    import datasets
    from domains import context_length
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    clock = Clock(budget)
    Config, Trainer = (RLOOConfig, RLOOTrainer) if kind == "rloo" else (GRPOConfig, GRPOTrainer)
    tok = prompt_tokenizer(task.tokenizer)
    longest = max(len(tok(p)["input_ids"]) for p in task.prompts)
    if longest >= context_length(task.generator):
        raise ValueError(f"{kind}: a prompt of {longest} tokens leaves no room in the generator's context of "
                         f"{context_length(task.generator)}; shorten task.prompts")
    ref_dir = Path(workdir) / "reference"
    task.reference().save_pretrained(str(ref_dir))
    policy = task.policy_copy()
    policy.config._name_or_path = str(ref_dir)
    prompts = [task.prompts[i % len(task.prompts)] for i in range(max(len(task.prompts), config.prompts_per_step))]
    s = task.sample
    args = Config(
        output_dir=str(workdir), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=not progress, seed=seed, data_seed=seed,
        max_steps=budget.max_steps, learning_rate=config.lr, lr_scheduler_type="constant",
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        num_generations=config.num_generations, num_iterations=config.num_iterations,
        max_completion_length=min(s.max_new_tokens, context_length(policy) - longest),
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, beta=config.beta, epsilon=config.clip,
        generation_kwargs={"suppress_tokens": [t for t in (tok.pad_token_id, tok.bos_token_id, tok.unk_token_id)
                                               if t is not None]},
    )

    def reward(prompts, completions, **_):
        return [float(r) for r in task.reward([p + c for p, c in zip(prompts, completions)])]

    reward.__name__ = "task_reward"
    rows: list[dict] = []
    trainer = Trainer(model=policy, reward_funcs=reward, args=args, processing_class=tok,
                      train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
                      callbacks=[_callback(clock, rows)])
    trainer.train()
    policy = trainer.accelerator.unwrap_model(trainer.model).eval()
    notes = ["sampling ignores task.constraint_factory (TRL samples freely)"] if task.constraint_factory else []
    return DistillRun(kind, policy, rows, notes=notes)


@register("rloo")
def rloo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
         config: GroupRLConfig = GroupRLConfig()) -> DistillRun:
    """REINFORCE leave-one-out through TRL's `RLOOTrainer`."""
    return _train_group("rloo", task, workdir, budget, seed, progress, config)


@register("grpo")
def grpo(task: Task, workdir: Path, budget: Budget, *, seed: int = 0, progress: bool = False,
         config: GroupRLConfig = GroupRLConfig()) -> DistillRun:
    """Group-relative policy optimisation through TRL's `GRPOTrainer`."""
    return _train_group("grpo", task, workdir, budget, seed, progress, config)
