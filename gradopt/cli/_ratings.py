"""Subcommands for ratings and reward models: ratings add|import|export|stats, fit-bt, next-pairs,
simulate-ratings, train-reward (low-level flags or --recipe NAME). Each is a thin shell over `rewardmodels` (and, for `ratings add`,
the domains' own loaders)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_FORMATS = ("openai", "trl", "pairs")


def _kinds(text: str) -> tuple[str, ...]:
    from rewardmodels import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown comparison kind(s) {bad}; choose from {KINDS}")
    return kinds


_DOMAINS = ("abc", "midi", "text")


def read_pieces(path: str | Path, domain: str) -> tuple[list[str], list[str]]:
    """(texts, notes) of the pieces in `path`, read by the domain's own reader (`Domain.read`): an
    ABC file split at its ``X:`` lines and normalised like the corpus (or every .abc file of a
    folder); a text file, one piece per line; a MIDI file or a folder of them, as REMI text.
    `notes` say what was skipped and why."""
    import domains

    from ._domains import read_user_pieces

    pieces, notes = read_user_pieces(domains.domain_from_name(domain), path)
    return [p.text for p in pieces], notes


def cmd_add(args) -> int:
    import rewardmodels as rm

    if args.iteration < 0:
        raise ValueError(f"--iteration must be >= 0 (0 for corpus pieces), got {args.iteration}")
    texts, notes = read_pieces(args.file, args.domain)
    store = rm.RatingStore(args.store)
    before = len(store)
    for text in texts:
        store.add_item(text, domain=args.domain, origin=args.origin, iteration=args.iteration)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    added = len(store) - before
    print(f"added {added} new items to {store.directory} ({len(texts) - added} already there; "
          f"{len(store)} items in all)")
    return 0


def cmd_import(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store)
    meta = {"domain": args.domain, "origin": args.origin}
    if args.format == "openai":
        n = rm.import_openai(store, args.file, rater=args.rater, **meta)
    elif args.format == "trl":
        n = rm.import_trl(store, args.file, rater=args.rater, **meta)
    else:
        n = rm.import_index_pairs(store, args.file, rater=args.rater)
    print(f"imported {n} new comparisons into {store.directory} (now {len(store.comparisons)} comparisons, "
          f"{len(store)} items; comparisons already imported are not added again)")
    return 0


def cmd_export(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    if args.format == "openai":
        n = rm.export_openai(store, args.file, jsonl=args.jsonl)
    elif args.format == "trl":
        margin = None
        if args.scores:
            scores, _ = rm.load_scores(args.scores, store)
            pos = store.index()
            margin = lambda w, l: scores.mean[pos[w]] - scores.mean[pos[l]]  # noqa: E731
        n = rm.export_trl(store, args.file, margin=margin)
    else:
        n = rm.export_index_pairs(store, args.file)
    print(f"wrote {n} comparisons to {args.file}")
    return 0


def cmd_stats(args) -> int:
    import rewardmodels as rm

    stats = rm.RatingStore(args.store, create=False).stats()
    print(json.dumps(stats, indent=None if args.json else 1))
    return 0


def cmd_fit_bt(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    scores = rm.fit_store(store, _kinds(args.kinds), prior_sd=args.prior_sd)
    rm.save_scores(scores, store.ids, args.out)
    top = sorted(range(len(store)), key=lambda i: -scores.mean[i])[:3]
    print(f"fitted {len(store)} items from {len(store.comparisons)} comparisons "
          f"({'converged' if scores.converged else 'NOT converged'}: {scores.reason}; tie ν={scores.tie:.3g}) -> {args.out}")
    for i in top:
        print(f"  {scores.mean[i]:+.2f} ± {scores.sd[i]:.2f}  {store.ids[i][:12]}")
    return 0


def cmd_next_pairs(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    scores, _ = rm.load_scores(args.scores, store)
    for a, b in rm.propose_pairs(store, scores, args.k, args.strategy, args.seed, args.allow_repeats):
        print(json.dumps({"a": a, "b": b}))
    return 0


def cmd_simulate(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    if args.queue:
        pairs = [(e.a, e.b) for e in store.pending()][: args.k]
    elif args.pairs:
        records = rm.read_jsonl(args.pairs)  # a torn last line is skipped with a warning
        for no, r in records:
            if not (isinstance(r.get("a"), str) and isinstance(r.get("b"), str)):
                raise ValueError(f"{args.pairs}:{no}: expected {{\"a\": id, \"b\": id}}")
        pairs = [(r["a"], r["b"]) for _, r in records]
        unknown = [k for pair in pairs for k in pair if k not in store]
        if unknown:
            raise ValueError(f"{args.pairs}: {len(unknown)} id(s) not in the store, e.g. {unknown[0][:16]}...")
    else:
        scores = rm.load_scores(args.scores, store)[0] if args.scores else rm.fit_store(store)
        pairs = rm.propose_pairs(store, scores, args.k, args.strategy, args.seed)
    judge = rm.JudgeConfig(blacklist=tuple(args.blacklist)) if args.judge else None
    rater = rm.SimulatedRater(agreement=args.agreement, seed=args.seed, tie_rate=args.tie_rate)
    done = rm.rate_pairs(store, pairs, rater, judge)
    kinds = {k: sum(c.kind == k for c in done) for k in ("auto", "simulated")}
    print(f"recorded {len(done)} comparisons ({kinds['simulated']} simulated, {kinds['auto']} auto) in {store.directory}")
    return 0


def _train_reward_recipe(args, store, generator, tokenizer, scores) -> int:
    """train-reward --recipe NAME: the named recipe's pooling, fit and fine-tune config on the store;
    with --ensemble K, K bootstrap probes of a probe recipe (what the do-no-harm guard reads)."""
    import dataclasses

    import domains
    import rewardmodels as rm

    if args.recipe not in rm.RECIPES:
        raise ValueError(f"unknown recipe {args.recipe!r}; choose from {', '.join(rm.RECIPES)}")
    given = [flag for flag, on in (("--pairwise", args.pairwise), ("--probe", args.probe),
                                   ("--pooling", args.pooling is not None)) if on]
    if given:
        raise ValueError(f"--recipe sets the pooling and the fit; drop {', '.join(given)} (or drop --recipe)")
    recipe = rm.RECIPES[args.recipe]
    if args.ensemble and recipe.fit != "probe":
        raise ValueError(f"--ensemble fits bootstrap probes, but recipe {args.recipe!r} fits {recipe.fit!r}; choose a "
                         f"probe recipe ({', '.join(k for k, r in rm.RECIPES.items() if r.fit == 'probe')}) or drop --ensemble")
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, seed=args.seed, **overrides))
    model, info = rm.train_recipe(store, generator, tokenizer, scores, recipe, members=args.ensemble, seed=args.seed,
                                  progress=True)
    model.save_pretrained(args.out)
    domains.save_tokenizer(tokenizer, args.out)
    done = [f"probe λ={info['probe_l2']:g}"] if "probe_l2" in info else []
    if "losses" in info:
        done.append(f"{len(info['losses'])} fine-tune steps, final loss {info['final_loss']:.4f}")
    kind = f", an ensemble of {args.ensemble} bootstrap probes" if args.ensemble else ""
    print(f"fitted recipe {args.recipe} ({recipe.pooling} pooling, fit {recipe.fit}{kind}: {'; '.join(done)}); "
          f"saved to {args.out}")
    return 0


def cmd_train_reward(args) -> int:
    import domains
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    generator = domains.load_generator(args.generator)
    tokenizer = domains.load_tokenizer(args.generator)
    scores = rm.load_scores(args.scores, store)[0] if args.scores else None
    if args.recipe is not None:
        return _train_reward_recipe(args, store, generator, tokenizer, scores)
    args.pooling = args.pooling or "last"
    unset = lambda value, default: default if value is None else value  # noqa: E731
    cfg = rm.RewardTrainConfig(steps=unset(args.steps, 300), batch_size=unset(args.batch_size, 32),
                               lr=unset(args.lr, 3e-4), seed=args.seed)
    model, losses = rm.train_from_store(store, generator, tokenizer, scores, pairwise=args.pairwise,
                                        kinds=_kinds(args.kinds), cfg=cfg, progress=True,
                                        pooling=args.pooling, probe=args.probe, members=args.ensemble)
    model.save_pretrained(args.out)
    domains.save_tokenizer(tokenizer, args.out)
    if args.ensemble:
        print(f"fitted an ensemble of {args.ensemble} linear probes ({args.pooling} pooling, bootstrap resamples of the "
              f"rated items) on the frozen generator's features: best cross-validation loss {min(losses):.4f}; "
              f"saved to {args.out}")
        return 0
    if args.probe:
        print(f"fitted a linear probe ({args.pooling} pooling) on the frozen generator's features: "
              f"best cross-validation loss {min(losses):.4f}; saved to {args.out}")
        return 0
    k = max(1, len(losses) // 10)
    print(f"trained {'pairwise' if args.pairwise else 'BT-regression'} reward model for {len(losses)} steps: "
          f"loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f}; saved to {args.out}")
    return 0


def register(subparsers) -> None:
    _register_store(subparsers)
    _register_scores(subparsers)
    _register_simulate(subparsers)
    _register_train_reward(subparsers)


_FMT = argparse.ArgumentDefaultsHelpFormatter


def _register_store(subparsers) -> None:
    """`ratings add|import|export|stats`: what goes in and out of a rating store."""
    from rewardmodels import ORIGINS

    fmt = _FMT
    ratings = subparsers.add_parser("ratings", help="add pieces to, import into, export or summarise a rating store",
                                    description="Manage a rating store (items.jsonl + comparisons.jsonl).")
    rsub = ratings.add_subparsers(dest="ratings_command", required=True, metavar="ACTION")

    p = rsub.add_parser("add", help="add pieces to rate (tunes, samples, texts, MIDI files)", formatter_class=fmt,
                        description="Add the pieces of a file as items of a store, read by the domain's own "
                                    "loader: an .abc file with one or more tunes (split at X:, normalised like the "
                                    "corpus), a text file with one piece per line, or a .mid file or folder of "
                                    "them. Items are content-addressed: adding the same file again adds nothing.")
    p.add_argument("file", help=".abc file, text file, or .mid file / folder of .mid files")
    p.add_argument("--store", required=True, help="rating store directory (created if missing)")
    p.add_argument("--origin", choices=ORIGINS, required=True,
                   help="where the pieces come from: a corpus, generator samples, optimized or harvested")
    p.add_argument("--domain", choices=_DOMAINS, default="abc", help="what the file holds")
    p.add_argument("--iteration", type=int, default=0, help="generator iteration that produced them (0: corpus)")
    p.set_defaults(func=cmd_add)

    p = rsub.add_parser("import", help="add comparisons from another format", formatter_class=fmt,
                        description="Import OpenAI lm-human-preferences JSON, TRL preference records "
                                    "or [winner, loser] index pairs into a store.")
    p.add_argument("file", help="file to read (JSON array or JSON lines)")
    p.add_argument("--store", required=True, help="rating store directory (created if missing)")
    p.add_argument("--format", choices=_FORMATS, required=True, help="input format")
    p.add_argument("--rater", default="import", help="rater name recorded with each comparison")
    p.add_argument("--domain", default="abc", help="domain of imported items")
    p.add_argument("--origin", default="corpus", help="origin of imported items")
    p.set_defaults(func=cmd_import)

    p = rsub.add_parser("export", help="write comparisons in another format", formatter_class=fmt,
                        description="Export a store's comparisons (ties are skipped by openai/trl).")
    p.add_argument("file", help="file to write")
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--format", choices=_FORMATS, required=True, help="output format")
    p.add_argument("--jsonl", action="store_true", help="openai: JSON lines instead of a JSON array")
    p.add_argument("--scores", help="trl: scores from fit-bt, to write the score gap as 'margin'")
    p.set_defaults(func=cmd_export)

    p = rsub.add_parser("stats", help="counts of items and comparisons", formatter_class=fmt)
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--json", action="store_true", help="one-line JSON")
    p.set_defaults(func=cmd_stats)


def _register_scores(subparsers) -> None:
    """`fit-bt` and `next-pairs`: Bradley-Terry scores of a store and the pairs to rate next."""
    from rewardmodels import STRATEGIES

    fmt = _FMT
    p = subparsers.add_parser("fit-bt", help="fit Bayesian Bradley-Terry scores to a store", formatter_class=fmt,
                              description="MAP latent scores with a Gaussian prior and Laplace posterior SDs.")
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--out", required=True, help="scores JSON to write")
    p.add_argument("--prior-sd", type=float, default=1.0, help="prior SD of every latent score")
    p.add_argument("--kinds", default="human,auto,simulated", help="comparison kinds to use, comma-separated")
    p.set_defaults(func=cmd_fit_bt)

    p = subparsers.add_parser("next-pairs", help="propose the next pairs to rate (JSON lines)", formatter_class=fmt,
                              description="Active selection from the Bradley-Terry posterior.")
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--scores", required=True, help="scores JSON from fit-bt")
    p.add_argument("-k", type=int, default=10, help="number of pairs")
    p.add_argument("--strategy", choices=STRATEGIES, default="racing", help="selection strategy")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--allow-repeats", action="store_true", help="allow pairs that were already rated")
    p.set_defaults(func=cmd_next_pairs)


def _register_simulate(subparsers) -> None:
    """`simulate-ratings`: comparisons by the simulated rater (and the auto-checks)."""
    from rewardmodels import STRATEGIES, TIE_RATE

    fmt = _FMT
    p = subparsers.add_parser("simulate-ratings", help="rate pairs with the simulated rater", formatter_class=fmt,
                              description="Record comparisons by the simulated rater (hidden music21 utility "
                                          "+ Bradley-Terry noise), optionally after the auto-checks.")
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--pairs", help="JSON lines of {a, b} ids (as printed by next-pairs); else propose -k pairs")
    p.add_argument("--queue", action="store_true",
                   help="rate the first -k pending pairs of the store's rating queue (e.g. harvested ones)")
    p.add_argument("--scores", help="scores JSON for proposing pairs (default: fit the store now)")
    p.add_argument("-k", type=int, default=10, help="pairs to propose (or to take from --queue) when --pairs is not given")
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="selection strategy for proposals")
    p.add_argument("--agreement", type=float, default=0.75,
                   help="P(rater prefers the better of two tunes 1 utility unit apart | not a tie)")
    p.add_argument("--tie-rate", type=float, default=TIE_RATE,
                   help="P(tie) between two tunes of equal utility; it falls as the utilities part")
    p.add_argument("--judge", action="store_true", help="run the auto-checks first (broken pieces lose)")
    p.add_argument("--blacklist", nargs="*", default=[], help="substrings that mark a piece broken")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=cmd_simulate)


def _register_train_reward(subparsers) -> None:
    """`train-reward`: a reward model (regression on BT scores, pairwise, probe, ensemble) from a store."""
    from rewardmodels import POOLINGS, RECIPES

    fmt = _FMT
    p = subparsers.add_parser("train-reward", help="train a reward model from a store", formatter_class=fmt,
                              description="Initialise from a generator and train by regression on Bradley-Terry "
                                          "scores (default) or on raw pairs (--pairwise baseline); or fit it "
                                          "the way a named recipe does (--recipe).")
    p.add_argument("--store", required=True, help="rating store directory")
    p.add_argument("--generator", required=True, help="generator directory (model + tokenizer)")
    p.add_argument("--scores", help="scores JSON from fit-bt (required unless --pairwise)")
    p.add_argument("--recipe", metavar="NAME",
                   help="take pooling, fit (probe / fine-tune / both) and fine-tune config from a named recipe "
                        f"(rewardmodels.RECIPES: {', '.join(RECIPES)}; practical_ending reads each bar and the "
                        "last bar apart); excludes --pairwise/--probe/--pooling, --steps/--batch-size/--lr "
                        "override the recipe's fine-tune when given; --ensemble K with a probe recipe")
    p.add_argument("--pooling", choices=list(POOLINGS),
                   help="features the head reads (unset: last): the EOS position's, the mean over all positions, "
                        "both, an attention-weighted mean, or per bar (bars: mean over bars, last bar, first bar)")
    p.add_argument("--probe", action="store_true",
                   help="fit only the linear head in closed form on the frozen generator (ridge, λ by "
                        "cross-validation); with --pooling mean the best recipe in benchmarks/reward_fidelity.py")
    p.add_argument("--ensemble", type=int, default=0, metavar="K",
                   help="fit K probes on bootstrap resamples of the rated items (needs --probe or a probe --recipe, "
                        "e.g. practical_music): their disagreement "
                        "is what `gradopt optimize`'s do-no-harm guard reads; 0 = one model")
    p.add_argument("--out", required=True, help="directory to save the reward model and tokenizer")
    p.add_argument("--pairwise", action="store_true", help="train the pairwise baseline instead")
    p.add_argument("--kinds", default="human,auto,simulated", help="comparison kinds for --pairwise")
    p.add_argument("--steps", type=int, help="optimizer steps (unset: 300, or the recipe's)")
    p.add_argument("--batch-size", type=int, help="sequences per step (unset: 32, or the recipe's)")
    p.add_argument("--lr", type=float, help="learning rate (unset: 3e-4, or the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=cmd_train_reward)

