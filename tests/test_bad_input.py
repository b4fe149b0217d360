"""Bad input across the loop: every `gradopt` command that reads a kind of user input, given that
input broken (a corrupt rating store, a missing or wrong model directory, an empty corpus, a
scores or normalisation file from another version), exits 2 with a message that names the file,
prints no traceback, and leaves what was already written as it was.

The table `CASES` is (command line, what is broken, expected behaviour). Each case runs in its
own copy of a small world: tiny models (`ascent_doubles.save_tiny_models`), a rating store of
four tunes and three comparisons, a scores file, a tune file. Paths in a command line are
written ``{w}/...`` and filled in with that copy's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from ascent_doubles import TEXTS, save_tiny_models

TUNES = [
    "X:1\nT:One\nM:4/4\nL:1/8\nK:G\nGABc dedB|cBAG E2D2|\n",
    "X:2\nT:Two\nM:4/4\nL:1/8\nK:G\nGABc dBdB|cBAG G4|\n",
    "X:3\nT:Three\nM:4/4\nL:1/8\nK:G\nDEFG ABcd|edcB A4|\n",
    "X:4\nT:Four\nM:4/4\nL:1/8\nK:G\nG2B2 d2B2|c2A2 G4|\n",
]
STORE_FILES = ("items.jsonl", "comparisons.jsonl", "queue.jsonl")
FAST = ["--steps", "1", "--check-every", "1", "--polish-rounds", "0", "--threads", "1"]
MODELS = ["--generator", "{w}/gen", "--reward", "{w}/rm"]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The good world every case copies: models, a store, its scores, tune and text files."""
    import domains
    import rewardmodels as rm

    d = tmp_path_factory.mktemp("world")
    tok = domains.build_char_tokenizer(TEXTS + TUNES)
    save_tiny_models(d, tok, n_positions=96)
    domains.save_normalisation(domains.NormaliseConfig(), d / "gen")
    store = rm.RatingStore(d / "store")
    ids = [it.id for it in store.add_items(TUNES)]
    for a, b, w in [(0, 1, "a"), (1, 2, "b"), (2, 3, "tie")]:
        store.add_comparison(ids[a], ids[b], w, rater="me")
    store.enqueue([(ids[0], ids[3])])
    rm.save_scores(rm.fit_store(store), store.ids, d / "scores.json")
    (d / "in.abc").write_text("\n".join(TUNES))
    (d / "pairs.json").write_text("[[0, 3]]")
    (d / "empty.abc").write_text("")
    (d / "blank.txt").write_text("\n\n   \n")
    (d / "no_tunes").mkdir()
    (d / "no_tunes" / "readme.txt").write_text("not a tune")
    return d


# --- ways to break things (each takes the world directory) -------------------------------------
def garble(rel: str, line: int = 2) -> Callable[[Path], None]:
    """Replace line `line` of a JSON-lines file with a half record (a bad line that is not the last)."""
    def go(w: Path) -> None:
        lines = (w / rel).read_text().splitlines(keepends=True)
        lines[line - 1] = '{"a": "6f1c\n'
        (w / rel).write_text("".join(lines))
    return go


def tear(rel: str) -> Callable[[Path], None]:
    """Append the start of a record with no newline: what a writer killed mid-record leaves."""
    def go(w: Path) -> None:
        with open(w / rel, "a") as f:
            f.write('{"a": "6f1c", "b": "9e')
    return go


def write(rel: str, text: str) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / rel).write_text(text)
    return go


