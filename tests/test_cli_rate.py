"""`gradopt rate`: the terminal rating app, driven by textual's pilot; every key lands in the store."""

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

import domains
from gradopt.cli import main
from gradopt.cli._rate import PLAYER_HINT, build_app, find_player
from rewardmodels import RatingSession, RatingStore

TUNES = [f"X:{k}\nK:C\n{body}|" for k, body in enumerate(["CDEF", "GABc", "cBAG", "FEDC"], 1)]


def _store(path):
    store = RatingStore(path)
    ids = [store.add_item(t).id for t in TUNES]
    store.enqueue([(ids[2], ids[3])], strategy="harvest")
    return store, ids


def _drive(app, keys, check=None):
    async def go():
        async with app.run_test() as pilot:
            for key in keys:
                await pilot.press(key)
            if check is not None:
                check(app)

    asyncio.run(go())


def test_keys_record_verdicts_undo_and_quit(tmp_path):
    store, ids = _store(tmp_path / "s")
    app = build_app(RatingSession(store, "ann"))
    shown = []

    def check(app):
        shown.append(app.pair)
        assert "ann: 2 rated, 1 skipped" in str(app.query_one("#progress").render())

    _drive(app, ["1", "2", "t", "u", "s"], check)
    stored = RatingStore(tmp_path / "s")
    assert [c.winner for c in stored.comparisons] == ["a", "b"]  # the tie was undone
    assert stored.comparisons[0].a == ids[2] and stored.comparisons[0].b == ids[3]  # the queued pair first
    assert len(stored.skips) == 1 and {c.rater for c in stored.comparisons} == {"ann"}
    assert b'"retract"' in (tmp_path / "s" / "comparisons.jsonl").read_bytes()

    # a new app on the same store resumes: ann's 2 ratings and skip count, no queued pair comes back
    again = build_app(RatingSession(tmp_path / "s", "ann"))
    _drive(again, ["1", "q"])
    assert len(RatingStore(tmp_path / "s").comparisons) == 3 and not again.is_running
    assert shown[0] is not None and shown[0].source != "queue"


def test_play_keys_use_the_player_or_say_there_is_none(tmp_path):
    store, _ = _store(tmp_path / "s")
    played = []

    class Fake:
        def poll(self):
            return None

        def terminate(self):
            played.append("stopped")

    def player(text):
        played.append(text)
        return Fake()

    app = build_app(RatingSession(store, "ann"), player)
    _drive(app, ["a", "b"], lambda app: played.extend([app.pair.a.text, app.pair.b.text]))
    assert played == [TUNES[2], "stopped", TUNES[3], TUNES[2], TUNES[3], "stopped"]

    silent = build_app(RatingSession(store, "bob"), None)
    _drive(silent, ["a"], lambda app: played.append(str(app.query_one("#note").render())))
    assert "cannot play" in played[-1] and "timidity" in played[-1]


def test_find_player_is_none_without_tools(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert find_player() is None


def test_command_refuses_a_store_with_too_few_items(tmp_path, capsys):
    RatingStore(tmp_path / "s").add_item(TUNES[0])
    assert main(["rate", str(tmp_path / "s"), "--rater", "ann"]) == 2
    assert "holds 1 item(s)" in capsys.readouterr().err
    assert main(["rate", str(tmp_path / "nowhere"), "--rater", "ann"]) == 2


# A stand-in for a player program: appends its argv (JSON, one line per run) to the log next to
# it; as fluidsynth it also writes the WAV it was asked for (holding the MIDI file's path).
FAKE_PLAYER = """#!{python}
import json, sys
from pathlib import Path
with open(Path(__file__).with_name("argv.log"), "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
if "-F" in sys.argv:
    Path(sys.argv[sys.argv.index("-F") + 1]).write_text(sys.argv[-1])
"""


def _fake_bin(tmp_path, monkeypatch, names):
    """A folder holding fake `names` (and the real abc2midi, if installed) as the whole PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        (bin_dir / name).write_text(FAKE_PLAYER.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    if shutil.which("abc2midi"):
        (bin_dir / "abc2midi").symlink_to(shutil.which("abc2midi"))
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def _runs(log: Path, n: int) -> list[list[str]]:
    """The argv of the first `n` player runs, waiting up to 30 s for them (players start apart)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return [json.loads(x) for x in lines]
        time.sleep(0.05)
    raise AssertionError(f"the player ran {len(lines)} time(s), expected {n}")


def _press_a_then_b(app, log, per_key=1):
    """Press a, wait for its `per_key` program runs (so stopping its player cannot pre-empt
    them), press b, wait again -> every run's argv and the pair shown."""
    async def go():
        async with app.run_test() as pilot:
            await pilot.press("a")
            await asyncio.to_thread(_runs, log, per_key)
            await pilot.press("b")
            return await asyncio.to_thread(_runs, log, 2 * per_key), app.pair

    return asyncio.run(go())


def _midi(text, path):
    return domains.abc_to_midi(text, path).read_bytes()


def test_a_and_b_play_each_tune_through_timidity(tmp_path, monkeypatch):
    bin_dir = _fake_bin(tmp_path, monkeypatch, ["timidity"])
    store, _ = _store(tmp_path / "s")
    runs, pair = _press_a_then_b(build_app(RatingSession(store, "ann"), find_player()), bin_dir / "argv.log")
    assert [r[:2] for r in runs] == [[str(bin_dir / "timidity"), "-q"]] * 2
    assert (pair.a.text, pair.b.text) == (TUNES[2], TUNES[3])  # the queued pair
    assert Path(runs[0][2]).read_bytes() == _midi(TUNES[2], tmp_path / "first.mid")  # a: the first tune
    assert Path(runs[1][2]).read_bytes() == _midi(TUNES[3], tmp_path / "second.mid")  # b: the second


def test_a_and_b_play_each_tune_as_wav_through_fluidsynth_and_aplay(tmp_path, monkeypatch):
    bin_dir = _fake_bin(tmp_path, monkeypatch, ["fluidsynth", "aplay"])
    font = tmp_path / "font.sf2"
    font.write_bytes(b"sf2")
    for module in (domains, sys.modules["domains._render"]):
        monkeypatch.setattr(module, "find_soundfont", lambda: font)
    store, _ = _store(tmp_path / "s")
    app = build_app(RatingSession(store, "ann"), find_player())
    runs, _ = _press_a_then_b(app, bin_dir / "argv.log", per_key=2)  # fluidsynth renders a WAV, aplay plays it
    assert [Path(r[0]).name for r in runs] == ["fluidsynth", "aplay"] * 2
    for (render, play), tune, name in zip((runs[:2], runs[2:]), TUNES[2:], ("first", "second")):
        wav = Path(play[-1])
        assert render[render.index("-F") + 1] == str(wav) and wav.suffix == ".wav"
        assert Path(wav.read_text()).read_bytes() == _midi(tune, tmp_path / f"{name}.mid")  # its tune's MIDI


def test_without_a_player_the_keys_show_the_hint(tmp_path, monkeypatch):
    _fake_bin(tmp_path, monkeypatch, [])
    monkeypatch.setattr(domains, "find_soundfont", lambda: None)
    assert find_player() is None
    store, _ = _store(tmp_path / "s")
    notes = []
    _drive(build_app(RatingSession(store, "ann"), find_player()), ["a"],
           lambda app: notes.append(str(app.query_one("#note").render())))
    assert notes == [f"cannot play: {PLAYER_HINT}"]
