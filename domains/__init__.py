"""Domains: corpora, tokenizers, validity checks and rendering for ABC, MIDI and text; the generator LM."""

from ._generator import (
    FUSED_ACTIVATIONS,
    PRESETS,
    GeneratorPreset,
    SampleConfig,
    build_generator,
    check_length,
    context_length,
    fuse_activation,
    encode_batch,
    load_generator,
    log_likelihood,
    pad_ids,
    sample,
    sample_ids,
    score_texts,
    sequence_log_probs,
    token_log_probs,
)
from ._protocol import Domain, FreeTokenEdits, Piece, Validity
from ._schedule import lr_schedule
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
    "FUSED_ACTIVATIONS", "PRESETS", "GeneratorPreset", "SampleConfig", "build_generator", "check_length", "context_length", "fuse_activation",
    "encode_batch", "load_generator", "log_likelihood", "pad_ids", "sample", "sample_ids", "score_texts",
    "sequence_log_probs", "token_log_probs", "Domain", "FreeTokenEdits", "Piece", "Validity", "OutOfVocabularyError", "build_bpe_tokenizer",
    "build_char_tokenizer", "build_tokenizer", "check_in_vocab", "decode", "load_tokenizer",
    "save_tokenizer",
]

from ._abc import ABCDomain, validate_abc
from ._abc_bars import Bar, Body, Item, bar_durations, length_spec, length_value, read_bars
from ._abc_text import HEADER_LINE, NOTE_LETTERS, abc_body, abc_title
from ._abc_edits import (
    KINDS as EDIT_KINDS,
    TOKEN_EDITS,
    EditSpace,
    cadence_edits,
    char_pieces,
    class_masks,
    edit_space,
    ending_classes,
    ending_edits,
    note_letters,
    pitch_edits,
    token_edits,
)
from ._abc_moves import abc_moves, bar_moves, rhythm_moves
from ._abc_variants import char_edit, corrupt, pitch_edit
from ._abc_constraint import ABCConstraint
from ._abc_annotate import ABC_CHANNELS, ANNOTATORS, Annotator, annotate_abc, read_key, token_annotations
from ._abc_corpus import (
    ALL_COLLECTIONS,
    ESSEN,
    FIDDLE,
    CorpusError,
    NORMALISATION_FILE,
    CorpusReport,
    NormaliseConfig,
    content_hash,
    load_abc_corpus,
    load_abc_file,
    load_normalisation,
    music_key,
    normalise,
    respace,
    save_normalisation,
    split_corpus,
    split_of,
    split_tunes,
)
from ._files import read_json_object, write_atomic, write_atomic_with
from ._pool import ProcessPool
from ._render import ABCJS_HINT, RenderError, UnrenderableError, abc_to_midi, abcjs_script, find_abcjs, find_soundfont, midi_to_wav

__all__ += [
    "ABCDomain", "ABCConstraint", "validate_abc", "ABC_CHANNELS", "ANNOTATORS", "Annotator", "annotate_abc",
    "read_key", "token_annotations", "Bar", "Body", "Item", "bar_durations", "length_spec",
    "length_value", "read_bars", "EDIT_KINDS", "HEADER_LINE", "NOTE_LETTERS", "abc_body", "abc_title", "TOKEN_EDITS", "EditSpace", "cadence_edits",
    "char_pieces", "class_masks", "edit_space", "ending_classes", "ending_edits", "note_letters", "pitch_edits",
    "token_edits", "abc_moves", "bar_moves", "rhythm_moves", "char_edit", "corrupt", "pitch_edit", "ALL_COLLECTIONS", "ESSEN", "FIDDLE", "CorpusError",
    "CorpusReport", "NORMALISATION_FILE", "NormaliseConfig", "content_hash", "load_abc_corpus", "load_abc_file",
    "load_normalisation", "music_key", "normalise", "respace", "save_normalisation", "split_corpus",
    "split_of", "split_tunes", "read_json_object", "write_atomic", "write_atomic_with", "ProcessPool", "ABCJS_HINT", "RenderError", "UnrenderableError", "abc_to_midi", "abcjs_script", "find_abcjs", "find_soundfont", "midi_to_wav",
]

from ._train import GeneratorTrainConfig, encode_corpus, evaluate, train_generator, unigram_cross_entropy

__all__ += ["GeneratorTrainConfig", "encode_corpus", "evaluate", "train_generator", "unigram_cross_entropy"]

from ._midi import MIDIDomain
from ._midi_corpus import default_cache_dir, load_midi_corpus, load_midi_files, midi_pieces, render_abc_pieces
from ._remi import (
    FOLK_TIME_SIGNATURES,
    REMIConfig,
    REMIError,
    build_remi_tokenizer,
    midi_to_remi,
    positions_past_bar,
    remi_to_midi,
    remi_to_score,
    remi_tokenizer,
    remi_vocabulary,
    validate_remi,
)
from ._text import TextConfig, TextDomain, load_text_corpus, split_text, validate_text

__all__ += [
    "MIDIDomain", "default_cache_dir", "load_midi_corpus", "load_midi_files", "midi_pieces",
    "render_abc_pieces", "FOLK_TIME_SIGNATURES", "REMIConfig", "REMIError", "build_remi_tokenizer",
    "midi_to_remi", "positions_past_bar", "remi_to_midi", "remi_to_score", "remi_tokenizer", "remi_vocabulary",
    "validate_remi", "TextConfig", "TextDomain", "load_text_corpus", "split_text", "validate_text",
]

from ._registry import (DOMAIN_FILE, DOMAIN_NAMES, domain_from_name, load_domain_name, resolve_domain_name,
                        save_domain_name)

__all__ += ["DOMAIN_FILE", "DOMAIN_NAMES", "domain_from_name", "load_domain_name", "resolve_domain_name",
            "save_domain_name"]

from ._deprecation import deprecated_aliases

# domains.TrainConfig was the generator's config before the reward model's got a name of its own
# (rewardmodels.RewardTrainConfig); kept for scripts outside the repository, unused inside it.
__getattr__ = deprecated_aliases(__name__, {"TrainConfig": ("GeneratorTrainConfig", GeneratorTrainConfig)})
