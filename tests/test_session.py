"""Rating sessions: queue first, no pair twice per rater, skips, undo by retraction, resume, and
several processes appending to one store."""

import json
import multiprocessing as mp

import pytest

from rewardmodels import RatingSession, RatingStore

TUNES = [f"X:{k}\nK:C\n{body}|" for k, body in enumerate(["CDEF", "GABc", "cBAG", "FEDC", "EGce"], 1)]


def _store(path, n=5):
    store = RatingStore(path)
    return store, [store.add_item(t).id for t in TUNES[:n]]


def _key(pair):
    return frozenset((pair.a.id, pair.b.id))


def test_queue_first_then_active_selection(tmp_path):
    store, ids = _store(tmp_path / "s")
    store.enqueue([(ids[3], ids[4])], strategy="harvest")
    session = RatingSession(store, "ann", strategy="racing")
    pair = session.next_pair()
    assert (pair.a.id, pair.b.id, pair.source) == (ids[3], ids[4], "queue")
    rec = session.record(pair, "first")
    assert (rec.a, rec.b, rec.winner, rec.rater, rec.kind) == (ids[3], ids[4], "a", "ann", "human")
    after = session.next_pair()
    assert after.source == "racing" and _key(after) != _key(pair)
    assert RatingStore(tmp_path / "s").comparisons == session.store.comparisons == [rec]  # on disk


def test_no_pair_twice_per_rater_until_all_are_rated(tmp_path):
    store, _ = _store(tmp_path / "s", n=4)  # 6 pairs
    ann = RatingSession(store, "ann", seed=3)
    seen = []
    for k in range(6):
        pair = ann.next_pair()
        assert pair.source != "repeat"
        seen.append(_key(pair))
        ann.record(pair, ("first", "second", "tie", "skip")[k % 4])
    assert len(set(seen)) == 6
    assert ann.next_pair().source == "repeat"  # everything is rated: ask again
    bob = RatingSession(store, "bob")  # another rater still gets fresh pairs
    assert bob.next_pair().source != "repeat"
    assert ann.progress() == {"rated": 5, "skipped": 1, "queue": 0, "items": 4, "comparisons": 5}


def test_skip_and_undo_retract_without_rewriting(tmp_path):
    store, ids = _store(tmp_path / "s")
    store.enqueue([(ids[0], ids[1]), (ids[1], ids[2])])
    ann = RatingSession(store, "ann")
    first = ann.next_pair()
    ann.record(first, "skip")
    second = ann.next_pair()
    assert second.source == "queue" and _key(second) == frozenset(ids[1:3])  # the skipped pair is not asked again
    rated = ann.record(second, "second", rating_id="r-2")
    path = tmp_path / "s" / "comparisons.jsonl"
    before = path.read_bytes()
    assert ann.undo() == rated
    assert path.read_bytes().startswith(before)  # appended a retraction, rewrote nothing
    assert RatingStore(tmp_path / "s").comparisons == []
    again = ann.next_pair()
    assert again.source == "again" and _key(again) == _key(second)
    assert ann.undo("r-2") == rated and path.read_bytes().count(b"retract") == 1  # a retried undo writes nothing
    assert ann.undo().id not in (None, "r-2")  # then the skip before it
    assert _key(ann.next_pair()) == _key(first)
    assert ann.undo() is None
    with pytest.raises(ValueError, match="by 'ann', not 'bob'"):
        RatingSession(store, "bob").undo("r-2")


def test_a_new_session_resumes_where_the_last_stopped(tmp_path):
    store, _ = _store(tmp_path / "s")
    old = RatingSession(store, "ann", seed=1)
    for verdict in ("first", "tie", "second"):
        old.record(old.next_pair(), verdict)
    expected = old.next_pair()
    new = RatingSession(tmp_path / "s", "ann", seed=1)  # another process, from the directory
    assert new.next_pair() == expected
    assert new.progress()["rated"] == 3
    assert new.undo().winner == "b"  # the last rating of the earlier session


def test_retried_rating_id_is_stored_once(tmp_path):
    store, ids = _store(tmp_path / "s")
    ann = RatingSession(store, "ann")
    one = ann.record(f"{ids[0]}:{ids[1]}", "first", rating_id="x1")
    assert ann.record((ids[0], ids[1]), "first", rating_id="x1") == one
    assert len(RatingStore(tmp_path / "s").comparisons) == 1
    with pytest.raises(ValueError, match="already used for another rating"):
        ann.record((ids[0], ids[1]), "tie", rating_id="x1")


def test_bad_input_names_it(tmp_path):
    store, ids = _store(tmp_path / "s")
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        RatingSession(store, "ann", strategy="best")
    with pytest.raises(ValueError, match="rater must be a name"):
        RatingSession(store, "  ")
    ann = RatingSession(store, "ann")
    with pytest.raises(ValueError, match="verdict must be one of"):
        ann.record((ids[0], ids[1]), "left")
    with pytest.raises(ValueError, match="unknown item id"):
        ann.record((ids[0], "f" * 64), "first")
    with pytest.raises(ValueError, match="pair id must be"):
        ann.record("nonsense", "first")
    assert not (tmp_path / "s" / "comparisons.jsonl").exists()


def _rate_many(directory, rater, barrier, n):
    session = RatingSession(directory, rater)
    ids = session.store.ids
    barrier.wait()
    for k in range(n):
        session.record((ids[k % 5], ids[(k + 1) % 5]), "first", rating_id=f"{rater}-{k}")
        # both processes retry the same ratings: each must be stored once
        RatingSession(session.store, "both").record((ids[0], ids[2]), "tie", rating_id=f"both-{k}")


def test_two_processes_lose_and_duplicate_nothing(tmp_path):
    _store(tmp_path / "s")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_rate_many, args=(tmp_path / "s", name, barrier, 25)) for name in ("ann", "bob")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    written = [json.loads(line)["id"] for line in (tmp_path / "s" / "comparisons.jsonl").read_text().splitlines()]
    assert sorted(written) == sorted([f"{r}-{k}" for r in ("ann", "bob", "both") for k in range(25)])
    assert len(RatingStore(tmp_path / "s").comparisons) == 75
