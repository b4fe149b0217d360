"""Domains: corpora, tokenizers, validity checks and rendering for ABC, MIDI and text; the generator LM."""

from ._generator import (
    PRESETS,
    GeneratorPreset,
    SampleConfig,
    build_generator,
    check_length,
    context_length,
    encode_batch,
    load_generator,
    log_likelihood,
    sample,
    sample_ids,
    score_texts,
    token_log_probs,
)
from ._protocol import Domain, Piece, Validity
from ._tokenizer import (
    OutOfVocabularyError,
    build_bpe_tokenizer,
    build_char_tokenizer,
    build_tokenizer,
    check_in_vocab,
    decode,
    load_tokenizer,
    save_tokenizer,
)

__all__ = [
    "PRESETS", "GeneratorPreset", "SampleConfig", "build_generator", "check_length", "context_length",
    "encode_batch", "load_generator", "log_likelihood", "sample", "sample_ids", "score_texts",
    "token_log_probs", "Domain", "Piece", "Validity", "OutOfVocabularyError", "build_bpe_tokenizer",
    "build_char_tokenizer", "build_tokenizer", "check_in_vocab", "decode", "load_tokenizer",
    "save_tokenizer",
]
