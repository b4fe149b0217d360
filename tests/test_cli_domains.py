import json
import time

import pytest

from gradopt.cli import main


def test_corpus_stats_json(capsys):
    assert main(["corpus", "stats", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tunes"] >= 10_000
    assert d["collections"]["ryansMammoth"] > 1000 and sum(d["collections"].values()) == d["tunes"]


def test_validate_command(tmp_path, capsys):
    good = "X:1\nT:Jig\nM:6/8\nL:1/8\nK:G\nGAB cde|dBG A3|\n"
    f = tmp_path / "t.abc"
    f.write_text(good)
    assert main(["validate", str(f)]) == 0
    f.write_text(good + "\nX:2\nT:Bad\nM:6/8\nL:1/8\nK:G\nGABcdefgab|\n")
    assert main(["validate", str(f)]) == 1
    assert "1/2 valid" in capsys.readouterr().out


def test_validate_command_never_hangs(tmp_path, capsys):
    """This candidate (one note of 2,222,222 eighths) kept `gradopt optimize`'s validator busy for
    over 15 minutes and 4 GB; now the command names the note and exits 1 at once."""
    f = tmp_path / "hang.abc"
    f.write_text("X:1\nT:t\nM:C|\nL:1/8\nK:Bb\nG2222222|2d/-^eB2|\n")
    start = time.monotonic()
    assert main(["validate", str(f)]) == 1
    took = time.monotonic() - start
    out = capsys.readouterr().out
    assert "G2222222" in out and "0/1 valid" in out
    # the command answers without music21 (a cheap screen names the note); 20 s is generous on a
    # loaded shared machine and still fails the old behaviour by a factor of 45
    assert took < 20, took


def test_export_and_missing_generator(tmp_path, capsys):
    out = tmp_path / "val.abc"
    assert main(["corpus", "export", "--split", "val", "--out", str(out)]) == 0
    assert out.read_text().count("X:1") > 100
    assert main(["sample", "--work", str(tmp_path / "nothing")]) == 2
    assert "train-generator" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("corpus", "train-generator", "sample", "validate", "demo"):
        assert cmd in out


def test_sample_spaces_its_prefix_like_the_generator_corpus(tmp_path, capsys):
    import domains

    prefix = "X:1\nT:A tune\nM:6/8\nL:1/8\nK:G\nGA B c"
    tok = domains.build_char_tokenizer([prefix + "d|"])
    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=64), tok)
    gen.save_pretrained(tmp_path)
    domains.save_tokenizer(tok, tmp_path)
    domains.save_normalisation(domains.NormaliseConfig(spaceless=True), tmp_path)
    args = ["sample", "--work", str(tmp_path), "-n", "2", "--max-new-tokens", "3", "--prefix", prefix]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("X:1\nT:A tune\nM:6/8\nL:1/8\nK:G\nGABc") == 2  # the title keeps its space
    domains.save_normalisation(domains.NormaliseConfig(), tmp_path)
    assert main(args) == 0
    assert capsys.readouterr().out.count(prefix) == 2


_TUNES = "".join(
    f"X:{i}\nT:Tune{i}\nM:6/8\nL:1/8\nK:G\n{body}\n\n"
    for i, body in enumerate(["GAB cde|dBG A3|", "gfe dcB|AGF G3|", "DGB dBG|cAF D3|", "BAG AGE|GED E3|",
                              "efg fed|cBA B3|", "GAB cde|dBG A3|"], 1))  # the last repeats the first
_TRAIN_FAST = ["--preset", "tiny", "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--minutes", "0"]


def _sample_from(work, capsys, prefix: str) -> None:
    """`gradopt sample` from the generator in `work`: its two samples, each starting with `prefix`."""
    capsys.readouterr()
    args = ["sample", "--work", str(work), "-n", "2", "--max-new-tokens", "5", "--prefix", prefix]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(prefix) >= 2 and len(out) > 2 * len(prefix)


def test_train_generator_on_a_user_abc_file_or_folder(tmp_path, capsys):
    import domains

    abc = tmp_path / "mine" / "tunes.abc"
    abc.parent.mkdir()
    abc.write_text(_TUNES)
    (abc.parent / "notes.txt").write_text("not a tune")  # a folder's other files are ignored
    for i, corpus in enumerate([abc, abc.parent]):
        work = tmp_path / f"gen{i}"
        assert main(["train-generator", "--corpus", str(corpus), "--work", str(work), "--spaceless", *_TRAIN_FAST]) == 0
        summary = json.loads((work / "train_summary.json").read_text())
        assert summary["corpus"]["pieces"] == 5 and summary["corpus"]["domain"] == "abc"  # the repeat is dropped
        assert domains.load_normalisation(work).spaceless  # the command's normalisation is saved
        tok = domains.load_tokenizer(work)
        assert " " not in tok.get_vocab()  # trained on the spaceless tunes of the file (titles have no space)
        _sample_from(work, capsys, prefix="X:1\nT:")


