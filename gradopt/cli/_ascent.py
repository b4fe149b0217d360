"""Subcommands of the ascent engine: ``optimize`` (improve pieces) and ``harvest`` (queue blind spots).

Pieces are read, validated, edited and written through the generator's `domains.Domain` (ABC
tunes, MIDI as REMI tokens, or text); an edit kind the domain lacks falls back to free token edits.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path


TOKEN_KINDS = ("any", "cadence", "ending", "pitch")  # edit kinds with free tokens (ABC; others: any)
_SIMULATED_DOMAINS = ("abc",)  # the simulated rater's utility and auto-judge read ABC music


def _load_models(args):
    """(tokenizer, generator, reward model, domain): the generator directory's tokenizer, model
    and domain, which reads a user's pieces the way its corpus was (ABC: normalised alike)."""
    import domains
    import torch
    from rewardmodels import load_reward_model

    from ._domains import generator_domain

    if args.threads:
        torch.set_num_threads(args.threads)

    tok = domains.load_tokenizer(args.generator)
    gen = domains.load_generator(args.generator)
    domain = generator_domain(args.generator, args.domain, domains.load_normalisation(args.generator))
    rm = load_reward_model(args.reward)  # a single model or an ensemble
    return tok, gen, rm, domain


def _read(domain, path) -> list:
    """The pieces of a user's file or folder (`Domain.read`), notes on skipped ones to stderr."""
    from ._domains import read_user_pieces

    pieces, notes = read_user_pieces(domain, path)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return pieces


def _edit_kind(domain, kind: str) -> str:
    """`kind` if the domain has it, else free token edits ('any') with a note saying so."""
    if kind in domain.edit_kinds:
        return kind
    print(f"note: --edit {kind} needs ABC structure; the {domain.name} domain edits any token instead",
          file=sys.stderr)
    return "any"


def _freeze_spec(args, domain) -> str:
    """The bars `--freeze` names, plus the header unless `--edit-header`; '' for a domain without
    bars (where `--freeze` is refused rather than ignored)."""
    if not domain.has_bars:
        if args.freeze:
            raise ValueError(f"--freeze names bars of ABC tunes; the {domain.name} domain has none, leave it out")
        return ""
    return ",".join(x for x in (args.freeze, None if args.edit_header else "header") if x)


def _unique_names(pieces) -> list[str]:
    """File stems for the outputs of domains with one file per piece: the input's stem, made unique."""
    names, seen = [], set()
    for p in pieces:
        stem = Path(p.source.split("#")[0]).stem or "piece"
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}-{k}"
        seen.add(name)
        names.append(name)
    return names


def _trust(args):
    """The guard's TrustConfig from its options (`_add_guard_args`)."""
    from .._trust import TrustConfig

    return TrustConfig(max_changed=args.max_changed, pessimism=args.pessimism, margin=args.margin,
                       single_model=getattr(args, "trust_single_model", False),
                       max_loglik_drop=getattr(args, "max_loglik_drop", TrustConfig().max_loglik_drop))


def _config(args):
    from .._ascent import AscentConfig
    from .._objective import ObjectiveWeights
    from .._optim import Adam
    from .._polish import PolishConfig
    from .._relax import make_relaxation

    trust = None if getattr(args, "no_guard", True) else _trust(args)
    return AscentConfig(
        steps=args.steps, check_every=args.check_every, restarts=args.restarts, seed=args.seed,
        relaxation=make_relaxation(args.relaxation), objective=ObjectiveWeights(lm_weight=args.lm_weight,
                                                                     lm_floor=args.lm_floor),
        optimizer=Adam(lr=args.lr), polish=PolishConfig(rounds=args.polish_rounds, combine=args.polish_combine),
        require_valid=not getattr(args, "allow_invalid", False), trust=trust,
    )


def _utilities(texts: list[str], domain) -> list[float] | None:
    if domain.name not in _SIMULATED_DOMAINS:
        return None
    try:
        from rewardmodels import SimulatedRater
    except ImportError:
        return None
    return [float(u) for u in SimulatedRater(seed=0).utility(list(texts))]


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:+.3f}" if isinstance(x, float) else str(x)


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(x.rjust(w) for x, w in zip(row, widths)))


def _title(domain, piece) -> str:
    return (domain.title(piece.text) or piece.source)[:24]


