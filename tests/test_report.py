import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import domains
from distill import mean_ci, write_report

TUNES = [
    "X:1\nT:Reel <one> & \"two\"\nM:4/4\nL:1/8\nK:D\nDFAF dFAF|GBdB gBdB|AFDF AFDF|E2FE D4|\n",
    "X:2\nT:Jig </script>\nM:6/8\nL:1/8\nK:G\nGAB dBG|cBA BGE|DGG BGG|AGF G3|\n",
]


def synthetic_data(distill: bool = False) -> dict:
    """Report data shaped like the demo's, for two tunes improved by pitch edits."""
    rng = np.random.default_rng(0)
    after = [domains.pitch_edit(t, 2, rng) for t in TUNES]
    rows = [{"reward_before": 0.1 * i, "reward_after": 0.5 + 0.1 * i, "utility_before": 0.2, "utility_after": 0.3 - 0.2 * i,
             "kept": False, "valid_after": True,
             "trajectory": [{"step": s, "reward": 0.1 * i + 0.05 * s} for s in (0, 5, 10)]} for i in range(2)]
    data = {
        "corpus": {"tunes": 4393}, "split": {"train": 3900, "val": 250, "test": 243},
        "generator": {"preset": "tiny", "parameters": 1234, "tokenizer": "char", "steps": 10},
        "val_cross_entropy": 2.5, "ce_ratio_to_unigram": 0.7, "n_samples": 3,
        "valid_fraction_free_sampling": 0.1, "valid_fraction_bar_aware_sampling": 1.0,
        "ascent": {"rows": rows, "engine": "AscentConfig(steps=10)"},
        "bradley_terry": {"mean": rng.normal(size=12).tolist(), "sd": (0.3 + rng.random(12)).tolist(),
                          "origin": ["corpus"] * 6 + ["sample"] * 6, "utility": rng.normal(size=12).tolist(),
                          "corr_utility": 0.5},
        "ratings": {"items": 12, "comparisons": 40, "ties": 5},
        "harvest": {"starts": 4, "suspects": 1, "rated": 3, "reasons": {"unlikely": 1}},
        "tunes": [{"name": f"tune {i + 1} {when}", "abc": t, "caption": "reward 0.1 -> 0.5"}
                  for i, pair in enumerate(zip(TUNES, after)) for when, t in zip(("before", "after"), pair)],
        "stages": {"generator": {"seconds": 1.0, "cpu_seconds": 1.0, "reused": True}},
    }
    if distill:
        data["distill"] = {"method": "expert_iteration", "history": [{"step": s, "cpu_s": s, "reward": 0.1 * s, "kl": 0.01 * s}
                                                                     for s in range(4)], "notes": []}
    return data


def test_mean_ci_matches_student_t():
    ci = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert ci["n"] == 3 and ci["mean"] == pytest.approx(2.0)
    assert ci["hi"] - ci["mean"] == pytest.approx(4.302653 * 1.0 / 3 ** 0.5, rel=1e-5)  # t_{0.975, 2} * sd / sqrt(n)
    assert mean_ci([5.0]) == {"mean": 5.0, "lo": 5.0, "hi": 5.0, "n": 1}


def test_write_report_is_self_contained(tmp_path):
    data = synthetic_data()
    path = write_report(tmp_path, data)
    page = path.read_text()
    assert path == tmp_path / "report.html"
    assert page.count("class='abc-render'") == len(data["tunes"]) == 4
    # nothing is fetched: no script, stylesheet or image from elsewhere
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert not re.search(r"<(link|img|audio|source)[^>]*(href|src)=['\"]?(https?:)?//", page)
    # tune text cannot close the script element nor inject markup
    assert page.count("</script>") == 3 and "T:Reel <one>" not in page  # JSON data, abcjs, the page's script
    data_json = re.search(r'<script type="application/json" id="tunes-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data_json and "&" not in data_json  # no "</script" nor "<!--" can end or confuse the element
    assert [t["abc"] for t in json.loads(data_json)] == [t["abc"] for t in data["tunes"]]
    for name in ("ascent_before_after", "ascent_trajectories", "bradley_terry"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    # no distillation data, no distillation section; with it, the section and its figure
    assert "id='distill'" not in page and not (tmp_path / "figures" / "distill.png").exists()
    page = write_report(tmp_path, synthetic_data(distill=True)).read_text()
    assert "id='distill'" in page and (tmp_path / "figures" / "distill.png").exists()
    # MIDI links point at files next to the page
    links = re.findall(r"href='(audio/[^']+\.mid)'", page)
    assert len(links) == 4 and all((tmp_path / link).stat().st_size > 0 for link in links)


def test_report_without_abcjs_shows_the_text(tmp_path, monkeypatch):
    monkeypatch.setattr(domains, "abcjs_script", lambda: None)
    page = write_report(tmp_path, synthetic_data(), audio=False).read_text()
    assert page.count("class='abc-render'") == 4
    assert domains.ABCJS_HINT.split("`")[1] in page  # how to install it
    assert "T:Reel &lt;one&gt; &amp; &quot;two&quot;" in page  # the ABC, escaped


def test_report_renders_in_chromium(tmp_path):
    from browser import chromium, console_errors

    if domains.abcjs_script() is None:
        pytest.skip(f"abcjs is not installed: {domains.ABCJS_HINT}")
    data = synthetic_data(distill=True)
    path = write_report(tmp_path, data)
    with chromium() as driver:
        driver.get(path.as_uri())
        n_svg = driver.execute_script("return document.querySelectorAll('.abc-render svg').length")
        errors = console_errors(driver)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(height + 100, 8000))  # the whole page in one picture
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    assert errors == []
    assert n_svg == len(data["tunes"])
    assert shot.stat().st_size > 0
    if os.environ.get("GRADOPT_SAVE_SCREENSHOT"):
        dest = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "report_screenshot.png"
        shutil.copyfile(shot, dest)
