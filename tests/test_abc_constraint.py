"""ABCConstraint: bar-aware sampling never writes a bar longer than its meter."""

import random
from fractions import Fraction

import pytest
import torch

import domains
from domains._abc_parse import bar_overruns as _bar_overruns
from domains._abc_constraint import _LENGTH, length_value, meter_length

HEADER = "X:1\nT:Test\nM:6/8\nL:1/8\nK:G\n"


@pytest.fixture(scope="module")
def constraint(char_tokenizer):
    return domains.ABCConstraint(char_tokenizer)


def walk(constraint, tok, text):
    """Feed `text` token by token; returns the final state or the index of the refused character."""
    state = constraint.start([tok.bos_token_id])
    for i, ch in enumerate(text):
        nxt = constraint.advance(state, tok.convert_tokens_to_ids(ch))
        if nxt is None:
            return i
        state = nxt
    return state


def allowed_chars(constraint, tok, text):
    state = walk(constraint, tok, text)
    assert not isinstance(state, int), f"prefix refused at {state}: {text!r}"
    mask = constraint.allowed(state)
    return {tok.convert_ids_to_tokens(i) for i in mask.nonzero()[:, 0].tolist()}


def test_length_values():
    assert length_value("") == 1 and length_value("3") == 3 and length_value("/") == Fraction(1, 2)
    assert length_value("//") == Fraction(1, 4) and length_value("3/2") == Fraction(3, 2)
    assert length_value("/4") == Fraction(1, 4) and length_value("3/") == Fraction(3, 2)
    assert meter_length("6/8") == Fraction(3, 4) and meter_length("C|") == 1 and meter_length("none") is None
    for good in ("2", "12", "/", "//", "3/2", "3/", "/8"):
        assert _LENGTH.fullmatch(good), good
    for bad in ("0", "3//", "/3", "///", "2/3"):
        assert not _LENGTH.fullmatch(bad), bad


def test_full_bar_leaves_only_bar_lines(constraint, char_tokenizer):
    # 6/8 with L:1/8: six eighths fill the bar; no note, ornament or slur may follow
    chars = allowed_chars(constraint, char_tokenizer, HEADER + "GABcde")
    assert "|" in chars and ":" in chars
    assert not chars & set("ABCDEFGabcdefgz.~T({[^=_")
    # one eighth left: a note fits; written as a quarter it must be shortened before the bar ends
    assert "A" in allowed_chars(constraint, char_tokenizer, HEADER + "GABcd")
    after_quarter = allowed_chars(constraint, char_tokenizer, HEADER + "GABcdA2")
    assert "/" in after_quarter and "|" not in after_quarter and "<eos>" not in after_quarter
    assert "|" in allowed_chars(constraint, char_tokenizer, HEADER + "GABcdA2/")
    # a length that cannot be shortened back into the bar is refused outright
    assert "3" not in allowed_chars(constraint, char_tokenizer, HEADER + "GABcdA3/")


def test_broken_rhythm_and_tuplets_are_counted(constraint, char_tokenizer):
    # A>B is a dotted eighth plus a sixteenth: two eighths in all
    assert "|" in allowed_chars(constraint, char_tokenizer, HEADER + "A>BcdeF")
    assert "G" not in allowed_chars(constraint, char_tokenizer, HEADER + "A>BcdeF")
    # (3abc is three eighths in the time of two: 6/8 holds (3abc + four eighths
    assert "G" not in allowed_chars(constraint, char_tokenizer, HEADER + "(3abcdefg")
    assert "g" in allowed_chars(constraint, char_tokenizer, HEADER + "(3abcdef")