def _edit_masks(domain, kind: str, ids, tok, spec: str):
    """(freeze, allowed) of a padded batch: the bars `spec` names (`freeze_bars`; '' = none) plus
    the edit kind's own masks (`Domain.token_edits`)."""
    from .._masks import freeze_bars

    freeze = freeze_bars(ids, tok, spec) if spec else None
    edit_freeze, allowed = domain.token_edits(kind, ids, tok)
    if edit_freeze is not None:
        freeze = edit_freeze if freeze is None else freeze | edit_freeze
    return freeze, allowed


def cmd_optimize(args) -> int:
    import domains
    from tqdm.auto import tqdm

    from .._ascent import optimize, pad_batch
    from .._moves import MoveConfig
    from .._starts import starts_from_texts

    tok, gen, rm, domain = _load_models(args)
    pieces = _read(domain, args.input)
    tunes = [p.text for p in pieces]
    kind = _edit_kind(domain, args.edit)
    cfg = _config(args)
    moves_cfg = MoveConfig(rounds=args.move_rounds, candidates=args.move_candidates, seed=args.seed)
    if kind in domain.move_kinds and kind != "any":  # no token is free: skip the ascent, only the moves search
        cfg = replace(cfg, steps=0, polish=replace(cfg.polish, rounds=0))
    for i, (t, p) in enumerate(zip(tunes, pieces)):
        try:
            domains.check_in_vocab(tok, t)
        except domains.OutOfVocabularyError as err:
            raise ValueError(f"piece {i + 1} ({p.source}) of {args.input}: {err}") from err
    starts = starts_from_texts(tok, tunes, max_tokens=domains.context_length(gen))
    validate = None if args.no_validate else domain.validate
    spec = _freeze_spec(args, domain)
    rows = []
    for lo in tqdm(range(0, len(starts), args.batch_size), desc="optimize", unit="batch"):
        batch = starts[lo : lo + args.batch_size]
        ids = pad_batch(batch, tok.pad_token_id)[0]
        freeze, allowed = _edit_masks(domain, kind, ids, tok, spec)
        res = optimize(batch, rm, gen, cfg, tokenizer=tok, freeze=freeze, allowed=allowed, validate=validate,
                       progress=True)
        rows.extend(res.rows)
    rows = _search_moves(args, domain, kind, spec, rows, starts, tok, gen, rm, cfg, moves_cfg, validate)
    out_texts = [r.text for r in rows]
    domain.write(out_texts, args.out, names=_unique_names(pieces))
    _report(args, domain, pieces, rows, out_texts)
    return 0


def _report(args, domain, pieces, rows, out_texts) -> None:
    """The before/after table, the do-no-harm guard's verdicts, a summary line, and --json."""
    import domains

    table = []
    for i, (p, r) in enumerate(zip(pieces, rows), 1):
        table.append({"#": i, "title": _title(domain, p), "reward": r.reward_before, "->reward": r.reward_after,
                      "loglik": r.loglik_before, "->loglik": r.loglik_after, "valid": r.valid_after,
                      "gain": f"{r.gain_mean:+.3f}" + ("" if math.isnan(r.gain_sd) else f"±{r.gain_sd:.3f}"),
                      "changed": r.changed, "status": "kept" if r.kept else r.status})
    if not args.no_utility:
        before, after = _utilities([p.text for p in pieces], domain), _utilities(out_texts, domain)
        if before is not None:
            for row, u0, u1 in zip(table, before, after):
                row["utility"], row["->utility"] = u0, u1
    cols = ["#", "title", "reward", "->reward", "gain", "utility", "->utility", "loglik", "->loglik", "valid",
            "changed", "status"]
    print_table(table, [c for c in cols if any(c in r for r in table)])
    noun = "tune" if domain.name == "abc" else "piece"
    for i, r in enumerate(rows, 1):  # "gain" is the candidate edit's reward gain (± SD over ensemble members)
        if r.kept:
            print(f"{noun} {i} ({_title(domain, pieces[i - 1])}): {r.status}")
    mean = lambda k: sum(r[k] for r in table) / len(table)  # noqa: E731
    line = (f"{len(rows)} {noun}s -> {args.out} ({sum(r.kept for r in rows)} kept unchanged): "
            f"reward {mean('reward'):+.3f} -> {mean('->reward'):+.3f}")
    if "utility" in table[0]:
        line += f", simulated utility {mean('utility'):+.3f} -> {mean('->utility'):+.3f}"
    print(line)
    if args.json:
        domains.write_atomic(args.json, json.dumps([r.as_dict() for r in rows], indent=1))


