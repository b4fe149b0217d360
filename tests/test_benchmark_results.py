"""Benchmark hygiene: result files say where they came from, the README quotes only figures the
current result files hold, selection and report use different items, and the ascent benchmark's
ratios compare like with like (benchmarks/provenance.py, benchmarks/ascent.py).

README figures are checked through a light markup in its "Status" section: a figure taken from a
result file is a Markdown reference link whose target is the file plus a JSON pointer (RFC 6901),

    ... pitch-edit pairs ordered like the hidden utility [0.81][rf-pitch] ...
    [rf-pitch]: benchmarks/results/reward_fidelity.json#/recipes/practical_bar_aware/pitch/accuracy

The link text must equal the value rounded to the decimals shown ("+0.59", "0.22x", "36%" for a
fraction 0.36). Every decimal number and percentage in the section must be such a link, except in
a bullet marked ``<!-- unchecked: reason -->`` (figures from runs whose output is not committed).
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import unquote
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# Appended, not prepended: benchmarks/distill.py must not shadow the distill package in later tests.
sys.path.append(str(ROOT / "benchmarks"))

FIGURE = re.compile(r"^([+-]?\d+(?:\.\d+)?)(%|x)?$")
NUMBER = re.compile(r"(?<![\w./])[+-]?\d+\.\d+(?![\w.])|(?<![\w./])\d+%")
LINK = re.compile(r"\[([^\]]+)\]\[([^\]]+)\]")
DEFINITION = re.compile(r"^\[([^\]]+)\]:\s*(\S+)\s*$", re.M)


def result_files() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def status_section(readme: str) -> str:
    """The text between '## Status' and the next '## ' heading."""
    m = re.search(r"^## Status\n(.*?)(?=^## )", readme, re.M | re.S)
    if not m:
        raise AssertionError("README has no '## Status' section followed by another section")
    return m.group(1)


def resolve(target: str, results: Path):
    """The value at `file#/json/pointer` (file relative to the repository root; the pointer
    percent-encoded as a URI fragment, so a key's space is written %20)."""
    path, _, pointer = target.partition("#")
    pointer = unquote(pointer)
    file = results.parent.parent / path
    if not file.is_file():
        raise KeyError(f"{path} does not exist")
    from provenance import json_pointer

    try:
        return json_pointer(json.loads(file.read_text()), pointer)
    except KeyError as e:
        raise KeyError(f"{path}: {e.args[0]}") from None


def status_problems(readme: str, results: Path = RESULTS) -> list[str]:
    """Every way the README's Status section departs from the result files (empty: none)."""
    problems = []
    defs = dict(DEFINITION.findall(readme))
    section = status_section(readme)
    bullets = re.split(r"\n(?=- )", section)
    linked = 0
    for bullet in bullets:
        unchecked = re.search(r"<!-- unchecked: (.+?) -->", bullet)
        for text, label in LINK.findall(bullet):
            m = FIGURE.match(text)
            if not m:
                continue  # a link that is not a figure
            linked += 1
            target = defs.get(label)
            if target is None or not target.startswith("benchmarks/results/"):
                problems.append(f"figure {text!r} links to {label!r}, which is not defined as a benchmarks/results target")
                continue
            try:
                value = resolve(target, results)
            except (KeyError, IndexError, ValueError) as e:
                problems.append(f"figure {text!r} [{label}]: {e}")
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"figure {text!r} [{label}] points at {value!r}, not a finite number")
                continue
            shown, unit = float(m.group(1)), m.group(2)
            decimals = len(m.group(1).partition(".")[2])
            actual = value * 100 if unit == "%" else value
            if abs(actual - shown) > 0.5 * 10 ** -decimals + 1e-9:
                problems.append(f"figure {text!r} [{label}] is {actual:.{decimals + 2}f} in {target}")
        if unchecked:
            continue
        bare = LINK.sub("", bullet)
        bare = re.sub(r"`[^`]*`", "", bare)  # code spans hold commands and flags, not figures
        for number in NUMBER.findall(bare):
            problems.append(f"figure {number!r} in the Status section is not linked to a result file: "
                            f"{bullet.strip()[:60]!r}...")
    if linked == 0:
        problems.append("the Status section links no figure to a result file")
    return problems


# ---------------------------------------------------------------- provenance of the result files


