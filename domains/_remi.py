"""REMI: MIDI as a sequence of named events, and the text form the language model reads.

REMI (Huang & Yang 2020, via miditok) writes music as ``Bar_None TimeSig_6/8 Position_0
Pitch_69 Duration_0.12.24 Position_12 Pitch_67 ...``: a bar marker, the meter, then for every
onset its position inside the bar followed by pitch and duration. The LM sees that sequence as
**space-separated token names**, so the shared `PreTrainedTokenizerFast` machinery (BOS/EOS/PAD,
padding, decode) works unchanged with a word-level vocabulary over REMI names.

All tracks are merged into one stream before encoding (folk tunes are one melody; drum tracks
are dropped), so one piece is one sequence and decodes to one piano track.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ._protocol import Validity
from ._tokenizer import SPECIALS, UNK, OutOfVocabularyError, _wrap

# Meters the fiddle corpus uses (abc2midi writes C| as 2/2, C as 4/4) plus common neighbours.
FOLK_TIME_SIGNATURES = (
    "2/2", "3/2", "4/2", "1/4", "2/4", "3/4", "4/4", "5/4", "6/4", "7/4", "9/4",
    "3/8", "5/8", "6/8", "7/8", "9/8", "12/8",
)
_MIDITOK_PAD = "PAD_None"


class REMIError(ValueError):
    """A REMI text could not be turned back into music; the message says which token and why."""


@dataclass(frozen=True, kw_only=True)
class REMIConfig:
    """How MIDI becomes REMI tokens. Changing any field changes the vocabulary."""

    beat_resolution: int = 24  # positions per beat up to 4 beats; 24 holds sixteenths in 2/2 and triplets
    long_resolution: int = 4  # positions per beat for durations from 4 beats to `max_beats`
    max_beats: int = 12  # longest note duration, in beats of the current meter
    pitch_range: tuple[int, int] = (21, 109)  # MIDI pitches kept, [low, high); notes outside are dropped
    velocities: int = 0  # velocity bins; 0 = no Velocity tokens (abc2midi's only mark the beat)
    tempos: bool = False  # Tempo tokens (the rendered ABC corpus is all at 120 bpm)
    time_signatures: tuple[str, ...] = FOLK_TIME_SIGNATURES  # meters with a TimeSig token; others read as 4/4

    def __post_init__(self) -> None:
        if self.beat_resolution < 1 or self.long_resolution < 1:
            raise ValueError("beat_resolution and long_resolution must be >= 1")
        if self.beat_resolution % self.long_resolution:
            raise ValueError("long_resolution must divide beat_resolution")
        if self.max_beats <= 4:
            raise ValueError(f"max_beats={self.max_beats} must exceed 4")
        lo, hi = self.pitch_range
        if not 0 <= lo < hi <= 127:
            raise ValueError(f"pitch_range={self.pitch_range} must satisfy 0 <= low < high <= 127")
        if self.velocities < 0 or self.velocities > 127:
            raise ValueError(f"velocities={self.velocities} must be in 0..127")
        if not self.time_signatures:
            raise ValueError("time_signatures must name at least one meter, e.g. '4/4'")
        for ts in self.time_signatures:
            num, _, den = ts.partition("/")
            if not (num.isdigit() and den.isdigit() and int(num) > 0 and int(den) in (1, 2, 4, 8, 16, 32, 64)):
                raise ValueError(f"time signature {ts!r} must look like '6/8' with a power-of-two denominator")

    def fingerprint(self) -> str:
        """A short stable name for this configuration and miditok version (cache keys)."""
        return hashlib.sha256(f"{self!r} miditok={version('miditok')}".encode()).hexdigest()[:12]


@lru_cache(maxsize=8)
def remi_tokenizer(cfg: REMIConfig = REMIConfig()):
    """The miditok `REMI` tokenizer for `cfg` (built once per configuration)."""
    from miditok import REMI, TokenizerConfig

    ts_range: dict[int, list[int]] = {}
    for ts in cfg.time_signatures:
        num, den = map(int, ts.split("/"))
        ts_range.setdefault(den, []).append(num)
    # The low pitch range end of miditok is inclusive and its high end exclusive, as here.
    tk_cfg = TokenizerConfig(
        pitch_range=cfg.pitch_range,
        beat_res={(0, 4): cfg.beat_resolution, (4, cfg.max_beats): cfg.long_resolution},
        num_velocities=max(cfg.velocities, 1),
        use_velocities=cfg.velocities > 0,
        use_tempos=cfg.tempos,
        use_time_signatures=True,
        time_signature_range=ts_range,
        use_programs=False,
        use_pitchdrum_tokens=False,  # drum tracks are dropped before encoding
        special_tokens=["PAD"],  # ours (<bos> <eos> <pad> <unk>) live in the HF tokenizer
    )
    return REMI(tk_cfg)


def remi_vocabulary(cfg: REMIConfig = REMIConfig()) -> list[str]:
    """Every REMI token name of `cfg`, in miditok's id order (its PAD excluded)."""
    vocab = remi_tokenizer(cfg).vocab
    return [name for name, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if name != _MIDITOK_PAD]


def _merged(score):
    """`score` with all non-drum tracks merged into one piano track (in place on a copy)."""
    import symusic

    merged = symusic.Track("merged", 0, False)
    for track in score.tracks:
        if not track.is_drum:
            merged.notes.extend(track.notes)
    out = score.copy()
    out.tracks.clear()
    out.tracks.append(merged)
    return out