def _search_moves(args, domain, kind, spec, rows, starts, tok, gen, rm, cfg, moves_cfg, validate):
    """The domain's whole-piece moves of the edit kind (`Domain.moves`, e.g. `domains.abc_moves`),
    searched exactly from the ascent's results (`move_search`); bars frozen by --freeze (and the
    header) keep their content, and the do-no-harm guard judges each moved piece against its input
    (`vet_moves`)."""
    from .._masks import parse_bars
    from .._moves import apply_moves, keep_bars, move_search, vet_moves

    if moves_cfg.rounds == 0 or kind not in domain.move_kinds:
        return rows
    propose = lambda text: domain.moves(text, kind)  # noqa: E731
    if spec:
        propose = keep_bars(propose, parse_bars(spec))
    moved = move_search([r.text for r in rows], propose, rm, gen, tok, moves_cfg, weights=cfg.objective,
                        validate=validate, progress=True)
    return apply_moves(rows, moved, vet_moves(starts, moved, rm, tok.pad_token_id, cfg.trust, gen))


def _validity_judge(domain):
    """Harvest's judge for domains the auto-judge cannot read: broken = invalid by the domain."""
    def judge(text: str) -> list[str]:
        v = domain.validate(text)
        return [] if v else [f"invalid: {v.reason}"]

    return judge


def cmd_harvest(args) -> int:
    from functools import cache

    import domains

    from .._ascent import pad_batch
    from .._harvest import HarvestConfig, harvest
    from .._starts import starts_from_generator, starts_from_texts
    from rewardmodels import RatingStore

    store = RatingStore(args.store)  # a corrupt store fails here, not after the ascent
    tok, gen, rm, domain = _load_models(args)

    @cache
    def train() -> list[str]:
        try:
            return [p.text for p in domains.split_corpus(domain.corpus())["train"]]
        except domains.CorpusError as err:
            raise ValueError(f"{err}; give --corpus PATH to measure novelty against") from err

    if args.input:
        starts = starts_from_texts(tok, [p.text for p in _read(domain, args.input)], domains.context_length(gen))
        origin = "corpus"
    else:
        constraint = None
        if args.bar_aware and domain.constraint(tok) is None:
            print(f"note: --bar-aware: the {domain.name} domain has no sampling grammar; sampling freely",
                  file=sys.stderr)
        elif args.bar_aware:
            constraint = domain.constraint(tok, train())
        starts = starts_from_generator(gen, tok, args.n, seed=args.seed, constraint=constraint)
        origin = "sample"
    corpus = [p.text for p in _read(domain, args.corpus)] if args.corpus else train()
    cfg = HarvestConfig(ascent=_config(args), min_reward=args.min_reward, max_items=args.max_items,
                        strategy=args.strategy, iteration=args.iteration)
    freeze, allowed = domain.token_edits(_edit_kind(domain, args.edit), pad_batch(starts, tok.pad_token_id)[0], tok)
    judge = None if domain.name in _SIMULATED_DOMAINS else _validity_judge(domain)
    suspects = harvest(starts, rm, gen, tok, store, corpus=corpus, cfg=cfg, start_origin=origin,
                       domain=domain.name, freeze=freeze, allowed=allowed, judge=judge, progress=True)
    table = [{"rank": s.rank, "reward": s.reward, "from": s.reward_before, "ll/tok": s.loglik_per_token,
              "novelty": s.novelty, "why": "; ".join(s.reasons)[:60]} for s in suspects]
    if table:
        print_table(table, ["rank", "reward", "from", "ll/tok", "novelty", "why"])
    print(f"{len(suspects)} likely blind spots from {len(starts)} starts queued in {args.store}")
    if args.json:
        domains.write_atomic(args.json, json.dumps([asdict(s) for s in suspects], indent=1))
    return 0


