import pytest

import domains
from domains import CorpusError, NormaliseConfig

RAW = """% a comment line
X: 7
T: First Tune
T: Alternative title
R: reel
N: a note that is noise
Z: transcriber
M: 6/8
L: 1/8
K: D
"Am"d2e "4"fed | u(ABc) v!trill!d3 |\\
 A2B c3 :| % trailing comment
w: some lyrics here
P:B
K:G
GAB cde |]

X: 8
T: No key here
M: 4/4
GABc|

X: 9
T: Rests only
M: 4/4
L: 1/4
K: C
z4 | z4 |
"""


def test_split_tunes_and_normalise():
    tunes = domains.split_tunes("junk before\n" + RAW)
    assert len(tunes) == 3
    text = domains.normalise(tunes[0])
    lines = text.splitlines()
    assert lines[:5] == ["X:1", "T:First Tune", "M:6/8", "L:1/8", "K:D"]
    assert "d2e fed | (ABc) d3 | A2B c3 :|" in lines
    assert "K:G" in lines  # inline key change kept
    for noise in ("%", "w:", "R:", "N:", "Z:", "lyrics", "Alternative", '"', "!trill!", "P:"):
        assert noise not in text


def test_spaceless_option():
    text = domains.normalise(domains.split_tunes(RAW)[0], NormaliseConfig(spaceless=True))
    body = text.splitlines()[5]
    assert " " not in body and body.startswith("d2efed|")


def test_bad_tunes_raise_with_reason():
    _, nokey, rests = domains.split_tunes(RAW)
    with pytest.raises(CorpusError, match="K:"):
        domains.normalise(nokey)
    with pytest.raises(CorpusError, match="no notes"):
        domains.normalise(rests)


def test_loader_counts_and_skips_bad_tunes(tmp_path):
    f = tmp_path / "mine.abc"
    respaced = RAW.replace("First Tune", "Respaced copy").replace("A2B c3", "A2Bc3").replace("d2e ", "d2e  ")
    f.write_text(RAW + "\n" + RAW.replace("First Tune", "Retitled copy") + "\n" + respaced)
    report = domains.CorpusReport()
    pieces = domains.load_abc_corpus(files=[("mine", f)], report=report)
    assert len(pieces) == 1  # the retitled and the respaced copies are duplicates of the same music
    assert report.duplicates == 2
    assert report.raw["mine"] == 9 and report.kept["mine"] == 1
    assert sum(report.skipped.values()) == 6


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        domains.load_abc_corpus(files=[("x", tmp_path / "nope.abc")])
    (tmp_path / "empty.abc").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        domains.load_abc_file(tmp_path / "empty.abc")
    with pytest.raises(CorpusError, match="unknown ABC collection"):
        domains.load_abc_corpus(["nottingham"])


def test_corpus_size_and_collections():
    report = domains.CorpusReport()
    pieces = domains.load_abc_corpus(domains.ALL_COLLECTIONS, report=report)
    assert len(pieces) >= 10_000
    assert len({domains.content_hash(p.text) for p in pieces}) == len(pieces)
    assert set(report.kept) == set(domains.ALL_COLLECTIONS)
    assert report.kept["oneills1850"] > 1900 and report.kept["essenFolksong"] > 8000


def _bare_music(text):
    """A tune's music without title, X: line, spaces or line breaks."""
    return "".join("".join(l.split()) for l in text.splitlines() if not l.startswith(("X:", "T:")))


def test_split_is_deterministic_and_disjoint(fiddle_pieces):
    a = domains.split_corpus(fiddle_pieces)
    b = domains.split_corpus(list(reversed(fiddle_pieces)))
    for k in a:
        assert {p.text for p in a[k]} == {p.text for p in b[k]}
    assert sum(len(v) for v in a.values()) == len(fiddle_pieces)
    # No tune of one split is in another, even when the copies differ only in spacing or layout.
    bare = {k: {_bare_music(p.text) for p in v} for k, v in a.items()}
    assert sum(len(v) for v in bare.values()) == len(fiddle_pieces)  # no duplicates inside a split either
    assert not (bare["train"] & bare["val"]) and not (bare["train"] & bare["test"]) and not (bare["val"] & bare["test"])
    n = len(fiddle_pieces)
    assert 0.02 * n < len(a["val"]) < 0.09 * n and 0.02 * n < len(a["test"]) < 0.09 * n
    # The split depends on the music only, not on the title.
    p = a["val"][0].text
    assert domains.split_of(p.replace("T:", "T:Other ", 1)) == "val"


def test_spaced_and_spaceless_corpora_share_one_split():
    """A generator trained spaceless must not see, in its training split, the spaced copy of a
    tune that a spaced evaluation holds out (the split once followed the exact text)."""
    spaced = domains.load_abc_corpus(["airdsAirs"], domains.NormaliseConfig(spaceless=False))
    spaceless = domains.load_abc_corpus(["airdsAirs"], domains.NormaliseConfig(spaceless=True))
    by_key = {domains.music_key(p.text): domains.split_of(p.text) for p in spaceless}
    shared = [p for p in spaced if domains.music_key(p.text) in by_key]
    assert len(shared) > 0.9 * len(spaced)
    assert all(domains.split_of(p.text) == by_key[domains.music_key(p.text)] for p in shared)


def test_music_key_ignores_title_spacing_and_layout():
    tune = "X:1\nT:A\nM:6/8\nL:1/8\nK:G\nGAB c2d|e2d B2A|\n"
    same = "X:5\nT:B\nM:6/8\nL:1/8\nK:G\nGABc2d|\ne2d  B2A|\n"
    assert domains.music_key(tune) == domains.music_key(same)
    assert domains.music_key(tune) != domains.music_key(tune.replace("c2d", "c2e"))
    assert domains.music_key(tune) != domains.music_key(tune.replace("K:G", "K:D"))


def test_normalisation_is_saved_beside_a_generator(tmp_path):
    cfg = NormaliseConfig(spaceless=True, max_chars=900)
    domains.save_normalisation(cfg, tmp_path)
    assert domains.load_normalisation(tmp_path) == cfg
    with pytest.warns(UserWarning, match="no normalisation.json"):
        assert domains.load_normalisation(tmp_path / "older") == NormaliseConfig()
    (tmp_path / domains.NORMALISATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="normalisation.json"):
        domains.load_normalisation(tmp_path)
    (tmp_path / domains.NORMALISATION_FILE).write_text('{"keep_spaces": true}')
    with pytest.raises(ValueError, match="keys among"):
        domains.load_normalisation(tmp_path)
    with pytest.raises(ValueError, match="max_chars"):
        NormaliseConfig(max_chars=0)


def test_respace_matches_normalise():
    tune = domains.split_tunes(RAW)[0]
    spaced = domains.normalise(tune)
    assert domains.respace(spaced, NormaliseConfig(spaceless=True)) == domains.normalise(tune, NormaliseConfig(spaceless=True))
    assert domains.respace(spaced, NormaliseConfig()) == spaced
    # a sampling prefix: header untouched, the started body spaceless
    prefix = "X:1\nT:A tune\nM:6/8\nL:1/8\nK:G\nGAB c2"
    assert domains.respace(prefix, NormaliseConfig(spaceless=True)) == "X:1\nT:A tune\nM:6/8\nL:1/8\nK:G\nGABc2"
    assert domains.respace("X:1\nT:A tune", NormaliseConfig(spaceless=True)) == "X:1\nT:A tune"
