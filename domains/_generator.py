"""The generator: a GPT-2-style causal LM built from a config, sampling and batched scoring.

Legend: b batch, t time, v vocab.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from ._files import read_json_object
from ._tokenizer import decode


@dataclass(frozen=True, kw_only=True)
class GeneratorPreset:
    """Size of a GPT-2-style generator."""

    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # width; must be divisible by n_head
    n_positions: int  # context length in tokens, BOS and EOS included
    dropout: float = 0.0  # residual/attention/embedding dropout

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_head, self.n_embd, self.n_positions) <= 0:
            raise ValueError(f"all sizes must be positive: {self}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1): {self.dropout}")


PRESETS: dict[str, GeneratorPreset] = {
    "tiny": GeneratorPreset(n_layer=2, n_head=2, n_embd=32, n_positions=128),
    # Sized for the demo's 10 CPU-minute budget: at that budget it beat wider/deeper models
    # (2x128: 0.46 of unigram cross-entropy; 3x192: 0.52; 4x256: 0.62).
    "small": GeneratorPreset(n_layer=2, n_head=4, n_embd=128, n_positions=512),
    "base": GeneratorPreset(n_layer=4, n_head=4, n_embd=256, n_positions=512),
    "medium": GeneratorPreset(n_layer=6, n_head=8, n_embd=384, n_positions=1024, dropout=0.1),
}


# GPT-2's "gelu_new" is written out in Python (eight elementwise passes over the MLP activations);
# "gelu_pytorch_tanh" is the same tanh approximation as one fused kernel (outputs agree to ~2e-7).
# On CPU the unfused form was about a third of every forward pass of the small models.
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


def fuse_activation(config: GPT2Config) -> GPT2Config:
    """Switch `config` (in place) to the fused kernel of its activation when one computes the
    same function; returns it. Applied when generators and reward models are built or loaded."""
    config.activation_function = FUSED_ACTIVATIONS.get(config.activation_function, config.activation_function)
    return config


def build_generator(
    preset: str | GeneratorPreset, tokenizer: PreTrainedTokenizerFast, seed: int = 0
) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 LM sized by `preset` with `tokenizer`'s vocabulary."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    config = fuse_activation(GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=preset.n_positions,
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        resid_pdrop=preset.dropout,
        embd_pdrop=preset.dropout,
        attn_pdrop=preset.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")  # what `save_pretrained` writes (either)


def load_generator(directory: str | Path) -> GPT2LMHeadModel:
    """Load a generator saved with `save_pretrained`, in eval mode. A directory without
    config.json or weights raises FileNotFoundError; an unreadable config.json, or a reward
    model's directory passed by mistake, a ValueError naming it."""
    path = Path(directory)
    hint = "give a directory written by `gradopt train-generator --work DIR`"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no generator in {path} (config.json missing); run `gradopt train-generator`")
    saved = read_json_object(path / "config.json", what="model config", hint=hint)
    if "gradopt_reward_model" in saved:
        raise ValueError(f"{path} holds a reward model, not a generator; {hint} (reward models go to --reward)")
    if not any((path / name).exists() for name in _WEIGHTS):
        raise FileNotFoundError(f"no generator weights in {path} (none of {', '.join(_WEIGHTS)}; an interrupted "
                                f"save?); {hint}")
    config = fuse_activation(GPT2Config.from_pretrained(str(path)))
    return GPT2LMHeadModel.from_pretrained(str(path), config=config).eval()


def context_length(model) -> int:
    return int(model.config.n_positions)


def check_length(model, n_tokens: int, what: str = "sequence") -> None:
    """Raise a clear error when `n_tokens` exceeds the model's context."""
    n = context_length(model)
    if n_tokens > n:
        raise ValueError(
            f"{what} has {n_tokens} tokens but the model's context is {n}; "
            "shorten it (e.g. edit fewer bars) or train a generator with a longer context"
        )