def _sampling_constraint(args, domain, tok):
    """The domain's sampling grammar when --bar-aware (its meters, units and keys read from --corpus
    or the domain's training split), else None; a note when the domain has none."""
    import domains

    if not args.bar_aware:
        return None
    if domain.constraint(tok) is None:
        print(f"note: --bar-aware: the {domain.name} domain has no sampling grammar; sampling freely", file=sys.stderr)
        return None
    if args.corpus:
        texts = [p.text for p in _read(domain, args.corpus)]
    else:
        try:
            texts = [p.text for p in domains.split_corpus(domain.corpus())["train"]]
        except domains.CorpusError as err:
            raise ValueError(f"{err}; give --corpus PATH for the bar-aware grammar") from err
    return domain.constraint(tok, texts)


def cmd_generate(args) -> int:
    from .._ascent import AscentConfig
    from .._generate import POLISH_ENGINE, GenerateConfig, generate

    if args.n < 1 or args.best_of < 1:
        raise ValueError(f"-n and --best-of must be >= 1, got {args.n} and {args.best_of}")
    tok, gen, rm, domain = _load_models(args)
    kind = _edit_kind(domain, args.edit)
    spec = "header" if domain.has_bars and not args.edit_header else ""
    edits = lambda ids: _edit_masks(domain, kind, ids, tok, spec)  # noqa: E731

    engine = {"polish": POLISH_ENGINE, "library": AscentConfig()}[args.engine]
    engine = replace(engine, seed=args.seed, trust=_trust(args) if args.guard else None)
    cfg = GenerateConfig(best_of=args.best_of, polish=None if args.no_polish else engine,
                         temperature=args.temperature, batch_size=args.batch_size, seed=args.seed)
    res = generate(gen, rm, tok, args.n, cfg, constraint=_sampling_constraint(args, domain, tok), edits=edits,
                   validate=None if args.no_validate else domain.validate, progress=True)
    texts = res.texts
    domain.write(texts, args.out)
    table = [{"#": i, "title": (domain.title(p.text) or "")[:24], "sample": p.first_reward,
              f"best-of-{args.best_of}": p.pick_reward, "->reward": p.reward, "changed": p.engine.changed if p.engine else 0,
              "status": "-" if p.engine is None else "kept" if p.engine.kept else p.engine.status}
             for i, p in enumerate(res.pieces, 1)]
    utils = None if args.no_utility else _utilities([p.pick for p in res.pieces], domain)
    if utils is not None:
        for row, u_pick, u_out in zip(table, utils, _utilities(texts, domain)):
            row["utility"], row["->utility"] = u_pick, u_out
    cols = ["#", "title", "sample", f"best-of-{args.best_of}", "->reward", "utility", "->utility", "changed", "status"]
    print_table(table, [c for c in cols if any(c in r for r in table)])
    mean = lambda k: sum(r[k] for r in table) / len(table)  # noqa: E731
    kept = sum(p.engine is not None and p.engine.kept for p in res.pieces)
    line = (f"{len(texts)} pieces -> {args.out}: reward of a plain sample {mean('sample'):+.3f}, best-of-{args.best_of} "
            f"{mean(f'best-of-{args.best_of}'):+.3f}, after the engine {mean('->reward'):+.3f}")
    if utils is not None:
        line += f" (simulated utility of the picks {mean('utility'):+.3f} -> {mean('->utility'):+.3f})"
    guard = f"{kept} picks kept unchanged by the guard" if args.guard else "guard off"
    line += (f"; {guard}; {res.samples} samples in {res.sample_cpu_seconds:.1f} CPU s, engine "
             f"{res.engine_cpu_seconds:.1f} CPU s")
    print(line)
    if args.json:
        import domains

        rows = [{"text": p.text, "pick": p.pick, "first_reward": p.first_reward, "pick_reward": p.pick_reward,
                 "reward": p.reward, "engine": p.engine.as_dict() if p.engine else None} for p in res.pieces]
        domains.write_atomic(args.json, json.dumps(rows, indent=1))
    return 0


