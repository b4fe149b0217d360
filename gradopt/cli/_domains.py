"""Subcommands for corpora and the generator: corpus, train-generator, sample, validate, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _collections(args) -> tuple[str, ...]:
    import domains

    name = args.collections or "fiddle"  # None: not given where --corpus could replace it
    if name == "fiddle":
        return domains.FIDDLE
    if name == "all":
        return domains.ALL_COLLECTIONS
    if name == "fiddle+essen":
        return domains.FIDDLE + domains.ESSEN
    return tuple(c.strip() for c in name.split(","))


def _corpus(args) -> tuple[list, object]:
    """(pieces, CorpusReport) for the collections named in `args`."""
    import domains

    cfg = domains.NormaliseConfig(spaceless=args.spaceless)
    report = domains.CorpusReport()
    pieces = domains.load_abc_corpus(_collections(args), cfg, report)
    return pieces, report


def generator_domain(directory, name: str | None = None, normalise=None):
    """The domain of the generator in `directory`: `name` (``--domain``) if given, else the one
    its ``domain.json`` records (written by `train-generator`), else ABC. `normalise`: the
    generator's normalisation (ABC tunes are read like its corpus). A `name` that contradicts
    the recorded one is refused."""
    import domains

    return domains.domain_from_name(domains.resolve_domain_name(directory, name), normalise=normalise, progress=True)


def read_user_pieces(domain, path) -> tuple[list, list[str]]:
    """(pieces, notes) of a user's file or folder, read by `domain.read`; `notes` say what was
    skipped and why (the domain's warnings and its report's skip reasons)."""
    import warnings

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pieces = domain.read(path)
    report = getattr(domain, "report", None)
    skipped = report.skipped.items() if report is not None else ()
    notes = [str(w.message) for w in caught] + [f"skipped {n}: {reason}" for reason, n in skipped]
    return pieces, notes


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def decode_escapes(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` as a shell passes them (backslash + letter) -> line break, tab,
    backslash; any other backslash is kept as written (ABC uses it to continue a line)."""
    import re

    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


def _training_corpus(args) -> tuple[list, object, object]:
    """(pieces, normalisation, domain) that `train-generator` trains on: the music21 collections,
    or the user's `--corpus` read by the `--domain`'s own reader (ABC: an .abc file or folder;
    text: one piece per line; MIDI: a folder of .mid files), copies dropped. Text and MIDI pieces
    are used as written, so the normalisation saved for them is the default one, under which
    sampling prefixes pass unchanged."""
    import domains

    if args.spaceless and args.domain != "abc":
        raise ValueError(f"--spaceless drops spaces from ABC tune bodies; leave it out with --domain {args.domain}")
    normalisation = domains.NormaliseConfig(spaceless=args.spaceless)
    domain = domains.domain_from_name(args.domain, normalise=normalisation, progress=True)
    if args.corpus is None:
        if args.domain != "abc":
            raise ValueError(f"--domain {args.domain} needs --corpus PATH (the bundled collections are ABC)")
        return _corpus(args)[0], normalisation, domain
    return domain.read(Path(args.corpus).expanduser(), distinct=True), normalisation, domain


def cmd_corpus_stats(args) -> int:
    import domains

    pieces, report = _corpus(args)
    d = report.as_dict()
    d["split"] = {k: len(v) for k, v in domains.split_corpus(pieces).items()}
    d["characters"] = sum(len(p.text) for p in pieces)
    d["alphabet"] = len({c for p in pieces for c in p.text})
    if args.json:
        print(json.dumps(d))
        return 0
    print(f"{d['tunes']} distinct tunes ({d['duplicates']} duplicates removed, {sum(d['skipped'].values())} skipped)")
    for name, n in d["collections"].items():
        print(f"  {name:<16} {n:>6}  (read {d['raw_tunes'][name]})")
    for reason, n in d["skipped"].items():
        print(f"  skipped: {reason}: {n}")
    print(f"split: {d['split']}; {d['characters']:,} characters, {d['alphabet']} distinct symbols")
    return 0


def cmd_corpus_export(args) -> int:
    import domains

    pieces, _ = _corpus(args)
    if args.split != "all":
        pieces = domains.split_corpus(pieces)[args.split]
    out = domains.write_atomic(args.out, "\n".join(p.text for p in pieces))
    print(f"wrote {len(pieces)} tunes to {out}")
    return 0


