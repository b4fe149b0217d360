"""A simulated rater: a hidden utility over ABC music plus Bradley-Terry noise.

It stands in for people in tests, demos and benchmarks. The reward model never reads the utility;
it only sees the comparisons this rater makes. Utility of a tune (invalid tunes get `INVALID`)::

    u = (Σ_k w_k f_k - CENTRE) / SCALE          (corpus tunes: roughly mean 0, SD 1)

with features f_k computed from music21's parse:
  key       fraction of notes whose pitch class is in the declared key's scale
  steps     fraction of melodic intervals that are steps (<= 2 semitones)
  leaps     fraction of intervals larger than a fifth (penalised)
  meter     fraction of inner bars whose duration equals the time signature's bar
  repeat    -((r - 0.62) / 0.12)² with r the zlib compression ratio of the body: some
            repetition is good, degenerate repetition (small r) or none (large r) is bad
  cadence   1 if the last note is the key's tonic
  phrases   1 if the number of bars is a multiple of 4

A comparison prefers `a` with probability σ(β (u_a - u_b)), β = logit(agreement): `agreement` is
the chance of picking the better of two tunes one utility unit apart (about the typical gap
between two corpus tunes). Equal utilities (e.g. two invalid tunes) are a tie.
"""

from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np

from ._judges import abc_body, compression_ratio

INVALID = -3.0
FLOOR = INVALID + 0.5  # valid tunes are clipped to >= FLOOR (and <= 6)
WEIGHTS = {"key": 2.0, "steps": 2.0, "leaps": -3.0, "meter": 1.5, "repeat": 0.5, "cadence": 0.7, "phrases": 0.3}
CENTRE, SCALE = 4.57, 0.68  # mean and SD of the weighted sum over 110 valid corpus tunes (seed 0)


def _validator():
    try:
        from domains import validate_abc
    except ImportError:  # pragma: no cover - fallback while domains lacks the check
        validate_abc = None
    return validate_abc


def music_features(text: str) -> dict[str, float] | None:
    """The utility's features for one ABC tune, or None when it is not a valid tune."""
    import music21

    validate = _validator()
    if validate is not None and not validate(text):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = music21.converter.parse(text, format="abc")
        except Exception:  # music21 raises many types on malformed ABC
            return None
        if isinstance(score, music21.stream.Opus):  # an "X:" line inside the body starts a new tune
            if len(score.scores) != 1:
                return None
            score = score.scores[0]
        notes = [n for n in score.recurse().notes if n.isNote]
        if len(notes) < 2:
            return None
        keys = list(score.recurse().getElementsByClass(music21.key.KeySignature))
        k = keys[0] if keys else music21.key.Key("C")
        if not isinstance(k, music21.key.Key):
            k = k.asKey("major")
        scale = {p.pitchClass for p in k.getScale().getPitches()}
        tonic = k.tonic.pitchClass
        midi = np.array([n.pitch.midi for n in notes], dtype=float)
        pcs = [n.pitch.pitchClass for n in notes]
        steps = np.abs(np.diff(midi))
        parts = score.parts if score.parts else [score]
        measures = list(parts[0].getElementsByClass("Measure"))
        inner = measures[1:-1] if len(measures) > 2 else measures
        bar_ok = []
        for m in inner:
            ts = m.getContextByClass(music21.meter.TimeSignature)
            bar = ts.barDuration.quarterLength if ts is not None else 4.0
            bar_ok.append(abs(float(m.duration.quarterLength) - float(bar)) < 1e-6)
    r = compression_ratio(abc_body(text))
    return {
        "key": float(np.mean([pc in scale for pc in pcs])),
        "steps": float(np.mean(steps <= 2)),
        "leaps": float(np.mean(steps > 7)),
        "meter": float(np.mean(bar_ok)) if bar_ok else 0.0,
        "repeat": -(((r - 0.62) / 0.12) ** 2),
        "cadence": float(pcs[-1] == tonic),
        "phrases": float(len(measures) > 0 and len(measures) % 4 == 0),
    }


def utility_of(features: dict[str, float] | None) -> float:
    if features is None:
        return INVALID
    raw = sum(WEIGHTS[k] * features[k] for k in WEIGHTS)
    return float(np.clip((raw - CENTRE) / SCALE, FLOOR, 6.0))


class SimulatedRater:
    """Hidden utility + Bradley-Terry noise. `agreement` in [0.5, 1]; 1 = always the better one."""

    def __init__(self, agreement: float = 0.75, seed: int = 0) -> None:
        if not 0.5 <= agreement <= 1.0:
            raise ValueError(f"agreement must be in [0.5, 1], got {agreement}")
        self.agreement = agreement
        self.beta = math.inf if agreement == 1.0 else math.log(agreement / (1 - agreement))
        self.rng = np.random.default_rng(seed)
        self.cache: dict[str, float] = {}  # sha256(text) -> utility

    def utility(self, texts: list[str]) -> np.ndarray:
        """Hidden utility of each text -> float array (n,); cached by text hash."""
        out = np.empty(len(texts))
        for i, t in enumerate(texts):
            key = hashlib.sha256(t.encode("utf-8")).hexdigest()
            if key not in self.cache:
                self.cache[key] = utility_of(music_features(t))
            out[i] = self.cache[key]
        return out

    def prefer_probability(self, u_a, u_b):
        """P(rater picks a) for utilities u_a, u_b (arrays broadcast)."""
        d = np.asarray(u_a, dtype=float) - np.asarray(u_b, dtype=float)
        if math.isinf(self.beta):
            return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
        return 1.0 / (1.0 + np.exp(-self.beta * d))

    def _decide(self, u_a: np.ndarray, u_b: np.ndarray) -> list[str]:
        p = self.prefer_probability(u_a, u_b)
        draw = self.rng.random(len(p))
        tie = np.abs(u_a - u_b) < 1e-9
        return ["tie" if t else ("a" if x < q else "b") for t, x, q in zip(tie, draw, p)]

    def compare(self, a: str, b: str) -> str:
        """One noisy judgement: "a", "b" or "tie"."""
        u = self.utility([a, b])
        return self._decide(u[:1], u[1:])[0]

    def simulate(self, items_texts: list[str], pairs) -> list[str]:
        """Judge each (i, j) row of `pairs` (indices into `items_texts`) -> winners "a"|"b"|"tie"."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) == 0:
            return []
        needed = np.unique(pairs)
        u = np.full(len(items_texts), np.nan)
        u[needed] = self.utility([items_texts[i] for i in needed])
        return self._decide(u[pairs[:, 0]], u[pairs[:, 1]])