def add_ascent_args(p) -> None:
    """The ascent's options (`_config` reads them), shared by optimize, harvest and improve-corpus."""
    from .._polish import PolishConfig
    from .._relax import RELAXATIONS

    p.add_argument("--steps", type=int, default=60, help="gradient steps")
    p.add_argument("--check-every", type=int, default=10, help="project and score exactly every k steps")
    p.add_argument("--restarts", type=int, default=1, help="random restarts per tune")
    p.add_argument("--relaxation", default="simplex", choices=sorted(RELAXATIONS))
    p.add_argument("--lm-weight", type=float, default=1.0, help="weight of the generator log-likelihood")
    p.add_argument("--lm-floor", action="store_true",
                   help="likelihood as a floor: only a drop below the input's mean log-likelihood costs, a rise earns nothing")
    p.add_argument("--lr", type=float, default=0.5, help="Adam step size")
    p.add_argument("--polish-rounds", type=int, default=4, help="exact-swap rounds at the end (0 = off)")
    p.add_argument("--polish-combine", type=int, default=PolishConfig().combine,
                   help="merge up to this many improving swaps per polish round into one more verified candidate (1 = off)")


def _add_guard_args(p, opt_in: bool = False) -> None:
    """The do-no-harm guard's options (`_config` and `_trust` read them), shared by optimize and
    generate. opt_in: the guard is off unless --guard (generate), else on unless --no-guard."""
    from .._trust import TrustConfig

    trust = TrustConfig()
    if opt_in:
        p.add_argument("--guard", action="store_true",
                       help="run the do-no-harm guard on each pick: keep the pick unless the reward model is "
                            "confident the engine's edit is better (off by default for new pieces; see the README)")
    else:
        p.add_argument("--no-guard", action="store_true",
                       help="return the engine's best sequence even when the reward model is not confident it is "
                            "better (by default a tune is kept unchanged unless its edit passes the do-no-harm guard)")
    p.add_argument("--max-changed", type=float, default=trust.max_changed,
                   help="guard: edit budget, the largest fraction of a tune's editable positions that may change")
    p.add_argument("--pessimism", type=float, default=trust.pessimism,
                   help="guard: k in the lower bound 'mean gain - k * SD over ensemble members' (reward ensembles)")
    p.add_argument("--margin", type=float, default=trust.margin,
                   help="guard: the lower bound (a single model's gain) must exceed this for the edit to be kept")
    p.add_argument("--max-loglik-drop", type=float, default=trust.max_loglik_drop,
                   help="guard: refuse an edit that lowers the generator's mean log-likelihood per token by more "
                        "than this many nats (inf = no limit)")
    p.add_argument("--trust-single-model", action="store_true",
                   help="guard: accept a single reward model's edits when its gain exceeds --margin (by default a "
                        "single model, which cannot say how sure it is, keeps every tune; an ensemble is measured)")


def _add_engine_args(p, ascent: bool = True) -> None:
    """Models, seed, --json, --threads; and the ascent's options unless `ascent` is False."""
    p.add_argument("--generator", required=True, help="generator directory (model + tokenizer files)")
    p.add_argument("--domain", choices=["abc", "text", "midi"], default=None,
                   help="what the pieces are (default: as recorded by train-generator in the generator's "
                        "domain.json, else abc)")
    p.add_argument("--reward", required=True, help="reward model or ensemble directory (save_pretrained)")
    if ascent:
        add_ascent_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write per-row results as JSON here")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")


