"""The reward model: a GPT-2 transformer with a scalar head, differentiable in its input.

Legend: b batch, t time, v vocab, d embedding width.

Three entry points share one code path::

    score(ids)        = score_embeds(E[ids])          ids (b, t)  -> (b,)
    score_probs(p)    = score_embeds(p @ E)           p   (b, t, v) -> (b,)
    score_embeds(e)   = (head(pool(h)) - μ) / σ       e   (b, t, d) -> (b,)

where E (v, d) is the token embedding, h (b, t, d) the final hidden states, and μ, σ are buffers
set by `calibrate` so reference items score mean 0 / SD 1. Gradients reach `p` and `e`. Pooling:

    "last"  h at the last non-padded position (sequences are ``<bos> body <eos>`` right-padded,
            so that is the EOS): the network must gather the whole tune into one position;
    "mean"  Σ_t m_t h_t / Σ_t m_t over non-padded positions: a sum of local judgements, which
            suits rewards that are averages of local features (steps, leaps, key fit);
    "mean+last"  both, concatenated (b, 2d): local averages and what the end of the tune sees
            (e.g. whether it closes on the tonic).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2Model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


POOLINGS = ("last", "mean", "mean+last")


class RewardModel(nn.Module):
    """GPT-2 backbone + linear head scoring whole sequences; `pooling` in `POOLINGS`."""

    def __init__(self, config: GPT2Config, pooling: str = "last") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        from domains import fuse_activation

        self.config = fuse_activation(config)
        self.pooling = pooling
        self.transformer = GPT2Model(config)
        self.head = nn.Linear(config.n_embd * (2 if pooling == "mean+last" else 1), 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))

    @classmethod
    def from_generator(cls, generator, pooling: str = "last") -> "RewardModel":
        """A reward model whose transformer starts as a copy of `generator`'s (a GPT2LMHeadModel)."""
        config = GPT2Config.from_dict(generator.config.to_dict())
        model = cls(config, pooling)
        model.transformer.load_state_dict(generator.transformer.state_dict())
        return model.to(next(generator.parameters()).dtype)

    def embedding_matrix(self) -> torch.Tensor:
        """The token embedding E -> (v, d)."""
        return self.transformer.wte.weight

    def _check(self, x: torch.Tensor, ndim: int, attention_mask) -> torch.Tensor:
        if x.dim() != ndim:
            raise ValueError(f"expected a {ndim}-d input, got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        if t > self.config.n_positions:
            raise ValueError(
                f"sequence has {t} tokens but the reward model's context is {self.config.n_positions}; "
                "shorten it or use a model with a longer context"
            )
        if attention_mask is None:
            return torch.ones(b, t, dtype=torch.long, device=x.device)
        if attention_mask.shape != (b, t):
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != {(b, t)}")
        if not bool((attention_mask.sum(1) > 0).all()):
            raise ValueError("every sequence needs at least one unmasked token")
        return attention_mask.long()

    def pool_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled final hidden state for embeddings e (b, t, d) -> (b, d); the head's input."""
        mask = self._check(e, 3, attention_mask)
        h = self.transformer(inputs_embeds=e, attention_mask=mask).last_hidden_state  # (b, t, d)
        return self.pool_hidden(h, mask)

    def pool_hidden(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool final hidden states h (b, t, d) under `mask` (b, t) -> (b, d), or (b, 2d) for "mean+last"."""
        m = mask.to(h.dtype)
        mean = torch.einsum("btd,bt->bd", h, m) / m.sum(1, keepdim=True)
        if self.pooling == "mean":
            return mean
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = h[torch.arange(h.shape[0], device=h.device), (mask * (positions + 1)).argmax(1)]  # last non-padded
        return last if self.pooling == "last" else torch.cat([mean, last], -1)

    def raw_score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised head output for embeddings e (b, t, d) -> (b,)."""
        return self.head(self.pool_embeds(e, attention_mask)).squeeze(-1)

    def score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised reward for input embeddings e (b, t, d) -> (b,)."""
        return (self.raw_score_embeds(e, attention_mask) - self.norm_mean) / self.norm_std

    def score_hidden(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised reward from final hidden states h (b, t, d) computed elsewhere -> (b,).

        For callers that already ran this model's transformer (or one with identical weights, such
        as the generator a probe was fitted on): one pass then serves the generator and the reward."""
        raw = self.head(self.pool_hidden(h, attention_mask.long())).squeeze(-1)
        return (raw - self.norm_mean) / self.norm_std

    def embed_probs(self, p: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token distributions p (b, t, v), checked, as input embeddings p @ E -> (b, t, d)."""
        self._check(p, 3, attention_mask)
        E = self.embedding_matrix()
        if p.shape[-1] != E.shape[0]:
            raise ValueError(f"p has {p.shape[-1]} token classes but the vocabulary has {E.shape[0]}")
        return torch.einsum("btv,vd->btd", p.to(E.dtype), E)

    def embed_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (b, t), checked, as input embeddings (the lookup equals one_hot(ids) @ E)."""
        self._check(ids, 2, attention_mask)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token id out of range for vocabulary size {self.config.vocab_size}")
        return self.transformer.wte(ids)

    def score_probs(self, p: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reward for token distributions p (b, t, v) (soft one-hots), via p @ E -> (b,)."""
        return self.score_embeds(self.embed_probs(p, attention_mask), attention_mask)

    def score(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reward for token ids (b, t) -> (b,); the embedding lookup equals one_hot(ids) @ E."""
        return self.score_embeds(self.embed_ids(ids, attention_mask), attention_mask)

    forward = score

    @torch.no_grad()
    def features(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 batch_size: int = 64) -> torch.Tensor:
        """Batched, gradient-free pooled features (the head's input) of token ids (b, t) -> (b, d)."""
        return self._batched(ids, attention_mask, batch_size, self.pool_embeds)

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                batch_size: int = 64, raw: bool = False) -> torch.Tensor:
        """Batched, gradient-free scores (normalised unless `raw`) -> (b,); trims padding per batch."""
        r = self._batched(ids, attention_mask, batch_size, self.raw_score_embeds)
        return r if raw else (r - self.norm_mean) / self.norm_std

    def _batched(self, ids, attention_mask, batch_size, fn) -> torch.Tensor:
        was_training = self.training
        self.eval()
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        out = []
        for i in range(0, ids.shape[0], batch_size):
            m = attention_mask[i : i + batch_size]
            t = int(m.sum(1).max())
            out.append(fn(self.transformer.wte(ids[i : i + batch_size, :t]), m[:, :t]))
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def calibrate(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  batch_size: int = 64) -> None:
        """Set the output buffers so these reference items score mean 0 / SD 1."""
        r = self.predict(ids, attention_mask, batch_size, raw=True)
        if len(r) < 2:
            raise ValueError("calibration needs at least two reference items")
        self.norm_mean.fill_(float(r.mean()))
        self.norm_std.fill_(max(float(r.std()), 1e-6))

    def reset_normalization(self) -> None:
        self.norm_mean.fill_(0.0)
        self.norm_std.fill_(1.0)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (GPT-2 config + reward-model marker) and model.safetensors."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["gradopt_reward_model"] = {"version": 1, "head": "linear", "pooling": self.pooling}
        (path / CONFIG_NAME).write_text(json.dumps(cfg, indent=1, default=str))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME))

    @classmethod
    def _from_marker(cls, config: GPT2Config, marker: dict) -> "RewardModel":
        """An untrained model of the kind the saved marker describes (subclasses override)."""
        if "members" in marker:
            raise ValueError("this directory holds a reward ensemble; load it with RewardEnsemble.from_pretrained "
                             "or rewardmodels.load_reward_model")
        return cls(config, marker.get("pooling", "last"))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RewardModel":
        """Load a model written by `save_pretrained`, in eval mode."""
        path = Path(directory)
        if not (path / CONFIG_NAME).exists() or not (path / WEIGHTS_NAME).exists():
            raise FileNotFoundError(f"no reward model in {path}; train one with `gradopt train-reward`")
        cfg = json.loads((path / CONFIG_NAME).read_text())
        if "gradopt_reward_model" not in cfg:
            raise ValueError(f"{path} holds a model that is not a gradopt reward model (a generator?)")
        marker = cfg.pop("gradopt_reward_model")
        model = cls._from_marker(GPT2Config.from_dict(cfg), marker)
        state = load_file(str(path / WEIGHTS_NAME))
        dtype = next(iter(state.values())).dtype
        model.to(dtype).load_state_dict(state)
        return model.eval()
