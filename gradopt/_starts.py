"""Start sequences for the ascent: given pieces, generator samples, or noise.

Every start is a token-id list ``<bos> body <eos>`` (a sample cut off before EOS gets one
appended, so the reward model always pools at an EOS).
"""

from __future__ import annotations

from typing import Sequence

import torch


def starts_from_texts(tokenizer, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
    """Encode texts; with `max_tokens`, a text that does not fit raises a clear ValueError."""
    out = []
    for i, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        if max_tokens is not None and len(ids) > max_tokens:
            raise ValueError(
                f"piece {i} has {len(ids)} tokens but the model's context is {max_tokens}; "
                "shorten it or use models with a longer context"
            )
        out.append(ids)
    return out


def starts_from_generator(generator, tokenizer, n: int, *, seed: int = 0, max_new_tokens: int | None = None,
                          temperature: float = 1.0, constraint=None) -> list[list[int]]:
    """`n` generator samples as starts (EOS appended where the sample was cut off); `constraint`
    as in `domains.sample_ids` (e.g. `domains.ABCConstraint` for bar-aware samples)."""
    from domains import SampleConfig, context_length, sample_ids

    limit = context_length(generator) - 2
    cfg = SampleConfig(max_new_tokens=min(max_new_tokens or limit, limit), temperature=temperature)
    rows = sample_ids(generator, tokenizer, n, cfg, seed=seed, constraint=constraint)
    eos = tokenizer.eos_token_id
    return [r if r[-1] == eos else r + [eos] for r in rows]


def starts_from_noise(tokenizer, lengths: Sequence[int], *, seed: int = 0) -> list[list[int]]:
    """Uniformly random non-special tokens between BOS and EOS, one row per body length."""
    specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    tokens = torch.tensor([i for i in range(len(tokenizer)) if i not in specials])
    g = torch.Generator().manual_seed(seed)
    return [[tokenizer.bos_token_id] + tokens[torch.randint(len(tokens), (n,), generator=g)].tolist()
            + [tokenizer.eos_token_id] for n in lengths]
