"""Small helpers about the two fixed models of the ascent (generator and reward model)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def frozen_models(*models: torch.nn.Module):
    """Eval mode and ``requires_grad=False`` on every weight for the duration; restored after.

    The graph through the models is kept (inputs may require grad), only their weights are fixed.
    """
    saved = []
    for m in models:
        saved.append((m, m.training, [(p, p.requires_grad) for p in m.parameters()]))
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            m.train(training)
            for p, flag in flags:
                p.requires_grad_(flag)


def model_context(model) -> int | None:
    """The model's context length in tokens, when it declares one."""
    fn = getattr(model, "context_length", None)
    if callable(fn):
        return int(fn())
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        n = getattr(config, name, None)
        if isinstance(n, int):
            return n
    backbone = getattr(model, "backbone", None) or getattr(model, "transformer", None)
    if backbone is not None and backbone is not model:
        return model_context(backbone)
    return None


def special_ids(generator, tokenizer=None) -> dict[str, int | None]:
    """BOS/EOS/PAD/UNK ids from the tokenizer, else from the generator's config."""
    if tokenizer is not None:
        out = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
               "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id}
    else:
        c = generator.config
        out = {"bos": c.bos_token_id, "eos": c.eos_token_id, "pad": c.pad_token_id, "unk": None}
    if out["pad"] is None:
        raise ValueError("the tokenizer/generator defines no pad token; the ascent needs one for batching")
    return out


def vocab_check(generator, v: int) -> None:
    """The generator's and reward model's vocabularies must agree."""
    n = generator.get_input_embeddings().weight.shape[0]
    if n != v:
        raise ValueError(f"generator vocabulary ({n}) differs from the reward model's ({v}); "
                         "build the reward model from this generator's tokenizer")
