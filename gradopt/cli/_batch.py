"""Subcommand ``improve-corpus``: improve a whole corpus of tunes (or text), sharded over workers, resumable.

    gradopt improve-corpus tunes/ improved.abc --generator gen --reward-model rm --workers 2

Pieces are read and written in the generator's domain (its ``domain.json``, else ABC; ``--domain``
to say it): an .abc file or folder of them, or a text file with one piece per line.

The job's files (manifest, one JSONL file per shard, summary.json) go to ``--job-dir`` (default: OUT
with the suffix ``.job``); after a crash or a kill, the same command with ``--resume`` finishes it
and redoes no finished shard. See `gradopt._corpus_job`.
"""

from __future__ import annotations

from pathlib import Path


def _ci(stat: dict) -> str:
    if stat["mean"] is None:
        return "-"
    ci = stat["ci95"]
    return f"{stat['mean']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def cmd_improve_corpus(args) -> int:
    from .._corpus_job import CorpusJobConfig, ModelsSpec, job_domain, run_corpus_job
    from .._moves import MoveConfig
    from ._ascent import _config

    for role, d in (("--generator", args.generator), ("--reward-model", args.reward)):
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{role} directory {d} does not exist")
    moves = MoveConfig(rounds=args.move_rounds, candidates=args.move_candidates, seed=args.seed) if args.move_rounds else None
    cfg = CorpusJobConfig(ascent=_config(args), moves=moves, shard_size=args.shard_size, batch_size=args.batch_size,
                          edit_header=args.edit_header, domain=args.domain, utility=not args.no_utility)
    out = Path(args.out)
    job_dir = Path(args.job_dir) if args.job_dir else out.with_suffix(".job")
    summary = run_corpus_job(args.input, job_dir, cfg, ModelsSpec(generator=args.generator, reward=args.reward),
                             out_file=out, backend=args.backend, workers=args.workers, address=args.ray_address,
                             resume=args.resume, progress=not args.no_progress)
    why = ", ".join(f"{n} {k}" for k, n in summary["kept_why"].items())
    utility = f"simulated utility gain {_ci(summary['utility_gain'])}, " if summary["utility_gain"]["n"] else ""
    noun = "tunes" if job_domain(args.generator, args.domain).name == "abc" else "pieces"
    print(f"{summary['tunes']} {noun} -> {out} ({summary['kept']} "
          f"kept unchanged{': ' + why if why else ''}); reward gain {_ci(summary['reward_gain'])}, {utility}"
          f"valid {summary['valid_before']} -> {summary['valid_after']}; job files in {job_dir}")
    return 0


def register(sub) -> None:
    from .._trust import TrustConfig
    from ._ascent import add_ascent_args

    p = sub.add_parser("improve-corpus", help="improve every tune (or text piece) of a file or folder (sharded, "
                                              "parallel, resumable)")
    p.add_argument("input", metavar="IN", help=".abc file with one or more tunes, or a folder of .abc files; for the "
                                               "text domain a text file with one piece per line (or a folder of .txt)")
    p.add_argument("out", metavar="OUT", help="the improved pieces, in input order, in the domain's format (.abc; "
                                              "text: one per line); kept pieces unchanged")
    p.add_argument("--generator", required=True, help="generator directory (model + tokenizer files)")
    p.add_argument("--domain", choices=["abc", "text", "midi"], default=None,
                   help="what the pieces are (default: as recorded by train-generator in the generator's "
                        "domain.json, else abc); midi is not supported (one file per piece): use optimize")
    p.add_argument("--reward-model", "--reward", dest="reward", required=True,
                   help="reward model or ensemble directory (save_pretrained)")
    p.add_argument("--job-dir", help="manifest, shard files and summary.json (default: OUT with suffix .job)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (or Ray CPUs), one torch thread each")
    p.add_argument("--shard-size", type=int, default=50, help="tunes per shard (the unit of resumption)")
    p.add_argument("--batch-size", type=int, default=16, help="tunes per ascent batch inside a shard")
    p.add_argument("--resume", action="store_true", help="finish the job in --job-dir, skipping finished shards")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local = a process pool on this machine; ray = Ray tasks")
    p.add_argument("--ray-address", help="Ray cluster to join (default: start a local one with --workers CPUs)")
    add_ascent_args(p)
    p.add_argument("--move-rounds", type=int, default=2, help="rounds of whole-tune moves after the ascent (0 = off)")
    p.add_argument("--move-candidates", type=int, default=64, help="moves scored per tune and round")
    p.add_argument("--seed", type=int, default=0, help="run seed; each tune's randomness derives from it and the tune")
    p.add_argument("--edit-header", action="store_true", help="let the ascent change header lines (T:, M:, K: ...)")
    p.add_argument("--no-utility", action="store_true", help="skip the simulated rater's utility in the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    trust = TrustConfig()
    p.add_argument("--no-guard", action="store_true", help="return edits the reward model is not confident in")
    p.add_argument("--max-changed", type=float, default=trust.max_changed, help="guard: edit budget (fraction)")
    p.add_argument("--pessimism", type=float, default=trust.pessimism, help="guard: k in 'mean gain - k * SD'")
    p.add_argument("--margin", type=float, default=trust.margin, help="guard: the gain's lower bound must exceed this")
    p.add_argument("--max-loglik-drop", type=float, default=trust.max_loglik_drop,
                   help="guard: refuse an edit lowering the generator's mean log-likelihood per token by more (nats)")
    p.add_argument("--trust-single-model", action="store_true",
                   help="guard: accept a single reward model's edits when its gain exceeds --margin (default: keep)")
    p.set_defaults(func=cmd_improve_corpus)
