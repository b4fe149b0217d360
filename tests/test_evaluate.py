"""distill.evaluate and its metrics: each on inputs whose answer is known, then the whole
evaluation of a tiny run."""

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

import distill
import domains
from ascent_doubles import TEXTS
from distill_doubles import lm_steps, noop, perturbed, tiny_task


class ConstRater:
    """A rater whose utility is the text length (known per text)."""

    def utility(self, texts):
        return np.array([float(len(t)) for t in texts])


def test_distinct_ngrams_of_known_strings():
    assert distill.distinct_ngrams(["abcd"], 1) == 1.0
    assert distill.distinct_ngrams(["aaaa"], 1) == 0.25  # one unique unigram out of four
    assert distill.distinct_ngrams(["abab"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distill.distinct_ngrams(["abc", "abc"], 3) == 0.5  # the same trigram twice
    assert distill.distinct_ngrams([[1, 2, 3], [3, 2, 1]], 2) == 1.0  # token ids work too
    assert distill.distinct_ngrams(["ab"], 3) == 0.0
    with pytest.raises(ValueError, match="n >= 1"):
        distill.distinct_ngrams(["ab"], 0)


def test_pairwise_distance():
    assert distill.pairwise_distance(["abc", "abc", "abc"]) == 0.0
    assert distill.pairwise_distance(["aaaa", "bbbb"]) == 1.0
    assert distill.pairwise_distance(["abcd", "abce"]) == pytest.approx(0.25)
    assert distill.pairwise_distance(["one"]) is None


def test_copied_fraction_corpus_tune_and_novel_string():
    got = distill.copied_fraction([TEXTS[0], "qqqqqqqqqqqq", "short"], TEXTS)
    assert got[0] == 1.0
    assert got[1] == 0.0
    assert np.isnan(got[2])  # no 8-gram at all
    half = TEXTS[0][:10] + "#" * 10  # 3 of its 13 8-grams are copied
    assert distill.copied_fraction([half], TEXTS)[0] == pytest.approx(3 / 13)


def test_js_divergence():
    p = Counter({"a": 3, "b": 1})
    assert distill.js_divergence(p, Counter({"a": 6, "b": 2})) == pytest.approx(0.0, abs=1e-12)  # same shape
    assert distill.js_divergence(p, Counter({"a": 1, "b": 3})) > 0
    assert distill.js_divergence(Counter({"a": 1}), Counter({"b": 1})) == pytest.approx(1.0)  # disjoint: 1 bit
    d1, d2 = distill.js_divergence(p, Counter({"b": 5})), distill.js_divergence(Counter({"b": 5}), p)
    assert d1 == pytest.approx(d2)
    assert np.isnan(distill.js_divergence(p, Counter()))


def test_key_signature_and_note_reader():
    assert distill.key_signature("K:G") == {"F": 1}
    assert distill.key_signature("K:Bb") == {"B": -1, "E": -1}
    assert distill.key_signature("K:Ador") == {"F": 1}  # A dorian = G major
    assert distill.key_signature("K:Em") == {"F": 1}
    assert distill.key_signature("K:none") == {}
    # K:D sharpens F and C; an explicit accidental holds to the bar line
    notes = distill.abc_notes("X:1\nK:D\nFc^c=F F|F2 z G/|")
    assert [p for p, _ in notes] == [66, 73, 73, 65, 65, 66, 67]
    assert [d for _, d in notes] == [Fraction(1, 8)] * 5 + [Fraction(1, 4), Fraction(1, 16)]
    assert distill.abc_notes("X:1\nK:C\nC,C c c'|") == [(48, Fraction(1, 8)), (60, Fraction(1, 8)),
                                                        (72, Fraction(1, 8)), (84, Fraction(1, 8))]


def test_music_histograms():
    hist, read = distill.music_histograms(["X:1\nK:C\nCEG|", "X:1\nK:C\n[L:1/4]C|"])
    assert read == 1  # the inline field is not followed by the reader
    assert hist["pitch_class"] == Counter({0: 1, 4: 1, 7: 1})
    assert hist["interval"] == Counter({4: 1, 3: 1})
    assert hist["duration"] == Counter({"1/8": 3})
    leap, _ = distill.music_histograms(["X:1\nK:C\nC,c'|"])
    assert leap["interval"] == Counter({distill._metrics.MAX_INTERVAL: 1})


def test_kl_estimate_zero_for_base_positive_for_changed_policy():
    task = tiny_task()
    rows, prefix = distill.draw_samples(task.generator, task, 8, seed=0)
    same = distill.sampled_kl(task.generator, task.reference(), rows, prefix, task.tokenizer.pad_token_id)
    assert np.allclose(same, 0.0)
    other = perturbed(task)
    rows, prefix = distill.draw_samples(other, task, 16, seed=0)
    kl = distill.sampled_kl(other, task.reference(), rows, prefix, task.tokenizer.pad_token_id)
    assert kl.mean() > 0.5


def test_kl_counts_only_generated_tokens():
    """The prompt's tokens are given, not sampled: they do not count towards the KL."""
    task = tiny_task(prompts=("X:1\nM:4/4\nK:G\n",))
    other = perturbed(task)
    rows, prefix = distill.draw_samples(other, task, 4, seed=0)
    assert prefix == [1 + len("X:1\nM:4/4\nK:G\n")] * 4  # char tokenizer: BOS + one token per character
    full = distill.sampled_kl(other, task.reference(), rows, [1] * 4, task.tokenizer.pad_token_id)
    gen = distill.sampled_kl(other, task.reference(), rows, prefix, task.tokenizer.pad_token_id)
    cut = [r[:p] for r, p in zip(rows, prefix)]
    head = distill.sampled_kl(other, task.reference(), cut, [1] * 4, task.tokenizer.pad_token_id)
    assert np.allclose(full, gen + head)
    assert not np.allclose(head, 0.0)


def test_evaluate_base_run():
    task = tiny_task(validate=lambda t: domains.validate_abc(t).ok)
    ev = distill.evaluate(distill.DistillRun(method="noop", policy=task.generator), task, n=6,
                          heldout=TEXTS, rater=ConstRater())
    assert set(ev) == set(distill.EVALUATION_KEYS)  # every key documented, every documented key there
    assert ev["kl"] == pytest.approx(0.0, abs=1e-9) and ev["kl_source"] == "sampled"
    texts = domains.sample(task.generator, task.tokenizer, 6, task.sample, seed=0)
    assert ev["utility"] == pytest.approx(np.mean([len(t) for t in texts]))  # the rater saw these samples
    assert ev["reward"] == pytest.approx(task.reward(texts).mean())
    assert ev["free_valid_fraction"] == np.mean([domains.validate_abc(t).ok for t in texts])
    assert ev["distinct_tunes"] == len(set(texts)) and ev["distinct_fraction"] == len(set(texts)) / 6
    assert ev["bar_aware_utility"] is None  # the task has no grammar
    assert 0 <= ev["copied_8gram_fraction"] <= 1 and ev["histogram_heldout_read"] == 2


def test_evaluate_uses_run_kl_sample_fn_and_bar_aware_samples():
    task = tiny_task(constraint_factory=lambda: domains.ABCConstraint(tiny_task().tokenizer))
    fixed = [TEXTS[0], TEXTS[1]] * 2
    run = distill.DistillRun(method="bon", policy=task.generator, kl=0.75,
                             sample_fn=lambda n, seed: (fixed * n)[:n])
    ev = distill.evaluate(run, task, n=4, heldout=TEXTS, rater=ConstRater())
    assert ev["kl"] == 0.75 and ev["kl_source"] == "method" and ev["kl_se"] is None
    assert ev["utility"] == pytest.approx(np.mean([len(t) for t in fixed]))
    assert ev["copied_8gram_fraction"] == 1.0 and ev["nearest_corpus_distance"] == 0.0
    for k in ("js_pitch_class", "js_interval", "js_duration"):  # the held-out tunes twice: same histograms
        assert ev[k] == pytest.approx(0.0, abs=1e-12)
    assert ev["distinct_tunes"] == 2
    assert ev["bar_aware_reward"] is None  # a sampling procedure: no grammar to impose on it
    ev2 = distill.evaluate(distill.DistillRun(method="noop", policy=task.generator), task, n=4, heldout=TEXTS,
                           rater=ConstRater())
    assert ev2["bar_aware_utility"] is not None and ev2["bar_aware_valid_fraction"] is None


def test_evaluate_trained_policy_moves_kl(tmp_path):
    task = tiny_task()
    run = lm_steps(task, tmp_path, distill.Budget(max_steps=5))
    ev = distill.evaluate(run, task, n=8, heldout=TEXTS, rater=ConstRater())
    assert ev["kl"] > 0 and ev["kl_se"] > 0
    with pytest.raises(ValueError, match="n >= 2"):
        distill.evaluate(noop(task, tmp_path, None), task, n=1, heldout=TEXTS, rater=ConstRater())


def test_plots_write_pngs(tmp_path):
    hist = {"a": [{"kl": 0.0, "reward": 0.1, "cpu_s": 1.0}, {"kl": 0.5, "reward": 0.3, "cpu_s": 2.0}],
            "b": [{"cpu_s": 1.0, "loss": 1.0}]}  # no kl / reward: no line, no crash
    points = {"a": {"kl": 0.6, "reward": 0.35, "reward_se": 0.05}, "c": {"kl": 0.2, "reward": 0.0}}
    for fn, name in ((distill.plot_reward_kl, "kl.png"), (distill.plot_curves, "cpu.png")):
        path = fn(hist, tmp_path / name, points=points)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
