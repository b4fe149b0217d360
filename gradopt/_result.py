"""What an ascent returns: per input sequence, the best verified discrete sequence and its scores."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class RowResult:
    """One input sequence's outcome. Every score here is of a discrete sequence, scored exactly."""

    tokens: list[int]  # the best verified discrete sequence (BOS ... EOS, no padding)
    text: str | None  # its decoded text when a tokenizer was given
    reward_before: float  # reward model on the input sequence itself (the "before" fields all score the input)
    reward_after: float  # reward model on `tokens` (equals re-scoring them)
    loglik_before: float  # total generator log-likelihood of the start (BOS excluded)
    loglik_after: float  # total generator log-likelihood of `tokens`
    objective_before: float  # discrete objective J of the start
    objective_after: float  # discrete objective J of `tokens`
    gap: float  # soft objective at the relaxation's last gradient step (before the final update projects
    # it) minus the exact objective of that point's projection (the relaxation gap; nan if none)
    valid_before: bool | None  # `validate` on the start (None without a validator)
    valid_after: bool | None  # `validate` on `tokens`
    status: str = "ok"  # "ok", or why the row stopped (e.g. "nonfinite objective at step 12"); starts with
    # "kept the input: <why>" when `tokens` is the input unchanged: no restart reached an accepted sequence,
    # or the do-no-harm guard did not trust the best one (its gain_mean/gain_sd say by how much)
    restart: int = 0  # which restart produced `tokens` (0 = started from the input itself)
    changed: int = 0  # positions that differ from the input
    kept: bool = False  # True when `tokens` is the input unchanged (the guard or no accepted sequence; see status)
    gain_mean: float = math.nan  # reward gain of the candidate edit, mean over ensemble members (or the plain gain)
    gain_sd: float = math.nan  # SD of that gain over ensemble members (nan for a single reward model)
    trajectory: list[dict] = field(default_factory=list)  # per check: step, soft, discrete, reward, loglik, gap

    @property
    def reward_gain(self) -> float:
        return self.reward_after - self.reward_before

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AscentResult:
    """The outcome of `optimize` for a batch of input sequences."""

    rows: list[RowResult]  # one per input sequence (best over its restarts)
    reward_evals: int  # sequences passed through the reward model (soft steps, checks, polish)
    generator_evals: int  # sequences passed through the generator
    seconds: float  # wall-clock time
    cpu_seconds: float  # process CPU time

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def tokens(self) -> list[list[int]]:
        return [r.tokens for r in self.rows]

    @property
    def texts(self) -> list[str | None]:
        return [r.text for r in self.rows]

    def summary(self) -> dict:
        """Means over rows with a finite outcome, and counts."""
        ok = [r for r in self.rows if math.isfinite(r.reward_after)]

        def mean(xs):
            xs = list(xs)
            return sum(xs) / len(xs) if xs else float("nan")

        valid = [r.valid_after for r in ok if r.valid_after is not None]
        return {
            "rows": len(self.rows),
            "finite_rows": len(ok),
            "reward_before": mean(r.reward_before for r in ok),
            "reward_after": mean(r.reward_after for r in ok),
            "loglik_before": mean(r.loglik_before for r in ok),
            "loglik_after": mean(r.loglik_after for r in ok),
            "gap": mean(r.gap for r in ok if math.isfinite(r.gap)),
            "valid_fraction": mean(float(v) for v in valid) if valid else None,
            "changed": mean(r.changed for r in ok),
            "kept": sum(r.kept for r in self.rows),
            "reward_evals": self.reward_evals,
            "seconds": self.seconds,
        }
