"""One evaluation for every way of moving the generator: `evaluate(run, task, ...)` draws samples
from the trained policy (or through the method's own sampling procedure) and measures them the
same way whatever the method — what a person would get (the simulated rater's utility), what the
method optimised (the task's reward), how far it moved from the base generator (KL), whether the
pieces still parse, how diverse and how novel they are, and how close their notes stay to held-out
tunes. Reward up with utility down is reward hacking; reward up with KL, copying or collapsed
diversity up is a policy that found a narrow corner. `plot_reward_kl` and `plot_curves` draw the
methods' histories side by side.

Every key of the returned dict is documented in `EVALUATION_KEYS`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._metrics import copied_fraction, distinct_ngrams, js_divergence, mean_se, music_histograms, pairwise_distance
from ._task import DistillRun, Task

_SE = "standard error of the mean above it (None for a single value or a method-given figure)"
EVALUATION_KEYS: dict[str, str] = {
    "method": "the run's method name",
    "n": "samples drawn for each sample set (free, bar-aware)",
    "seed": "sampling seed (prompt i uses seed + i)",
    "utility": "simulated rater's hidden utility of free samples, mean",
    "utility_se": _SE,
    "reward": "the task's reward of free samples, mean",
    "reward_se": _SE,
    "free_valid_fraction": "share of free samples the task's validate accepts (None without validate)",
    "bar_aware_utility": "utility of samples drawn under task.constraint_factory()'s grammar, mean (None when the "
                         "task has none or the method samples through its own procedure; so are all bar_aware_*)",
    "bar_aware_utility_se": _SE,
    "bar_aware_reward": "reward of the bar-aware samples, mean",
    "bar_aware_reward_se": _SE,
    "bar_aware_valid_fraction": "share of bar-aware samples that validate accepts",
    "kl": "KL(policy || base) per sequence in nats: run.kl when the method knows it, else the mean over policy "
          "samples of sum_t log p_policy - log p_base over the generated tokens (exact in expectation when the "
          "samples are drawn at temperature 1 without top-k/top-p)",
    "kl_se": _SE,
    "kl_source": "'method' (run.kl) or 'sampled' (the estimate above); None without a policy",
    "kl_per_token": "sampled KL divided by the mean number of generated tokens (None when kl_source is 'method')",
    "distinct_1": "distinct-1 of free samples: unique / all unigrams of tokenizer tokens",
    "distinct_2": "distinct-2: unique / all token bigrams",
    "distinct_3": "distinct-3: unique / all token trigrams",
    "distinct_tunes": "number of different free samples",
    "distinct_fraction": "distinct_tunes / n",
    "self_distance": "mean normalised edit distance between pairs of free samples (first 32; 0 = all the same)",
    "copied_8gram_fraction": "share of a sample's character 8-grams that occur in the training corpus, mean over "
                             "samples; 1 = stitched from training text",
    "copied_8gram_fraction_se": _SE,
    "nearest_corpus_distance": "normalised edit distance to the nearest training tune, mean over samples; 0 = a copy",
    "nearest_corpus_distance_se": _SE,
    "js_pitch_class": "Jensen-Shannon divergence (bits, 0..1) between the pitch-class histograms of free samples "
                      "and held-out tunes",
    "js_interval": "the same for melodic intervals in semitones (consecutive notes, clipped to an octave)",
    "js_duration": "the same for note lengths",
    "histogram_samples_read": "free samples whose notes the ABC reader could follow (the histograms' sample base)",
    "histogram_heldout_read": "held-out tunes the reader could follow",
    "mean_chars": "mean length of free samples in characters",
    "eval_cpu_s": "process CPU seconds this evaluation took",
}


def prompt_counts(n: int, prompts: Sequence[str]) -> list[tuple[str, int]]:
    """n samples spread over the prompts in turn (sample k uses prompt k mod len(prompts))."""
    p = len(prompts)
    return [(prompts[i], n // p + (i < n % p)) for i in range(p) if n // p + (i < n % p)]


def draw_samples(model, task: Task, n: int, seed: int, constraint_factory=None) -> tuple[list[list[int]], list[int]]:
    """(token rows, prefix lengths): `n` samples of `model` under `task.sample`, the prompts cycled;
    a prefix length counts BOS and the prompt's tokens (what was given, not generated)."""
    from domains import sample_ids

    rows, prefix = [], []
    for i, (prompt, k) in enumerate(prompt_counts(n, task.prompts)):
        constraint = constraint_factory() if constraint_factory is not None else None
        got = sample_ids(model, task.tokenizer, k, task.sample, prefix=prompt, seed=seed + i, constraint=constraint)
        given = 1 + len(task.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        rows += got
        prefix += [given] * len(got)
    return rows, prefix


@torch.no_grad()
def sampled_kl(policy, base, rows: Sequence[Sequence[int]], prefix: Sequence[int], pad_id: int,
               batch_size: int = 32) -> np.ndarray:
    """Per sample: sum over its generated tokens of log p_policy(token) - log p_base(token) -> (n,).

    rows: token ids drawn from `policy` (BOS, prompt, continuation); prefix[i]: the tokens of row i
    that were given rather than sampled (they do not count). The mean over rows drawn from the
    policy estimates KL(policy || base). Log-probs via `domains.token_log_probs`."""
    from domains import pad_ids, token_log_probs

    out = []
    for m in (policy, base):
        m.eval()
    for lo in range(0, len(rows), batch_size):
        ids, mask = pad_ids(list(rows[lo : lo + batch_size]), pad_id)  # (b, t)
        given = torch.as_tensor(list(prefix[lo : lo + batch_size]))[:, None]  # (b, 1)
        pos = torch.arange(1, ids.shape[1])[None, :]  # entry j scores token j + 1
        keep = (pos >= given) & mask[:, 1:].bool()  # (b, t-1)
        diff = token_log_probs(policy, ids, mask) - token_log_probs(base, ids, mask)
        out.append((diff * keep).sum(-1).double())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _scores(texts: list[str], task: Task, rater) -> dict:
    u, u_se = mean_se(rater.utility(texts))
    r, r_se = mean_se(np.asarray(task.reward(texts), dtype=float))
    valid = float(np.mean([bool(task.validate(t)) for t in texts])) if task.validate is not None else None
    return {"utility": u, "utility_se": u_se, "reward": r, "reward_se": r_se, "valid_fraction": valid}


def evaluate(run: DistillRun, task: Task, *, n: int = 64, heldout: Sequence[str], corpus: Sequence[str] | None = None,
             rater=None, seed: int = 0) -> dict:
    """Measure a method's result on `n` free samples (and `n` bar-aware ones when the task has a
    grammar): utility, reward, validity, KL to the base generator, diversity, novelty against
    `corpus` (default: `task.corpus`) and histogram divergences from `heldout` tunes. Samples come
    from ``run.sample_fn(n, seed)`` when the method set one (best-of-N), else from `run.policy`.
    rater: anything with ``utility(texts) -> (n,)``; default `rewardmodels.SimulatedRater(seed=seed)`.
    Returns a flat dict, keys in `EVALUATION_KEYS`."""
    from domains import decode
    from gradopt import nearest_distance

    if n < 2:
        raise ValueError(f"evaluate needs n >= 2 samples (standard errors, pairwise distances), got {n}")
    if rater is None:
        from rewardmodels import SimulatedRater

        rater = SimulatedRater(seed=seed)
    corpus = list(task.corpus if corpus is None else corpus)
    start = time.process_time()
    tok = task.tokenizer
    out: dict = {"method": run.method, "n": n, "seed": seed}

    policy_rows = prefix = None
    if run.sample_fn is not None:
        texts = list(run.sample_fn(n, seed))
    else:
        policy_rows, prefix = draw_samples(run.policy, task, n, seed)
        texts = [decode(tok, r) for r in policy_rows]
    free = _scores(texts, task, rater)
    out.update({k: v for k, v in free.items() if k != "valid_fraction"})
    out["free_valid_fraction"] = free["valid_fraction"]

    bar = None
    if task.constraint_factory is not None and run.sample_fn is None:
        rows, _ = draw_samples(run.policy, task, n, seed + 10_000, task.constraint_factory)
        bar = _scores([decode(tok, r) for r in rows], task, rater)
    for k in ("utility", "utility_se", "reward", "reward_se", "valid_fraction"):
        out[f"bar_aware_{k}"] = None if bar is None else bar[k]

    if run.kl is not None:
        out.update({"kl": float(run.kl), "kl_se": None, "kl_source": "method", "kl_per_token": None})
    elif run.policy is None:
        out.update({"kl": None, "kl_se": None, "kl_source": None, "kl_per_token": None})
    else:
        if policy_rows is None:
            policy_rows, prefix = draw_samples(run.policy, task, n, seed)
        per = sampled_kl(run.policy, task.reference(), policy_rows, prefix, tok.pad_token_id)
        kl, kl_se = mean_se(per)
        generated = float(np.mean([max(len(r) - g, 1) for r, g in zip(policy_rows, prefix)]))
        out.update({"kl": kl, "kl_se": kl_se, "kl_source": "sampled", "kl_per_token": kl / generated})

    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    for k in (1, 2, 3):
        out[f"distinct_{k}"] = distinct_ngrams(ids, k)
    out["distinct_tunes"] = len(set(texts))
    out["distinct_fraction"] = len(set(texts)) / len(texts)
    out["self_distance"] = pairwise_distance(texts)

    copied, copied_se = mean_se(copied_fraction(texts, corpus))
    near, near_se = mean_se(nearest_distance(texts, corpus)) if corpus else (math.nan, None)
    out.update({"copied_8gram_fraction": copied, "copied_8gram_fraction_se": copied_se,
                "nearest_corpus_distance": near, "nearest_corpus_distance_se": near_se})

    hs, read_s = music_histograms(texts)
    hh, read_h = music_histograms(list(heldout))
    for k in ("pitch_class", "interval", "duration"):
        out[f"js_{k}"] = js_divergence(hs[k], hh[k])
    out.update({"histogram_samples_read": read_s, "histogram_heldout_read": read_h,
                "mean_chars": float(np.mean([len(t) for t in texts]))})
    out["eval_cpu_s"] = time.process_time() - start
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _axes(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    return plt, fig, ax


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def plot_curves(histories: dict[str, list[dict]], path: str | Path, *, x: str = "cpu_s", y: str = "reward",
                points: dict[str, dict] | None = None, title: str | None = None) -> Path:
    """One line per method through its history rows that have finite `x` and `y` (e.g. reward
    against CPU seconds), plus, for methods in `points`, the final evaluation's (`x`, `y`) as a
    marker with ± 1 s.e. bars where the evaluation has ``<key>_se``. Writes a PNG -> its path."""
    plt, fig, ax = _axes(path)
    colours = {}
    for name, rows in histories.items():
        pts = [(r[x], r[y]) for r in rows if _finite(r.get(x)) and _finite(r.get(y))]
        if pts:
            line, = ax.plot(*zip(*pts), "-", lw=1.2, marker="." if len(pts) < 50 else None, label=name)
            colours[name] = line.get_color()
    for name, ev in (points or {}).items():
        if _finite(ev.get(x)) and _finite(ev.get(y)):
            xe, ye = ev.get(f"{x}_se"), ev.get(f"{y}_se")
            ax.errorbar(ev[x], ev[y], xerr=xe if _finite(xe) else None, yerr=ye if _finite(ye) else None,
                        fmt="s", ms=7, capsize=3, color=colours.get(name),
                        label=None if name in colours else f"{name} (evaluation)")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} against {x} per method")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reward_kl(histories: dict[str, list[dict]], path: str | Path, points: dict[str, dict] | None = None) -> Path:
    """Reward against KL to the base generator per method (the trade-off every KL-regularised
    method moves along): history rows carrying "kl" and "reward", and the final evaluations in
    `points` (squares, ± 1 s.e.). Writes a PNG -> its path."""
    return plot_curves(histories, path, x="kl", y="reward", points=points,
                       title="reward against KL(policy || base); squares: final evaluation")
