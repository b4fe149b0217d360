"""Tokenizers for every domain: character-level (default) or BPE, as `PreTrainedTokenizerFast`.

Every encoded sequence is ``<bos> body <eos>``; ``<pad>`` fills batches and ``<unk>`` stands for a
character the tokenizer never saw (see `check_in_vocab` to refuse such text instead).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]


class OutOfVocabularyError(ValueError):
    """Text holds characters the tokenizer cannot represent."""


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    return _plain_text(fast)


def _plain_text(fast: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    # A piece may spell "<bos>" or "<eos>" in its text; that is text, never a control token.
    fast.split_special_tokens = True
    fast.padding_side = "right"
    return fast


def build_char_tokenizer(texts: Sequence[str], min_count: int = 1) -> PreTrainedTokenizerFast:
    """One token per character seen at least `min_count` times in `texts` (sorted, deterministic)."""
    if not texts:
        raise ValueError("cannot build a tokenizer from an empty corpus")
    counts = Counter(ch for t in texts for ch in t)
    alphabet = sorted(ch for ch, c in counts.items() if c >= min_count)
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Split into single characters, keeping every one (spaces and newlines included).
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok)


def build_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level-free BPE over characters, trained on `texts` with the `tokenizers` library."""
    if not texts:
        raise ValueError("cannot build a tokenizer from an empty corpus")
    if vocab_size < len(SPECIALS) + 2:
        raise ValueError(f"vocab_size={vocab_size} is too small")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = None
    tok.decoder = decoders.Fuse()
    alphabet = sorted({ch for t in texts for ch in t})
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return _wrap(tok)


def build_tokenizer(texts: Sequence[str], kind: str = "char", vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """`kind` is ``"char"`` or ``"bpe"``."""
    if kind == "char":
        return build_char_tokenizer(texts)
    if kind == "bpe":
        return build_bpe_tokenizer(texts, vocab_size)
    raise ValueError(f"unknown tokenizer kind {kind!r}; use 'char' or 'bpe'")


def check_in_vocab(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    """Raise `OutOfVocabularyError` naming the characters of `text` the tokenizer maps to <unk>."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id in ids:
        vocab = tokenizer.get_vocab()
        bad = sorted({ch for ch in text if ch not in vocab}) if len(vocab) < 512 else ["?"]
        raise OutOfVocabularyError(
            f"text contains characters outside the tokenizer's vocabulary: {bad!r}; "
            "remove them or rebuild the tokenizer on a corpus that has them"
        )


def decode(tokenizer: PreTrainedTokenizerFast, ids) -> str:
    """Ids to text, dropping BOS/PAD and cutting at the first EOS."""
    ids = [int(i) for i in ids]
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    ids = [i for i in ids if i not in (tokenizer.bos_token_id, tokenizer.pad_token_id)]
    return tokenizer.decode(ids)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    path = Path(directory)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"no tokenizer.json in {path}; train a generator there first")
    return _plain_text(PreTrainedTokenizerFast.from_pretrained(str(path)))
