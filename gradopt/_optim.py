"""Optimizers for the one continuous tensor of the ascent, behind one small adapter.

Adam is elementwise, so rows of the batch stay independent (batched = one-by-one). Both backends
minimise: pass the gradient of the loss (the negated objective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torchopt


@dataclass(frozen=True, kw_only=True)
class Adam:
    """Adam on one tensor: functional torchopt (default) or torch.optim."""

    lr: float = 0.1  # step size
    betas: tuple[float, float] = (0.9, 0.999)  # moment decay rates
    eps: float = 1e-8  # denominator guard
    backend: str = "torchopt"  # "torchopt" (functional init/update) or "torch" (torch.optim.Adam)

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        if self.backend not in ("torchopt", "torch"):
            raise ValueError(f"backend must be 'torchopt' or 'torch', got {self.backend!r}")

    def init(self, param: torch.Tensor) -> Any:
        """Optimizer state for `param`."""
        if self.backend == "torchopt":
            # use_accelerated_op stays False: the compiled extension does not load with torch 2.13.
            tx = torchopt.adam(self.lr, betas=self.betas, eps=self.eps)
            return (tx, tx.init(param))
        holder = torch.nn.Parameter(param.detach().clone())
        return (torch.optim.Adam([holder], lr=self.lr, betas=self.betas, eps=self.eps), holder)

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One descent step: (new param, new state). `param` is not modified."""
        if self.backend == "torchopt":
            tx, inner = state
            updates, inner = tx.update(grad, inner, inplace=False)
            return torchopt.apply_updates(param.detach(), updates, inplace=False), (tx, inner)
        opt, holder = state
        with torch.no_grad():
            holder.copy_(param)
        holder.grad = grad.detach().clone()
        opt.step()
        return holder.detach().clone(), state
