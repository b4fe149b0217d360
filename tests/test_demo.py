import json

import pytest

import distill


def test_demo_writes_report_and_resumes(tmp_path, capsys):
    cfg = distill.DemoConfig(preset="tiny", minutes=0.2, max_steps=6, n_samples=3)
    path = distill.run_demo(tmp_path, cfg)
    report = json.loads(path.read_text())
    for key in ("val_cross_entropy", "unigram_cross_entropy", "valid_fraction"):
        assert isinstance(report[key], float)
    assert report["n_samples"] == 3 and report["generator"]["steps"] == 6
    assert report["corpus"]["tunes"] > 4000
    assert (tmp_path / "samples.abc").exists()
    # A second run finds the trained generator and does not train again.
    capsys.readouterr()
    distill.run_demo(tmp_path, cfg)
    assert "already trained" in capsys.readouterr().out


def test_bad_demo_config():
    with pytest.raises(ValueError, match="unknown preset"):
        distill.DemoConfig(preset="gigantic")
    with pytest.raises(ValueError):
        distill.DemoConfig(n_samples=0)