def test_train_generator_on_a_user_text_file(tmp_path, capsys):
    import domains

    poems = tmp_path / "poems.txt"
    lines = ["the sea is calm tonight", "the tide is full, the moon lies fair", "upon the straits; on the french coast",
             "the light gleams and is gone", "come to the window, sweet is the night air", "the sea is calm tonight"]
    poems.write_text("\n".join(lines) + "\n")
    work = tmp_path / "gen"
    assert main(["train-generator", "--corpus", str(poems), "--domain", "text", "--work", str(work), *_TRAIN_FAST]) == 0
    summary = json.loads((work / "train_summary.json").read_text())
    assert summary["corpus"]["pieces"] == 5 and summary["corpus"]["domain"] == "text"
    assert domains.load_normalisation(work) == domains.NormaliseConfig()  # prefixes are taken as written
    assert "X" not in domains.load_tokenizer(work).get_vocab()  # the text itself, no ABC headers added
    _sample_from(work, capsys, prefix="the sea ")


def test_train_generator_corpus_errors(tmp_path, capsys):
    work = str(tmp_path / "gen")
    with pytest.raises(SystemExit) as exc:  # one corpus or the other, never both
        main(["train-generator", "--corpus", "x.abc", "--collections", "fiddle", "--work", work])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    empty = tmp_path / "empty.abc"
    empty.write_text("\n")
    assert main(["train-generator", "--corpus", str(empty), "--work", work, *_TRAIN_FAST]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "empty" in err and "K:" in err
    assert main(["train-generator", "--corpus", str(tmp_path / "missing.abc"), "--work", work]) == 2
    assert "missing.abc does not exist" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["train-generator", "--corpus", str(folder), "--work", work]) == 2
    assert f"{folder} holds no .abc file" in capsys.readouterr().err
    assert main(["train-generator", "--corpus", str(empty), "--domain", "text", "--work", work]) == 2
    assert f"{empty} is empty" in capsys.readouterr().err
    assert main(["train-generator", "--corpus", str(folder), "--domain", "midi", "--work", work]) == 2
    err = capsys.readouterr().err
    assert "no .mid/.midi files" in err and str(folder) in err
    assert not (tmp_path / "gen").exists()  # nothing written for a corpus that cannot be used


def test_sample_decodes_escape_sequences_in_its_prefix(tmp_path, capsys):
    """A shell passes --prefix 'X:1\\nT:' as backslash + n; the command reads it as a line break."""
    import domains

    tok = domains.build_char_tokenizer(["X:1\nT:A\nK:G\nGAB|"])
    gen = domains.build_generator(domains.GeneratorPreset(n_layer=1, n_head=2, n_embd=16, n_positions=64), tok)
    gen.save_pretrained(tmp_path)
    domains.save_tokenizer(tok, tmp_path)
    domains.save_normalisation(domains.NormaliseConfig(), tmp_path)
    assert main(["sample", "--work", str(tmp_path), "-n", "2", "--max-new-tokens", "3", "--prefix", r"X:1\nT:"]) == 0
    assert capsys.readouterr().out.count("X:1\nT:") == 2


def test_sample_out_reports_the_validity_of_the_generators_domain(tmp_path, capsys):
    """A text generator's samples are counted valid by the text domain's check, not by ABC's."""
    import domains

    poems = tmp_path / "poems.txt"
    poems.write_text("".join(f"the {w} is calm tonight, {w} and stone\n" for w in
                             ["sea", "sky", "bay", "moon", "road", "hill", "town", "wind"]))
    work = tmp_path / "gen"
    assert main(["train-generator", "--corpus", str(poems), "--domain", "text", "--work", str(work), *_TRAIN_FAST]) == 0
    capsys.readouterr()
    out = tmp_path / "samples.txt"
    assert main(["sample", "--work", str(work), "-n", "4", "--max-new-tokens", "12", "--prefix", "the sea ",
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith("the sea ") for line in lines)
    n_text = sum(domains.validate_text(line).ok for line in lines)
    assert n_text > 0 and not any(domains.validate_abc(line).ok for line in lines)
    assert f"wrote 4 samples to {out} ({n_text} valid)" in capsys.readouterr().out
