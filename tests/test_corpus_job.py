"""The corpus job: deterministic shards, results independent of workers and backend, atomic files,
exact resumption after a kill -9, refusal to resume a changed job, and the summary's gains."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ascent_doubles import TEXTS, save_tiny_models
from domains import NormaliseConfig, build_char_tokenizer, load_abc_file, save_normalisation
from gradopt import CORPUS_DOMAINS, CorpusJobConfig, atomic_write, plan_shards, read_corpus, read_shard
from gradopt.cli import main
from rewardmodels import SimulatedRater

ROOT = Path(__file__).resolve().parents[1]
TUNES = ["X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|cBAG E2D2|GABc dedB|cBAG G4|\n",
         "X:2\nT:B\nM:6/8\nL:1/8\nK:D\nFAd fed|cBA GFE|FAd fed|cBA D3|\n",
         "X:3\nT:C\nM:4/4\nL:1/8\nK:G\nDGBd gdBG|cBAG FGAF|DGBd gdBG|AGFA G4|\n",
         "X:4\nT:D\nM:3/4\nL:1/8\nK:D\nA2 d2 f2|e2 d2 c2|B2 G2 E2|D6|\n",
         "X:5\nT:E\nM:4/4\nL:1/8\nK:A\nEAAB c2BA|FBBA B2cd|EAAB c2ec|BAGB A4|\n",
         "X:6\nT:F\nM:6/8\nL:1/8\nK:G\nGBd gdB|cAF DFA|GBd gdB|AFD G3|\n"]
# few steps, a guard that trusts the single tiny reward model and lets its larger gains through (so some tunes change, some are kept), 3 shards
FAST = ["--steps", "4", "--check-every", "2", "--polish-rounds", "1", "--move-rounds", "1", "--move-candidates", "8",
        "--margin", "0.01", "--max-changed", "1", "--trust-single-model", "--shard-size", "2", "--batch-size", "2", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus_job")
    save_tiny_models(d, build_char_tokenizer(TEXTS + TUNES), n_positions=96)
    save_normalisation(NormaliseConfig(), d / "gen")
    (d / "in.abc").write_text("\n".join(TUNES))
    return d


def job(work, out, *extra):
    return ["improve-corpus", str(work / "in.abc"), str(out), "--generator", str(work / "gen"),
            "--reward-model", str(work / "rm"), *FAST, *extra]


@pytest.fixture(scope="module")
def ref(work):
    """An uninterrupted run with one worker: every other run must reproduce its files byte for byte."""
    assert main(job(work, work / "ref" / "out.abc", "--workers", "1")) == 0
    return work / "ref"


def job_files(d: Path) -> dict[str, bytes]:
    files = [d / "out.abc", d / "out.job" / "summary.json", *sorted((d / "out.job" / "shards").glob("*.jsonl"))]
    return {f.name: f.read_bytes() for f in files}


def test_plan_shards_is_deterministic_and_covers_the_corpus():
    a, b = plan_shards(TUNES, 4), plan_shards(list(TUNES), 4)
    assert a == b and [s.digest for s in a] == [s.digest for s in b]
    assert [len(s.texts) for s in a] == [4, 2] and [t for s in a for t in s.texts] == TUNES
    assert [s.first for s in a] == [0, 4] and [s.name for s in a] == ["shard-00000.jsonl", "shard-00001.jsonl"]
    changed = plan_shards([TUNES[0]] + [TUNES[1].replace("GFE", "GFD")] + TUNES[2:], 4)
    assert changed[0].digest != a[0].digest and changed[1].digest == a[1].digest
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(TUNES, 0)
    with pytest.raises(ValueError, match="shard_size"):
        CorpusJobConfig(shard_size=0)
    with pytest.raises(ValueError, match="unknown domain"):
        CorpusJobConfig(domain="midi-of-the-future")


def test_a_folder_of_files_reads_as_the_concatenated_file(work):
    folder = work / "folder"
    folder.mkdir()
    (folder / "a.abc").write_text("\n".join(TUNES[:4]))
    (folder / "b.abc").write_text("\n".join(TUNES[4:]))
    (folder / "notes.txt").write_text("not a tune")
    texts, sources = read_corpus(sorted(folder.glob("*.abc")), CORPUS_DOMAINS["abc"], work / "gen")
    assert texts == load_abc_file(work / "in.abc") and sources[3].endswith("a.abc#4") and sources[4].endswith("b.abc#1")


def test_two_workers_write_the_same_bytes_as_one(work, ref):
    assert main(job(work, work / "w2" / "out.abc", "--workers", "2")) == 0
    assert job_files(work / "w2") == job_files(ref)


def test_summary_reports_the_gains_of_the_written_tunes(work, ref):
    summary = json.loads((ref / "out.job" / "summary.json").read_text())
    rows = [json.loads(x) for f in sorted((ref / "out.job" / "shards").glob("*.jsonl"))
            for x in f.read_text().splitlines()[1:]]
    inputs, outputs = [r["input"] for r in rows], [r["text"] for r in rows]
    assert [r["n"] for r in rows] == list(range(6)) and inputs == load_abc_file(work / "in.abc")
    assert (ref / "out.abc").read_text() == "\n".join(t.rstrip("\n") + "\n" for t in outputs)  # in input order
    assert all(r["text"] == r["input"] and r["changed"] == 0 for r in rows if r["kept"])  # kept = exactly as read
    assert summary["tunes"] == 6 and summary["changed"] == sum(a != b for a, b in zip(inputs, outputs))
    assert 0 < summary["changed"] < 6 and summary["kept"] == 6 - summary["changed"] == sum(summary["kept_why"].values())
    rater = SimulatedRater(seed=0)
    gains = rater.utility(outputs) - rater.utility(inputs)
    assert summary["utility_gain"]["mean"] == pytest.approx(gains.mean())
    lo, hi = summary["utility_gain"]["ci95"]
    assert lo < gains.mean() < hi or lo == hi == pytest.approx(gains.mean())
    reward = [r["reward_after"] - r["reward_before"] for r in rows]
    assert summary["reward_gain"]["mean"] == pytest.approx(sum(reward) / 6) and summary["reward_gain"]["n"] == 6
    expected = stats.t.interval(0.95, 5, loc=np.mean(reward), scale=stats.sem(reward))
    assert summary["reward_gain"]["ci95"] == pytest.approx(list(expected))
    assert summary["validity_kept"] == summary["valid_before"] == 6


def test_kill_9_then_resume_gives_the_uninterrupted_output_and_redoes_no_shard(work, ref):
    out = work / "killed" / "out.abc"
    shards = work / "killed" / "out.job" / "shards"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "import sys; from gradopt.cli import main; sys.exit(main())",
           *job(work, out, "--workers", "1")]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(shards.glob("shard-*.jsonl")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes, mid-run
    err = proc.communicate()[1].decode()
    finished = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in shards.glob("shard-*.jsonl")}
    assert 1 <= len(finished) < 3, f"the kill should land between shards; finished {sorted(finished)}; {err[-2000:]}"
    assert not out.exists()
    assert main(job(work, out, "--workers", "1", "--resume")) == 0
    assert job_files(work / "killed") == job_files(ref)
    assert {n: (shards / n).stat().st_ino for n in finished} == {n: ino for n, (ino, _) in finished.items()}
    assert {n: (shards / n).stat().st_mtime_ns for n in finished} == {n: m for n, (_, m) in finished.items()}


def test_a_shard_rates_each_distinct_tune_once(work, monkeypatch):
    """A kept tune is its own output: the simulated rater parses it once, not as input and again as output."""
    import rewardmodels._simulated as simulated
    from gradopt import AscentConfig, ModelsSpec, PolishConfig, improve_shard

    parsed = []
    real = simulated.music_features
    monkeypatch.setattr(simulated, "music_features", lambda text, *a, **k: parsed.append(text) or real(text, *a, **k))
    fresh = [t.replace("\nT:", "\nT:rated once ") for t in TUNES[:3]]  # not rated before in this process
    cfg = CorpusJobConfig(ascent=AscentConfig(steps=2, check_every=1, polish=PolishConfig(rounds=0)), domain="abc")
    rows = improve_shard(plan_shards(fresh, 3)[0], ModelsSpec(generator=str(work / "gen"), reward=str(work / "rm")), cfg)
    assert any(r["kept"] for r in rows) and all(r["utility_before"] is not None for r in rows)
    assert sorted(parsed) == sorted(set(fresh) | {r["text"] for r in rows})
    assert all(r["utility_after"] == r["utility_before"] for r in rows if r["kept"])


def test_resume_refuses_a_changed_job_and_a_fresh_run_refuses_a_used_directory(work, ref, capsys):
    capsys.readouterr()
    assert main(job(work, ref / "out.abc", "--workers", "1", "--resume", "--steps", "5")) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "ascent.steps 4 -> 5" in err and str(ref / "out.job") in err
    assert main(job(work, ref / "out.abc", "--workers", "1")) == 2
    assert "already holds a job" in capsys.readouterr().err
    changed = work / "changed.abc"
    changed.write_text("\n".join(TUNES[:-1]))
    args = job(work, ref / "out.abc", "--workers", "1", "--resume")
    args[1] = str(changed)
    assert main(args) == 2 and "the inputs" in capsys.readouterr().err


def test_bad_inputs_exit_2_naming_the_file(work, tmp_path, capsys):
    (tmp_path / "empty.abc").write_text("")
    (tmp_path / "none").mkdir()
    cases = [(job(work, tmp_path / "o.abc"), 1, tmp_path / "missing.abc"),
             (job(work, tmp_path / "o.abc"), 1, tmp_path / "empty.abc"),
             (job(work, tmp_path / "o.abc"), 1, tmp_path / "none"),
             (job(work, tmp_path / "o.abc"), 4, tmp_path / "no-model")]
    for args, slot, path in cases:
        args[slot] = str(path)
        capsys.readouterr()
        assert main(args) == 2
        assert str(path) in capsys.readouterr().err
    assert not (tmp_path / "o.job").exists()


def test_ray_backend_gives_the_local_output(work, ref):
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as err:  # noqa: BLE001 (any reason Ray cannot start here)
        print(f"skipping: ray cannot start: {err}")
        pytest.skip(f"ray cannot start: {err}")
    try:
        assert main(job(work, work / "ray" / "out.abc", "--backend", "ray", "--workers", "2")) == 0
    finally:
        ray.shutdown()
    assert job_files(work / "ray") == job_files(ref)


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "shard.jsonl"
    atomic_write(path, "old\n")
    assert path.read_text() == "old\n"

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(path, "new line 1\nnew line 2\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["shard.jsonl"]


def test_read_shard_rejects_torn_and_foreign_files(tmp_path):
    path = tmp_path / "shard-00000.jsonl"
    rows = [{"n": 0, "text": "a"}, {"n": 1, "text": "b"}]
    path.write_text("\n".join([json.dumps({"shard": 0, "key": "k", "tunes": 2}), *map(json.dumps, rows)]) + "\n")
    assert read_shard(path, "k", 2) == rows
    assert read_shard(path, "other", 2) is None and read_shard(path, "k", 3) is None
    path.write_text(path.read_text()[:-9])  # a torn last line
    assert read_shard(path, "k", 2) is None
    assert read_shard(tmp_path / "missing.jsonl", "k", 2) is None


LINES = [f"the {w} is calm tonight, {w} and stone" for w in ["sea", "sky", "bay", "moon", "road", "hill"]]


@pytest.fixture(scope="module")
def text_work(tmp_path_factory):
    """A tiny text generator (`train-generator --domain text`, so its domain.json says text) and a
    reward model on its backbone."""
    import torch

    import domains
    from rewardmodels import RewardModel

    d = tmp_path_factory.mktemp("text_job")
    (d / "lines.txt").write_text("\n".join(LINES) + "\n")
    assert main(["train-generator", "--corpus", str(d / "lines.txt"), "--domain", "text", "--work", str(d / "gen"),
                 "--preset", "tiny", "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--minutes", "0"]) == 0
    torch.manual_seed(0)
    rm = RewardModel.from_generator(domains.load_generator(d / "gen"))
    torch.nn.init.normal_(rm.head.weight, std=1.0)  # rewards that differ between pieces, so some edits pass the guard
    rm.save_pretrained(d / "rm")
    return d


def test_a_text_corpus_is_read_and_written_one_piece_per_line_without_utility(text_work, capsys):
    d = text_work
    capsys.readouterr()
    assert main(["improve-corpus", str(d / "lines.txt"), str(d / "out.txt"), "--generator", str(d / "gen"),
                 "--reward-model", str(d / "rm"), *FAST, "--workers", "1"]) == 0  # the domain from domain.json
    printed = capsys.readouterr().out
    rows = [json.loads(x) for f in sorted((d / "out.job" / "shards").glob("*.jsonl"))
            for x in f.read_text().splitlines()[1:]]
    assert [r["input"] for r in rows] == LINES
    assert (d / "out.txt").read_text().splitlines() == [r["text"] for r in rows]  # one piece per line, in order
    assert all(r["text"] == r["input"] for r in rows if r["kept"]) and any(not r["kept"] for r in rows)
    assert all(r["valid_before"] for r in rows)  # validated as text, not as ABC
    summary = json.loads((d / "out.job" / "summary.json").read_text())
    assert summary["tunes"] == 6 and summary["utility_gain"]["n"] == 0 and summary["reward_gain"]["n"] == 6
    assert all(r["utility_before"] is None and r["utility_after"] is None for r in rows)
    assert json.loads((d / "out.job" / "manifest.json").read_text())["config"]["domain"] == "text"
    assert printed.startswith("6 pieces -> ") and "utility" not in printed


def test_a_domain_the_job_cannot_run_or_that_contradicts_the_generator_exits_2(text_work, work, tmp_path, capsys):
    d = text_work
    args = ["improve-corpus", str(d / "lines.txt"), str(tmp_path / "o.txt"), "--generator", str(d / "gen"),
            "--reward-model", str(d / "rm"), *FAST]
    capsys.readouterr()
    assert main([*args, "--domain", "abc"]) == 2
    assert "trained on text pieces" in capsys.readouterr().err
    args[4] = str(work / "gen")  # an ABC generator (no domain.json): MIDI would be one file per piece
    assert main([*args, "--domain", "midi"]) == 2
    assert "the midi domain writes one file per piece" in capsys.readouterr().err
    assert not (tmp_path / "o.job").exists() and not (tmp_path / "o.txt").exists()
