"""Rating store: durable appends, torn-line recovery, clear errors for bad records."""

import json
import warnings

import numpy as np
import pytest

from rewardmodels import Comparison, Item, RatingStore, StoreError, item_id


def _store(tmp_path):
    s = RatingStore(tmp_path / "r")
    a = s.add_item("X:1\nK:C\nCDEF|", origin="corpus")
    b = s.add_item("X:1\nK:C\nGABc|", origin="sample", iteration=1)
    c = s.add_item("X:1\nK:C\ncBAG|", origin="optimized", iteration=2, parent=b.id)
    return s, a, b, c


def test_round_trip_on_reopen(tmp_path):
    s, a, b, c = _store(tmp_path)
    s.add_comparison(a.id, b.id, "a", rater="me", kind="human")
    s.add_comparison(b.id, c.id, "tie", rater="judge", kind="auto", broken=[b.id, c.id])
    again = RatingStore(tmp_path / "r")
    assert again.items == s.items
    assert again.comparisons == s.comparisons
    assert again.comparisons[1].broken == (b.id, c.id)
    wins, ties = again.pairs()
    np.testing.assert_array_equal(wins, [[0, 1]])
    np.testing.assert_array_equal(ties, [[1, 2]])
    assert again.stats()["comparisons_by_kind"] == {"human": 1, "auto": 1}


def test_item_id_is_content_hash_and_dedup(tmp_path):
    s, a, _, _ = _store(tmp_path)
    assert a.id == item_id("X:1\nK:C\nCDEF|")
    assert s.add_item("X:1\nK:C\nCDEF|") is a
    assert len(s) == 3
    assert len((tmp_path / "r" / "items.jsonl").read_text().splitlines()) == 3


