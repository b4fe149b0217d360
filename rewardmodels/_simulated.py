"""A simulated rater: a hidden utility over ABC music plus Bradley-Terry noise, ties included.

It stands in for people in tests, demos and benchmarks. The reward model never reads the utility;
it only sees the comparisons this rater makes. Utility of a tune (invalid tunes get `INVALID`)::

    u = (Σ_k w_k f_k - CENTRE) / SCALE          (corpus tunes: roughly mean 0, SD 1)

with features f_k computed from music21's parse:
  key       fraction of notes whose pitch class is in the declared key's scale
  steps     fraction of melodic intervals that are steps (<= 2 semitones)
  leaps     fraction of intervals larger than a fifth (penalised)
  meter     fraction of inner bars whose duration equals the time signature's bar
  repeat    -((r - r*(L)) / 0.12)² with r the zlib compression ratio of the body and r*(L) the
            ratio a corpus tune of the same body length L (bytes) has: some repetition is good,
            degenerate repetition (small r) or none (large r) is bad, *for its length*
  cadence   1 if the last note is the key's tonic
  phrases   1 if the number of bars is a multiple of 4

Length-aware repetition target: zlib's ratio falls with length whatever the music (its header
and dictionary cost less per byte), so a fixed target r* = 0.62 scored length, not repetition: on
corpus tunes that one term carried most of the utility's spread (0.81 SD of 1) and it floored short
samples and cuts. r*(L) = 0.168 + 5.54 / √L is the least-squares fit over the 3,980 training-split
tunes of the fiddle collections (`domains.FIDDLE`; residual SD 0.068), and CENTRE/SCALE were
recomputed over 385 valid tunes drawn from them (seed 0). ``SimulatedRater(length_aware=False)``
keeps the old rater (fixed target 0.62, its own CENTRE/SCALE) for side-by-side figures.

A comparison is Davidson's (1970) Bradley-Terry model with ties, on latent scores θ = β u::

    x = β (u_a - u_b) / 2,   Z = e^x + e^-x + ν
    P(a) = e^x / Z,   P(b) = e^-x / Z,   P(tie) = ν / Z,   ν = 2 tie_rate / (1 - tie_rate)

`agreement` = σ(β) is the chance of picking the better of two tunes one utility unit apart (about
the typical gap between two corpus tunes) *when the rater does not call a tie*: among decisive
judgements P(a) = σ(β (u_a - u_b)) exactly as without ties. `tie_rate` is the chance of a tie
between two tunes of equal utility; P(tie) falls smoothly as the gap grows (at one unit with the
defaults, 0.18 instead of 0.2), so ties are as noisy as wins: equal utilities (two invalid tunes,
two at the floor, an edit that changes no feature) are a tie only a `tie_rate` of the time and
otherwise a coin flip, and close but unequal tunes can tie too. The default 0.2 is the tie rate
people give music: 22% ties in the MusicLM vs MusicRL-R side-by-side ratings (Cideron et al.
2024), whose outputs differ in quality. This is the model `fit` assumes for ties, so a
Bradley-Terry fit to these ratings estimates ν and β u up to a shift.
"""

from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np
from scipy.special import expit

from ._judges import abc_body, compression_ratio

INVALID = -3.0
FLOOR = INVALID + 0.5  # valid tunes are clipped to >= FLOOR (and <= 6)
WEIGHTS = {"key": 2.0, "steps": 2.0, "leaps": -3.0, "meter": 1.5, "repeat": 0.5, "cadence": 0.7, "phrases": 0.3}
REPEAT_WIDTH = 0.12  # the repetition term's width in compression-ratio units
REPEAT_TARGET = (0.168, 5.54)  # r*(L) = a + b / sqrt(L), L = body bytes (module docstring: the fit)
LEGACY_REPEAT_TARGET = 0.62  # the old rater's fixed target (``length_aware=False``)
CENTRE, SCALE = 4.86, 0.55  # mean and SD of the weighted sum over 385 valid training tunes (seed 0)
LEGACY_CENTRE, LEGACY_SCALE = 4.57, 0.68  # the old rater's, over 110 valid corpus tunes (seed 0)


