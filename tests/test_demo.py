import json
import math
from pathlib import Path

import pytest

import distill
import domains
import rewardmodels

STAGES = ("samples", "ratings", "bradley_terry", "reward_model", "ascent", "harvest", "distill")


def test_demo_writes_report_and_resumes(tmp_path, capsys, monkeypatch):
    # 150 steps of the tiny preset take ~5 CPU-seconds; the run is dominated by loading the corpus
    # and the simulated rater (music21). The CPU budget is set far above that so it never binds:
    # with a budget, both the stop and the learning-rate schedule follow whichever of steps and
    # CPU time runs out first, and a slow or busy machine would then train a different model.
    stages = distill.DemoStages(rated_corpus=8, comparisons=2, active_rounds=1, active_pairs=4, members=2,
                                ascent_tunes=2, ascent_steps=2, guard=False, harvest_starts=2,
                                expert_cpu_s=1.0)  # guard off: the tiny reward model is confident of nothing
    cfg = distill.DemoConfig(preset="tiny", minutes=60, max_steps=150, n_samples=3, stages=stages)
    path = distill.run_demo(tmp_path, cfg)
    report = json.loads(path.read_text())
    for key in ("val_cross_entropy", "unigram_cross_entropy", "valid_fraction"):
        assert isinstance(report[key], float)
    assert report["n_samples"] == 3 and report["generator"]["steps"] == 150
    assert report["corpus"]["tunes"] > 4000
    assert sum(report["split"].values()) == report["corpus"]["tunes"]
    # the generator directory says how its corpus was normalised (spaceless by default)
    assert domains.load_normalisation(tmp_path / "generator") == domains.NormaliseConfig(spaceless=True)
    # The generator learnt something: it predicts held-out tunes better than character frequencies
    # do (measured 2.83 vs 3.54 nats/token; an untrained one gives about log(97) = 4.57).
    val_ce, uni_ce = report["val_cross_entropy"], report["unigram_cross_entropy"]
    assert val_ce < uni_ce
    assert report["ce_ratio_to_unigram"] == pytest.approx(val_ce / uni_ce)
    assert report["val_perplexity"] == pytest.approx(math.exp(val_ce))
    # samples.abc holds the reported samples, and the reported validity is theirs.
    tunes = domains.split_tunes((tmp_path / "samples.abc").read_text())
    assert len(tunes) == 3
    n_valid = sum(domains.ABCDomain().validate(t).ok for t in tunes)
    assert report["valid_fraction"] == pytest.approx(n_valid / 3)
    assert report["valid_fraction"] == report["valid_fraction_bar_aware_sampling"]  # bar-aware by default
    assert len(report["midi_files"]) <= n_valid and all(Path(f).stat().st_size > 0 for f in report["midi_files"])

    # The loop: a store of corpus tunes, one pitch variant each and the samples, rated; scores for every item.
    store = rewardmodels.RatingStore(tmp_path / "ratings", create=False)
    origins = [it.origin for it in store.items]
    assert origins.count("corpus") <= 2 * 8 and origins.count("sample") >= 1 and origins.count("harvested") >= 0
    assert report["ratings"]["comparisons"] > report["ratings"]["items"] > 8
    bt = report["bradley_terry"]
    assert len(bt["mean"]) == len(bt["sd"]) == len(bt["origin"]) == report["ratings"]["items"]
    assert "pitch variant" in bt["origin"]
    rater = rewardmodels.SimulatedRater()
    rated = [it.text for it in store.items[: len(bt["mean"])]]  # the store only grows (harvest appends)
    assert bt["utility"] == pytest.approx(rater.utility(rated).tolist())
    assert rewardmodels.load_reward_model(tmp_path / "reward") is not None
    # The ascent's rows: verified scores never below the start, utilities of the texts reported.
    rows = report["ascent"]["rows"]
    assert len(rows) == 2 and any(row["after"] != row["before"] for row in rows)
    for row in rows:
        assert row["reward_after"] >= row["reward_before"] - 1e-9
        assert rater.utility([row["before"], row["after"]]).tolist() == pytest.approx([row["utility_before"], row["utility_after"]])
    assert report["ascent"]["summary"]["utility_gain"]["n"] == 2
    # The rated corpus tunes and their variants (and the held-out tunes) were scored by a worker
    # while the generator trained; the parse workers' CPU time is in the stage table.
    prefetch = report["stages"]["prefetch"]
    assert prefetch["tunes"] >= 2 * 8 and prefetch["worker_cpu_seconds"] > 0 and not prefetch["reused"]
    assert report["stages"]["samples"]["worker_cpu_seconds"] > 0  # the samples' checks ran in the workers
    assert report["reward_model"]["recipe"] == "practical_bar_aware"
    assert report["harvest"]["starts"] == 2
    # One round of expert iteration, reported whether or not a row passed.
    rnd = report["distill"]["history"]
    assert report["distill"]["method"] == "expert" and len(rnd) == 1
    assert rnd[0]["n_started"] > 0 and 0 <= rnd[0]["n_kept"] <= rnd[0]["n_started"]
    assert rnd[0]["n_kept"] > 0 or any("round 1" in n for n in report["distill"]["notes"])
    # The page: one sheet-music div per shown tune, and the distillation section.
    page = (tmp_path / "report.html").read_text()
    assert page.count("class='abc-render'") == len(report["tunes"]) >= 2
    assert "id='distill'" in page

    # A second run finds every finished stage and trains and rates nothing again.
    stamps = {n: (tmp_path / f"{n}.json").stat().st_mtime_ns for n in STAGES}
    n_comparisons = len(store.comparisons)
    capsys.readouterr()
    again = json.loads(distill.run_demo(tmp_path, cfg).read_text())
    out = capsys.readouterr().out
    assert "already trained" in out
    for name in STAGES:
        assert f"[{name}] done before" in out
        assert again["stages"][name]["reused"] is True
    assert {n: (tmp_path / f"{n}.json").stat().st_mtime_ns for n in STAGES} == stamps
    assert "prefetch" not in again["stages"]  # nothing to score while a trained generator loads
    assert len(rewardmodels.RatingStore(tmp_path / "ratings").comparisons) == n_comparisons
    assert again["val_cross_entropy"] == pytest.approx(val_ce, rel=1e-9)
    assert again["ascent"]["rows"] == rows
    assert again["distill"] == report["distill"]


def test_bad_demo_config():
    with pytest.raises(ValueError, match="unknown preset"):
        distill.DemoConfig(preset="gigantic")
    with pytest.raises(ValueError):
        distill.DemoConfig(n_samples=0)
    with pytest.raises(ValueError, match="members"):
        distill.DemoStages(members=1)
    with pytest.raises(ValueError, match="counts"):
        distill.DemoStages(ascent_tunes=0)
    with pytest.raises(ValueError, match="processes"):
        distill.DemoConfig(processes=0)
    with pytest.raises(ValueError, match="not a recipe"):
        distill.DemoStages(reward_recipe="best")
    with pytest.raises(ValueError, match="needs a 'probe' fit"):
        distill.DemoStages(reward_recipe="baseline")  # a fine-tune cannot be a bootstrap ensemble of probes
    assert distill.DemoStages(reward_recipe="baseline", members=0).reward_recipe == "baseline"
