"""MIDI domain: ABC-rendered corpus with its caches, REMI text, tokenizer, decode, validity.

The corpus is rendered with abc2midi, or with music21 where abc2midi is not installed; every test
runs with either, and only the check that abc2midi itself is used needs it.
"""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest

symusic = pytest.importorskip("symusic")

from domains import (  # noqa: E402
    CorpusError,
    Domain,
    MIDIDomain,
    OutOfVocabularyError,
    REMIConfig,
    REMIError,
    abc_to_midi,
    find_soundfont,
    load_tokenizer,
    positions_past_bar,
    remi_vocabulary,
    save_tokenizer,
)
from domains import _midi_corpus, _render  # noqa: E402

N_TUNES = 5


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("midi-cache")


@pytest.fixture(scope="module")
def domain(cache_dir):
    return MIDIDomain(cache_dir, limit=N_TUNES, progress=False)


@pytest.fixture(scope="module")
def pieces(domain):
    return domain.corpus()


def _notes(score):
    return [n for t in score.tracks for n in t.notes]


def test_is_a_domain(domain):
    assert isinstance(domain, Domain)
    assert domain.name == "midi"


def test_corpus_renders_limit_tunes_and_caches_them(domain, pieces, cache_dir):
    assert len(pieces) == N_TUNES
    assert domain.report.as_dict()["tunes"] == N_TUNES and not domain.report.skipped
    assert len(list(cache_dir.glob("*.mid"))) == N_TUNES
    assert len(list(cache_dir.glob("remi-*.jsonl"))) == 1
    for p in pieces:
        names = p.text.split()
        assert names[0] == "Bar_None" and any(n.startswith("Pitch_") for n in names)
        assert p.source.endswith(".mid") and p.collection