def midi_to_remi(midi, cfg: REMIConfig = REMIConfig()) -> str:
    """A MIDI file (path) or `symusic.Score` as a space-separated REMI string.

    Raises whatever symusic raises for an unreadable file (`RuntimeError`, `ValueError`,
    `OSError`); callers that load corpora catch and count those.
    """
    import symusic

    score = midi if isinstance(midi, symusic.Score) else symusic.Score(str(midi))
    seqs = remi_tokenizer(cfg).encode(_merged(score))
    seq = seqs[0] if isinstance(seqs, list) else seqs
    return " ".join(seq.tokens)


def _tokens(text: str, cfg: REMIConfig) -> list[str]:
    """Split `text` into REMI names; `REMIError` naming any unknown ones."""
    tokens = text.split()
    vocab = remi_tokenizer(cfg).vocab
    unknown = sorted({t for t in tokens if t not in vocab or t == _MIDITOK_PAD})
    if unknown:
        raise REMIError(
            f"unknown REMI token(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
            "the text must be space-separated names from remi_vocabulary()"
        )
    return tokens


def remi_to_score(text: str, cfg: REMIConfig = REMIConfig()):
    """A REMI string back to a one-track `symusic.Score` (miditok skips ungrammatical events)."""
    from miditok import TokSequence

    tokens = _tokens(text, cfg)
    tok = remi_tokenizer(cfg)
    seq = TokSequence(tokens=tokens)
    tok.complete_sequence(seq)
    try:
        return tok.decode([seq])
    except Exception as err:  # miditok raises assorted types on token soup
        raise REMIError(f"miditok could not decode the REMI text: {type(err).__name__}: {err}") from err


def remi_to_midi(text: str, path: str | Path, cfg: REMIConfig = REMIConfig()) -> Path:
    """Write a REMI string as a standard MIDI file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remi_to_score(text, cfg).dump_midi(str(path))
    return path


def positions_past_bar(tokens: Sequence[str], cfg: REMIConfig = REMIConfig()) -> int:
    """How many ``Position_k`` tokens lie at or past the end of their bar's meter.

    A bar of meter n/d holds ``n * beat_resolution`` positions (a beat is one 1/d note). miditok
    decodes a later position into the next bar without complaint — REMI's over-long bar.
    """
    bar_positions = 4 * cfg.beat_resolution  # miditok's meter before any TimeSig token
    over = 0
    for t in tokens:
        if t.startswith("TimeSig_"):
            bar_positions = int(t[len("TimeSig_"):].split("/")[0]) * cfg.beat_resolution
        elif t.startswith("Position_") and int(t[len("Position_"):]) >= bar_positions:
            over += 1
    return over


def validate_remi(text: str, cfg: REMIConfig = REMIConfig(), max_error_rate: float = 0.0) -> Validity:
    """Is `text` playable REMI? It must use known names only, decode with miditok, contain notes,
    last a finite positive time, place no note past the end of its bar, and at most
    `max_error_rate` of its tokens may break REMI's grammar (miditok's `tokens_errors`: wrong
    successions, positions going backwards). miditok silently drops or moves such tokens when
    decoding, so without these checks broken text would pass."""
    if not isinstance(text, str) or not text.strip():
        return Validity(False, "empty text")
    try:
        score = remi_to_score(text, cfg)
    except REMIError as err:
        return Validity(False, str(err))
    n_notes = sum(len(t.notes) for t in score.tracks)
    if n_notes == 0:
        return Validity(False, "no notes")
    end = score.end() / score.ticks_per_quarter
    if not (0 < end < float("inf")):
        return Validity(False, f"duration {end} quarter notes is not finite and positive")
    from miditok import TokSequence

    seq = TokSequence(tokens=text.split())
    remi_tokenizer(cfg).complete_sequence(seq)
    rate = float(remi_tokenizer(cfg).tokens_errors(seq))
    if rate > max_error_rate:
        n = round(rate * len(seq.tokens))
        return Validity(False, f"{n} of {len(seq.tokens)} tokens break REMI grammar (successions or positions)")
    over = positions_past_bar(seq.tokens, cfg)
    if over:
        return Validity(False, f"{over} position(s) past the end of their bar's meter")
    return Validity(True)


def build_remi_tokenizer(
    cfg: REMIConfig = REMIConfig(), texts: Sequence[str] | None = None
) -> PreTrainedTokenizerFast:
    """Word-level `PreTrainedTokenizerFast` over the whole REMI vocabulary of `cfg`.

    Ids: ``<pad> <bos> <eos> <unk>`` (as every domain's tokenizer) then the REMI names in miditok
    order; text is split on whitespace and every encoding is ``<bos> ... <eos>``. The vocabulary
    does not depend on `texts`: if given, they are only checked to hold known names
    (`OutOfVocabularyError` otherwise — usually texts made with a different `REMIConfig`).
    """
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for name in remi_vocabulary(cfg):
        vocab[name] = len(vocab)
    if texts is not None:
        unknown = sorted({t for text in texts for t in text.split() if t not in vocab})
        if unknown:
            raise OutOfVocabularyError(
                f"texts hold names outside the REMI vocabulary: {unknown[:5]}; "
                "were they made with a different REMIConfig?"
            )
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = _wrap(tok)  # no decoder: `decode` joins names with single spaces
    fast.clean_up_tokenization_spaces = False
    return fast
