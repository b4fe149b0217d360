"""`gradopt rate`: the terminal rating app, driven by textual's pilot; every key lands in the store."""

import asyncio

from gradopt.cli import main
from gradopt.cli._rate import build_app, find_player
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
