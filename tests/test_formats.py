"""Import/export round trips: OpenAI lm-human-preferences, TRL, index pairs."""

import json

import pytest

from rewardmodels import (
    RatingStore, StoreError, export_index_pairs, export_openai, export_trl, import_index_pairs,
    import_openai, import_trl, split_prefix,
)

TUNES = ["X:1\nT:a\nK:C\nCDEF|", "X:1\nT:a\nK:C\nGABc|", "X:1\nT:b\nK:G\nDEFG|", "X:2\nK:D\nABcd|"]


def _filled(path):
    s = RatingStore(path)
    ids = [s.add_item(t).id for t in TUNES]
    s.add_comparison(ids[0], ids[1], "a", rater="r1")
    s.add_comparison(ids[2], ids[1], "b", rater="r1")
    s.add_comparison(ids[3], ids[0], "a", rater="r2")
    return s


def _outcomes(store):
    return sorted((store[c.a].text, store[c.b].text, c.winner) for c in store.comparisons)


def test_split_prefix_cuts_after_newline():
    assert split_prefix("X:1\nK:C\nCD", "X:1\nK:C\nCE") == ("X:1\nK:C\n", "CD", "CE")
    assert split_prefix("abc", "abd") == ("", "abc", "abd")


@pytest.mark.parametrize("fmt", ["openai", "openai-jsonl", "trl"])
def test_round_trip(tmp_path, fmt):
    s = _filled(tmp_path / "a")
    out = tmp_path / "f.json"
    if fmt == "trl":
        assert export_trl(s, out, margin=lambda w, l: 1.5) == 3
        assert json.loads(out.read_text().splitlines()[0])["margin"] == 1.5
        assert import_trl(RatingStore(tmp_path / "b"), out) == 3
    else:
        assert export_openai(s, out, jsonl=fmt.endswith("jsonl")) == 3
        assert import_openai(RatingStore(tmp_path / "b"), out) == 3
    back = RatingStore(tmp_path / "b")
    assert _outcomes(back) == [(w, l, "a") for w, l in sorted(
        (s[c.a].text, s[c.b].text) if c.winner == "a" else (s[c.b].text, s[c.a].text) for c in s.comparisons)]
    assert {i.text for i in back.items} == set(TUNES)


def test_index_pairs_round_trip_with_ties(tmp_path):
    s = _filled(tmp_path / "a")
    s.add_comparison(s.ids[0], s.ids[2], "tie")
    export_index_pairs(s, tmp_path / "p.json")
    t = RatingStore(tmp_path / "b")
    t.add_items(TUNES)
    assert import_index_pairs(t, tmp_path / "p.json") == 4
    assert t.pairs()[0].tolist() == s.pairs()[0].tolist()
    assert t.pairs()[1].tolist() == s.pairs()[1].tolist()


def test_bare_index_pairs_with_texts(tmp_path):
    (tmp_path / "p.json").write_text("[[1, 0], [2, 1]]")
    s = RatingStore(tmp_path / "s")
    assert import_index_pairs(s, tmp_path / "p.json", texts=TUNES[:3]) == 2
    assert s.pairs()[0].tolist() == [[1, 0], [2, 1]]
    (tmp_path / "bad.json").write_text("[[1, 1]]")
    with pytest.raises(StoreError, match="pair 1: item 1 compared with itself"):
        import_index_pairs(s, tmp_path / "bad.json")


def test_openai_four_samples_and_bad_record(tmp_path):
    rec = {"query": "X:1\n", "sample0": "A", "sample1": "B", "sample2": "C", "sample3": "D", "best": 2}
    (tmp_path / "o.json").write_text(json.dumps([rec]))
    s = RatingStore(tmp_path / "s")
    assert import_openai(s, tmp_path / "o.json") == 3
    assert all(s[c.a].text == "X:1\nC" for c in s.comparisons)
    (tmp_path / "bad.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps({"query": "q"}) + "\n")
    with pytest.raises(StoreError, match="record 2: missing field 'best'"):
        import_openai(RatingStore(tmp_path / "t"), tmp_path / "bad.jsonl")


def test_trl_conversational_rejected(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"chosen": [{"role": "user"}], "rejected": "x"}) + "\n")
    with pytest.raises(StoreError, match="conversational"):
        import_trl(RatingStore(tmp_path / "s"), tmp_path / "c.jsonl")


def _openai_recs():
    return [{"query": "X:1\nK:C\n", "sample0": "CDEF|", "sample1": "GABc|", "best": 0},
            {"query": "X:2\nK:G\n", "sample0": "GABc|", "sample1": "dcBA|", "sample2": "BAGF|", "best": 1},
            {"query": "X:3\nK:D\n", "sample0": "DEFG|", "sample1": "ABcd|", "best": 1}]


