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
    "attention"  Σ_t α_t h_t with α = softmax_t(h_t · q) over non-padded positions, q (d,) a learned
            query (a parameter, 0 at construction, where attention pooling equals "mean"): the head
            decides which positions matter. The fine-tune trains q with everything else;
            `fit_head` trains it by a few Adam steps on the frozen hidden states.
    "bars"  per-bar pooling (b, 3d): [mean over bars of each bar's mean, the last bar's mean, the
            first bar's mean], so the head can weigh the ending on its own. Bars are found from the
            tokens, tokenizer-free: a token in `bar_ids` (fixed at construction, saved in the marker;
            `bar_token_ids(tokenizer)` lists the tokens containing '|') closes the bar it ends;
            whatever follows the last bar line (the newline and EOS) joins the last bar; a sequence
            without bar lines is one bar.
    "mean+last+bars"  "mean+last" and "bars" concatenated (b, 5d).

Bar positions per input kind (c (b, t): "this position closes a bar"): ids -> c_t = [id_t ∈ bar_ids]
exactly; probs -> c_t = Σ_{v ∈ bar_ids} p_tv, soft and differentiable (moving mass onto '|' moves
the boundaries); embeds -> c_t = [nearest token of e_t ∈ bar_ids], piecewise constant (the gradient
reaches e through the hidden states only). On one-hots and exact token embeddings all three agree.
With soft c, position t's bar index k_t = min(Σ_{s<t} c_s, max(Σ c, 1) - 1) is fractional and its
hidden state is shared between bars ⌊k_t⌋ and ⌈k_t⌉ by linear interpolation, so features are
piecewise linear in c. The bar poolings have no `score_hidden` (hidden states alone do not say
where the bars are); `score_from_hidden` takes the ids or probabilities beside the hidden states.

Musical annotations (opt-in, ``annotations="abc"``, `domains.ANNOTATORS`): each position also
carries a (b, t, C) annotation a computed by the domain from the decoded text (pitch class from the
tonic, in-scale, interval, duration, beat, bar fullness, last note: `domains.annotate_abc`), and
the transformer reads e + a W_aᵀ, W_a (C, d) learned (zero at construction, where the model equals
one without annotations). ``annotation_features=True`` also hands the head pooled annotations
(b, K·C): their means over the positions of each indicator channel (notes, bar lines) and the last
note's row, so a probe can read them directly. Annotations per input kind: ids -> exactly those of
the decoded text (token texts saved with the model); probs -> those of the argmax tokens; embeds ->
those of the nearest tokens, in both cases constants: the gradient reaches p and e through the
embedding path only, and exact scoring (the engine's verification and polish score ids) recomputes
them. Annotated models have no `score_hidden` (the hidden states depend on the annotations). While
W_a is zero (every probe fit: the backbone and W_a stay frozen) the transformer reads the token
embeddings alone (`reads_plain_embeddings`), so hidden states that the generator computed from the
same tokens serve the reward too: `score_from_hidden`, given the ids or probabilities for the
annotations and bars. The engine uses it to score reward and likelihood in one pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2Model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


ANNOTATIONS = ("abc",)  # kinds of musical annotations a model can read (domains.ANNOTATORS)
POOLINGS = ("last", "mean", "mean+last", "attention", "bars", "mean+last+bars")
POOLING_WIDTH = {"last": 1, "mean": 1, "mean+last": 2, "attention": 1, "bars": 3, "mean+last+bars": 5}  # × d
BAR_POOLINGS = ("bars", "mean+last+bars")  # poolings that need bar positions (and `bar_ids`)


def bar_token_ids(tokenizer) -> list[int]:
    """Ids of the tokenizer's non-special tokens whose text contains '|' (an ABC bar line, alone
    or in ':|', '|]', '||'): the `bar_ids` of a "bars" reward model."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    return [i for i in range(len(tokenizer)) if i not in special and "|" in tokenizer.decode([i])]


def token_texts(tokenizer) -> list[str]:
    """Each token id's text ("" for special tokens): what an annotated reward model decodes ids with."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    return ["" if i in special else tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(i)])
            for i in range(len(tokenizer))]


def pool_annotations(a: torch.Tensor, mask: torch.Tensor, indicators: list[int]) -> torch.Tensor:
    """Pooled annotations a (b, t, C) -> (b, K·C): for each indicator channel k (K of them) the mean
    of a over the unmasked positions where a[..., k] is set (0 when there are none)."""
    a = a * mask[..., None].to(a.dtype)
    out = []
    for k in indicators:
        w = a[..., k]  # (b, t)
        out.append(torch.einsum("bt,btc->bc", w, a) / w.sum(1, keepdim=True).clamp_min(1.0))
    return torch.cat(out, -1)


def bar_pool(h: torch.Tensor, mask: torch.Tensor, closes: torch.Tensor) -> torch.Tensor:
    """[mean over bars, last bar, first bar] of hidden states h (b, t, d) -> (b, 3d).

    mask (b, t) marks non-padded positions; closes (b, t) in [0, 1] says how much position t closes
    a bar (the module docstring's c). A bar's vector is the mean of its positions' hidden states."""
    m = mask.to(h.dtype)
    c = closes.to(h.dtype) * m
    count = c.sum(1, keepdim=True).clamp_min(1.0)  # (b, 1) bars; the trailing segment joins the last
    k = torch.minimum(torch.cumsum(c, 1) - c, count - 1)  # (b, t) bar index of each position
    j = torch.arange(int(count.detach().max().ceil()), dtype=h.dtype, device=h.device)  # (j,)
    a = torch.relu(1 - (k[..., None] - j).abs()) * m[..., None]  # (b, t, j) position-to-bar weights
    bars = torch.einsum("btj,btd->bjd", a, h) / a.sum(1)[..., None].clamp_min(1e-12)  # (b, j, d)
    exists = (count - j).clamp(0, 1)  # (b, j) 1 for each whole bar, fractional for a soft last one
    over_bars = torch.einsum("bj,bjd->bd", exists, bars) / exists.sum(1, keepdim=True)

    def slot(w):  # (b, t) weights -> weighted mean (b, d)
        return torch.einsum("bt,btd->bd", w, h) / w.sum(1, keepdim=True).clamp_min(1e-12)

    last = slot(torch.relu(1 - (k - (count - 1)).abs()) * m)
    first = slot(torch.relu(1 - k) * m)
    return torch.cat([over_bars, last, first], -1)


def reward_config(directory: str | Path) -> dict:
    """The config.json of a reward-model directory, checked: a JSON object whose
    "gradopt_reward_model" marker is an object (else a ValueError naming the file)."""
    from domains import read_json_object

    path = Path(directory) / CONFIG_NAME
    cfg = read_json_object(path, what="reward model config",
                           hint="train the reward model again with `gradopt train-reward`")
    if "gradopt_reward_model" not in cfg:
        raise ValueError(f"{Path(directory)} holds a model that is not a gradopt reward model (a generator?)")
    if not isinstance(cfg["gradopt_reward_model"], dict):
        raise ValueError(f"{path}: its 'gradopt_reward_model' entry is not an object (written by an older version?); "
                         "train the reward model again with `gradopt train-reward`")
    return cfg


def _check_annotations(config, pooling: str, annotations, texts, features: bool) -> None:
    """ValueErrors for an annotation setting a RewardModel cannot have."""
    if annotations is None:
        if features:
            raise ValueError("annotation_features=True needs annotations (e.g. annotations='abc')")
        return
    if annotations not in ANNOTATIONS:
        raise ValueError(f"unknown annotations {annotations!r}; choose from {ANNOTATIONS} or None")
    if texts is None or len(texts) > config.vocab_size or not all(isinstance(x, str) for x in texts):
        raise ValueError("annotations need the text of every token id (at most the vocabulary size, "
                         f"{config.vocab_size}): pass token_texts=rewardmodels.token_texts(tokenizer)")
    if features and pooling == "attention":
        raise ValueError("annotation_features do not combine with 'attention' pooling (its query is trained on "
                         "hidden states alone); choose another pooling or annotation_features=False")


class RewardModel(nn.Module):
    """GPT-2 backbone + linear head scoring whole sequences; `pooling` in `POOLINGS`."""

    def __init__(self, config: GPT2Config, pooling: str = "last", bar_ids=None, annotations: str | None = None,
                 token_texts=None, annotation_features: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        _check_annotations(config, pooling, annotations, token_texts, annotation_features)
        bar_ids = sorted({int(i) for i in bar_ids}) if bar_ids is not None else []
        if pooling in BAR_POOLINGS and not bar_ids:
            raise ValueError(f"pooling {pooling!r} needs the ids of the bar-line tokens: pass "
                             "bar_ids=rewardmodels.bar_token_ids(tokenizer)")
        if bar_ids and not 0 <= min(bar_ids) <= max(bar_ids) < config.vocab_size:
            raise ValueError(f"bar_ids {bar_ids} out of range for vocabulary size {config.vocab_size}")
        from domains import fuse_activation

        self.config = fuse_activation(config)
        self.pooling = pooling
        self.transformer = GPT2Model(config)
        self.bar_ids = bar_ids if pooling in BAR_POOLINGS else []
        self.register_buffer("_bar_ids", torch.tensor(self.bar_ids, dtype=torch.long), persistent=False)
        if pooling == "attention":
            self.query = nn.Parameter(torch.zeros(config.n_embd))  # q = 0: attention equals "mean"
        self.annotations, self.annotation_features = annotations, annotation_features
        width = config.n_embd * POOLING_WIDTH[pooling]
        if annotations is not None:
            from domains import ANNOTATORS

            self.annotator = ANNOTATORS[annotations]
            self.token_texts = list(token_texts) + [""] * (config.vocab_size - len(token_texts))
            channels = len(self.annotator.channels)
            self.annotation_proj = nn.Linear(channels, config.n_embd, bias=False)  # W_a
            nn.init.zeros_(self.annotation_proj.weight)
            self.indicators = [self.annotator.channels.index(c) for c in self.annotator.pool_channels]
            width += channels * len(self.indicators) if annotation_features else 0
        self.head = nn.Linear(width, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))

    @classmethod
    def from_generator(cls, generator, pooling: str = "last", bar_ids=None, **annotations) -> "RewardModel":
        """A reward model whose transformer starts as a copy of `generator`'s (a GPT2LMHeadModel);
        `bar_ids` (the bar poolings need them): `bar_token_ids(tokenizer)`; `annotations`,
        `token_texts` (then needed: `token_texts(tokenizer)`), `annotation_features` as in the class."""
        config = GPT2Config.from_dict(generator.config.to_dict())
        model = cls(config, pooling, bar_ids=bar_ids, **annotations)
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

    def pool_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    bars: torch.Tensor | None = None, annots: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled final hidden state for embeddings e (b, t, d) -> (b, w·d) (+ pooled annotations
        with `annotation_features`); the head's input. bars (b, t): bar closings for the bar
        poolings; annots (b, t, C): annotations of an annotated model (both default: from e's
        nearest tokens)."""
        mask = self._check(e, 3, attention_mask)
        if self.pooling in BAR_POOLINGS and bars is None:
            bars = self.bars_from_embeds(e)
        if self.annotations is not None:
            if annots is None:
                annots = self.annotations_from_embeds(e, mask)
            e = e + self.annotation_proj(annots.to(e.dtype))
        h = self.transformer(inputs_embeds=e, attention_mask=mask).last_hidden_state  # (b, t, d)
        return self._head_input(h, mask, bars, annots)

    def _head_input(self, h: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor | None,
                    annots: torch.Tensor | None) -> torch.Tensor:
        """The head's input from final hidden states: pooled h, then (with `annotation_features`) the
        pooled annotations."""
        pooled = self.pool_hidden(h, mask, bars)
        if self.annotation_features:
            pooled = torch.cat([pooled, pool_annotations(annots.to(h.dtype), mask, self.indicators)], -1)
        return pooled

    @property
    def reads_plain_embeddings(self) -> bool:
        """True when the transformer reads the token embeddings alone: no annotations, or an
        annotation channel W_a that is zero (as after a probe fit). Then a transformer with the same
        weights fed the same tokens (the generator a probe was fitted on) computes this model's
        hidden states, and `score_from_hidden` scores them."""
        return self.annotations is None or not bool(self.annotation_proj.weight.detach().any())

    def score_from_hidden(self, h: torch.Tensor, attention_mask: torch.Tensor, ids: torch.Tensor | None = None,
                          probs: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised reward (b,) from final hidden states h (b, t, d) that a transformer with this
        model's weights computed from the plain embeddings of token ids (b, t) or of distributions
        probs (b, t, v) (exactly one of the two): equals `score(ids)` / `score_probs(probs)`, bars
        and annotations read from ids or probs as those do. Needs `reads_plain_embeddings`."""
        if (ids is None) == (probs is None):
            raise ValueError("score_from_hidden takes exactly one of ids and probs")
        if not self.reads_plain_embeddings:
            raise ValueError("this model's transformer reads its annotations (W_a is not zero), so hidden states "
                             "computed without them do not score it; use score, score_probs or score_embeds")
        mask = attention_mask.long()
        if ids is not None:
            bars, annots = self.bars_from_ids(ids), self.annotations_from_ids(ids, mask)
        else:
            bars, annots = self.bars_from_probs(probs), self.annotations_from_probs(probs, mask)
        return self._score_head_input(self._head_input(h, mask, bars, annots))

    def _score_head_input(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised reward (b,) from the head's input x."""
        return (self.head(x).squeeze(-1) - self.norm_mean) / self.norm_std

    def hidden_states(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states (b, t, d) of token ids (b, t), annotations added for an annotated model."""
        e = self.transformer.wte(ids)
        if self.annotations is not None:
            e = e + self.annotation_proj(self.annotations_from_ids(ids, attention_mask).to(e.dtype))
        return self.transformer(inputs_embeds=e, attention_mask=attention_mask).last_hidden_state

    # -- annotations of each input kind (None for a model without them) ---------------------------
    def annotations_from_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """(b, t, C) annotations of the text that ids (b, t) decode to, exactly (masked positions
        count as empty tokens)."""
        if self.annotations is None:
            return None
        rows = ids.tolist()
        keep = torch.ones_like(ids).tolist() if attention_mask is None else attention_mask.tolist()
        out = np.stack([self.annotator.tokens([self.token_texts[i] if k else "" for i, k in zip(r, m)])
                        for r, m in zip(rows, keep)]) if rows else np.zeros((0, ids.shape[1], len(self.annotator.channels)))
        return torch.as_tensor(out, dtype=self.embedding_matrix().dtype, device=ids.device)

    def annotations_from_probs(self, p: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """(b, t, C) annotations of the argmax tokens of p (b, t, v): constants (no gradient)."""
        return None if self.annotations is None else self.annotations_from_ids(p.detach().argmax(-1), attention_mask)

    def annotations_from_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """(b, t, C) annotations of the nearest tokens of e (b, t, d): constants (no gradient)."""
        return None if self.annotations is None else self.annotations_from_ids(self._nearest(e), attention_mask)

    def _nearest(self, e: torch.Tensor) -> torch.Tensor:
        """(b, t) id of the token embedding nearest to each row of e (b, t, d)."""
        E = self.embedding_matrix().detach().to(e.dtype)
        e = e.detach()
        dist2 = (e * e).sum(-1, keepdim=True) - 2 * e @ E.T + (E * E).sum(-1)  # (b, t, v)
        return dist2.argmin(-1)

    def pool_hidden(self, h: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor | None = None) -> torch.Tensor:
        """Pool final hidden states h (b, t, d) under `mask` (b, t) -> (b, w·d), w = POOLING_WIDTH;
        `bars` (b, t) (the bar poolings need them): how much each position closes a bar."""
        m = mask.to(h.dtype)
        if self.pooling == "attention":
            scores = (h @ self.query.to(h.dtype)).masked_fill(mask == 0, float("-inf"))  # (b, t)
            return torch.einsum("btd,bt->bd", h, torch.softmax(scores, 1))
        if self.pooling in BAR_POOLINGS and bars is None:
            raise ValueError(f"pooling {self.pooling!r} needs the bar positions: score ids, probabilities or "
                             "embeddings (score, score_probs, score_embeds), or pass bars=")
        if self.pooling == "bars":
            return bar_pool(h, mask, bars)
        mean = torch.einsum("btd,bt->bd", h, m) / m.sum(1, keepdim=True)
        if self.pooling == "mean":
            return mean
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = h[torch.arange(h.shape[0], device=h.device), (mask * (positions + 1)).argmax(1)]  # last non-padded
        if self.pooling == "mean+last+bars":
            return torch.cat([mean, last, bar_pool(h, mask, bars)], -1)
        return last if self.pooling == "last" else torch.cat([mean, last], -1)

    # -- bar positions of each input kind (None for poolings that do not read them) ---------------
    def bars_from_ids(self, ids: torch.Tensor) -> torch.Tensor | None:
        """(b, t) 1.0 where ids (b, t) is a bar-line token, exactly."""
        if self.pooling not in BAR_POOLINGS:
            return None
        return torch.isin(ids, self._bar_ids).to(self.embedding_matrix().dtype)

    def bars_from_probs(self, p: torch.Tensor) -> torch.Tensor | None:
        """(b, t) probability of a bar-line token under p (b, t, v): soft, differentiable in p."""
        if self.pooling not in BAR_POOLINGS:
            return None
        return p[..., self._bar_ids].sum(-1)

    def bars_from_embeds(self, e: torch.Tensor) -> torch.Tensor | None:
        """(b, t) 1.0 where the nearest token embedding of e (b, t, d) is a bar-line token."""
        if self.pooling not in BAR_POOLINGS:
            return None
        return torch.isin(self._nearest(e), self._bar_ids).to(e.dtype)

    def raw_score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         bars: torch.Tensor | None = None, annots: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised head output for embeddings e (b, t, d) -> (b,)."""
        return self.head(self.pool_embeds(e, attention_mask, bars, annots)).squeeze(-1)

    def score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     bars: torch.Tensor | None = None, annots: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised reward for input embeddings e (b, t, d) -> (b,); bars, annots as in `pool_embeds`."""
        return (self.raw_score_embeds(e, attention_mask, bars, annots) - self.norm_mean) / self.norm_std

    @property
    def score_hidden(self):
        """`_score_hidden`, for poolings that read only the hidden states; the bar poolings have no
        such route (an AttributeError, so `hasattr(model, "score_hidden")` is False for them)."""
        if self.pooling in BAR_POOLINGS:
            raise AttributeError(f"a {self.pooling!r} reward model has no score_hidden: hidden states do not say "
                                 "where the bars are; use score, score_probs or score_embeds")
        if self.annotations is not None:
            raise AttributeError("an annotated reward model has no score_hidden: its hidden states depend on the "
                                 "annotations; use score, score_probs or score_embeds")
        return self._score_hidden

    def _score_hidden(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised reward from final hidden states h (b, t, d) computed elsewhere -> (b,).

        For callers that already ran this model's transformer (or one with identical weights, such
        as the generator a probe was fitted on): one pass then serves the generator and the reward."""
        return self._score_head_input(self.pool_hidden(h, attention_mask.long()))

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
        return self.score_embeds(self.embed_probs(p, attention_mask), attention_mask, self.bars_from_probs(p),
                                 self.annotations_from_probs(p, attention_mask))

    def score(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reward for token ids (b, t) -> (b,); the embedding lookup equals one_hot(ids) @ E."""
        return self.score_embeds(self.embed_ids(ids, attention_mask), attention_mask, self.bars_from_ids(ids),
                                 self.annotations_from_ids(ids, attention_mask))

    forward = score

    @torch.no_grad()
    def features(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 batch_size: int = 64) -> torch.Tensor:
        """Batched, gradient-free pooled features (the head's input) of token ids (b, t) -> (b, w·d)."""
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
            x = ids[i : i + batch_size, :t]
            args = (self.annotations_from_ids(x, m[:, :t]),) if self.annotations is not None else ()
            out.append(fn(self.transformer.wte(x), m[:, :t], self.bars_from_ids(x), *args))
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
        if self.bar_ids:
            cfg["gradopt_reward_model"]["bar_ids"] = list(self.bar_ids)
        if self.annotations is not None:
            cfg["gradopt_reward_model"].update(annotations=self.annotations, token_texts=self.token_texts,
                                               annotation_features=self.annotation_features)
        (path / CONFIG_NAME).write_text(json.dumps(cfg, indent=1, default=str))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME))

    @classmethod
    def _from_marker(cls, config: GPT2Config, marker: dict) -> "RewardModel":
        """An untrained model of the kind the saved marker describes (subclasses override)."""
        if "members" in marker:
            raise ValueError("this directory holds a reward ensemble; load it with RewardEnsemble.from_pretrained "
                             "or rewardmodels.load_reward_model")
        return cls(config, marker.get("pooling", "last"), bar_ids=marker.get("bar_ids"),
                   annotations=marker.get("annotations"), token_texts=marker.get("token_texts"),
                   annotation_features=bool(marker.get("annotation_features", False)))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "RewardModel":
        """Load a model written by `save_pretrained`, in eval mode."""
        path = Path(directory)
        if not (path / CONFIG_NAME).exists() or not (path / WEIGHTS_NAME).exists():
            raise FileNotFoundError(f"no reward model in {path}; train one with `gradopt train-reward`")
        cfg = reward_config(path)
        marker = cfg.pop("gradopt_reward_model")
        model = cls._from_marker(GPT2Config.from_dict(cfg), marker)
        state = load_file(str(path / WEIGHTS_NAME))
        dtype = next(iter(state.values())).dtype
        model.to(dtype).load_state_dict(state)
        return model.eval()
