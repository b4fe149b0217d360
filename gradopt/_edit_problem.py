"""What a model-free discrete editor works on: start rows, their exact values, where and to what
they may change, and three callables that hide the models.

Legend: b batch, t time, v vocab, m candidates scored at once.

The exact-swap polish (`_polish.polish`) and the gradient-informed samplers (`_gwg.run_sampler`)
take the same inputs; the engine's polish step builds one `EditProblem` and hands it to whichever
`PolishConfig.proposal` names, so the two editors cannot drift apart in what they are given.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class EditProblem(NamedTuple):
    """A batch of token rows to improve under an exact objective J.

    Rows whose `value` is not finite are left alone by every editor. `grad_fn` supplies the
    first-order estimate the proposals rank changes by; `score_fn` is the verdict (only exactly
    scored sequences are ever kept); `accept_fn` may veto a candidate (validity, an edit budget).
    """

    ids: torch.Tensor  # (b,t) start rows
    value: torch.Tensor  # (b,) their exact J
    free: torch.Tensor  # (b,t) bool: positions that may change
    allowed: torch.Tensor  # (v,) or (b,t,v) bool: tokens a position may take
    grad_fn: Callable[[torch.Tensor], torch.Tensor]  # ids (b,t) -> dJ/d one-hot (b,t,v)
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # cand (m,t), row (m,) -> exact J (m,)
    accept_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # cand, row -> (m,) bool