def edit_json(rel: str, fn: Callable[[dict], dict]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        (w / rel).write_text(json.dumps(fn(json.loads((w / rel).read_text()))))
    return go


def remove(rel: str) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        target = w / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return go


def copy(src: str, dst: str) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        shutil.copy(w / src, w / dst)
    return go


def tokenizer_into(rel: str) -> Callable[[Path], None]:
    """Give a model directory the generator's tokenizer files (as `train-reward --out` does)."""
    def go(w: Path) -> None:
        for f in (w / "gen").glob("*.json"):
            if f.name not in ("config.json", "generation_config.json", "normalisation.json"):
                shutil.copy(f, w / rel / f.name)
    return go


def both(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        for fn in fns:
            fn(w)
    return go


def drop(*keys: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k not in keys}


# --- the table ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str  # test id: command + what is broken
    argv: list[str]  # the command line, with {w} for the world directory
    breaks: Callable[[Path], None]  # what is done to the world first
    names: str  # the file (relative to the world) stderr must name
    code: int = 2  # expected exit code
    says: tuple[str, ...] = ()  # further phrases stderr must hold (lower case)
    absent: tuple[str, ...] = ()  # outputs (relative) that must not be written
    intact: tuple[str, ...] = ("store",)  # files/folders (relative) that must be byte-for-byte unchanged
    marks: tuple = field(default=())


BAD_STORE = [  # a bad line in the middle of a store file: StoreError naming file and line
    Case("ratings-stats/garbled-comparisons", ["ratings", "stats", "--store", "{w}/store"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2", says=("malformed json",)),
    Case("ratings-stats/garbled-items", ["ratings", "stats", "--store", "{w}/store"],
         garble("store/items.jsonl"), "store/items.jsonl:2"),
    Case("ratings-stats/garbled-queue", ["ratings", "stats", "--store", "{w}/store"],
         write("store/queue.jsonl", '[1, 2]\n{"a": 1}\n'), "store/queue.jsonl:1"),
    Case("ratings-add/garbled-items", ["ratings", "add", "{w}/in.abc", "--store", "{w}/store", "--origin", "corpus"],
         garble("store/items.jsonl"), "store/items.jsonl:2"),
    Case("ratings-import/garbled-comparisons",
         ["ratings", "import", "{w}/pairs.json", "--store", "{w}/store", "--format", "pairs"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2"),
    Case("ratings-export/garbled-comparisons",
         ["ratings", "export", "{w}/out.json", "--store", "{w}/store", "--format", "pairs"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2", absent=("out.json",)),
    Case("fit-bt/garbled-comparisons", ["fit-bt", "--store", "{w}/store", "--out", "{w}/new_scores.json"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2", absent=("new_scores.json",)),
    Case("next-pairs/garbled-queue", ["next-pairs", "--store", "{w}/store", "--scores", "{w}/scores.json"],
         garble("store/queue.jsonl", 1), "store/queue.jsonl:1"),
    Case("simulate-ratings/garbled-comparisons", ["simulate-ratings", "--store", "{w}/store", "-k", "1"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2"),
    Case("train-reward/garbled-items",
         ["train-reward", "--store", "{w}/store", "--generator", "{w}/gen", "--scores", "{w}/scores.json",
          "--out", "{w}/rm2", "--steps", "1"],
         garble("store/items.jsonl", 3), "store/items.jsonl:3", absent=("rm2",)),
    Case("harvest/garbled-comparisons",
         ["harvest", "--store", "{w}/store", "--in", "{w}/in.abc", "--corpus", "{w}/in.abc", *MODELS, *FAST],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2"),
    Case("harvest/garbled-store-before-the-models",  # the store is read before any model work
         ["harvest", "--store", "{w}/store", "--in", "{w}/in.abc", "--generator", "{w}/nowhere",
          "--reward", "{w}/nowhere", *FAST], garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2"),
    Case("rate/garbled-comparisons", ["rate", "{w}/store", "--rater", "me", "--no-audio"],
         garble("store/comparisons.jsonl"), "store/comparisons.jsonl:2"),
    Case("serve-ratings/garbled-items", ["serve-ratings", "{w}/store"],
         garble("store/items.jsonl"), "store/items.jsonl:2"),
    Case("ratings-stats/missing-store", ["ratings", "stats", "--store", "{w}/nowhere"],
         lambda w: None, "nowhere", intact=()),
]

TORN_TAIL = [  # a torn LAST line: skipped with a warning naming it (reads), moved aside (writes)
    Case("ratings-stats/torn-last-line", ["ratings", "stats", "--store", "{w}/store"],
         tear("store/comparisons.jsonl"), "store/comparisons.jsonl:4", code=0, says=("torn",)),
    Case("fit-bt/torn-last-line", ["fit-bt", "--store", "{w}/store", "--out", "{w}/new_scores.json"],
         tear("store/items.jsonl"), "store/items.jsonl:5", code=0, says=("torn",)),
    Case("ratings-add/torn-last-line",
         ["ratings", "add", "{w}/in.abc", "--store", "{w}/store", "--origin", "corpus"],
         tear("store/comparisons.jsonl"), "store/comparisons.jsonl:4", code=0, says=("moved torn last line",),
         intact=()),
]

BAD_IMPORTS = [  # the file a command reads comparisons or pairs from
    Case("ratings-import/garbled-jsonl",
         ["ratings", "import", "{w}/pairs.jsonl", "--store", "{w}/store", "--format", "openai"],
         write("pairs.jsonl", '{"query": "X:1", "sample0": "a", "sample1": "b", "best": 0}\n{"query": \n'),
         "pairs.jsonl:2"),
    Case("ratings-import/missing-file",
         ["ratings", "import", "{w}/nowhere.json", "--store", "{w}/store", "--format", "pairs"],
         lambda w: None, "nowhere.json"),
    Case("simulate-ratings/garbled-pairs",
         ["simulate-ratings", "--store", "{w}/store", "--pairs", "{w}/next.jsonl"],
         write("next.jsonl", '{"a": "x", \n{"a": "y", "b": "z"}\n'), "next.jsonl:1"),
]

BAD_SCORES = [  # scores.json from fit-bt: garbage, or keys missing (another version wrote it)
    Case("next-pairs/garbage-scores", ["next-pairs", "--store", "{w}/store", "--scores", "{w}/scores.json"],
         write("scores.json", "{not json"), "scores.json", says=("fit-bt",)),
    Case("next-pairs/scores-without-sd", ["next-pairs", "--store", "{w}/store", "--scores", "{w}/scores.json"],
         edit_json("scores.json", drop("sd")), "scores.json", says=("'sd'",)),
    Case("next-pairs/scores-lengths-differ", ["next-pairs", "--store", "{w}/store", "--scores", "{w}/scores.json"],
         edit_json("scores.json", lambda d: {**d, "mean": d["mean"][:2]}), "scores.json"),
    Case("ratings-export/trl-garbage-scores",
         ["ratings", "export", "{w}/out.json", "--store", "{w}/store", "--format", "trl", "--scores", "{w}/scores.json"],
         write("scores.json", "[1, 2]"), "scores.json", absent=("out.json",)),
    Case("simulate-ratings/scores-without-ids",
         ["simulate-ratings", "--store", "{w}/store", "--scores", "{w}/scores.json", "-k", "1"],
         edit_json("scores.json", drop("ids")), "scores.json", says=("'ids'",)),
    Case("train-reward/scores-without-mean",
         ["train-reward", "--store", "{w}/store", "--generator", "{w}/gen", "--scores", "{w}/scores.json",
          "--out", "{w}/rm2", "--steps", "1"],
         edit_json("scores.json", drop("mean")), "scores.json", says=("'mean'",), absent=("rm2",)),
]

SAMPLE = ["sample", "--work", "{w}/gen", "-n", "1", "--max-new-tokens", "4"]
OPTIMIZE = ["optimize", "--in", "{w}/in.abc", "--out", "{w}/out.abc", "--no-utility", "--move-rounds", "0", *FAST]
BAD_MODELS = [  # a missing, incomplete or wrong model directory
    Case("sample/no-generator-dir", ["sample", "--work", "{w}/nowhere"], lambda w: None, "nowhere"),
    Case("sample/no-tokenizer", SAMPLE, remove("gen/tokenizer.json"), "gen", says=("tokenizer",)),
    Case("sample/no-weights", SAMPLE, remove("gen/model.safetensors"), "gen", says=("weights",)),
    Case("sample/garbage-config", SAMPLE, write("gen/config.json", "{not json"), "gen/config.json"),
    Case("sample/reward-model-as-generator", ["sample", "--work", "{w}/rm", "-n", "1"],
         tokenizer_into("rm"), "rm", says=("reward model",)),
    Case("optimize/reward-model-as-generator",
         [*OPTIMIZE, "--generator", "{w}/rm", "--reward", "{w}/rm"],
         both(tokenizer_into("rm"), copy("gen/normalisation.json", "rm/normalisation.json")),
         "rm", says=("reward model",), absent=("out.abc",)),
    Case("optimize/generator-as-reward", [*OPTIMIZE, "--generator", "{w}/gen", "--reward", "{w}/gen"],
         lambda w: None, "gen", says=("not a gradopt reward model",), absent=("out.abc",)),
    Case("optimize/no-reward-dir", [*OPTIMIZE, "--generator", "{w}/gen", "--reward", "{w}/nowhere"],
         lambda w: None, "nowhere", absent=("out.abc",)),
    Case("optimize/garbage-reward-config", [*OPTIMIZE, *MODELS], write("rm/config.json", "{not json"),
         "rm/config.json", absent=("out.abc",)),
    Case("optimize/old-reward-marker-not-an-object", [*OPTIMIZE, *MODELS],
         edit_json("rm/config.json", lambda d: {**d, "gradopt_reward_model": 1}), "rm/config.json",
         absent=("out.abc",)),
    Case("harvest/generator-as-reward",
         ["harvest", "--store", "{w}/store", "--in", "{w}/in.abc", "--generator", "{w}/gen", "--reward", "{w}/gen",
          *FAST], lambda w: None, "gen", says=("not a gradopt reward model",)),
    Case("distill/reward-model-as-generator",
         ["distill", "--method", "base", "--generator", "{w}/rm", "--reward-model", "{w}/rm", "--work", "{w}/d",
          "--no-progress"], tokenizer_into("rm"), "rm", says=("reward model",)),
    Case("distill/generator-as-reward",
         ["distill", "--method", "base", "--generator", "{w}/gen", "--reward-model", "{w}/gen", "--work", "{w}/d",
          "--no-progress"], lambda w: None, "gen", says=("not a gradopt reward model",)),
    Case("train-reward/reward-model-as-generator",
         ["train-reward", "--store", "{w}/store", "--generator", "{w}/rm", "--scores", "{w}/scores.json",
          "--out", "{w}/rm2", "--steps", "1"], tokenizer_into("rm"), "rm",
         says=("reward model",), absent=("rm2",)),
    Case("train-reward/no-generator-dir",
         ["train-reward", "--store", "{w}/store", "--generator", "{w}/nowhere", "--scores", "{w}/scores.json",
          "--out", "{w}/rm2", "--steps", "1"], lambda w: None, "nowhere", absent=("rm2",)),
]

TRAIN_GEN = ["train-generator", "--work", "{w}/newgen", "--preset", "tiny", "--steps", "1"]
EMPTY_CORPUS = [  # nothing to read: an empty file, a folder with no tunes, a file of blank lines
    Case("train-generator/empty-abc", [*TRAIN_GEN, "--corpus", "{w}/empty.abc"], lambda w: None, "empty.abc",
         absent=("newgen",)),
    Case("train-generator/folder-without-tunes", [*TRAIN_GEN, "--corpus", "{w}/no_tunes"], lambda w: None,
         "no_tunes", absent=("newgen",)),
    Case("train-generator/blank-text", [*TRAIN_GEN, "--corpus", "{w}/blank.txt", "--domain", "text"],
         lambda w: None, "blank.txt", absent=("newgen",)),
    Case("ratings-add/empty-abc", ["ratings", "add", "{w}/empty.abc", "--store", "{w}/store", "--origin", "corpus"],
         lambda w: None, "empty.abc"),
    Case("ratings-add/blank-text",
         ["ratings", "add", "{w}/blank.txt", "--store", "{w}/store", "--origin", "corpus", "--domain", "text"],
         lambda w: None, "blank.txt"),
    Case("optimize/empty-abc", ["optimize", "--in", "{w}/empty.abc", "--out", "{w}/out.abc", *MODELS, *FAST],
         lambda w: None, "empty.abc", absent=("out.abc",)),
    Case("optimize/blank-text",
         ["optimize", "--in", "{w}/blank.txt", "--out", "{w}/out.txt", "--domain", "text", *MODELS, *FAST],
         lambda w: None, "blank.txt", absent=("out.txt",)),
    Case("harvest/empty-in",
         ["harvest", "--store", "{w}/store", "--in", "{w}/empty.abc", "--corpus", "{w}/in.abc", *MODELS, *FAST],
         lambda w: None, "empty.abc"),
    Case("harvest/empty-corpus",
         ["harvest", "--store", "{w}/store", "--in", "{w}/in.abc", "--corpus", "{w}/no_tunes", *MODELS, *FAST],
         lambda w: None, "no_tunes"),
    Case("distill/empty-corpus",
         ["distill", "--method", "base", "--generator", "{w}/gen", "--reward-model", "{w}/rm", "--work", "{w}/d",
          "--corpus", "{w}/empty.abc", "--no-progress"], lambda w: None, "empty.abc", absent=("d",)),
    Case("validate/empty-abc", ["validate", "{w}/empty.abc"], lambda w: None, "empty.abc"),
    Case("validate/missing-file", ["validate", "{w}/nowhere.abc"], lambda w: None, "nowhere.abc"),
]

OLD_CONFIGS = [  # files written by another version of the program
    Case("sample/normalisation-with-unknown-key", SAMPLE,
         write("gen/normalisation.json", '{"spaceless": false, "lowercase": true}'), "gen/normalisation.json",
         says=("lowercase",)),
    Case("sample/normalisation-with-a-bad-value", SAMPLE, write("gen/normalisation.json", '{"max_chars": "2000"}'),
         "gen/normalisation.json"),
    Case("sample/garbage-domain-file", SAMPLE, write("gen/domain.json", "abc"), "gen/domain.json"),
    Case("sample/normalisation-missing-keys-is-fine", SAMPLE, write("gen/normalisation.json", "{}"),
         "", code=0),
    Case("next-pairs/scores-from-before-ties-is-fine",
         ["next-pairs", "--store", "{w}/store", "--scores", "{w}/scores.json", "-k", "1"],
         edit_json("scores.json", lambda d: {**drop("tie", "reason", "n_iter", "coef")(d), "written_by": "0.9"}),
         "", code=0),
]

CASES = BAD_STORE + TORN_TAIL + BAD_IMPORTS + BAD_SCORES + BAD_MODELS + EMPTY_CORPUS + OLD_CONFIGS


def _snapshot(w: Path, rels) -> dict[str, bytes | None]:
    out = {}
    for rel in rels:
        for f in sorted((w / rel).rglob("*")) if (w / rel).is_dir() else [w / rel]:
            out[str(f)] = f.read_bytes() if f.is_file() else None
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `gradopt argv` in this process; warnings count as stderr
    (the command line prints them there). An exception that escapes is a traceback for the user."""
    from gradopt.cli import main

    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as err:
            code = err.code
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"gradopt {' '.join(argv)}: traceback instead of a message: {type(err).__name__}: {err}")
    out, err = capsys.readouterr()
    err += "".join(f"warning: {w.message}\n" for w in caught)
    return code, out, err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, template: Path, tmp_path: Path, capsys):
    w = tmp_path / "w"
    shutil.copytree(template, w)
    case.breaks(w)
    before = _snapshot(w, case.intact)
    code, out, err = run_cli([a.replace("{w}", str(w)) for a in case.argv], capsys)
    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{err}"
    assert "Traceback" not in err
    if case.names:
        assert str(w / case.names) in err, f"stderr does not name {w / case.names}:\n{err}"
    for phrase in case.says:
        assert phrase in err.lower(), f"stderr does not say {phrase!r}:\n{err}"
    for rel in case.absent:
        assert not (w / rel).exists(), f"{rel} was written although the command failed"
    assert _snapshot(w, case.intact) == before, "a file that was already written changed"


def test_a_torn_last_line_is_moved_aside_and_every_good_line_kept(template, tmp_path, capsys):
    """The documented repair: adding to a store whose last line is torn keeps every complete
    record, moves the fragment to <file>.torn and says so."""
    w = tmp_path / "w"
    shutil.copytree(template, w)
    good = (w / "store/comparisons.jsonl").read_text()
    tear("store/comparisons.jsonl")(w)
    (w / "more.abc").write_text(TUNES[0].replace("X:1\nT:One", "X:9\nT:Nine").replace("E2D2", "D4"))
    code, out, err = run_cli(["ratings", "add", str(w / "more.abc"), "--store", str(w / "store"),
                              "--origin", "corpus"], capsys)
    assert code == 0 and "added 1 new items" in out
    assert (w / "store/comparisons.jsonl").read_text() == good
    assert (w / "store/comparisons.jsonl.torn").read_text().startswith('{"a": "6f1c", "b": "9e')
    assert "comparisons.jsonl.torn" in err


# --- library entry points -----------------------------------------------------------------------
def test_library_errors_name_the_file(template, tmp_path):
    import domains
    import rewardmodels as rm

    w = tmp_path / "w"
    shutil.copytree(template, w)
    garble("store/comparisons.jsonl")(w)
    with pytest.raises(ValueError, match=r"comparisons\.jsonl:2"):
        rm.RatingStore(w / "store")
    edit_json("scores.json", drop("sd"))(w)
    with pytest.raises(ValueError, match=r"scores\.json.*'sd'"):
        rm.load_scores(w / "scores.json")
    tokenizer_into("rm")(w)
    with pytest.raises(ValueError, match=r"reward model"):
        domains.load_generator(w / "rm")
    remove("gen/model.safetensors")(w)
    with pytest.raises(FileNotFoundError, match=str(w / "gen")):
        domains.load_generator(w / "gen")


def test_a_broken_tune_fails_to_render_with_a_value_error(tmp_path):
    """A tune abc2midi cannot read is bad input (ValueError naming the output file); a MIDI file
    that does not exist is a FileNotFoundError naming it."""
    import domains

    out = tmp_path / "broken.mid"
    with pytest.raises(ValueError, match="broken.mid") as info:
        domains.abc_to_midi("this is not a tune", out)
    assert isinstance(info.value, domains.RenderError)
    assert not out.exists()
    (tmp_path / "garbage.mid").write_bytes(b"not a midi file")
    with pytest.raises(ValueError, match="garbage.mid"):
        domains.midi_to_wav(tmp_path / "garbage.mid", tmp_path / "garbage.wav")
    assert not (tmp_path / "garbage.wav").exists()
    with pytest.raises(FileNotFoundError, match="nowhere.mid"):
        domains.midi_to_wav(tmp_path / "nowhere.mid", tmp_path / "x.wav")


# --- outputs are written whole or not at all ---------------------------------------------------
class _DiskFull:
    """`open` whose files opened for writing under `folder` fail after a few bytes, like a full disk."""

    def __init__(self, folder: Path, real_open):
        self.folder, self.real_open = str(folder), real_open

    def __call__(self, file, mode="r", *args, **kwargs):
        f = self.real_open(file, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file)
        if any(c in mode for c in "wax") and name.startswith(self.folder):
            write = f.write

            def short_write(data):
                write(data[:5])
                raise OSError(28, "No space left on device", str(file))
            f.write = short_write
        return f


@pytest.mark.parametrize("what", ["export", "scores", "abc"])
def test_a_failed_write_leaves_the_old_output_whole(what, template, tmp_path, monkeypatch):
    """Exports, scores and written tunes go to a temporary file renamed into place: a write that
    fails half way (here: a full disk) leaves the previous output as it was, and no stray file."""
    import builtins
    import io

    import domains
    import rewardmodels as rm

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result"
    out.write_text("OLD OUTPUT")
    store = rm.RatingStore(template / "store", create=False)
    write = {"export": lambda: rm.export_openai(store, out, jsonl=True),
             "scores": lambda: rm.save_scores(rm.fit_store(store), store.ids, out),
             "abc": lambda: domains.ABCDomain().write(TUNES, out)}[what]
    full = _DiskFull(out_dir, builtins.open)
    monkeypatch.setattr(builtins, "open", full)
    monkeypatch.setattr(io, "open", full)  # pathlib's write_text opens through io.open
    with pytest.raises(OSError, match="No space"):
        write()
    monkeypatch.undo()
    assert out.read_text() == "OLD OUTPUT"
    assert [f.name for f in out_dir.iterdir()] == ["result"]