def repeat_target(length: int, length_aware: bool = True) -> float:
    """The compression ratio a corpus tune with a body of `length` bytes has (the repetition
    term's target); the old fixed 0.62 when not `length_aware`."""
    if not length_aware:
        return LEGACY_REPEAT_TARGET
    a, b = REPEAT_TARGET
    return a + b / math.sqrt(max(length, 1))
TIE_RATE = 0.2  # P(tie) between tunes of equal utility (module docstring: why 0.2)


def _validator():
    try:
        from domains import validate_abc
    except ImportError:  # pragma: no cover - fallback while domains lacks the check
        validate_abc = None
    return validate_abc


def music_features(text: str, validity=None, *, length_aware: bool = True) -> dict[str, float] | None:
    """The utility's features for one ABC tune, or None when it is not a valid tune. `validity`:
    the tune's `domains.validate_abc` verdict when the caller has it already (its parse is then not
    repeated; a valid verdict also means this second, untimed parse cannot hang). `length_aware`:
    the repetition term's target (`repeat_target`)."""
    import music21

    validate = _validator()
    if validity is None and validate is not None:
        validity = validate(text)
    if validity is not None and not validity:
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
    body = abc_body(text)
    r = compression_ratio(body)
    target = repeat_target(len(body.encode("utf-8")), length_aware)
    return {
        "key": float(np.mean([pc in scale for pc in pcs])),
        "steps": float(np.mean(steps <= 2)),
        "leaps": float(np.mean(steps > 7)),
        "meter": float(np.mean(bar_ok)) if bar_ok else 0.0,
        "repeat": -(((r - target) / REPEAT_WIDTH) ** 2),
        "cadence": float(pcs[-1] == tonic),
        "phrases": float(len(measures) > 0 and len(measures) % 4 == 0),
    }


def _standardised(features: dict[str, float], length_aware: bool) -> float:
    """(Σ_k w_k f_k - CENTRE) / SCALE with the rater's own centre and scale, before any clip."""
    centre, scale = (CENTRE, SCALE) if length_aware else (LEGACY_CENTRE, LEGACY_SCALE)
    return (sum(WEIGHTS[k] * features[k] for k in WEIGHTS) - centre) / scale


def utility_of(features: dict[str, float] | None, length_aware: bool = True) -> float:
    """The utility of `music_features` computed with the same `length_aware`."""
    if features is None:
        return INVALID
    return float(np.clip(_standardised(features, length_aware), FLOOR, 6.0))


def unclipped_utility(text: str, length_aware: bool = True) -> float:
    """The utility before its clip to [FLOOR, 6], -inf for an invalid tune (below every valid one,
    however bad): not flat at the floor, so a search that climbs the hidden utility itself (an
    oracle editor) sees which edits help a tune sitting there. Not what the rater compares: that is
    `utility_of`."""
    features = music_features(text, length_aware=length_aware)
    return -math.inf if features is None else float(_standardised(features, length_aware))


def checked_utility(job: tuple):
    """``(text, validity or None[, length_aware]) -> (validity, utility)``: the tune's
    `domains.validate_abc` verdict (checked here when not given) and its utility, parsing it once
    more at most. A module-level function so that worker processes (`domains.ProcessPool`) can run it."""
    text, validity, *rest = job
    length_aware = rest[0] if rest else True
    validate = _validator()
    if validity is None and validate is not None:
        validity = validate(text)
    return validity, utility_of(music_features(text, validity, length_aware=length_aware), length_aware)