@pytest.mark.parametrize("path", result_files(), ids=lambda p: p.name)
def test_result_file_has_provenance(path):
    from provenance import canonical_json

    out = json.loads(path.read_text())
    assert re.fullmatch(r"[0-9a-f]{40}", out.get("commit") or ""), f"{path.name}: no git commit recorded"
    assert out.get("dirty") is False, f"{path.name} was written from a tree with uncommitted changes: {out.get('dirty_paths')}"
    assert out["config_hash"] == hashlib.sha256(canonical_json(out["config"]).encode()).hexdigest(), \
        f"{path.name}: config_hash does not match its config"
    for key in ("nproc", "python", "torch", "numpy"):
        assert out["machine"].get(key), f"{path.name}: machine.{key} missing"


def test_config_hash_is_canonical():
    from provenance import config_hash

    a = config_hash({"b": 1, "a": [1, 2], "c": Path("x")})
    assert a == config_hash({"c": "x", "a": [1, 2], "b": 1})  # key order and str() of non-JSON values
    assert a != config_hash({"b": 2, "a": [1, 2], "c": "x"})


def test_write_result_refuses_provenance_keys(tmp_path):
    from provenance import write_result

    with pytest.raises(ValueError, match="config_hash"):
        write_result(tmp_path / "x.json", {"config_hash": 1}, {})
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------- README figures


def test_readme_status_quotes_current_results():
    problems = status_problems((ROOT / "README.md").read_text())
    assert not problems, "\n".join(problems)


def test_status_check_catches_a_changed_figure():
    readme = (ROOT / "README.md").read_text()
    text, label = next((t, lab) for t, lab in LINK.findall(status_section(readme)) if FIGURE.match(t) and "." in t)
    last = text.rstrip("%x")[-1]
    changed = text.replace(text.rstrip("%x"), text.rstrip("%x")[:-1] + str((int(last) + 3) % 10), 1)
    problems = status_problems(readme.replace(f"[{text}][{label}]", f"[{changed}][{label}]", 1))
    assert any(repr(changed) in p for p in problems), problems


def test_status_check_catches_an_unlinked_figure():
    readme = (ROOT / "README.md").read_text()
    head, sep, rest = readme.partition("## Status\n")
    problems = status_problems(head + sep + "- The engine gains 0.42 per CPU second.\n" + rest)
    assert any("'0.42'" in p and "not linked" in p for p in problems), problems


# ---------------------------------------------------------------- selection vs report items


@pytest.fixture(scope="module")
def tiny_setup(fiddle_pieces, char_tokenizer):
    import domains

    # short tunes keep the tiny runs cheap; 200 characters leaves ~40 val and ~40 test tunes
    splits = {k: [p.text for p in v if len(p.text) < 200] for k, v in domains.split_corpus(fiddle_pieces).items()}
    gen = domains.build_generator("tiny", char_tokenizer, seed=0).eval()
    constraint = domains.ABCConstraint.from_texts(char_tokenizer, splits["train"][:100])
    return gen, char_tokenizer, splits, constraint


@pytest.fixture(scope="module")
def items(tiny_setup) -> dict[str, set[str]]:
    return {name: items_of(name, tiny_setup) for name in ("select", "report")}


def items_of(split_name, tiny_setup) -> set[str]:
    """Every held-out text reward_fidelity.py and ascent.py evaluate on for one split (tiny sizes)."""
    import domains
    import rewardmodels
    from ascent import eval_starts
    from reward_fidelity import eval_sets
    from reward_recipes import eval_corpus, eval_split

    gen, tok, splits, constraint = tiny_setup
    split = eval_split(split_name)
    rater = rewardmodels.SimulatedRater(agreement=0.75, seed=0)
    sizes = {"samples": 2, "samples_bar": 2, "corpus": 6, "pitch_bases": 4}
    sets = eval_sets(gen, tok, eval_corpus(splits, tok, split), lambda t: (rater.utility(t), 0.0), constraint,
                     sizes, split)
    texts = set(sets["samples"][0]) | set(sets["samples_bar"][0]) | set(sets["corpus"][0])
    texts |= set(sets["pitch"][0]) | set(sets["pitch"][1])
    starts = eval_starts(gen, tok, splits, split, 3, constraint)
    return texts | {domains.decode(tok, r) for rows in starts.values() for r in rows}


def test_selection_and_report_items_are_disjoint(items):
    select, report = items["select"], items["report"]
    assert len(select) > 10 and len(report) > 10
    assert not select & report, f"{len(select & report)} items used both to choose settings and to report"


