import json
import re
import warnings

import pytest

from ascent_doubles import encode, tiny_setup
from gradopt import AscentConfig, HarvestConfig, PolishConfig, harvest, normalized_distance, queue_order, suspect_reasons

TUNES = ["X:1\nK:G\nGABc|dedB|", "K:D\nFA|", "X:2\nM:6/8\nK:D\nFAd fed|", "X:3\nK:G\nGABc|dedc|"]


def test_suspect_reasons():
    cfg = HarvestConfig(min_reward=0.0, max_loglik_per_token=-2.0, min_novelty=0.5)
    assert suspect_reasons(-1.0, -9.0, 0.9, ["broken"], cfg) == []  # low reward: not a blind spot
    assert suspect_reasons(1.0, -1.0, 0.1, [], cfg) == []  # liked and plausible: fine
    reasons = suspect_reasons(1.0, -3.0, 0.7, ["no notes"], cfg)
    assert len(reasons) == 3 and "auto-checks" in reasons[0]


def test_queue_order_follows_racing_and_covers_all():
    order, pairs = queue_order([0.1, 2.0, 1.0, -1.0], [0.0, 0.0, 0.5, 0.0], "racing")
    assert sorted(order) == [0, 1, 2, 3] and order[0] == 1  # the posterior-best item leads
    assert (pairs[:, 0] == 1).all()


def test_harvest_writes_deduplicated_suspects_to_the_store(tmp_path):
    from rewardmodels import RatingStore

    tok, gen, rm = tiny_setup()
    cfg = HarvestConfig(
        ascent=AscentConfig(steps=6, check_every=2, restarts=2, require_valid=False,
                            polish=PolishConfig(rounds=1, top_k=4, candidates=4)),
        min_reward=-1e9, min_novelty=0.0, dedup_distance=0.2)
    suspects = harvest(encode(tok, TUNES), rm, gen, tok, tmp_path / "store", corpus=TUNES, cfg=cfg,
                       judge=lambda text: ["too short"] if len(text) < 12 else [])
    assert suspects, "every changed row is a suspect with these thresholds"
    assert [s.rank for s in suspects] == list(range(len(suspects)))
    for i, a in enumerate(suspects):
        assert a.text not in TUNES and a.reasons
        for b in suspects[i + 1:]:
            assert normalized_distance(a.text, b.text) > 0.2
    store = RatingStore(tmp_path / "store")
    harvested = [it for it in store.items if it.origin == "harvested"]
    assert {it.id for it in harvested} == {s.id for s in suspects}
    assert all(it.parent in store for it in harvested)
    queue = [json.loads(x) for x in (tmp_path / "store" / "queue.jsonl").read_text().splitlines()]
    assert len(queue) == max(len(suspects) - 1, 0)
    assert all(q["a"] in store and q["b"] in store for q in queue)
    assert [(e.a, e.b, e.rank) for e in store.pending()] == [(q["a"], q["b"], q["rank"]) for q in queue]


def _harvest_cfg():
    return HarvestConfig(
        ascent=AscentConfig(steps=6, check_every=2, restarts=2, require_valid=False,
                            polish=PolishConfig(rounds=1, top_k=4, candidates=4)),
        min_reward=-1e9, min_novelty=0.0, dedup_distance=0.2)


def test_harvest_queue_goes_through_the_store(tmp_path):
    """A queue left with a torn last line by a killed writer: harvest's appends start on a clean
    line (the fragment moves to queue.jsonl.torn), and a second identical run queues nothing new."""
    from rewardmodels import RatingStore, read_jsonl

    (tmp_path / "store").mkdir()
    queue_file = tmp_path / "store" / "queue.jsonl"
    queue_file.write_text('{"a": "0123')
    tok, gen, rm = tiny_setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        suspects = harvest(encode(tok, TUNES), rm, gen, tok, tmp_path / "store", corpus=TUNES, cfg=_harvest_cfg())
    assert len(suspects) >= 2, "the test needs at least one queued pair"
    records = [rec for _, rec in read_jsonl(queue_file)]  # every line parses: nothing glued
    assert len(records) == len(suspects) - 1
    said = [str(w.message) for w in caught]
    assert any(re.search(r"queue\.jsonl:1: skipping torn last line", m) for m in said), said
    assert any(re.search(r"queue\.jsonl:1: moved torn last line", m) for m in said), said
    store = RatingStore(tmp_path / "store")
    assert [(e.a, e.b) for e in store.pending()] == [(r["a"], r["b"]) for r in records]
    assert {e.strategy for e in store.pending()} == {"racing"}
    harvest(encode(tok, TUNES), rm, gen, tok, store, corpus=TUNES, cfg=_harvest_cfg())
    assert len(RatingStore(tmp_path / "store").queue) == len(records)  # still pending: not queued twice


def test_bad_harvest_config_raises():
    with pytest.raises(ValueError):
        HarvestConfig(strategy="best")
    with pytest.raises(ValueError):
        HarvestConfig(max_items=0)