def test_header_values_and_order(constraint, char_tokenizer):
    assert walk(constraint, char_tokenizer, "X:1\nT:x\nK:G\n") == len("X:1\nT:x\n")  # K: needs M: first
    assert walk(constraint, char_tokenizer, "X:1\nM:6/8\nK:G\n") == len("X:1\nM:6/8\n")  # and L:
    assert walk(constraint, char_tokenizer, "M:6/8\n") == 0  # X: first
    assert walk(constraint, char_tokenizer, "X:1\nM:7/9\n") == len("X:1\nM:")  # no known meter starts with 7
    assert walk(constraint, char_tokenizer, "X:1\nM:6/8\nM:") == len("X:1\nM:6/8\n")  # each field once
    assert not isinstance(walk(constraint, char_tokenizer, HEADER + "GAB|"), int)


def test_end_only_after_a_closed_body(constraint, char_tokenizer):
    eos = char_tokenizer.eos_token_id
    for prefix, can_end in ((HEADER[:-1], False), (HEADER, False), (HEADER + "GAB", True),
                            (HEADER + "[GB", False), (HEADER + "{g", False), (HEADER + "G>", False),
                            (HEADER + "GAB|", True)):
        state = walk(constraint, char_tokenizer, prefix)
        assert bool(constraint.allowed(state)[eos]) == can_end, prefix


def test_grace_groups_are_bounded(constraint, char_tokenizer):
    """A grace group takes at most 4 notes, then only its close (or the last note's length and
    octave marks): the bar-aware samples that ran into their context end inside an unclosed group
    were a quarter of the invalid ones."""
    four = allowed_chars(constraint, char_tokenizer, HEADER + "G{gafe")
    assert "}" in four and not four & set("ABCDEFGabcdefg^=_")
    assert {"g", "^"} <= allowed_chars(constraint, char_tokenizer, HEADER + "G{gaf")
    assert "g" in allowed_chars(constraint, char_tokenizer, HEADER + "G{gafe}")


def test_a_body_meter_line_must_fit_the_bar(constraint, char_tokenizer):
    """Mid-bar, a body ``M:`` line (or inline field) may only name a meter the bar so far fits,
    else the sampler is led into a dead end and ends the tune with a long bar: five eighths of
    6/8 rule out 2/4 but not 3/4 or 6/8."""
    c = domains.ABCConstraint(char_tokenizer, meters=["6/8", "2/4", "3/4"], units=["1/8"], keys=["G"])
    for opening in ("\nM:", "[M:"):
        assert "2" not in allowed_chars(c, char_tokenizer, HEADER + "GABcd" + opening)
        assert {"3", "6"} <= allowed_chars(c, char_tokenizer, HEADER + "GABcd" + opening)
        assert "2" in allowed_chars(c, char_tokenizer, HEADER + "GABcd|" + opening)


def test_bad_prefix_is_refused(constraint, char_tokenizer):
    ids = [char_tokenizer.bos_token_id] + char_tokenizer("X:1\nM:6/8\nL:1/8\nK:G\nabcdefg|", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="breaks the ABC constraint"):
        constraint.start(ids)


def test_most_corpus_tunes_pass(fiddle_pieces, char_tokenizer):
    """The constraint is a subset of ABC, but the common tune shapes are in it (measured: 71% of
    the first 1500 fiddle tunes, 74% spaceless; runs of beam gaps, `::`, broken rhythm before a
    slur and other rare constructs are refused)."""
    texts = [p.text for p in fiddle_pieces[:200]]
    c = domains.ABCConstraint.from_texts(char_tokenizer, texts)
    passed = sum(not isinstance(walk(c, char_tokenizer, t), int) for t in texts)
    assert passed >= 0.8 * len(texts), passed  # 186 of these 200


