"""A reward model reading musical annotations: one code path for ids / probabilities / embeddings,
save/load, gradients, a learning task only the annotation channel makes easy, the engine end to end."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import domains
import rewardmodels as rm
from gradopt import AscentConfig, PolishConfig, optimize

torch.set_num_threads(1)

NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAJOR = (0, 2, 4, 5, 7, 9, 11)
KEYS = {"C": 0, "G": 7, "D": 2, "F": 5, "Bb": 10}
ACCIDENTALS = {"^": 1, "_": -1, "=": 0}
TUNES = ["X:1\nM:3/4\nL:1/8\nK:D\nF2 A2 d2|c4 B2|d6|\n", "X:1\nM:2/4\nL:1/8\nK:G\nGA Bc|d2 B2|\n",
         "X:1\nM:3/4\nL:1/8\nK:Am\nA2 ^G2 A2|e6|\n"]


def _setup(features=True, seed=0):
    tok = domains.build_tokenizer(TUNES, "char")
    torch.manual_seed(seed)
    gen = domains.build_generator("tiny", tok).double()
    m = rm.RewardModel.from_generator(gen, pooling="mean", annotations="abc", token_texts=rm.token_texts(tok),
                                      annotation_features=features)
    with torch.no_grad():  # away from W_a = 0, where annotations change nothing
        m.annotation_proj.weight.normal_(std=0.3)
        m.head.weight.normal_()
    return tok, gen, m.eval()


@pytest.mark.parametrize("features", [False, True])
def test_three_routes_agree_and_annotations_matter(features):
    tok, _, m = _setup(features)
    ids, mask = domains.encode_batch(tok, TUNES)
    r = m.score(ids, mask)
    torch.testing.assert_close(m.score_probs(F.one_hot(ids, len(tok)).double(), mask), r)
    torch.testing.assert_close(m.score_embeds(m.embedding_matrix()[ids], mask), r)
    torch.testing.assert_close(m.predict(ids, mask, batch_size=2), r.detach())
    alone = torch.cat([m.score(ids[i : i + 1, : int(mask[i].sum())]) for i in range(len(TUNES))])
    torch.testing.assert_close(alone, r)  # padding is ignored
    blank = m.score_embeds(m.embedding_matrix()[ids], mask, annots=torch.zeros_like(m.annotations_from_ids(ids, mask)))
    assert (blank - r).abs().max() > 1e-3  # the score reads the annotations


def test_saves_and_loads_with_its_annotations(tmp_path):
    tok, _, m = _setup()
    ids, mask = domains.encode_batch(tok, TUNES)
    m.save_pretrained(tmp_path)
    back = rm.load_reward_model(tmp_path)
    assert (back.annotations, back.annotation_features) == ("abc", True)
    torch.testing.assert_close(back.score(ids, mask), m.score(ids, mask))
    marker = json.loads((tmp_path / "config.json").read_text())["gradopt_reward_model"]
    assert marker["token_texts"][: len(tok)] == rm.token_texts(tok)


def test_gradient_reaches_p_and_annotations_are_constants():
    tok, _, m = _setup()
    ids, mask = domains.encode_batch(tok, TUNES)
    p = F.one_hot(ids, len(tok)).double().requires_grad_()
    m.score_probs(p, mask).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[mask.bool()].abs().sum(-1).gt(0).all()
    # annotations follow the argmax token: a small move of probability mass leaves them unchanged
    q = (0.9 * F.one_hot(ids, len(tok)).double() + 0.1 / len(tok))
    torch.testing.assert_close(m.annotations_from_probs(q, mask), m.annotations_from_ids(ids, mask))


def test_bad_settings_name_the_fix():
    tok = domains.build_tokenizer(TUNES, "char")
    gen = domains.build_generator("tiny", tok)
    with pytest.raises(ValueError, match="token_texts"):
        rm.RewardModel.from_generator(gen, pooling="mean", annotations="abc")
    with pytest.raises(ValueError, match="unknown annotations"):
        rm.RewardModel.from_generator(gen, annotations="midi", token_texts=rm.token_texts(tok))
    with pytest.raises(ValueError, match="needs annotations"):
        rm.RewardModel.from_generator(gen, annotation_features=True)
    with pytest.raises(ValueError, match="annotations must be one of"):
        rm.Recipe(annotations="abc")
    assert not hasattr(_setup()[2], "score_hidden")  # the engine must not score hidden states without them


def _in_scale_tunes(n, seed):
    """Tunes whose notes all carry an explicit accidental (no carry within a bar to follow), in one of
    five major keys; target = fraction of notes in the key's scale, worked out here from the letters
    and accidentals. The key line and the accidental decide it together, far apart in the text."""
    rng = np.random.default_rng(seed)
    texts, target = [], []
    for _ in range(n):
        key = str(rng.choice(list(KEYS)))
        notes, inside = [], []
        for _ in range(12):
            acc, letter = str(rng.choice(list(ACCIDENTALS))), str(rng.choice(list("CDEFGAB")))
            notes.append(acc + letter)
            inside.append((NATURAL[letter] + ACCIDENTALS[acc] - KEYS[key]) % 12 in MAJOR)
        texts.append(f"X:1\nM:3/4\nL:1/8\nK:{key}\n{''.join(notes[:6])}|{''.join(notes[6:])}|\n")
        target.append(np.mean(inside))
    return texts, np.array(target)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_annotation_channel_lets_a_short_fine_tune_learn_key_fit(seed):
    """A few fine-tune steps on the in-scale fraction: through the input channels (no pooled
    annotation features) the model tracks it on held-out tunes; without them it barely does."""
    texts, y = _in_scale_tunes(240, seed)
    tok = domains.build_tokenizer(texts, "char")
    ids, mask = domains.encode_batch(tok, texts)
    r = {}
    for with_annotations in (False, True):
        torch.manual_seed(seed)
        gen = domains.build_generator("tiny", tok)
        kw = {"annotations": "abc", "token_texts": rm.token_texts(tok)} if with_annotations else {}
        m = rm.RewardModel.from_generator(gen, pooling="mean", **kw)
        cfg = rm.RewardTrainConfig(steps=60, batch_size=32, lr=3e-3, seed=seed)
        rm.train_reward_model(m, ids[:160], mask[:160], y[:160], None, cfg)
        r[with_annotations] = np.corrcoef(m.predict(ids[160:], mask[160:]).numpy(), y[160:])[0, 1]
    assert r[True] > 0.7 and r[True] > r[False] + 0.3, r


def test_optimize_runs_end_to_end_with_an_annotated_model():
    tok, gen, m = _setup()
    init = [tok(t)["input_ids"] for t in TUNES]
    cfg = AscentConfig(trust=None, steps=6, check_every=2, polish=PolishConfig(rounds=1, top_k=3, candidates=4))
    out = optimize(init, m, gen.eval(), cfg, tokenizer=tok)
    for row in out.rows:
        ids = torch.tensor([row.tokens])
        assert row.reward_after == pytest.approx(float(m.score(ids).detach()), abs=1e-9)  # verified by exact scoring
        assert row.reward_after >= row.reward_before - 1e-9