def cmd_train_generator(args) -> int:
    import domains

    pieces, normalisation, domain = _training_corpus(args)
    split = domains.split_corpus(pieces)
    train = [p.text for p in split["train"]]
    val = [p.text for p in split["val"]]
    if not train:
        raise ValueError(f"--corpus {args.corpus}: all {len(pieces)} piece(s) fell in the validation/test split; "
                         "add more pieces (about 90% of them train the generator)")
    work = Path(args.work)
    saved = domains.load_domain_name(work)
    if saved is not None and saved != domain.name:
        raise ValueError(f"{work} holds a generator trained on {saved} pieces; train the {domain.name} one in "
                         "another --work directory")
    kind = {} if args.tokenizer is None else {"kind": args.tokenizer}
    tok = domains.load_tokenizer(work) if (work / "tokenizer.json").exists() else domain.build_tokenizer(
        train, vocab_size=args.vocab_size, **kind)
    model = domains.build_generator(args.preset, tok, seed=args.seed)
    cfg = domains.GeneratorTrainConfig(max_steps=args.steps, cpu_minutes=args.minutes, batch_size=args.batch_size,
                              lr=args.lr, eval_every=args.eval_every, seed=args.seed, keep_best=args.keep_best)
    domains.save_domain_name(work, domain.name)  # sample, optimize and harvest read it
    summary = domains.train_generator(model, tok, train, val, cfg, work,
                                      normalisation=normalisation)
    summary["corpus"] = {"source": args.corpus or args.collections or "fiddle", "domain": args.domain,
                         "pieces": len(pieces), **{k: len(v) for k, v in split.items()}}
    domains.write_atomic(work / "train_summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


def cmd_sample(args) -> int:
    import domains

    model = domains.load_generator(args.work)
    tok = domains.load_tokenizer(args.work)
    normalisation = domains.load_normalisation(args.work)
    domain = generator_domain(args.work, args.domain, normalisation)
    # a prefix with tune body is spaced the way the generator's corpus was
    prefix = domains.respace(decode_escapes(args.prefix), normalisation)
    domains.check_in_vocab(tok, prefix)
    cfg = domains.SampleConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                               max_new_tokens=args.max_new_tokens)
    constraint = domain.constraint(tok) if args.bar_aware else None
    if args.bar_aware and constraint is None:
        print(f"note: --bar-aware: the {domain.name} domain has no sampling grammar; sampling freely", file=sys.stderr)
    texts = domains.sample(model, tok, args.n, cfg, prefix=prefix, seed=args.seed, constraint=constraint)
    if args.out:
        domain.write(texts, args.out)
        n_ok = sum(domain.validate(t).ok for t in texts)
        print(f"wrote {len(texts)} samples to {args.out} ({n_ok} valid)")
    else:
        sys.stdout.write("\n".join(texts))
    return 0


def cmd_validate(args) -> int:
    import domains

    raw = Path(args.file).read_text() if args.file != "-" else sys.stdin.read()
    if not raw.strip():
        where = "standard input" if args.file == "-" else f"{args.file}"
        raise ValueError(f"{where} is empty: no tunes to validate; give an .abc file with one or more tunes")
    tunes = domains.split_tunes(raw) or [raw]
    n_ok = 0
    for i, t in enumerate(tunes, 1):
        v = domains.validate_abc(t)
        n_ok += v.ok
        title = domains.abc_title(t)
        print(f"{i:>4} {'ok ' if v.ok else 'BAD'} {title[:40]:<40} {v.reason}")
    print(f"{n_ok}/{len(tunes)} valid")
    return 0 if n_ok == len(tunes) else 1


def cmd_demo(args) -> int:
    import distill

    cfg = distill.DemoConfig(preset=args.preset, tokenizer=args.tokenizer, minutes=args.minutes,
                             max_steps=args.steps, n_samples=args.n_samples, essen=args.essen, seed=args.seed,
                             threads=args.threads, processes=args.processes, spaceless=not args.keep_spaces,
                             bar_aware=not args.free)
    path = distill.run_demo(args.work, cfg)
    print(f"data: {path}")
    print(f"report: {path.with_name('report.html')}")
    return 0


