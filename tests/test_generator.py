import pytest
import torch
import torch.nn.functional as F

import domains


def test_save_load_gives_identical_logits(tiny_generator, char_tokenizer, tmp_path):
    tiny_generator.save_pretrained(tmp_path)
    again = domains.load_generator(tmp_path)
    ids, mask = domains.encode_batch(char_tokenizer, ["X:1\nK:G\nGAB|", "X:1\nK:D\nd2e|f"], tiny_generator)
    with torch.no_grad():
        a = tiny_generator(input_ids=ids, attention_mask=mask).logits
        b = again(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b)
    assert (tmp_path / "model.safetensors").exists()


def test_load_missing_generator_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-generator"):
        domains.load_generator(tmp_path)


def test_log_likelihood_matches_naive_loop(tiny_generator, char_tokenizer):
    texts = ["X:1\nK:G\nGAB|", "X:1\nK:D\nd2e|fed|"]
    ids, mask = domains.encode_batch(char_tokenizer, texts)
    batched = domains.log_likelihood(tiny_generator, ids, mask)
    for i, text in enumerate(texts):
        one = torch.tensor([char_tokenizer(text)["input_ids"]])
        logits = tiny_generator(input_ids=one).logits[0]
        naive = sum(F.log_softmax(logits[j], -1)[one[0, j + 1]] for j in range(one.shape[1] - 1))
        assert torch.allclose(batched[i], naive, atol=1e-4)


def test_sequence_log_probs_equals_a_naive_per_position_loop_in_float64():
    torch.manual_seed(0)
    b, t, v = 3, 7, 11
    logits = torch.randn(b, t, v, dtype=torch.float64)
    ids = torch.randint(0, v, (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0  # right padding
    mask[2, 2:] = 0
    got = domains.sequence_log_probs(logits, ids, mask)
    assert got.shape == (b, t - 1) and got.dtype == torch.float64
    for r in range(b):
        for i in range(t - 1):
            z = logits[r, i]
            naive = (z[ids[r, i + 1]] - torch.log(torch.exp(z).sum())) if mask[r, i + 1] else 0.0
            assert abs(float(got[r, i]) - float(naive)) < 1e-12, (r, i)


def test_every_log_prob_route_goes_through_the_one_primitive(tiny_generator, char_tokenizer):
    from gradopt._objective import discrete_log_likelihood

    ids, mask = domains.encode_batch(char_tokenizer, ["X:1\nK:G\nGAB|", "X:1\nK:D\nd2e|fed|"])
    with torch.no_grad():
        logits = tiny_generator(input_ids=ids, attention_mask=mask).logits
        ref = domains.sequence_log_probs(logits.float(), ids, mask)
        assert torch.equal(domains.token_log_probs(tiny_generator, ids, mask), ref)
        mean, total = discrete_log_likelihood(tiny_generator, ids, mask)
    assert torch.equal(total, ref.sum(-1))
    assert torch.equal(mean, total / mask[:, 1:].sum(-1))


def test_too_long_sequence_is_a_clear_error(tiny_generator, char_tokenizer):
    long = "X:1\nK:G\n" + "GABc|" * 40  # > 128 tokens, the tiny preset's context
    with pytest.raises(ValueError, match="context"):
        domains.score_texts(tiny_generator, char_tokenizer, [long])


def test_sampling_is_deterministic_and_respects_prefix(tiny_generator, char_tokenizer):
    cfg = domains.SampleConfig(max_new_tokens=20, top_k=10, top_p=0.9)
    a = domains.sample(tiny_generator, char_tokenizer, 5, cfg, prefix="X:1\n", seed=3)
    b = domains.sample(tiny_generator, char_tokenizer, 5, cfg, prefix="X:1\n", seed=3)
    c = domains.sample(tiny_generator, char_tokenizer, 5, cfg, prefix="X:1\n", seed=4)
    assert a == b and a != c
    assert all(s.startswith("X:1\n") for s in a)
    ids = domains.sample_ids(tiny_generator, char_tokenizer, 5, cfg, seed=3)
    specials = {char_tokenizer.unk_token_id, char_tokenizer.pad_token_id}
    assert all(not specials & set(row) for row in ids)
    assert all(len(row) <= 21 for row in ids)


def test_bad_configs_rejected(char_tokenizer):
    with pytest.raises(ValueError):
        domains.SampleConfig(temperature=0)
    with pytest.raises(ValueError, match="unknown preset"):
        domains.build_generator("huge", char_tokenizer)
    with pytest.raises(ValueError, match="divisible"):
        domains.GeneratorPreset(n_layer=1, n_head=3, n_embd=32, n_positions=16)


def test_models_saved_with_unfused_gelu_load_fused_with_the_same_outputs(tiny_generator, char_tokenizer, tmp_path):
    import rewardmodels

    old = type(tiny_generator)(type(tiny_generator.config).from_dict(
        {**tiny_generator.config.to_dict(), "activation_function": "gelu_new"}))
    old.load_state_dict(tiny_generator.state_dict())
    old.eval().save_pretrained(tmp_path)
    again = domains.load_generator(tmp_path)
    assert again.config.activation_function == "gelu_pytorch_tanh"
    assert tiny_generator.config.activation_function == "gelu_pytorch_tanh"  # built fused
    ids, mask = domains.encode_batch(char_tokenizer, ["X:1\nK:G\nGAB|", "X:1\nK:D\nd2e|f"], old)
    with torch.no_grad():
        a = old(input_ids=ids, attention_mask=mask).logits
        b = again(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert rewardmodels.RewardModel.from_generator(old).config.activation_function == "gelu_pytorch_tanh"


def test_pad_ids_right_pads_rows_the_way_the_tokenizer_pads_texts(char_tokenizer):
    texts = ["X:1\nK:G\nGAB|", "K:D\nd2e|fed|cBA|", "ab"]
    rows = char_tokenizer(texts)["input_ids"]
    ids, mask = domains.pad_ids(rows, char_tokenizer.pad_token_id)
    assert [int(m.sum()) for m in mask] == [len(r) for r in rows]
    for i, r in enumerate(rows):
        assert ids[i, : len(r)].tolist() == r
        assert (ids[i, len(r):] == char_tokenizer.pad_token_id).all()
    from_texts = domains.encode_batch(char_tokenizer, texts)
    assert torch.equal(ids, from_texts[0]) and torch.equal(mask, from_texts[1])
    again = domains.pad_ids([torch.tensor(r) for r in rows], char_tokenizer.pad_token_id)
    assert torch.equal(again[0], ids) and torch.equal(again[1], mask)
    with pytest.raises(ValueError, match="at least one row"):
        domains.pad_ids([], 0)


def test_dropping_ended_rows_keeps_the_samples(tiny_generator, char_tokenizer):
    """Free sampling: rows that ended leave the model's batch, yet every row equals the one the
    reference loop (all rows run to the end of the batch) draws with the same seed."""
    cfg = domains.SampleConfig(max_new_tokens=120, batch_size=12, top_k=40, top_p=0.95)
    for seed in (0, 1):
        got = domains.sample_ids(tiny_generator, char_tokenizer, 20, cfg, seed=seed)
        want = domains.sample_ids(tiny_generator, char_tokenizer, 20, cfg, seed=seed, reference=True)
        assert got == want
        ended = [r for r in got if r[-1] == char_tokenizer.eos_token_id]
        assert len(ended) >= 3 and len({len(r) for r in ended}) >= 3  # rows left the batch at different steps