def text_key(text: str) -> str:
    """The utility cache's key of a text (sha256 of its UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SimulatedRater:
    """Hidden utility + Davidson noise (see the module docstring for the model).

    agreement: P(the better of two tunes one utility unit apart wins | no tie), in [0.5, 1];
        1 = always the better one (equal utilities still tie or flip a coin).
    tie_rate: P(tie) for two tunes of equal utility, in [0, 1); 0 = never a tie.
    length_aware: the repetition term's target follows the body's length (the default); False is
        the old rater, whose fixed target scored short tunes down (module docstring).
    """

    def __init__(self, agreement: float = 0.75, seed: int = 0, *, tie_rate: float = TIE_RATE,
                 length_aware: bool = True) -> None:
        if not 0.5 <= agreement <= 1.0:
            raise ValueError(f"agreement must be in [0.5, 1], got {agreement}")
        if not 0.0 <= tie_rate < 1.0:
            raise ValueError(f"tie_rate must be in [0, 1) (the chance of a tie at equal utility), got {tie_rate}")
        self.agreement = agreement
        self.tie_rate = tie_rate
        self.length_aware = bool(length_aware)
        self.beta = math.inf if agreement == 1.0 else math.log(agreement / (1 - agreement))
        self.nu = 2.0 * tie_rate / (1.0 - tie_rate)  # Davidson's ν: P(tie | equal utilities) = ν / (2 + ν)
        self.rng = np.random.default_rng(seed)
        self.cache: dict[str, float] = {}  # sha256(text) -> utility

    def utility(self, texts: list[str], pool=None, checked: dict | None = None) -> np.ndarray:
        """Hidden utility of each text -> float array (n,); cached by text hash.

        pool: computes the texts not cached yet with its ``map(fn, items)`` (e.g. a
            `domains.ProcessPool` of two workers: the parses are independent); same values as without.
        checked: text -> `domains.validate_abc` verdict, read (a known verdict saves a parse) and
            extended with the verdicts of the texts computed here.
        """
        keys = [text_key(t) for t in texts]
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self.cache))
        if todo:
            known = checked if checked is not None else {}
            jobs = [(t, known.get(t), self.length_aware) for t in todo]
            results = pool.map(checked_utility, jobs) if pool is not None else [checked_utility(j) for j in jobs]
            for t, (validity, u) in zip(todo, results):
                self.cache[text_key(t)] = u
                if checked is not None and validity is not None:
                    checked[t] = validity
        return np.array([self.cache[k] for k in keys], dtype=float)

    def prefer_probability(self, u_a, u_b):
        """P(rater picks a | not a tie) = σ(β (u_a - u_b)) for utilities u_a, u_b (arrays broadcast)."""
        d = np.asarray(u_a, dtype=float) - np.asarray(u_b, dtype=float)
        if math.isinf(self.beta):
            return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
        return expit(self.beta * d)

    def outcome_probabilities(self, u_a, u_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(a), P(tie), P(b)) for utilities u_a, u_b (arrays broadcast); they sum to 1.

        P(tie) = ν / (2 cosh x + ν) with x = β (u_a - u_b) / 2, written with e^-|x| so that large
        gaps (and β = ∞) give 0 without overflow; the rest is split σ(2x) : σ(-2x).
        """
        d = np.asarray(u_a, dtype=float) - np.asarray(u_b, dtype=float)
        with np.errstate(invalid="ignore"):  # β = ∞ times d = 0
            x = np.where(d == 0, 0.0, self.beta * d / 2)
        e = np.exp(-np.abs(x))
        tie = self.nu * e / (1.0 + e * e + self.nu * e)
        p_a = (1.0 - tie) * self.prefer_probability(u_a, u_b)
        return p_a, tie, 1.0 - tie - p_a

    def _decide(self, u_a: np.ndarray, u_b: np.ndarray) -> list[str]:
        """One uniform draw per pair: below P(a) -> "a", below P(a) + P(tie) -> "tie", else "b"."""
        p_a, tie, _ = self.outcome_probabilities(u_a, u_b)
        draw = self.rng.random(len(p_a))
        return ["a" if x < p else ("tie" if x < p + t else "b") for x, p, t in zip(draw, p_a, tie)]

    kind = "simulated"  # the `Rater` protocol's fields: what the store records

    @property
    def name(self) -> str:
        return f"simulated@{self.agreement:g}" if self.length_aware else f"simulated-fixed-repeat@{self.agreement:g}"

    def compare(self, a: str, b: str) -> str:
        """One noisy judgement: "a", "b" or "tie" (the `Rater` protocol)."""
        u = self.utility([a, b])
        return self._decide(u[:1], u[1:])[0]

    def judge_many(self, items_texts: list[str], pairs) -> list[str]:
        """The `Rater` protocol's batched route: `simulate`."""
        return self.simulate(items_texts, pairs)

    def simulate(self, items_texts: list[str], pairs) -> list[str]:
        """Judge each (i, j) row of `pairs` (indices into `items_texts`) -> winners "a"|"b"|"tie"."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) == 0:
            return []
        needed = np.unique(pairs)
        u = np.full(len(items_texts), np.nan)
        u[needed] = self.utility([items_texts[i] for i in needed])
        return self._decide(u[pairs[:, 0]], u[pairs[:, 1]])