def test_rerun_reuses_both_caches(cache_dir, pieces, monkeypatch):
    mtimes = {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("cache miss: the tune was rendered or encoded again")

    monkeypatch.setattr(_midi_corpus, "abc_to_midi", fail)
    monkeypatch.setattr(_midi_corpus, "midi_to_remi", fail)
    again = MIDIDomain(cache_dir, limit=N_TUNES, progress=False).corpus()
    assert [p.text for p in again] == [p.text for p in pieces]
    assert {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == mtimes


def test_tokenizer_wraps_and_round_trips(domain, pieces):
    tok = domain.build_tokenizer([p.text for p in pieces])
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert len(tok) == 4 + len(remi_vocabulary())
    for p in pieces:
        ids = tok(p.text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == len(p.text.split()) + 2 and tok.unk_token_id not in ids
        assert domain.decode(tok, ids + [tok.pad_token_id] * 3) == p.text


def test_tokenizer_survives_save_and_load(domain, pieces, tmp_path):
    tok = domain.build_tokenizer()
    save_tokenizer(tok, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    ids = loaded(pieces[0].text)["input_ids"]
    assert ids == tok(pieces[0].text)["input_ids"]
    assert domain.decode(loaded, ids) == pieces[0].text


def test_tokenizer_refuses_other_kinds_and_foreign_names(domain):
    with pytest.raises(ValueError, match="word"):
        domain.build_tokenizer([], kind="char")
    with pytest.raises(OutOfVocabularyError, match="Nonsense_7"):
        domain.build_tokenizer(["Bar_None Nonsense_7"])


def test_decode_to_midi_keeps_notes_and_pitches(domain, pieces, cache_dir, tmp_path):
    """REMI -> MIDI keeps every note and pitch of the abc2midi file, onsets on a 1/24-beat grid,
    and re-encoding the decoded MIDI gives back the same REMI text."""
    for i, p in enumerate(pieces):
        original = symusic.Score(str(cache_dir / p.source.rsplit(" -> ", 1)[1]))
        out = domain.to_midi(p.text, tmp_path / f"{i}.mid")
        back = symusic.Score(str(out))
        a, b = _notes(original), _notes(back)
        assert len(a) == len(b)
        assert Counter(n.pitch for n in a) == Counter(n.pitch for n in b)
        qa = sorted(round(n.time / original.ticks_per_quarter, 1) for n in a)
        qb = sorted(round(n.time / back.ticks_per_quarter, 1) for n in b)
        close = sum(abs(x - y) <= 0.1 for x, y in zip(qa, qb))
        assert close >= 0.95 * len(a)  # grace notes may move by a grid step
        assert domain.from_midi(out) == p.text


def test_bad_midi_files_are_counted_and_skipped(pieces, cache_dir, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in sorted(cache_dir.glob("*.mid"))[:2]:
        shutil.copy(f, folder / f.name)
    (folder / "garbage.mid").write_bytes(b"MThd not really")
    good = next(iter(sorted(cache_dir.glob("*.mid")))).read_bytes()
    (folder / "truncated.mid").write_bytes(good[: len(good) // 2])
    d = MIDIDomain(tmp_path / "cache", files=[folder], progress=False)
    got = d.corpus()
    assert len(got) == 2 and all(p.collection == "mine" for p in got)
    assert d.report.skipped == Counter({"unreadable MIDI file (RuntimeError)": 2})
    with pytest.raises(CorpusError, match="does not exist"):
        MIDIDomain(tmp_path / "cache", files=[tmp_path / "nowhere.mid"], progress=False).corpus()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .mid/.midi files in .*empty"):
        MIDIDomain(tmp_path / "cache", files=[tmp_path / "empty"], progress=False).corpus()
    (tmp_path / "only-bad").mkdir()
    shutil.copy(folder / "garbage.mid", tmp_path / "only-bad" / "x.mid")
    with pytest.raises(CorpusError, match="no usable MIDI file"):
        MIDIDomain(tmp_path / "cache", files=[tmp_path / "only-bad"], progress=False).corpus()


def test_unwritable_cache_is_counted_never_fatal_midway(tmp_path, monkeypatch):
    """One tune failing to write is skipped with its reason; a cache that cannot be written at
    all ends in a `CorpusError` that says why, after every tune was tried."""
    real = _midi_corpus.abc_to_midi
    calls = []

    def flaky(text, path):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(path))
        return real(text, path)

    monkeypatch.setattr(_midi_corpus, "abc_to_midi", flaky)
    d = MIDIDomain(tmp_path / "c", limit=3, progress=False)
    assert len(d.corpus()) == 2
    assert list(d.report.skipped.values()) == [1] and "cannot write the MIDI cache" in next(iter(d.report.skipped))
    assert sum(d.report.raw.values()) == 3 and sum(d.report.kept.values()) == 2
    monkeypatch.undo()

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.raises(CorpusError, match="cannot write the MIDI cache"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MIDIDomain(blocked, limit=3, progress=False).corpus()


def test_torn_remi_cache_line_is_skipped(tmp_path):
    d = MIDIDomain(tmp_path, limit=2, progress=False)
    first = d.corpus()
    (jsonl,) = tmp_path.glob("remi-*.jsonl")
    with jsonl.open("a") as f:
        f.write('{"key": "abc", "te')  # a writer killed mid-line
    with pytest.warns(UserWarning, match="unreadable line 3"):
        assert [p.text for p in d.corpus()] == [p.text for p in first]


def test_validate(domain, pieces):
    assert all(domain.validate(p.text) for p in pieces)
    assert domain.validate("").reason == "empty text"
    bad = domain.validate("Bar_None TimeSig_4/4 Position_0 Pitch_60 Fortissimo_9")
    assert not bad and "Fortissimo_9" in bad.reason
    assert domain.validate("Bar_None TimeSig_4/4").reason == "no notes"
    backwards = "Bar_None TimeSig_4/4 Position_12 Pitch_60 Duration_1.0.24 Position_0 Pitch_62 Duration_1.0.24"
    assert "grammar" in domain.validate(backwards).reason
    forwards = "Bar_None TimeSig_3/4 Position_0 Pitch_60 Duration_1.0.24 Position_48 Pitch_62 Duration_1.0.24"
    assert domain.validate(forwards)
    past_bar = forwards.replace("Position_48", "Position_72")  # 3/4 holds positions 0..71
    assert "past the end" in domain.validate(past_bar).reason
    assert positions_past_bar(past_bar.split()) == 1 and positions_past_bar(forwards.split()) == 0


def test_to_midi_refuses_unknown_names(domain, tmp_path):
    with pytest.raises(REMIError, match="Oboe_1"):
        domain.to_midi("Bar_None Oboe_1", tmp_path / "x.mid")


def test_render_mid_and_wav(domain, pieces, tmp_path):
    assert domain.render(pieces[0].text, tmp_path / "a.mid").stat().st_size > 0
    if shutil.which("fluidsynth") is None or find_soundfont() is None:
        pytest.skip("fluidsynth or a soundfont is not installed")
    assert domain.render(pieces[0].text, tmp_path / "a.wav").stat().st_size > 1000


def test_remi_config_checks_its_fields():
    for bad in (dict(beat_resolution=0), dict(beat_resolution=24, long_resolution=5), dict(max_beats=4),
                dict(pitch_range=(60, 60)), dict(velocities=-1), dict(time_signatures=("6/7",)),
                dict(time_signatures=())):
        with pytest.raises(ValueError):
            REMIConfig(**bad)
    assert len(remi_vocabulary(REMIConfig(velocities=8))) > len(remi_vocabulary())


@pytest.mark.parametrize("renderer", ["abc2midi", "music21"])
def test_abc_to_midi_fixture_sanity(renderer, tmp_path, monkeypatch):
    """The rendering this domain rests on: abc2midi when installed, else music21; either writes
    one track for a plain tune, with its notes and meter."""
    calls = []
    real_run = _render.subprocess.run

    def run(cmd, *args, **kwargs):
        calls.append(Path(cmd[0]).name)
        return real_run(cmd, *args, **kwargs)

    if renderer == "abc2midi" and shutil.which("abc2midi") is None:
        pytest.skip("needs abc2midi (apt-get install abcmidi)")
    if renderer == "music21":  # as on a machine without abc2midi
        real_which = shutil.which
        monkeypatch.setattr(_render.shutil, "which", lambda name: None if name == "abc2midi" else real_which(name))
    monkeypatch.setattr(_render.subprocess, "run", run)
    score = symusic.Score(str(abc_to_midi("X:1\nM:6/8\nL:1/8\nK:D\nDFA dfa|\n", tmp_path / "t.mid")))
    assert calls == (["abc2midi"] if renderer == "abc2midi" else [])
    assert len(score.tracks) == 1 and len(_notes(score)) == 6
    assert sorted(n.pitch for n in _notes(score)) == [62, 66, 69, 74, 78, 81]  # D F# A d f# a in D major
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (6, 8)
