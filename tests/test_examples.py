"""Every script in examples/ runs as written, on tiny models (a 1-layer generator and a reward
model initialised from it, trained on nothing: the scripts' plumbing is under test, not quality)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import domains
from ascent_doubles import save_tiny_models

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny generator whose vocabulary covers the bundled tunes, saved with the corpus'
    normalisation, and a reward model beside it."""
    d = tmp_path_factory.mktemp("models")
    norm = domains.NormaliseConfig(spaceless=True)
    texts = [p.text for p in domains.load_abc_corpus(domains.FIDDLE, norm)]
    tok = domains.build_tokenizer(texts, "char")
    save_tiny_models(d, tok, n_positions=1024)
    domains.save_normalisation(norm, d / "gen")
    tune = d / "tune.abc"
    tune.write_text(texts[0])
    return d, tune


def run(script: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_every_example_is_tested():
    tested = {"optimize_one_tune.py", "rate_and_fit.py", "harvest_blind_spots.py", "improve_corpus.py",
              "generate_tunes.py"}
    assert set(EXAMPLES) == tested, f"examples without a test: {set(EXAMPLES) - tested}"


def test_optimize_one_tune(models, tmp_path):
    d, tune = models
    out = run("optimize_one_tune.py", "--generator", str(d / "gen"), "--reward", str(d / "rm"), "--tune", str(tune),
              "--steps", "4", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert "utility" in out and "(verified, discrete)" in out
    for name in ("before", "after"):
        assert (tmp_path / "out" / f"{name}.mid").read_bytes()[:4] == b"MThd"


def test_generate_tunes(models, tmp_path):
    d, _ = models
    out = run("generate_tunes.py", "--generator", str(d / "gen"), "--reward", str(d / "rm"), "-n", "2",
              "--best-of", "2", "--guard", "--out", str(tmp_path / "new.abc"), cwd=tmp_path)
    assert out.count("tune ") == 2 and "best-of-2" in out and "utility" in out
    assert "wrote 2 tunes" in out and (tmp_path / "new.abc").read_text().strip()


def test_rate_and_fit(tmp_path):
    out = run("rate_and_fit.py", "--store", str(tmp_path / "store"), "--tunes", "6", "--rounds", "2", "--pairs", "4",
              cwd=tmp_path)
    from rewardmodels import RatingStore

    store = RatingStore(tmp_path / "store")
    assert len(store) == 6 and len(store.comparisons) > 0
    assert out.count("round ") == 2 and "best first" in out


def test_harvest_blind_spots(models, tmp_path):
    d, _ = models
    out = run("harvest_blind_spots.py", "--generator", str(d / "gen"), "--reward", str(d / "rm"),
              "--store", str(tmp_path / "store"), "-n", "2", "--steps", "3",
              "--min-reward=-1e9", cwd=tmp_path)  # the untrained reward model is not calibrated
    from rewardmodels import RatingStore

    n = int(out.split(" suspects queued")[0].split()[-1])
    store = RatingStore(tmp_path / "store")
    harvested = [it for it in store.items if it.origin == "harvested"]
    assert n > 0 and len(harvested) == n  # what it says it queued is in the store
    queued = {k for q in store.queue for k in (q.a, q.b)}
    assert queued and queued <= set(store.ids)  # pairs to rate, over stored items


def test_improve_corpus(models, tmp_path):
    d, _ = models
    out = run("improve_corpus.py", "--generator", str(d / "gen"), "--reward", str(d / "rm"), "--tunes", "3",
              "--shard-size", "2", "--steps", "2", "--out", str(tmp_path / "corpus"), cwd=tmp_path)
    import json

    summary = json.loads((tmp_path / "corpus" / "job" / "summary.json").read_text())
    tunes = domains.load_abc_file(tmp_path / "corpus" / "tunes.abc")
    improved = domains.load_abc_file(tmp_path / "corpus" / "improved.abc")
    assert summary["tunes"] == len(tunes) == len(improved) == 3
    assert f"3 tunes -> {tmp_path / 'corpus' / 'improved.abc'}: {summary['changed']} changed" in out
    assert "reward gain" in out and "utility gain" in out
    assert "resumed: 0 of 2 shards redone; same summary: True" in out  # resume=True redid nothing
