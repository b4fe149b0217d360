import dataclasses
import json

import pytest
import torch

import domains
import domains._train as train_mod


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_lowers_validation_loss(small_texts, char_tokenizer, tmp_path):
    model = domains.build_generator("tiny", char_tokenizer, seed=0)
    val = domains.encode_corpus(char_tokenizer, small_texts[-10:])
    before = domains.evaluate(model, val, char_tokenizer.pad_token_id)
    cfg = domains.GeneratorTrainConfig(max_steps=30, batch_size=4, eval_every=15, lr=3e-3, warmup=5)
    summary = domains.train_generator(model, char_tokenizer, small_texts[:-10], small_texts[-10:], cfg,
                                      tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 30
    assert summary["val_cross_entropy"] < before - 0.5
    log = [json.loads(l) for l in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [15, 30]
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "model.safetensors").exists()


def test_resume_continues_where_it_stopped(small_texts, char_tokenizer, tmp_path, monkeypatch):
    cfg = domains.GeneratorTrainConfig(max_steps=8, batch_size=4, eval_every=4, warmup=2)
    straight = domains.build_generator("tiny", char_tokenizer, seed=0)
    domains.train_generator(straight, char_tokenizer, small_texts, small_texts[:5], cfg, tmp_path / "a",
                            progress=False)

    # Interrupt the second run during step 6 (after the step-4 checkpoint).
    real_loss, calls = train_mod.lm_loss, {"n": 0}

    def flaky(model, ids, mask):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
        return real_loss(model, ids, mask)

    monkeypatch.setattr(train_mod, "lm_loss", flaky)
    interrupted = domains.build_generator("tiny", char_tokenizer, seed=0)
    with pytest.raises(KeyboardInterrupt):
        domains.train_generator(interrupted, char_tokenizer, small_texts, small_texts[:5], cfg, tmp_path / "b",
                                progress=False)
    monkeypatch.setattr(train_mod, "lm_loss", real_loss)
    resumed = domains.build_generator("tiny", char_tokenizer, seed=1)  # different init: must be overwritten
    summary = domains.train_generator(resumed, char_tokenizer, small_texts, small_texts[:5], cfg, tmp_path / "b",
                                      progress=False)
    assert summary["steps"] == 8
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_unigram_baseline_is_worse_than_uniform_bound(small_texts, char_tokenizer):
    data = domains.encode_corpus(char_tokenizer, small_texts)
    uni = domains.unigram_cross_entropy(data[:50], data[50:], len(char_tokenizer))
    assert 1.0 < uni < torch.log(torch.tensor(float(len(char_tokenizer)))).item()


def test_bad_train_config():
    with pytest.raises(ValueError):
        domains.GeneratorTrainConfig(max_steps=0)
    with pytest.raises(ValueError):
        domains.GeneratorTrainConfig(lr=-1)


def test_old_config_names_are_deprecated_aliases_unused_in_the_repository():
    import re
    from pathlib import Path

    import rewardmodels

    with pytest.warns(DeprecationWarning, match="GeneratorTrainConfig"):
        assert domains.TrainConfig is domains.GeneratorTrainConfig
    with pytest.warns(DeprecationWarning, match="RewardTrainConfig"):
        assert rewardmodels.TrainConfig is rewardmodels.RewardTrainConfig
    assert domains.GeneratorTrainConfig is not rewardmodels.RewardTrainConfig
    root = Path(__file__).resolve().parents[1]
    bare = re.compile(r"(?<![A-Za-z_])TrainConfig\b")
    users = [str(p.relative_to(root)) for d in ("domains", "rewardmodels", "gradopt", "distill", "benchmarks")
             for p in (root / d).rglob("*.py")
             if any(bare.search(line) and not line.lstrip().startswith("#") and '"TrainConfig"' not in line
                    for line in p.read_text().splitlines())]  # comments and the aliases' own lines excepted
    assert users == [], f"the old config name is still used in {users}"


def _scripted_evaluate(monkeypatch, values):
    """`evaluate` that returns `values` in turn and records the weights it was shown."""
    seen, it = [], iter(values)

    def fake(model, val, pad_id):
        seen.append(_weights(model))
        return next(it)

    monkeypatch.setattr(train_mod, "evaluate", fake)
    return seen


@pytest.mark.parametrize("keep_best", [True, False])
def test_keep_best_returns_the_weights_of_the_lowest_validation_loss(small_texts, char_tokenizer, tmp_path,
                                                                     monkeypatch, keep_best):
    seen = _scripted_evaluate(monkeypatch, [3.0, 1.0, 2.0])  # step 6 is best, the last (step 9) is not
    cfg = domains.GeneratorTrainConfig(max_steps=9, batch_size=4, eval_every=3, warmup=2, keep_best=keep_best)
    model = domains.build_generator("tiny", char_tokenizer, seed=0)
    summary = domains.train_generator(model, char_tokenizer, small_texts, small_texts[:5], cfg, tmp_path,
                                      progress=False)
    expected = seen[1] if keep_best else seen[2]
    saved = _weights(domains.load_generator(tmp_path))
    assert all(torch.allclose(saved[k], expected[k]) for k in expected)
    assert not all(torch.allclose(seen[1][k], seen[2][k]) for k in seen[1])  # the two differ
    assert summary["val_cross_entropy"] == (1.0 if keep_best else 2.0)
    assert summary.get("best_step") == (6 if keep_best else None)
    assert (tmp_path / "best.pt").exists() == keep_best


def test_keep_best_survives_a_resume(small_texts, char_tokenizer, tmp_path, monkeypatch):
    cfg = domains.GeneratorTrainConfig(max_steps=6, batch_size=4, eval_every=3, warmup=2, keep_best=True)
    seen = _scripted_evaluate(monkeypatch, [1.0, 2.0])
    domains.train_generator(domains.build_generator("tiny", char_tokenizer, seed=0), char_tokenizer, small_texts,
                            small_texts[:5], cfg, tmp_path, progress=False)
    seen_more = _scripted_evaluate(monkeypatch, [1.5, 1.8])  # the best (1.0, step 3) was written by the first run
    more = dataclasses.replace(cfg, max_steps=12)
    summary = domains.train_generator(domains.build_generator("tiny", char_tokenizer, seed=1), char_tokenizer,
                                      small_texts, small_texts[:5], more, tmp_path, progress=False)
    saved = _weights(domains.load_generator(tmp_path))
    assert all(torch.allclose(saved[k], seen[0][k]) for k in saved)
    assert summary["best_step"] == 3 and summary["val_cross_entropy"] == 1.0 and len(seen_more) == 2