def test_rating_pool_holds_no_report_item(tiny_setup, items):
    from reward_recipes import Recipe, make_pool

    gen, tok, splits, _ = tiny_setup
    pool = make_pool(Recipe(corpus=5, samples=2, char_edited=0), gen, tok, splits["train"][:100], seed=0)
    assert not set(pool.texts) & items["report"]


def test_run_parser_holds_the_shared_options_and_takes_more():
    from reward_recipes import run_parser

    ap = run_parser("doc", "quick help", seed_help="seeds it")
    ap.add_argument("--starts", type=int, default=5)
    assert vars(ap.parse_args([])) == {"quick": False, "work": None, "threads": 1, "seed": 0, "starts": 5}
    got = vars(ap.parse_args(["--quick", "--work", "w", "--threads", "2", "--seed", "3", "--starts", "1"]))
    assert got == {"quick": True, "work": "w", "threads": 2, "seed": 3, "starts": 1}
    text = ap.format_help()
    assert "quick help" in text and "seeds it" in text and "generator/ to reuse" in text


def test_refactor_equivalence_compares_figure_by_figure():
    from refactor_equivalence import compare

    old = {"commit": "a", "acc": {"1000": 0.7, "3000": float("nan")}, "rows": [1, 2], "cpu_s": 3.0, "valid": True}
    new = {"commit": "b", "acc": {"1000": 0.7, "3000": float("nan")}, "rows": [1, 3], "cpu_s": 4.0, "extra": 1}
    out = compare(old, new)
    assert out["quality"]["diffs"] == {"rows[1]": {"old": 2, "new": 3}, "valid": {"old": True, "new": "<absent>"},
                                       "extra": {"old": "<absent>", "new": 1}}
    assert out["quality"]["equal"] == 3 and out["quality"]["different"] == 3  # acc/1000, acc/3000 (nan), rows[0]
    assert out["timing"] == {"equal": 0, "different": 1}  # cpu_s moves apart; the commit is not compared
    assert compare(old, old)["quality"]["different"] == 0


def test_unknown_split_is_refused():
    from reward_recipes import eval_split

    with pytest.raises(ValueError, match="select"):
        eval_split("test")


# ---------------------------------------------------------------- ascent's ratios


def test_bootstrap_keeps_resamples_where_the_baseline_does_not_gain():
    from ascent import bootstrap_ratio

    engine = np.full(20, 0.5)
    baseline = np.array([2.0] + [-0.05] * 19)  # mean +0.05; many resamples miss the one good slot
    boot = bootstrap_ratio(engine, baseline, n_boot=500, seed=0)
    assert boot["den_not_gaining_fraction"] > 0.1
    assert boot["ci95"][1] == math.inf  # a filtered bootstrap would report a finite upper end
    assert boot["ci95"][0] <= 0.5 / 0.05


def test_bootstrap_is_exact_for_proportional_gains():
    from ascent import bootstrap_ratio

    den = np.linspace(0.1, 1.0, 15)
    boot = bootstrap_ratio(2 * den, den, scale=1.5, n_boot=200)
    assert boot["ci95"] == pytest.approx([3.0, 3.0]) and boot["undefined_fraction"] == 0
    assert boot["ci95_defined"] == boot["ci95"]


def test_bootstrap_has_no_interval_when_neither_gains_in_some_resample():
    from ascent import bootstrap_ratio

    boot = bootstrap_ratio([0.3, -0.2, -0.2], [0.3, -0.2, -0.2], n_boot=300)
    assert boot["undefined_fraction"] > 0 and boot["ci95"] is None
    # over the resamples where either gains (here both, equally) the ratio is exactly 1
    assert boot["ci95_defined"] == pytest.approx([1.0, 1.0])
    none = bootstrap_ratio([-0.1, 0.0], [-0.2, 0.0], n_boot=50)
    assert none["undefined_fraction"] == 1.0 and none["ci95_defined"] is None


def test_ratios_compare_the_same_slots():
    from ascent import gain_ratio, same_slots_ratio

    with pytest.raises(ValueError, match="same slots"):
        same_slots_ratio([0.5] * 16, [1.0] * 64)
    assert same_slots_ratio([0.5, 0.3], [1.0, 0.6]) == pytest.approx(0.5)
    assert gain_ratio(0.2, -0.1) == math.inf and gain_ratio(-0.2, 0.0) is None


