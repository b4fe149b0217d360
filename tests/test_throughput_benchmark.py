"""benchmarks/throughput.py on a tiny model: the tables' cells carry consistent rates, FLOP counts
follow the definitions (3x forward for the engine step, 1x for exact scoring), cells predicted too
slow are skipped with a reason, and sampling rows are consistent."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import domains

sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))
throughput = pytest.importorskip("throughput")

TUNES = ["X:1\nT:a\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edcB|\n", "X:2\nT:b\nM:6/8\nL:1/8\nK:G\nGAB cde|dcB AGF|\n"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tok = domains.build_char_tokenizer(TUNES)
    gen, rm = throughput.build_models(tok, n_positions=64)
    return tok, gen, rm


def quiet(_msg: str) -> None:
    pass


def test_tables_are_consistent(models):
    tok, gen, rm = models
    engine = throughput.table(rm, gen, tok, (1, 4), (16, 32), False, 0.0, quiet)
    exact = throughput.table(rm, gen, tok, (1, 4), (16, 32), True, 0.0, quiet)
    assert [(c["batch"], c["length"]) for c in engine] == [(1, 16), (4, 16), (1, 32), (4, 32)]
    for e, x in zip(engine, exact):
        assert (e["batch"], e["length"]) == (x["batch"], x["length"])
        b, t = e["batch"], e["length"]
        for cell in (e, x):
            assert cell["calls"] >= 1 and cell["seconds_per_call"] > 0
            assert cell["sequences_per_s"] == pytest.approx(b / cell["seconds_per_call"])
            assert cell["tokens_per_s"] == pytest.approx(cell["sequences_per_s"] * t)
            assert cell["flops_per_s"] == pytest.approx(cell["flops_per_call"] / cell["seconds_per_call"])
            assert cell["peak_rss_bytes"] is None or cell["peak_rss_bytes"] >= 0
            assert cell["shared_pass"] is True  # a reward model copied from the generator shares its pass
        # forward + backward counts three forward passes; exact scoring one
        assert e["flops_per_call"] == pytest.approx(3 * throughput.forward_flops(gen, b * t, t))
        assert x["flops_per_call"] == pytest.approx(e["flops_per_call"] / 3)
    throughput.add_fractions(engine, 1e9)
    assert all(c["fraction_of_matmul"] == pytest.approx(c["flops_per_s"] / 1e9) for c in engine)


def test_separate_models_count_two_passes(models):
    tok, gen, _ = models
    gen2, rm2 = throughput.build_models(tok, n_positions=64, separate=True)
    (cell,) = throughput.table(rm2, gen2, tok, (2,), (16,), False, 0.0, quiet)
    assert cell["shared_pass"] is False
    assert cell["flops_per_call"] == pytest.approx(3 * (throughput.forward_flops(gen2, 32, 16)
                                                        + throughput.forward_flops(rm2, 32, 16)))


def test_ascent_counts_one_pass_when_the_backbone_is_shared(models):
    from ascent import scoring_flops

    tok, gen, rm = models
    assert scoring_flops(rm, gen, 16) == pytest.approx(throughput.forward_flops(gen, 16, 16))
    gen2, rm2 = throughput.build_models(tok, n_positions=64, separate=True)
    assert scoring_flops(rm2, gen2, 16) == pytest.approx(throughput.forward_flops(gen2, 16, 16)
                                                         + throughput.forward_flops(rm2, 16, 16))


def test_engine_call_is_the_ascent_step(models):
    tok, gen, rm = models
    rows = throughput.random_rows(tok, 3, 20)
    assert all(len(r) == 20 and r[0] == tok.bos_token_id and r[-1] == tok.eos_token_id for r in rows)
    call, shared = throughput.engine_call(rm, gen, tok, rows)
    p, total, grad = call()
    assert total.shape == (3,) and grad.shape == p.shape == (3, 20, len(tok))
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    exact_call, _ = throughput.engine_call(rm, gen, tok, rows, exact=True)
    terms, total_ll, val = exact_call()
    assert val.shape == (3,) and torch.isfinite(val).all()


def test_slow_cells_are_skipped_with_a_reason(models, monkeypatch):
    tok, gen, rm = models
    monkeypatch.setattr(throughput, "MAX_CALL_S", 1e-9)
    cells = throughput.table(rm, gen, tok, (1, 2), (16,), True, 0.0, quiet)
    assert "seconds_per_call" in cells[0]  # nothing to predict from: the first cell always runs
    assert "seconds_per_call" not in cells[1] and "per call" in cells[1]["skipped"]


def test_sampling_rows(models):
    tok, gen, _ = models
    grammar = domains.ABCConstraint.from_texts(tok, TUNES)
    for con in (None, grammar):
        row = throughput.sampling_row(gen, tok, 3, con, seed=0, max_new=12)
        assert row["tunes_per_s"] == pytest.approx(3 / row["seconds"])
        assert row["ms_per_tune"] == pytest.approx(1000 * row["seconds"] / 3)
        assert 1 <= row["mean_tokens_per_tune"] <= row["steps"] <= 12
        assert row["generated_tokens_per_s"] == pytest.approx(row["mean_tokens_per_tune"] * 3 / row["seconds"])
        assert row["flops_per_s"] > 0 and math.isfinite(row["flops_per_s"])
    prof = throughput.sampling_profile(gen, tok, TUNES, 2, 12)
    assert 0 < prof["model_forward_fraction"] < 1 and 0 < prof["constraint_fraction"] < 1
    assert 0 < prof["mask_cache_misses"] <= prof["masks_asked"]
    assert 0 < prof["fractions_arithmetic_fraction"] < prof["constraint_fraction"]


def test_sampling_table_times_both_paths_on_the_same_seeds(models):
    tok, gen, _ = models
    rows, speedups = throughput.sampling_table(gen, tok, TUNES, (2,), 12, quiet)
    assert [(r["mode"], r["path"]) for r in rows] == [(m, p) for m in ("free", "bar_aware_cold", "bar_aware_warm")
                                                      for p in ("reference", "fast")]
    for s, (ref, fast) in zip(speedups, zip(rows[::2], rows[1::2])):
        assert s["speedup"] == pytest.approx(ref["ms_per_tune"] / fast["ms_per_tune"])
        assert s["same_samples"] and ref["samples_sha256"] == fast["samples_sha256"]