def test_random_walks_never_overrun_a_bar(char_tokenizer):
    """Uniformly random text under the constraint: whatever music21 parses has no long bar on
    these 40 seeded walks (by hand, 4-5 of 300 walks still hit music21 quirks the constraint does
    not model; real samples are far tamer: 100/100 valid from the demo generator). One quirk is
    skipped: music21 does not read an inline ``[L:..]`` field as the constraint does (walk 22
    here has 5 long bars, none once its ``[L:1/16]`` moves to the header)."""
    c = domains.ABCConstraint(char_tokenizer, meters=["6/8", "2/4", "C|", "3/4"], units=["1/8", "1/16"],
                              keys=["G", "Am"])
    rng = random.Random(0)
    eos = char_tokenizer.eos_token_id
    parsed = 0
    for _ in range(40):
        state, ids = c.start([char_tokenizer.bos_token_id]), []
        for step in range(400):
            allowed = c.allowed(state).nonzero()[:, 0].tolist()
            if step < 120 and len(allowed) > 1:
                allowed = [i for i in allowed if i != eos]
            x = rng.choice(allowed)
            nxt = c.advance(state, x)
            if x == eos or nxt is None:
                break
            ids.append(x)
            state = nxt
        text = domains.decode(char_tokenizer, ids)
        if "[L:" in text:
            continue
        try:
            n_bars, over = _bar_overruns(text)
        except Exception:  # music21 refuses some random text; the bar check is what is tested
            continue
        parsed += n_bars > 0
        assert over == 0, text
    assert parsed >= 20


def test_sampler_with_constraint(tiny_generator, char_tokenizer, constraint):
    """An untrained generator writes noise; under the constraint every character it writes is one
    the constraint accepts, and every sample that reaches its end token is a valid tune."""
    tok = char_tokenizer
    cfg = domains.SampleConfig(max_new_tokens=120)
    # From the start token: the header rules hold for every sample.
    texts = domains.sample(tiny_generator, tok, 6, cfg, seed=0, constraint=constraint)
    assert len(texts) == 6
    for t in texts:
        assert not isinstance(walk(constraint, tok, t), int), t
    free = domains.sample(tiny_generator, tok, 6, cfg, seed=0)
    assert free != texts  # the mask changed what was drawn
    assert any(isinstance(walk(constraint, tok, t), int) for t in free)  # and free noise breaks the rules
    # From a complete header: the samples are tune bodies, so bars are written and checked.
    rows = domains.sample_ids(tiny_generator, tok, 6, cfg, prefix=HEADER, seed=0, constraint=constraint)
    ended = 0
    for row in rows:
        t = domains.decode(tok, row)
        assert t.startswith(HEADER) and not isinstance(walk(constraint, tok, t), int), t
        if row[-1] != tok.eos_token_id:
            continue  # cut by the context length: only its prefix is promised
        ended += 1
        assert constraint.accepts(t), t
        n_bars, over = _bar_overruns(t)
        assert n_bars >= 1 and over == 0, t
        assert domains.validate_abc(t).ok, (t, domains.validate_abc(t).reason)
    # The context (128 tokens) holds the header and ~95 body tokens; the end token is allowed after
    # any closed bar, so most rows stop on their own (5 of these 6).
    assert ended >= 3, ended


def test_accepts_screens_whole_tunes(fiddle_pieces, char_tokenizer):
    c = domains.ABCConstraint(char_tokenizer)
    tune = HEADER + "GAB c2d|e2d B2A|G3 G3|\n"
    assert c.accepts(tune)
    assert not c.accepts(HEADER + "GAB c2d e|")  # 7/8 in a 6/8 bar
    assert not c.accepts(HEADER + "GAB [cd")  # chord left open
    assert not c.accepts("T:no number\n" + tune)  # X: must come first
    # what it accepts passes validate_abc, also after random single-character edits
    rng = random.Random(0)
    accepted = agree = 0
    for piece in fiddle_pieces[:40]:
        text = piece.text
        for _ in range(3):
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice("ABCabc2/|>:[]()") + text[i + 1:]
            if c.accepts(text):
                accepted += 1
                agree += bool(domains.validate_abc(text))
    assert accepted >= 20 and agree == accepted


