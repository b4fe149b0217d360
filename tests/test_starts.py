import pytest

from ascent_doubles import TEXTS, tiny_setup
from gradopt import starts_from_generator, starts_from_noise, starts_from_texts


def test_noise_starts_are_framed_random_and_deterministic():
    tok, _, _ = tiny_setup()
    a = starts_from_noise(tok, [5, 9], seed=1)
    assert [len(r) for r in a] == [7, 11]
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    for row in a:
        assert row[0] == tok.bos_token_id and row[-1] == tok.eos_token_id
        assert not specials & set(row[1:-1])
    assert a == starts_from_noise(tok, [5, 9], seed=1) != starts_from_noise(tok, [5, 9], seed=2)


def test_text_starts_refuse_what_does_not_fit():
    tok, _, _ = tiny_setup()
    rows = starts_from_texts(tok, TEXTS)
    assert rows[0][0] == tok.bos_token_id and rows[0][-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="piece 1 has"):
        starts_from_texts(tok, ["ab", "abc" * 30], max_tokens=40)


def test_generator_starts_end_with_eos():
    tok, gen, _ = tiny_setup()
    rows = starts_from_generator(gen, tok, 3, seed=0, max_new_tokens=10)
    assert all(r[0] == tok.bos_token_id and r[-1] == tok.eos_token_id and len(r) <= 12 for r in rows)
