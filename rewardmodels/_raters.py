"""Who judges a pair: the `Rater` protocol that the simulated rater, the auto-judges and people
(through the rating tools) share, so that the rating loop does not care who answers.

A rater compares two pieces of text and answers "a", "b" or "tie" — or None when it has no
verdict (the auto-judges cannot choose between two sound tunes; a person may skip). `name` and
`kind` are what the rating store records with each comparison.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

from ._judges import AUTO_RATER, JudgeConfig, auto_winner, broken_reasons

VERDICTS = ("a", "b", "tie")


@runtime_checkable
class Rater(Protocol):
    """Anything that judges pairs of texts."""

    name: str  # recorded as the comparison's `rater`
    kind: str  # "human", "auto" or "simulated" (the store's KINDS)

    def compare(self, a: str, b: str) -> str | None:
        """"a", "b", "tie", or None for no verdict."""
        ...


def judge_pairs(rater: Rater, texts: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[str | None]:
    """Verdicts for (i, j) index pairs into `texts`: the rater's own batched route when it has one
    (``judge_many(texts, pairs)``: e.g. the simulated rater scores each text once), else one
    `compare` per pair, in order."""
    many = getattr(rater, "judge_many", None)
    out = list(many(texts, pairs)) if many is not None else [rater.compare(texts[i], texts[j]) for i, j in pairs]
    bad = [v for v in out if v is not None and v not in VERDICTS]
    if bad:
        raise ValueError(f"rater {rater.name!r} answered {bad[0]!r}; a verdict is one of {VERDICTS} or None")
    return out


class JudgeRater:
    """The auto-checks as a rater: a sound piece beats a broken one, two broken pieces tie, and two
    sound pieces get no verdict (None: a person or the simulated rater must judge)."""

    kind = "auto"

    def __init__(self, cfg: JudgeConfig = JudgeConfig(), validator: Callable | None = None,
                 name: str = AUTO_RATER) -> None:
        self.cfg, self.validator, self.name = cfg, validator, name
        self._broken: dict[str, bool] = {}

    def broken(self, text: str) -> bool:
        """Whether the auto-checks find `text` broken (cached per text: each is parsed once)."""
        if text not in self._broken:
            self._broken[text] = bool(broken_reasons(text, self.cfg, self.validator))
        return self._broken[text]

    def compare(self, a: str, b: str) -> str | None:
        return auto_winner(self.broken(a), self.broken(b))