def _add_corpus_args(p: argparse.ArgumentParser, default: str = "fiddle", user_corpus: bool = False) -> None:
    """--collections and --spaceless; with `user_corpus`, also --corpus (exclusive with
    --collections) and --domain."""
    where = p.add_mutually_exclusive_group() if user_corpus else p
    if user_corpus:
        where.add_argument("--corpus", metavar="PATH",
                           help="train on your own pieces instead: an .abc file or a folder of .abc files "
                                "(--domain abc), a text file with one piece per line (--domain text), or a "
                                "folder of .mid files (--domain midi, read as REMI tokens)")
        p.add_argument("--domain", choices=["abc", "text", "midi"], default="abc",
                       help="what --corpus holds (default: abc); saved in the --work directory's domain.json, "
                            "so sample, optimize and harvest read pieces of the same kind")
    # argparse lets an exclusive option through when its value is its default object, so with
    # --corpus the default is None (read as `default` by _collections)
    where.add_argument("--collections", default=None if user_corpus else default,
                   help=f"fiddle (ryansMammoth, oneills1850, airdsAirs, miscFolk), fiddle+essen, all, "
                        f"or a comma-separated list of music21 collections (default: {default})")
    p.add_argument("--spaceless", action="store_true", help="drop spaces from tune bodies")


def register(sub) -> None:
    corpus = sub.add_parser("corpus", help="inspect or export the bundled ABC corpus")
    csub = corpus.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    p = csub.add_parser("stats", help="distinct tunes per collection, skips, split sizes")
    _add_corpus_args(p, default="all")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_corpus_stats)
    p = csub.add_parser("export", help="write the normalised tunes to one .abc file")
    _add_corpus_args(p)
    p.add_argument("--out", required=True, help="output .abc file")
    p.add_argument("--split", choices=["all", "train", "val", "test"], default="all")
    p.set_defaults(func=cmd_corpus_export)

    p = sub.add_parser("train-generator", help="train a GPT-2-style generator on the ABC corpus or your own "
                                               "--corpus (resumable)")
    _add_corpus_args(p, user_corpus=True)
    p.add_argument("--work", required=True, help="directory for the model, tokenizer and checkpoints")
    p.add_argument("--preset", default="small", help="tiny | small | medium")
    p.add_argument("--tokenizer", default=None, choices=["char", "bpe", "word"],
                   help="default: the domain's own (char for abc and text; word, one token per REMI name, for midi)")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget in process CPU-minutes, all threads (0 = none)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--keep-best", action="store_true",
                   help="keep the evaluated weights with the lowest validation cross-entropy, not the last ones (a "
                        "long run on a small corpus overfits: see the README's backbone figures)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_generator)

    p = sub.add_parser("sample", help="sample tunes (or MIDI, or text) from a trained generator")
    p.add_argument("--work", required=True, help="generator directory")
    p.add_argument("--domain", choices=["abc", "text", "midi"], default=None,
                   help="what the generator writes (default: as recorded by train-generator in domain.json, else abc)")
    p.add_argument("-n", type=int, default=10, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=400)
    p.add_argument("--prefix", default="",
                   help="text every sample starts with, e.g. 'X:1\\nT:'; the escapes \\n (line break), \\t (tab) "
                        "and \\\\ (backslash) are decoded, any other backslash is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write samples here instead of stdout, in the domain's format: an .abc file, a "
                                 "text file (one sample per line), or for midi a folder of .mid files")
    p.add_argument("--bar-aware", action="store_true",
                   help="ABC only (other domains sample freely, with a note): mask tokens that would overrun a bar or leave a chord/annotation open "
                        "(domains.ABCConstraint with its default meters, unit lengths and keys)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("validate", help="check every tune of an .abc file (exit 1 if any is invalid)")
    p.add_argument("file", help=".abc file or - for stdin")
    p.set_defaults(func=cmd_validate)

    from distill import DemoConfig  # the defaults live in one place

    d = DemoConfig()
    p = sub.add_parser("demo", help="the main job: generator -> simulated ratings -> Bradley-Terry -> reward model "
                                    "-> ascent -> harvest -> report.html")
    p.add_argument("--work", default="runs/demo", help="work directory (finished stages are reused)")
    p.add_argument("--preset", default=d.preset)
    p.add_argument("--tokenizer", default=d.tokenizer, choices=["char", "bpe"])
    p.add_argument("--minutes", type=float, default=d.minutes, help="generator training budget in CPU-minutes")
    p.add_argument("--steps", type=int, default=d.max_steps)
    p.add_argument("--n-samples", type=int, default=d.n_samples)
    p.add_argument("--essen", action="store_true", help="train on the Essen folk songs too")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0 = torch's default)")
    p.add_argument("--processes", type=int, default=d.processes,
                   help="worker processes for tune checks and the simulated rater's scoring (1 = none; same results)")
    p.add_argument("--keep-spaces", action="store_true", help="keep spaces in tune bodies (default: spaceless)")
    p.add_argument("--free", action="store_true",
                   help="report free samples instead of bar-aware ones (both validity rates are always measured)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=cmd_demo)
