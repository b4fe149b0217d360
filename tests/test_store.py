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
