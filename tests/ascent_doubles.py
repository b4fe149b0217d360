"""Test doubles for the ascent tests: a tiny reward model with the `rewardmodels.RewardModel`
interface (score / score_probs / score_embeds / embedding_matrix), and tiny models in float64."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from domains import build_char_tokenizer

# Tiny models: one thread is much faster than two contended ones on a shared 2-core machine.
torch.set_num_threads(1)

TEXTS = ["X:1\nM:4/4\nK:G\nGABc dedB|cBAG E2D2|\n", "X:2\nM:6/8\nK:D\nFAd fed|cBA GFE|\n"]


class TinyReward(torch.nn.Module):
    """GPT-2 backbone + linear head, pooled at the last non-padded position; one code path for
    ids, soft one-hots (p @ E) and embeddings."""

    def __init__(self, vocab: int, n_positions: int = 64, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        cfg = GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.config = cfg
        self.backbone = GPT2Model(cfg)
        self.head = torch.nn.Linear(16, 1)

    def embedding_matrix(self) -> torch.Tensor:
        return self.backbone.wte.weight

    def score_embeds(self, e, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones(e.shape[:2], dtype=torch.long)
        h = self.backbone(inputs_embeds=e, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(-1) - 1
        return self.head(h[torch.arange(h.shape[0]), last])[:, 0]

    def score_probs(self, p, attention_mask=None):
        return self.score_embeds(p @ self.embedding_matrix(), attention_mask)

    def score(self, ids, attention_mask=None):
        return self.score_embeds(self.embedding_matrix()[ids], attention_mask)


class PoisonReward(torch.nn.Module):
    """Wraps a reward model and returns NaN for rows whose position 1 holds `poison` (by argmax)."""

    def __init__(self, inner: TinyReward, poison: int):
        super().__init__()
        self.inner, self.poison, self.config = inner, poison, inner.config

    def embedding_matrix(self):
        return self.inner.embedding_matrix()

    def _mask(self, hit, s):
        return torch.where(hit, torch.full_like(s, float("nan")), s)

    def score(self, ids, attention_mask=None):
        return self._mask(ids[:, 1] == self.poison, self.inner.score(ids, attention_mask))

    def score_probs(self, p, attention_mask=None):
        return self._mask(p[:, 1].argmax(-1) == self.poison, self.inner.score_probs(p, attention_mask))

    def score_embeds(self, e, attention_mask=None):
        d = torch.cdist(e[:, 1], self.embedding_matrix())
        return self._mask(d.argmin(-1) == self.poison, self.inner.score_embeds(e, attention_mask))


def tiny_setup(n_positions: int = 64, seed: int = 0):
    """(tokenizer, generator, reward model), all float64 and tiny."""
    tok = build_char_tokenizer(TEXTS)
    torch.manual_seed(seed)
    gen = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).double().eval()
    rm = TinyReward(len(tok), n_positions, seed + 1).double().eval()
    return tok, gen, rm


def encode(tok, texts):
    return [tok(t)["input_ids"] for t in texts]


def save_tiny_models(directory, tok, n_positions: int):
    """A 1-layer generator (`directory/gen`, with its tokenizer) and a reward model initialised
    from it (`directory/rm`, head seeded with 1), as the command-line tests load them -> generator."""
    import domains
    from rewardmodels import RewardModel

    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=n_positions),
                                  tok, seed=0)
    gen.save_pretrained(directory / "gen")
    domains.save_tokenizer(tok, directory / "gen")
    torch.manual_seed(1)
    RewardModel.from_generator(gen).save_pretrained(directory / "rm")
    return gen