def _trl_recs():
    return [{"prompt": "X:1\nK:C\n", "chosen": "CDEF|", "rejected": "GABc|"},
            {"prompt": "X:2\nK:G\n", "chosen": "GABc|", "rejected": "dcBA|", "margin": 0.5},
            {"prompt": "X:3\nK:D\n", "chosen": "DEFG|", "rejected": "ABcd|"}]


def _files(store_dir):
    return {p.name: p.read_text() for p in store_dir.glob("*.jsonl")} if store_dir.exists() else {}


@pytest.mark.parametrize("fmt", ["openai", "trl"])
def test_bad_third_record_stores_nothing_then_reimport_stores_once(tmp_path, fmt):
    recs, load, bad = ((_openai_recs(), import_openai, {"sample1": 7}) if fmt == "openai"
                       else (_trl_recs(), import_trl, {"rejected": None}))
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs[:2] + [{**recs[2], **bad}]))
    s = RatingStore(tmp_path / "s")
    s.add_item("X:9\nK:C\nC|")  # something already stored must stay as it is
    before = _files(tmp_path / "s")
    with pytest.raises(StoreError, match=r"in\.jsonl: record 3: "):
        load(s, path)
    assert _files(tmp_path / "s") == before
    assert len(RatingStore(tmp_path / "s")) == 1 and RatingStore(tmp_path / "s").comparisons == []

    path.write_text("".join(json.dumps(r) + "\n" for r in recs))  # fixed
    n = 4 if fmt == "openai" else 3
    assert load(s, path) == n
    assert load(s, path) == 0  # a re-run after, say, a crash adds nothing
    assert load(RatingStore(tmp_path / "s"), path) == 0
    again = RatingStore(tmp_path / "s")
    assert len(again.comparisons) == n and len(again) == 1 + 2 * 3 + (fmt == "openai")
    assert len((tmp_path / "s" / "comparisons.jsonl").read_text().splitlines()) == n
    assert all(c.source is not None and len(c.source) == 64 for c in again.comparisons)


def test_repeated_records_in_one_file_are_separate_judgements(tmp_path):
    rec = _trl_recs()[0]
    (tmp_path / "t.jsonl").write_text((json.dumps(rec) + "\n") * 2)
    s = RatingStore(tmp_path / "s")
    assert import_trl(s, tmp_path / "t.jsonl") == 2  # the same pair judged twice
    assert import_trl(s, tmp_path / "t.jsonl") == 0
    assert len({c.source for c in s.comparisons}) == 2
    # another rater's identical record is a different judgement
    assert import_trl(s, tmp_path / "t.jsonl", rater="someone else") == 2
    assert len(RatingStore(tmp_path / "s").comparisons) == 4


def test_index_pairs_bad_tie_stores_nothing_then_reimport_stores_once(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"pairs": [[1, 0], [2, 1]], "ties": [[0, 2], [0, 9]]}))
    s = RatingStore(tmp_path / "s")
    with pytest.raises(StoreError, match=r"p\.json: tie 2: expected \[i, j\]"):
        import_index_pairs(s, tmp_path / "p.json", texts=TUNES[:3])
    assert len(RatingStore(tmp_path / "s")) == 0 and _files(tmp_path / "s") == {}
    (tmp_path / "p.json").write_text(json.dumps({"pairs": [[1, 0], [2, 1]], "ties": [[0, 2]]}))
    assert import_index_pairs(s, tmp_path / "p.json", texts=TUNES[:3]) == 3
    assert import_index_pairs(s, tmp_path / "p.json", texts=TUNES[:3]) == 0
    again = RatingStore(tmp_path / "s")
    assert again.pairs()[0].tolist() == [[1, 0], [2, 1]] and again.pairs()[1].tolist() == [[0, 2]]
    (tmp_path / "broken.json").write_text('{"pairs": [[1, 0]')
    with pytest.raises(StoreError, match=r"broken\.json:1: malformed JSON"):
        import_index_pairs(s, tmp_path / "broken.json")


def test_live_ratings_are_never_deduplicated(tmp_path):
    s = _filled(tmp_path / "a")
    a, b = s.ids[:2]
    s.add_comparison(a, b, "a", rater="r1")
    s.add_comparison(a, b, "a", rater="r1")
    assert len(RatingStore(tmp_path / "a").comparisons) == 5
    assert "source" not in (tmp_path / "a" / "comparisons.jsonl").read_text()  # original layout kept