def test_torn_last_line_is_skipped_with_warning_then_repaired(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.add_comparison(a.id, b.id, "b")
    path = tmp_path / "r" / "comparisons.jsonl"
    with open(path, "a") as f:
        f.write('{"a": "' + a.id + '", "b": "')  # writer killed mid-record
    with pytest.warns(UserWarning, match=r"comparisons\.jsonl:2: skipping torn last line"):
        again = RatingStore(tmp_path / "r")
    assert len(again.comparisons) == 1
    with pytest.warns(UserWarning, match="torn"):
        again.add_comparison(a.id, b.id, "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = RatingStore(tmp_path / "r")
    assert [c.winner for c in third.comparisons] == ["b", "a"]
    assert (tmp_path / "r" / "comparisons.jsonl.torn").exists()


def test_malformed_json_mid_file_names_line(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.add_comparison(a.id, b.id, "a")
    path = tmp_path / "r" / "comparisons.jsonl"
    good = path.read_text()
    path.write_text("{not json\n" + good)
    with pytest.raises(StoreError, match=r"comparisons\.jsonl:1: malformed JSON"):
        RatingStore(tmp_path / "r")


def test_unknown_id_names_line(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.add_comparison(a.id, b.id, "a")
    path = tmp_path / "r" / "comparisons.jsonl"
    rec = json.loads(path.read_text())
    rec["b"] = "f" * 64
    path.write_text(path.read_text() + json.dumps(rec) + "\n")
    with pytest.raises(StoreError, match=r"comparisons\.jsonl:2: unknown item id ffff"):
        RatingStore(tmp_path / "r")


def test_self_comparison_names_line(tmp_path):
    s, a, _, _ = _store(tmp_path)
    path = tmp_path / "r" / "comparisons.jsonl"
    path.write_text(json.dumps({"a": a.id, "b": a.id, "winner": "a"}) + "\n")
    with pytest.raises(StoreError, match=r"comparisons\.jsonl:1: .*compared with itself"):
        RatingStore(tmp_path / "r")
    with pytest.raises(ValueError, match="itself"):
        s.add_comparison(a.id, a.id, "a")


def test_bad_item_record_names_line(tmp_path):
    _store(tmp_path)
    path = tmp_path / "r" / "items.jsonl"
    rec = json.loads(path.read_text().splitlines()[0])
    rec["text"] = "tampered"
    path.write_text(path.read_text() + json.dumps(rec) + "\n")
    with pytest.raises(StoreError, match=r"items\.jsonl:4: bad item record: .*not the sha256"):
        RatingStore(tmp_path / "r")


def test_records_validate_fields():
    with pytest.raises(ValueError, match="winner"):
        Comparison(a="x", b="y", winner="c")
    with pytest.raises(ValueError, match="kind"):
        Comparison(a="x", b="y", winner="a", kind="robot")
    with pytest.raises(ValueError, match="broken"):
        Comparison(a="x", b="y", winner="a", broken=["z"])
    with pytest.raises(ValueError, match="origin"):
        Item.new("t", origin="nowhere")


def test_unknown_ids_rejected_when_adding(tmp_path):
    s, a, _, _ = _store(tmp_path)
    with pytest.raises(ValueError, match="unknown item id"):
        s.add_comparison(a.id, "0" * 64, "a")
    with pytest.raises(FileNotFoundError):
        RatingStore(tmp_path / "missing", create=False)


def test_old_store_layout_still_loads(tmp_path):
    s, a, b, c = _store(tmp_path)
    d = tmp_path / "r"
    (d / "comparisons.jsonl").write_text(json.dumps(  # written before comparisons had a source
        {"a": a.id, "b": b.id, "winner": "a", "rater": "me", "kind": "human", "broken": [],
         "time": "2025-01-01T00:00:00+00:00"}) + "\n")
    (d / "queue.jsonl").write_text(json.dumps({"a": b.id, "b": c.id, "rank": 0, "strategy": "racing"}) + "\n")
    again = RatingStore(d)
    assert again.comparisons[0].source is None and again.comparisons[0].key is None
    assert [(e.a, e.b, e.strategy) for e in again.pending()] == [(b.id, c.id, "racing")]


def test_add_batch_checks_everything_before_writing(tmp_path):
    s, a, b, _ = _store(tmp_path)
    before = {p.name: p.read_text() for p in (tmp_path / "r").iterdir()}
    new = Item.new("X:1\nK:C\nEFGA|")
    with pytest.raises(ValueError, match="unknown item id"):
        s.add_batch([new], [Comparison(a=a.id, b=new.id, winner="a"), Comparison(a=a.id, b="0" * 64, winner="a")])
    with pytest.raises(ValueError, match="parent"):
        s.add_batch([new, Item.new("x", parent="f" * 64)], [])
    assert {p.name: p.read_text() for p in (tmp_path / "r").iterdir()} == before
    assert new.id not in s
    comp = Comparison(a=a.id, b=new.id, winner="b", rater="r", source="s1")
    assert s.add_batch([new], [comp, comp]) == (1, 1)
    assert s.add_batch([new], [comp]) == (0, 0)
    assert s.add_comparison(a.id, new.id, "b", rater="r", source="s1") == comp  # not written again
    assert len(RatingStore(tmp_path / "r").comparisons) == 1


def test_root_follows_parents(tmp_path):
    s, a, b, c = _store(tmp_path)
    d = s.add_item("X:1\nK:C\ncBAF|", origin="optimized", parent=c.id)
    assert [s.root(k) for k in (a.id, b.id, c.id, d.id)] == [a.id, b.id, b.id, b.id]


# --- rating queue ----------------------------------------------------------------------------

def test_queue_pending_excludes_rated_and_marked(tmp_path):
    s, a, b, c = _store(tmp_path)
    written = s.enqueue([(a.id, b.id), (b.id, c.id), (a.id, c.id)], strategy="racing")
    assert [e.rank for e in written] == [0, 1, 2]
    assert s.enqueue([(b.id, a.id)]) == []  # already pending (either order)
    s.add_comparison(b.id, a.id, "a")  # rated, shown the other way round
    s.mark_rated(c.id, b.id)  # skipped by the rater
    assert [(e.a, e.b) for e in s.pending()] == [(a.id, c.id)]
    again = RatingStore(tmp_path / "r")
    assert [(e.a, e.b) for e in again.pending()] == [(a.id, c.id)]
    assert len(again.queue) == 3 and again.stats()["queue_pending"] == 1
    with pytest.raises(ValueError, match="not in the queue"):
        again.mark_rated(a.id, "0" * 64)


def test_enqueue_checks_all_pairs_before_writing(tmp_path):
    s, a, b, _ = _store(tmp_path)
    with pytest.raises(ValueError, match="pair 1: unknown item id 0000"):
        s.enqueue([(a.id, b.id), (a.id, "0" * 64)])
    with pytest.raises(ValueError, match="itself"):
        s.enqueue([(a.id, b.id), (a.id, a.id)])
    assert not (tmp_path / "r" / "queue.jsonl").exists() and s.pending() == []


def test_queue_torn_last_line_is_skipped_then_repaired(tmp_path):
    s, a, b, c = _store(tmp_path)
    s.enqueue([(a.id, b.id)])
    path = tmp_path / "r" / "queue.jsonl"
    with open(path, "a") as f:
        f.write('{"a": "' + b.id + '", "b": "')  # writer killed mid-record
    with pytest.warns(UserWarning, match=r"queue\.jsonl:2: skipping torn last line"):
        again = RatingStore(tmp_path / "r")
    assert [(e.a, e.b) for e in again.pending()] == [(a.id, b.id)]
    with pytest.warns(UserWarning, match=r"queue\.jsonl:2: moved torn last line"):
        again.enqueue([(b.id, c.id)])
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["a"] in again for x in lines)  # not glued to the fragment
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = RatingStore(tmp_path / "r")
    assert [(e.a, e.b) for e in third.pending()] == [(a.id, b.id), (b.id, c.id)]


def test_bad_queue_record_names_line(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.enqueue([(a.id, b.id)])
    path = tmp_path / "r" / "queue.jsonl"
    path.write_text(path.read_text() + json.dumps({"a": a.id, "b": "e" * 64, "rank": 1}) + "\n")
    with pytest.raises(StoreError, match=r"queue\.jsonl:2: unknown item id eeee"):
        RatingStore(tmp_path / "r")
    path.write_text(json.dumps({"a": a.id, "b": b.id, "rank": -1}) + "\n")
    with pytest.raises(StoreError, match=r"queue\.jsonl:1: bad queue record: rank"):
        RatingStore(tmp_path / "r")


# --- rating ids, skips, retractions ------------------------------------------------------------

def test_rating_id_is_stored_once_and_retraction_appends(tmp_path):
    s, a, b, c = _store(tmp_path)
    first = s.add_comparison(a.id, b.id, "a", rater="ann", id="r1")
    assert s.add_comparison(a.id, b.id, "a", rater="ann", id="r1") is first  # a retried request
    with pytest.raises(ValueError, match="'r1' is already used for another rating"):
        s.add_comparison(a.id, b.id, "b", rater="ann", id="r1")
    s.add_skip(b.id, c.id, rater="ann", id="r2")
    s.add_comparison(a.id, c.id, "tie", rater="bob", id="r3")
    path = tmp_path / "r" / "comparisons.jsonl"
    before = path.read_text()
    assert [r.id for r in s.history("ann")] == ["r1", "r2"]
    with pytest.raises(ValueError, match="by 'bob', not 'ann'"):
        s.retract("r3", rater="ann")
    assert s.retract("r1", rater="ann") and not s.retract("r1", rater="ann")  # a retried undo writes nothing
    assert path.read_text().startswith(before)  # history is appended to, never rewritten
    assert len(path.read_text().splitlines()) == len(before.splitlines()) + 1
    for store in (s, RatingStore(tmp_path / "r")):
        assert [c.id for c in store.comparisons] == ["r3"]
        assert [k.id for k in store.skips] == ["r2"] and [r.id for r in store.history("ann")] == ["r2"]
        assert store.is_retracted("r1") and store.rating("r1").winner == "a"
        np.testing.assert_array_equal(store.pairs()[0].reshape(-1), [])  # the retracted win is gone
        # a retracted id stays used: retrying the request does not bring the rating back
        assert store.add_comparison(a.id, b.id, "a", rater="ann", id="r1").id == "r1"
        assert [c.id for c in store.comparisons] == ["r3"]
    s.retract("r2", rater="ann")
    assert RatingStore(tmp_path / "r").skips == []


def test_retraction_of_unknown_id_names_line(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.add_comparison(a.id, b.id, "a", rater="ann", id="r1")
    path = tmp_path / "r" / "comparisons.jsonl"
    path.write_text(path.read_text() + json.dumps({"retract": "nope", "rater": "ann"}) + "\n")
    with pytest.raises(StoreError, match=r"comparisons\.jsonl:2: retraction of unknown rating id 'nope'"):
        RatingStore(tmp_path / "r")
    with pytest.raises(ValueError, match="no rating with id 'zzz'"):
        s.retract("zzz", rater="ann")
    with pytest.raises(ValueError, match="rating id must be a non-empty string"):
        s.add_skip(a.id, b.id, rater="ann", id="")


def test_a_rating_id_written_twice_is_read_once(tmp_path):
    s, a, b, _ = _store(tmp_path)
    s.add_comparison(a.id, b.id, "a", rater="ann", id="r1")
    path = tmp_path / "r" / "comparisons.jsonl"
    line = path.read_text()
    path.write_text(line * 2)  # two writers without the lock both appended it
    assert [c.id for c in RatingStore(tmp_path / "r").comparisons] == ["r1"]
    path.write_text(line + line.replace('"winner": "a"', '"winner": "b"'))
    with pytest.raises(StoreError, match=r"comparisons\.jsonl:2: rating id 'r1' is already used"):
        RatingStore(tmp_path / "r")