def test_equal_time_point_reaches_the_budget():
    from ascent import first_at_budget

    assert first_at_budget([0.5, 1.0, 1.6, 2.2], 1.5) == 3  # at least the engine's CPU, never less
    assert first_at_budget([0.5, 1.0], 5.0) == 2  # capped: the last point (flagged n_capped by the caller)


# ---------------------------------------------------------------- reward_fidelity's goal figures

GOAL = ("heldout_pairwise_accuracy_3000", "corpus_r", "samples_r", "heldout_collection_r", "edit_capture",
        "corpus_ascent_utility_gain", "heldout_collection_ascent_utility_gain", "ensemble_sd_error_spearman")


def test_reward_fidelity_goal_holds_every_figure_and_says_where_the_others_come_from(tmp_path):
    from reward_fidelity import GOAL_SOURCES, goal

    results = {"practical_x": {"corpus": {"pearson": 0.41}, "samples": {"pearson": 0.23}},
               "other": {"corpus": {"pearson": 0.9}, "samples": {"pearson": 0.8}}}
    g = goal(results, "practical_x", tmp_path)  # no source files yet
    assert g["recipe"] == "practical_x" and set(g) == {"recipe", "notes", "sources", "samples_free_r", *GOAL}
    assert (g["corpus_r"], g["samples_r"], g["samples_free_r"]) == (0.41, 0.23, None)  # the shown recipe's
    # with bar-aware samples (the acceptance's set) samples_r is theirs, the free samples' r beside it
    bar = {k: {**v, "samples_bar": {"pearson": 0.77}} for k, v in results.items()}
    g_bar = goal(bar, "practical_x", tmp_path)
    assert (g_bar["samples_r"], g_bar["samples_free_r"]) == (0.77, 0.23) and "bar-aware" in g_bar["notes"]["samples_r"]
    for key in set(GOAL) - {"corpus_r", "samples_r"}:
        assert g[key] is None and "benchmarks/" in g["notes"][key] and "absent" in g["notes"][key], key
    assert set(g["notes"]) == set(GOAL) and g["sources"] == {}
    assert goal(results, None, tmp_path)["corpus_r"] is None

    # full-run files: each figure is read at its pointer, for the shown recipe, with its commit
    def doc(recipe, du, quick=False):
        ens = {"sets": {"corpus": {"on": {"mean_du": du}}, "held-out": {"on": {"mean_du": du - 0.5}}},
               "calibration": {"sets": {"held-out": {"r_mean_utility": 0.61}}, "pooled": {"spearman_sd_abs_error": 0.33}}}
        return {"quick": quick, "commit": "abc", "results": {recipe: ens}}
    (tmp_path / "music_ascent.json").write_text(json.dumps(doc("practical_x", 0.25)))
    (tmp_path / "edit_ranking.json").write_text(json.dumps(
        {"quick": False, "commit": "def", "rankings": {"practical_x/lm8": {"capture": 0.7}, "practical_x/lm0": {"capture": 0.1}}}))
    (tmp_path / GOAL_SOURCES["heldout_pairwise_accuracy_3000"][0]).write_text(json.dumps(
        {"quick": True, "commit": "q", "bt_random": {"3000": 0.71}}))  # a quick run does not count
    g = goal(results, "practical_x", tmp_path)
    assert g["corpus_ascent_utility_gain"] == 0.25 and g["heldout_collection_ascent_utility_gain"] == -0.25
    assert (g["heldout_collection_r"], g["ensemble_sd_error_spearman"], g["edit_capture"]) == (0.61, 0.33, 0.7)
    assert g["heldout_pairwise_accuracy_3000"] is None and "--quick" in g["notes"]["heldout_pairwise_accuracy_3000"]
    assert g["sources"]["edit_capture"] == {"file": "benchmarks/results/edit_ranking.json",
                                            "pointer": "/rankings/practical_x~1lm8/capture", "commit": "def"}
    assert set(g["sources"]) == set(GOAL_SOURCES) - {"heldout_pairwise_accuracy_3000"}
    # another recipe's figures are never borrowed
    assert goal({"other": results["other"]}, "other", tmp_path)["edit_capture"] is None


