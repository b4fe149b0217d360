"""A reward ensemble: K linear heads on one shared backbone, and their disagreement.

Legend: b batch, t time, v vocab, d width, K members, n rated items.

Each member k is a ridge probe fitted on a bootstrap resample of the rated items (items drawn with
replacement, an item's edits travelling with it), all on the same frozen features, so one forward
pass of the backbone serves every member::

    members(x)   = (H_k(pool(h(x))) - μ_k) / σ_k          (b, K)   μ_k, σ_k: per-member calibration
    mean(x)      = 1/K Σ_k members(x)_k
    sd(x)        = sqrt(1/(K-1) Σ_k (members(x)_k - mean(x))²)
    score(x)     = mean(x) - pessimism * sd(x)             (b,)     the lower-confidence-bound reward

Members agree where the rated items pin the head down and disagree away from them (a bootstrap
estimate of the probe's own uncertainty), which is what the engine's do-no-harm guard reads. The
ensemble is a `RewardModel` (same pooling, same three input kinds, same save/load layout) whose
head has K outputs. Musical annotations (``annotations="abc"``, ``annotation_features``) work as in
`RewardModel`: the members share the backbone, the annotation channel W_a and the pooled
annotations, so one annotated forward pass still serves all K heads; `score`, `score_probs`, `score_embeds` and `score_hidden` return the
pessimistic score (the mean when `pessimism` = 0, the default) and are differentiable in their input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import GPT2Config

from ._model import CONFIG_NAME, RewardModel, reward_config
from ._train import DEFAULT_L2, _ridge, check_probe_inputs, probe_features

DEFAULT_MEMBERS = 64
"""Members of an ensemble unless told otherwise. The guard reads the members' SD, an estimate from K
bootstrap heads whose own relative error is about 1 / sqrt(2 (K - 1)) (35% at K = 5, 9% at 64), so
with few members the SD mostly ranks items by chance. On the selection split of
benchmarks/music_ascent.py --quick (``practical_music``, cached features, 10 bootstrap seeds),
Spearman(SD, |error|) on held-out items was 0.21 ± 0.10 with 5 members, 0.29 ± 0.04 with 32 and
0.31 ± 0.02 with 64, the mean's fidelity unchanged (corpus r 0.76 -> 0.77, pitch pairs 0.87 -> 0.88);
random feature subspaces and posterior draws of the ridge probe ranked as well or better but made
the guard refuse most gains or lost fidelity on the unrated collection. Heads are one linear
layer, so scoring costs the same; fitting 64 heads took 5.6 CPU s against 0.45 for 5 (357 items,
181 features, a loaded machine). In the benchmark itself (music_ascent_quick[_select].json;
the 5-member runs, at 5868f25 on the same generator, are not committed) the pooled Spearman
went 0.13 -> 0.33 (select) and 0.02 -> 0.21 (report); with ``practical_music`` the default
guard's mean Δu rose on select (corpus +0.43 -> +0.47, unrated collection +0.31 -> +0.38, none
worse either way); on report it fell on test tunes (+0.43 -> +0.31, worse 12% -> 25%) and rose on
airdsAirs (+0.11 -> +0.20, worse 19% -> 6%). With ``practical_bar_aware`` (a probe that does not
track the utility there, r < 0) the guard lost more with 64 members (select test tunes -0.01 ->
-0.42), a guess being that 5 noisy members refused its edits by chance (not measured)."""


class RewardEnsemble(RewardModel):
    """`members` linear heads on one GPT-2 backbone; scores are mean - pessimism * sd over members."""

    def __init__(self, config: GPT2Config, pooling: str = "mean", members: int = DEFAULT_MEMBERS,
                 pessimism: float = 0.0, bar_ids=None, **annotations) -> None:
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        super().__init__(config, pooling, bar_ids=bar_ids, **annotations)
        self.members = members
        self.pessimism = _check_pessimism(pessimism)
        self.head = nn.Linear(self.head.in_features, members)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(members))
        self.register_buffer("norm_std", torch.ones(members))

    @classmethod
    def from_generator(cls, generator, pooling: str = "mean", members: int = DEFAULT_MEMBERS,
                       pessimism: float = 0.0, bar_ids=None, **annotations) -> "RewardEnsemble":
        """An ensemble whose backbone is a copy of `generator`'s transformer (a GPT2LMHeadModel);
        `bar_ids`, `annotations`, `token_texts`, `annotation_features` as in `RewardModel.from_generator`."""
        config = GPT2Config.from_dict(generator.config.to_dict())
        model = cls(config, pooling, members, pessimism, bar_ids=bar_ids, **annotations)
        model.transformer.load_state_dict(generator.transformer.state_dict())
        return model.to(next(generator.parameters()).dtype)

    # -- members ---------------------------------------------------------------------------------
    def members_hidden(self, h: torch.Tensor, attention_mask: torch.Tensor, bars=None) -> torch.Tensor:
        """Normalised member scores from final hidden states h (b, t, d) -> (b, K); `bars` (b, t)
        as in `pool_hidden` (the bar poolings need them)."""
        return (self.head(self.pool_hidden(h, attention_mask.long(), bars)) - self.norm_mean) / self.norm_std

    def members_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None, bars=None,
                       annots=None) -> torch.Tensor:
        """Normalised member scores of input embeddings e (b, t, d) -> (b, K) (`bars`, `annots` as in
        `pool_embeds`: by default from e's nearest tokens)."""
        return (self.head(self.pool_embeds(e, attention_mask, bars, annots)) - self.norm_mean) / self.norm_std

    def members_probs(self, p: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Member scores of token distributions p (b, t, v) via p @ E -> (b, K); annotations (if
        any) of the argmax tokens, as `RewardModel.score_probs`."""
        return self.members_embeds(self.embed_probs(p, attention_mask), attention_mask, self.bars_from_probs(p),
                                   self.annotations_from_probs(p, attention_mask))

    def score_members(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Member scores of token ids (b, t) -> (b, K); annotations (if any) of the decoded text."""
        return self.members_embeds(self.embed_ids(ids, attention_mask), attention_mask, self.bars_from_ids(ids),
                                   self.annotations_from_ids(ids, attention_mask))

    @staticmethod
    def mean_sd(members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (b,), sd (b,)) over the last axis of member scores (b, K); sd with K - 1."""
        return members.mean(-1), members.std(-1, correction=1)

    def aggregate(self, members: torch.Tensor, pessimism: float | None = None) -> torch.Tensor:
        """mean - k * sd of member scores (b, K) -> (b,); k = `pessimism` (default: the model's)."""
        k = self.pessimism if pessimism is None else _check_pessimism(pessimism)
        mean, sd = self.mean_sd(members)
        return mean if k == 0 else mean - k * sd

    # -- the RewardModel interface (score_probs and score route through score_embeds) -------------
    def raw_score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         bars=None, annots=None) -> torch.Tensor:
        """Unnormalised member outputs (b, K) (what `calibrate` centres and scales per member)."""
        return self.head(self.pool_embeds(e, attention_mask, bars, annots))

    def score_embeds(self, e: torch.Tensor, attention_mask: torch.Tensor | None = None, bars=None,
                     annots=None) -> torch.Tensor:
        return self.aggregate(self.members_embeds(e, attention_mask, bars, annots))

    def _score_head_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate((self.head(x) - self.norm_mean) / self.norm_std)

    @torch.no_grad()
    def predict_members(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        batch_size: int = 64) -> torch.Tensor:
        """Batched, gradient-free normalised member scores -> (b, K)."""
        return (self._batched(ids, attention_mask, batch_size, self.raw_score_embeds) - self.norm_mean) / self.norm_std

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                batch_size: int = 64, raw: bool = False) -> torch.Tensor:
        """Batched, gradient-free scores (b,) (the aggregate), or raw member outputs (b, K) if `raw`."""
        if raw:
            return self._batched(ids, attention_mask, batch_size, self.raw_score_embeds)
        return self.aggregate(self.predict_members(ids, attention_mask, batch_size))

    @torch.no_grad()
    def calibrate(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  batch_size: int = 64) -> None:
        """Set each member's buffers so these reference items score mean 0 / SD 1 under it."""
        r = self.predict(ids, attention_mask, batch_size, raw=True)  # (n, K)
        if len(r) < 2:
            raise ValueError("calibration needs at least two reference items")
        self.norm_mean.copy_(r.mean(0))
        self.norm_std.copy_(r.std(0).clamp_min(1e-6))

    def save_pretrained(self, directory: str | Path) -> None:
        """As `RewardModel.save_pretrained`, with the member count and pessimism in the marker."""
        super().save_pretrained(directory)
        path = Path(directory) / CONFIG_NAME
        cfg = json.loads(path.read_text())
        cfg["gradopt_reward_model"].update({"head": "ensemble", "members": self.members, "pessimism": self.pessimism})
        path.write_text(json.dumps(cfg, indent=1, default=str))

    @classmethod
    def _from_marker(cls, config: GPT2Config, marker: dict) -> "RewardEnsemble":
        if "members" not in marker:
            raise ValueError("this directory holds a single reward model, not an ensemble; load it with "
                             "RewardModel.from_pretrained or rewardmodels.load_reward_model")
        return cls(config, marker.get("pooling", "mean"), int(marker["members"]), float(marker.get("pessimism", 0.0)),
                   bar_ids=marker.get("bar_ids"), annotations=marker.get("annotations"),
                   token_texts=marker.get("token_texts"),
                   annotation_features=bool(marker.get("annotation_features", False)))


def _check_pessimism(k: float) -> float:
    if not np.isfinite(k) or k < 0:
        raise ValueError(f"pessimism must be a finite number >= 0 (score = mean - pessimism * sd), got {k}")
    return float(k)


def bootstrap_heads(Z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, members: int, seed: int = 0,
                    groups=None) -> tuple[np.ndarray, np.ndarray]:
    """K ridge heads on bootstrap resamples -> (β (K, d), intercepts (K,)).

    Z (n, d) features, y, w (n,) targets and weights. Member k draws n_groups groups with
    replacement (seed + k) and fits `_ridge` with each item's weight times its group's draw count;
    groups (n,) keep an item and its edits together (None: every item is its own group).
    """
    labels = np.arange(len(y)) if groups is None else np.unique(np.asarray(list(groups), dtype=object).astype(str),
                                                                return_inverse=True)[1]
    n_groups = int(labels.max()) + 1
    betas, intercepts = [], []
    for k in range(members):
        draws = np.bincount(np.random.default_rng(seed + k).integers(0, n_groups, n_groups), minlength=n_groups)
        wk = w * draws[labels]
        beta, b = _ridge(Z, y, wk, l2)
        betas.append(beta)
        intercepts.append(b)
    return np.stack(betas), np.asarray(intercepts)


def fit_ensemble(model: RewardEnsemble, ids: torch.Tensor, attention_mask: torch.Tensor, targets, weights=None,
                 l2: float | tuple[float, ...] = DEFAULT_L2, folds: int = 5, seed: int = 0, groups=None) -> dict:
    """Fit every member's head as a bootstrap ridge probe on the frozen backbone (one feature pass).

    ids, attention_mask (n, t); targets, weights (n,) as in `fit_head`, which this mirrors: features
    standardised, λ chosen once by cross-validation on all items (`choose_l2`), then member k fitted
    on bootstrap resample k of the items (`bootstrap_heads`; `groups` as in `fit_head`); an
    "attention" query is trained once on all items first (`probe_features`). Calibrates
    every member on these items. Returns {"l2": λ, "cv_loss": {λ: loss}}.
    """
    if not isinstance(model, RewardEnsemble):
        raise ValueError(f"fit_ensemble needs a RewardEnsemble, got {type(model).__name__}; use fit_head for one model")
    y, w, grid = check_probe_inputs(ids.shape[0], targets, weights, l2, groups)
    # one pass serves every member; an "attention" query is trained once, on all items
    Z, sd, best, cv = probe_features(model, ids, attention_mask, y, w, grid, folds, seed, groups)
    betas, intercepts = bootstrap_heads(Z, y, w, best, model.members, seed, groups)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(betas / sd, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(intercepts, dtype=model.head.bias.dtype))
    model.reset_normalization()
    model.calibrate(ids, attention_mask)
    return {"l2": best, "cv_loss": cv}


def load_reward_model(directory: str | Path) -> RewardModel:
    """A `RewardModel` or `RewardEnsemble` written by `save_pretrained`, whichever the directory holds."""
    path = Path(directory)
    if (path / CONFIG_NAME).exists() and "members" in reward_config(path)["gradopt_reward_model"]:
        return RewardEnsemble.from_pretrained(path)
    return RewardModel.from_pretrained(path)