def register(sub) -> None:
    from .._edits import EDITS

    p = sub.add_parser("optimize", help="improve ABC tunes (or MIDI, or text) by gradient ascent on the reward model")
    p.add_argument("--in", dest="input", required=True,
                   help="the pieces, read by the generator's domain: an .abc file with one or more tunes (or a "
                        "folder of them), a text file with one piece per line, or a folder of .mid files")
    p.add_argument("--out", required=True,
                   help="where to write the improved pieces, in the same format: an .abc file, a text file, or a "
                        "folder of .mid files named like the inputs")
    p.add_argument("--freeze", help="ABC only: bars to keep fixed, e.g. '1-4' or 'header,1-2'")
    p.add_argument("--batch-size", type=int, default=16, help="tunes per batch")
    p.add_argument("--no-validate", action="store_true", help="do not require outputs to parse")
    p.add_argument("--no-utility", action="store_true", help="skip the simulated rater's utility")
    p.add_argument("--edit-header", action="store_true", help="let the ascent change header lines (T:, M:, K: ...)")
    p.add_argument("--edit", default="any", choices=sorted(EDITS),
                   help="what may change: 'any' (default) = any token at an unfrozen position, then whole-tune "
                        "moves; 'pitch' = only the letters of notes (A-G, a-g, not in chord symbols, decorations "
                        "or fields), each to another note letter, so durations, bar lines, accidentals and octave "
                        "marks stay as they are; 'ending' = pitch edits (letters, accidentals, octave marks) of the "
                        "last bar; 'cadence' = of the final note; 'rhythm' = split/merge/dot notes inside a bar, "
                        "'bars' = repeat/delete/swap full bars, each keeping every bar's duration (whole-tune moves "
                        "scored exactly, see --move-rounds). Token kinds need a character tokenizer. Every kind but 'any' is "
                        "ABC-only: MIDI and text edit any token, with a note")
    p.add_argument("--move-rounds", type=int, default=2,
                   help="rounds of whole-tune moves searched exactly after the ascent for --edit rhythm, bars "
                        "and any (0 = off)")
    p.add_argument("--move-candidates", type=int, default=64, help="moves scored per tune and round")
    _add_guard_args(p)
    _add_engine_args(p)
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("generate", help="new pieces: best-of-N generator samples by the reward model, then the "
                                        "engine on each pick")
    p.add_argument("-n", type=int, default=10, help="pieces to generate")
    p.add_argument("--best-of", type=int, default=4,
                   help="samples drawn per piece; the reward model keeps the best (1 = plain sampling)")
    p.add_argument("--out", required=True, help="where to write the pieces, in the domain's format (an .abc file, a "
                                                "text file, or for midi a folder)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8: as measured)")
    p.add_argument("--bar-aware", action="store_true",
                   help="ABC only: sample with the bar-aware grammar (meters, units and keys of --corpus or the "
                        "generator's training collections)")
    p.add_argument("--corpus", help="pieces the bar-aware grammar reads its meters, units and keys from")
    p.add_argument("--edit", default="pitch", choices=TOKEN_KINDS,
                   help="what the engine may change in each pick (as for optimize; default pitch, as measured in "
                        "benchmarks/ascent.py's batch recipe)")
    p.add_argument("--edit-header", action="store_true", help="let the engine change header lines (T:, M:, K: ...)")
    p.add_argument("--no-polish", action="store_true", help="best-of-N only: do not run the engine on the picks")
    p.add_argument("--engine", default="polish", choices=["polish", "library"],
                   help="the engine's setting: 'polish' (gradopt.POLISH_ENGINE: 8 gradient steps, lm weight 4, 8 "
                        "exact-swap rounds; measured in benchmarks/generate_recipe.py) or 'library' (optimize's defaults)")
    p.add_argument("--batch-size", type=int, default=16, help="picks per engine batch")
    p.add_argument("--no-validate", action="store_true", help="do not require the engine's outputs to parse")
    p.add_argument("--no-utility", action="store_true", help="skip the simulated rater's utility")
    _add_guard_args(p, opt_in=True)
    _add_engine_args(p, ascent=False)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("harvest", help="find the reward model's likely blind spots and queue them for rating")
    p.add_argument("--store", required=True, help="rating store directory (items.jsonl, queue.jsonl)")
    p.add_argument("--in", dest="input", help="pieces to start from, in the generator's domain's format "
                                              "(default: generator samples)")
    p.add_argument("-n", type=int, default=32, help="generator samples to start from")
    p.add_argument("--corpus", help="pieces the novelty is measured against, in the domain's format (default: the "
                                    "domain's corpus train split: the fiddle tunes for abc; text has none)")
    p.add_argument("--min-reward", type=float, default=0.0, help="reward a suspect must reach")
    p.add_argument("--max-items", type=int, default=64)
    # rewardmodels.STRATEGIES, spelled out so that building the parser does not import torch
    p.add_argument("--strategy", default="racing", choices=["racing", "uncertainty", "infogain", "random"])
    p.add_argument("--iteration", type=int, default=0)
    p.add_argument("--edit", default="any", choices=TOKEN_KINDS,
                   help="what may change (token kinds of `optimize --edit`; no whole-tune moves here)")
    p.add_argument("--bar-aware", action="store_true",
                   help="draw the starting samples under domains.ABCConstraint (bars never overrun the meter)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_harvest, allow_invalid=True)