def test_report_split_shows_the_chosen_recipe_and_select_split_the_best_practical_one():
    from reward_fidelity import shown_recipe

    row = lambda acc, ceiling=False: {"pitch": {"accuracy": acc}, "ceiling": ceiling}  # noqa: E731
    results = {"practical_bar_aware": row(0.8), "practical_music": row(0.9), "ceiling_practical_music": row(0.99, True)}
    assert shown_recipe(results, "select", "practical_bar_aware") == ("practical_music", "practical_music")
    assert shown_recipe(results, "report", "practical_bar_aware") == ("practical_music", "practical_bar_aware")
    assert shown_recipe(results, "report", "practical_music") == ("practical_music", "practical_music")
    # a run that left the chosen recipe out reports none rather than another recipe's figures
    assert shown_recipe({"practical_music": row(0.9)}, "report", "practical_bar_aware") == ("practical_music", None)
    assert shown_recipe({"ceiling_practical_music": row(0.99, True)}, "select", "x") == (None, None)


def test_edit_ranking_music_row_rates_the_pool_of_its_practical_row():
    import dataclasses

    from edit_ranking import MUSIC, pool_fields
    from reward_recipes import PRACTICAL, scaled

    for factor in (0.3, 1.0):  # --quick and full runs
        base = dataclasses.replace(scaled(PRACTICAL, factor), sampling="bar-aware")
        assert pool_fields(scaled(MUSIC, factor)) == pool_fields(base)
        assert MUSIC.annotations != "none"


def test_reward_fidelity_costs_count_the_ensemble_as_one_backbone_and_k_heads(char_tokenizer, tiny_generator, small_texts):
    import rewardmodels
    from reward_fidelity import costs

    rm = rewardmodels.RewardModel.from_generator(tiny_generator, pooling="mean")
    texts = [t[:120] for t in small_texts[:10]]
    c = costs(rm, tiny_generator, char_tokenizer, texts)
    k = c["ensemble_members"]
    assert k == rewardmodels.DEFAULT_MEMBERS
    ens = rewardmodels.RewardEnsemble.from_generator(tiny_generator, members=k)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    # parameters exactly (one backbone, k head rows); the buffers differ in shape (per-member normalisation)
    assert c["ensemble_bytes"] - nbytes(rm.buffers()) == nbytes(ens.parameters())
    assert c["head_bytes"] == (rm.head.weight.numel() + 1) * 4 and c["model_bytes"] > 100 * c["head_bytes"]
    assert c["score_items"] == len(texts) == 10 and c["score_items_per_cpu_s"] > 0


def test_reward_fidelity_regoal_refreshes_only_the_goal(tmp_path):
    from reward_fidelity import regoal

    run = {"commit": "run-commit", "recipes": {"practical_x": {"corpus": {"pearson": 0.7}, "samples": {"pearson": 0.5}}},
           "goal": {"recipe": "practical_x", "edit_capture": None}}
    path = tmp_path / "reward_fidelity.json"
    path.write_text(json.dumps(run))
    (tmp_path / "edit_ranking.json").write_text(json.dumps(
        {"quick": False, "commit": "er", "rankings": {"practical_x/lm8": {"capture": 0.9}}}))
    g = regoal(path, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["goal"] == g and g["edit_capture"] == 0.9 and g["corpus_r"] == 0.7 and "assembled_at" in g
    assert doc["commit"] == "run-commit" and doc["recipes"] == run["recipes"]  # the run itself is untouched


def test_ascent_engine_relaxation_options(monkeypatch):
    import gradopt
    from ascent import LOGITS_LR, SIMPLEX_LR, engine_configs, parse_args

    monkeypatch.setattr(sys, "argv", ["ascent.py", "--quick"])
    cfg, alt, name = engine_configs(parse_args())
    assert isinstance(cfg.relaxation, gradopt.SimplexLogits) and cfg.relaxation.init_scale == 3.0
    assert cfg.optimizer.lr == LOGITS_LR and cfg.objective.lm_weight == 4.0 and cfg.trust is None
    assert name == "engine_simplex" and isinstance(alt.relaxation, gradopt.SimplexEntropy)
    assert alt.optimizer.lr == SIMPLEX_LR and alt.polish == cfg.polish and alt.steps == cfg.steps
    monkeypatch.setattr(sys, "argv", ["ascent.py", "--relaxation", "simplex", "--lr", "0.7"])
    cfg, alt, name = engine_configs(parse_args())
    assert isinstance(cfg.relaxation, gradopt.SimplexEntropy) and cfg.optimizer.lr == 0.7
    assert name == "engine_logits" and isinstance(alt.relaxation, gradopt.SimplexLogits) and alt.optimizer.lr == LOGITS_LR