def pad_ids(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows of different lengths (lists of ints or 1-d tensors) -> (ids (b, t), attention
    mask (b, t)), right-padded with `pad_id` to the longest row: the library's one padding of ids
    (`encode_batch` pads texts the same way through the tokenizer)."""
    if len(rows) == 0:
        raise ValueError("pad_ids needs at least one row of token ids")
    t = max(len(r) for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def encode_batch(
    tokenizer: PreTrainedTokenizerFast, texts: list[str], model=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (ids (b, t), attention_mask (b, t)) with BOS/EOS, right-padded."""
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    if model is not None:
        check_length(model, enc["input_ids"].shape[1])
    return enc["input_ids"], enc["attention_mask"]


def sequence_log_probs(logits: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token given the logits of a pass over `ids` -> (b, t-1).

    logits (b, t, v) from ``model(input_ids=ids)``; ids (b, t); attention_mask (b, t), 1 on real
    tokens. Entry [:, i] is ``log p(ids[:, i+1] | ids[:, :i+1])``, zero where ids[:, i+1] is padding.
    The one log-prob primitive of the library: sampling scores, the training loss's evaluation,
    the ascent's discrete log-likelihood and any preference loss (DPO, RLOO) go through it.
    Computed in the dtype of `logits` (cast them first to choose it).

    Naive equivalent::

        out[b, i] = log_softmax(logits[b, i])[ids[b, i + 1]] * attention_mask[b, i + 1]
    """
    logp = torch.gather(F.log_softmax(logits[:, :-1], -1), -1, ids[:, 1:, None])[..., 0]  # (b, t-1)
    return logp * attention_mask[:, 1:].to(logp.dtype)


def token_log_probs(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log p(ids[:, i] | ids[:, :i]) for i >= 1 under `model`, in float32 -> (b, t-1), zero at
    padding (`sequence_log_probs` over one forward pass)."""
    check_length(model, ids.shape[1])
    if attention_mask is None:
        attention_mask = torch.ones_like(ids)
    logits = model(input_ids=ids, attention_mask=attention_mask).logits  # (b, t, v)
    return sequence_log_probs(logits.float(), ids, attention_mask)


@torch.no_grad()
def log_likelihood(
    model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """Total log-likelihood of each sequence (BOS excluded, EOS included) -> (b,)."""
    model.eval()
    out = []
    for i in range(0, ids.shape[0], batch_size):
        m = None if attention_mask is None else attention_mask[i : i + batch_size]
        out.append(token_log_probs(model, ids[i : i + batch_size], m).sum(-1))
    return torch.cat(out) if out else torch.zeros(0)


def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Log-likelihood of each text under the generator -> (b,)."""
    ids, mask = encode_batch(tokenizer, texts, model)
    return log_likelihood(model, ids, mask, batch_size)


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """How to sample from the generator."""

    temperature: float = 1.0  # softmax temperature; > 0
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # nucleus sampling mass; 1.0 = off
    max_new_tokens: int = 255  # tokens generated after the prefix
    batch_size: int = 32  # sequences per forward pass

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad top_k={self.top_k} / top_p={self.top_p}")
        if self.max_new_tokens <= 0 or self.batch_size <= 0:
            raise ValueError("max_new_tokens and batch_size must be positive")


@torch.no_grad()
def sample_ids(
    model, tokenizer, n: int, cfg: SampleConfig = SampleConfig(), prefix: str = "", seed: int = 0,
    constraint=None, reference: bool = False,
) -> list[list[int]]:
    """`n` samples as token ids (BOS, prefix, continuation, EOS if reached).

    constraint: optional grammar with ``start(prefix_ids) -> state``, ``allowed(state) -> (v,) bool``
    and ``advance(state, token) -> state`` (e.g. `ABCConstraint`): tokens it does not allow get
    probability 0 and the rest are renormalised before temperature, top-k and top-p apply.
    reference: run the model on every row until the whole batch has ended (the plain loop, kept
    as the yardstick). By default a row that has ended leaves the model's batch and its KV cache
    (when the cache can select rows); its draws are thrown away either way, and a draw of one row
    does not depend on the others' probabilities, so the samples are the same.
    """
    model.eval()
    prefix_ids = [tokenizer.bos_token_id] + tokenizer(prefix, add_special_tokens=False)["input_ids"]
    max_new = min(cfg.max_new_tokens, context_length(model) - len(prefix_ids))
    if max_new <= 0:
        check_length(model, len(prefix_ids) + 1, "prefix")
    gen = torch.Generator().manual_seed(seed)
    # transformers 5 renamed the forward's `past_key_values` to `cache`; older versions know only the first
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    results: list[list[int]] = []
    for start in range(0, n, cfg.batch_size):
        b = min(cfg.batch_size, n - start)
        ids = torch.tensor([prefix_ids] * b)
        done = torch.zeros(b, dtype=torch.bool)
        states = [constraint.start(prefix_ids)] * b if constraint is not None else None
        past = None
        live = torch.arange(b)  # the rows the model still runs on
        step_in = ids
        for _ in range(max_new):
            attn = torch.ones(len(live), ids.shape[1], dtype=torch.long)
            out = model(input_ids=step_in, attention_mask=attn, use_cache=True, **{cache_kw: past})
            past = out[cache_kw]
            logits = out.logits[:, -1].float() / cfg.temperature  # (live rows, v)
            if len(live) < b:  # ended rows draw from uniform logits; their draws become padding
                logits = torch.zeros(b, logits.shape[-1]).index_copy_(0, live, logits)
            logits[:, tokenizer.pad_token_id] = -float("inf")
            logits[:, tokenizer.bos_token_id] = -float("inf")
            if tokenizer.unk_token_id is not None:
                logits[:, tokenizer.unk_token_id] = -float("inf")
            if states is not None:
                allowed = torch.stack([constraint.allowed(s) for s in states])
                logits = logits.masked_fill(~allowed, -float("inf"))
            if cfg.top_k:
                kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -float("inf"))
            if cfg.top_p < 1.0:
                sorted_logits, order = torch.sort(logits, descending=True)
                cum = torch.softmax(sorted_logits, -1).cumsum(-1)
                drop = cum - torch.softmax(sorted_logits, -1) > cfg.top_p
                sorted_logits = sorted_logits.masked_fill(drop, -float("inf"))
                logits = torch.full_like(logits, -float("inf")).scatter(-1, order, sorted_logits)
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)  # (b, 1)
            nxt = torch.where(done[:, None], torch.full_like(nxt, tokenizer.pad_token_id), nxt)
            ids = torch.cat([ids, nxt], 1)
            if states is not None:
                # a forced end (a dead end of the grammar) leaves the state as it was
                states = [s if d else (constraint.advance(s, int(x)) or s) for s, d, x in zip(states, done.tolist(), nxt[:, 0])]
            done |= nxt[:, 0] == tokenizer.eos_token_id
            if done.all():
                break
            if not reference and hasattr(past, "batch_select_indices") and done[live].any():
                keep = (~done[live]).nonzero()[:, 0]
                past.batch_select_indices(keep)
                live = live[keep]
            step_in = nxt[live]
        for row in ids.tolist():
            row = [t for t in row if t != tokenizer.pad_token_id]
            results.append(row)
    return results


def sample(model, tokenizer, n: int, cfg: SampleConfig = SampleConfig(), prefix: str = "", seed: int = 0,
           constraint=None) -> list[str]:
    """`n` decoded samples (prefix included); see `sample_ids` for `constraint`."""
    return [decode(tokenizer, row) for row in sample_ids(model, tokenizer, n, cfg, prefix, seed, constraint)]