def _paired_walks(fast, ref, tok, texts, n_random, seed=0):
    """States of `fast` and `ref` side by side: along each text token by token, then along
    `n_random` walks that pick uniformly among the allowed tokens (tuplets, chords, broken rhythm,
    inline fields: the corners a trained model rarely visits). Yields (fast state, reference state)."""
    rng = random.Random(seed)
    walks = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    walks += [None] * n_random
    for ids in walks:
        a = fast.start([tok.bos_token_id])
        b = ref.start([tok.bos_token_id])
        for step in range(len(ids) if ids else 300):
            yield a, b
            if ids:
                if step + 1 == len(ids):
                    break
                x = ids[step + 1]
            else:
                choices = ref.allowed(b).nonzero()[:, 0].tolist()
                x = rng.choice([i for i in choices if i != tok.eos_token_id] or choices)
            na, nb = fast.advance(a, x), ref.advance(b, x)
            assert (na is None) == (nb is None)
            if na is None or x == tok.eos_token_id:
                break
            a, b = na, nb


def test_fast_masks_equal_the_reference_masks(fiddle_pieces, char_tokenizer):
    """The fast masks (one token per character class, integer ticks, cache keyed by the live
    state) equal the reference's (every token tried, exact fractions, whole-state key) on every
    state of corpus tunes and of random walks, and the ticks count the same durations exactly."""
    # Two states alike but for the last note's length, which a second ">" reads: 5/16 + z3/ A> and
    # 5/16 + A2> both stand at 11/16 of the 6/8 bar; ">>" then fits after the first only.
    corners = [HEADER + "GAG/z3/A>>B", HEADER + "GAG/A2>"]
    texts = corners + [p.text for p in fiddle_pieces[:30]]
    fast = domains.ABCConstraint.from_texts(char_tokenizer, texts)
    ref = domains.ABCConstraint.from_texts(char_tokenizer, texts, reference=True)
    assert isinstance(fast.one, int) and ref.one == 1
    n = 0
    for a, b in _paired_walks(fast, ref, char_tokenizer, texts, n_random=30):
        assert torch.equal(fast.allowed(a), ref.allowed(b)), (a.key(), b.key())
        assert type(a.cur) is int and Fraction(a.cur, fast.one) == b.cur
        n += 1
    assert n > 8_000
    assert len(fast._cache) < len(ref._cache)  # the live key merges states


def test_inexact_ticks_raise():
    from domains._abc_constraint import _scale

    assert _scale(6, 3, 2) == 9 and _scale(Fraction(1, 3), 3, 2) == Fraction(1, 2)
    with pytest.raises(ArithmeticError):
        _scale(5, 1, 2)


def test_bar_aware_samples_equal_the_reference_path(tiny_generator, char_tokenizer):
    """Same seed, same token ids: fast constraint and sampler vs the reference constraint with
    the reference sampler (every row run until the batch ends), from the start and from a header."""
    tok = char_tokenizer
    fast, ref = domains.ABCConstraint(tok), domains.ABCConstraint(tok, reference=True)
    cfg = domains.SampleConfig(max_new_tokens=100, batch_size=8)
    for prefix, seed in (("", 0), (HEADER, 1), (HEADER, 2)):
        got = domains.sample_ids(tiny_generator, tok, 8, cfg, prefix=prefix, seed=seed, constraint=fast)
        want = domains.sample_ids(tiny_generator, tok, 8, cfg, prefix=prefix, seed=seed, constraint=ref, reference=True)
        assert got == want, prefix
        if prefix:  # rows ended at different steps, so ended rows left the batch
            assert len({len(r) for r in got}) > 2 and sum(r[-1] == tok.eos_token_id for r in got) >= 3


def test_a_zero_length_denominator_is_refused_not_a_crash(constraint, char_tokenizer):
    assert not constraint.accepts(HEADER + "A/0 B|")
    refused = walk(constraint, char_tokenizer, HEADER + "A/0")
    assert refused == len(HEADER) + 2  # the "0" after the slash
