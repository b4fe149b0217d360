import json
import math
from pathlib import Path

import pytest

import distill
import domains


def test_demo_writes_report_and_resumes(tmp_path, capsys):
    # 150 steps of the tiny preset take ~5 CPU-seconds; the run is dominated by loading the corpus.
    # The CPU budget is set far above that so it never binds: with a budget, both the stop and the
    # learning-rate schedule follow whichever of steps and CPU time runs out first, and a slow or
    # busy machine would then train a different model.
    cfg = distill.DemoConfig(preset="tiny", minutes=60, max_steps=150, n_samples=3)
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
    # A second run finds the trained generator, does not train again and measures the same model.
    capsys.readouterr()
    again = json.loads(distill.run_demo(tmp_path, cfg).read_text())
    assert "already trained" in capsys.readouterr().out
    assert again["val_cross_entropy"] == pytest.approx(val_ce, rel=1e-9)


def test_bad_demo_config():
    with pytest.raises(ValueError, match="unknown preset"):
        distill.DemoConfig(preset="gigantic")
    with pytest.raises(ValueError):
        distill.DemoConfig(n_samples=0)
