"""Subcommand ``distill``: train the generator toward a reward model with one registered method
(`distill.METHODS`), save the policy, and evaluate it the way every method is evaluated
(`distill.evaluate`)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _model_dir(path: str, flag: str, hint: str) -> Path:
    d = Path(path).expanduser()
    if not (d / "config.json").exists():
        what = "does not exist" if not d.exists() else "holds no config.json"
        raise FileNotFoundError(f"{flag} {d} {what}; {hint}")
    return d


def _check_numbers(args) -> None:
    """Refuse impossible settings before any model is loaded."""
    if not (math.isfinite(args.cpu_seconds) and args.cpu_seconds > 0):
        raise ValueError(f"--cpu-seconds must be a positive number of seconds, got {args.cpu_seconds}")
    if args.max_steps <= 0:
        raise ValueError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.n_eval < 2:
        raise ValueError(f"--n-eval must be at least 2 (standard errors need two samples), got {args.n_eval}")
    if args.max_new_tokens < 0 or not args.temperature > 0:
        raise ValueError(f"--max-new-tokens must be >= 0 (0 = fill the context) and --temperature > 0, got "
                         f"{args.max_new_tokens} and {args.temperature}")


def _tunes(path: str | None, split: str, tok, gen, norm) -> list[str]:
    """Tunes of an .abc file, or of the bundled fiddle collection's `split`, kept when the tokenizer
    knows every character and they fit the generator's context."""
    import domains

    if path is not None:
        tunes = domains.load_abc_file(path, norm)
    else:
        tunes = [p.text for p in domains.split_corpus(domains.load_abc_corpus(domains.FIDDLE, norm))[split]]
    n = domains.context_length(gen)
    keep = []
    for t in tunes:
        ids = tok(t)["input_ids"]
        if tok.unk_token_id not in ids and len(ids) <= n:
            keep.append(t)
    return keep


def _headers(tunes: list[str], limit: int = 64) -> tuple[str, ...]:
    """The distinct header blocks (lines up to and including ``K:``) of the first tunes."""
    out: list[str] = []
    for t in tunes:
        head, sep, _ = t.partition("\nK:")
        if sep:
            header = head + sep + t[len(head) + len(sep):].split("\n", 1)[0] + "\n"
            if header not in out:
                out.append(header)
        if len(out) >= limit:
            break
    return tuple(out)


def build_task(args):
    """(task, heldout tunes) from the command's model directories and corpus options."""
    import domains
    import torch
    from rewardmodels import load_reward_model

    import distill

    gdir = _model_dir(args.generator, "--generator", "train one with `gradopt train-generator --work DIR`")
    rdir = _model_dir(args.reward_model, "--reward-model", "give a directory written by a reward model's "
                      "save_pretrained (e.g. the benchmarks' --work/reward)")
    if args.threads:
        torch.set_num_threads(args.threads)
    tok, gen = domains.load_tokenizer(gdir), domains.load_generator(gdir).eval()
    norm = domains.load_normalisation(gdir)
    rm = load_reward_model(rdir).eval()
    corpus = _tunes(args.corpus, "train", tok, gen, norm)
    heldout = _tunes(args.heldout, "test", tok, gen, norm)
    validate = lambda text: bool(domains.validate_abc(text))  # noqa: E731
    prompts = _headers(corpus) if args.header_prompts else ("",)
    if not prompts:
        raise ValueError("--header-prompts: no corpus tune has a K: line to take a header from; drop the flag")
    room = domains.context_length(gen) - 1
    sample = domains.SampleConfig(temperature=args.temperature, max_new_tokens=min(args.max_new_tokens or room, room))
    factory = (lambda: domains.ABCConstraint.from_texts(tok, corpus)) if args.bar_aware else None
    task = distill.Task(generator=gen, tokenizer=tok, reward=distill.model_reward(rm, tok, validate=validate),
                        prompts=prompts, corpus=corpus, sample=sample, constraint_factory=factory, validate=validate,
                        reward_model=rm)
    return task, heldout


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_evaluation(ev: dict) -> None:
    """The evaluation as a two-column table (value ± standard error where there is one)."""
    rows = [(k, _fmt(v) + (f" ± {_fmt(ev[k + '_se'])}" if ev.get(k + "_se") is not None else ""))
            for k, v in ev.items() if not k.endswith("_se")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def cmd_distill(args) -> int:
    import domains

    import distill

    _check_numbers(args)
    budget = distill.Budget(cpu_seconds=args.cpu_seconds, max_steps=args.max_steps)
    task, heldout = build_task(args)
    work = Path(args.work) / args.method
    run = distill.run_method(args.method, task, work, budget, seed=args.seed, progress=not args.no_progress)
    policy_dir = work / "policy"
    run.policy.save_pretrained(policy_dir)
    domains.save_tokenizer(task.tokenizer, policy_dir)
    ev = distill.evaluate(run, task, n=args.n_eval, heldout=heldout, seed=args.seed)
    record = {"evaluation": ev, "method": args.method, "budget": {"cpu_seconds": budget.cpu_seconds,
              "max_steps": budget.max_steps}, "seed": args.seed, "steps": len(run.history), "notes": run.notes,
              "sampling_procedure": run.sample_fn is not None, "corpus_tunes": len(task.corpus),
              "heldout_tunes": len(heldout), "keys": distill.EVALUATION_KEYS}
    tmp = work / "evaluation.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(work / "evaluation.json")
    print_evaluation(ev)
    for note in run.notes:
        print(f"note: {note}")
    print(f"distill {args.method}: {len(run.history)} steps, reward {_fmt(ev['reward'])}, utility {_fmt(ev['utility'])}, "
          f"KL {_fmt(ev['kl'])}; policy -> {policy_dir}, evaluation -> {work / 'evaluation.json'}")
    return 0


def register(sub) -> None:
    import distill

    p = sub.add_parser("distill", help="train the generator toward a reward model with one method, then evaluate it "
                                       "(resumable: re-running the same --work continues)")
    p.add_argument("--method", required=True, choices=sorted(distill.METHODS),
                   help="a registered method (distill.METHODS)")
    p.add_argument("--generator", required=True, help="generator directory (model + tokenizer, train-generator --work)")
    p.add_argument("--reward-model", required=True, help="reward model or ensemble directory (save_pretrained)")
    p.add_argument("--work", required=True, help="directory for the run; the method works in WORK/METHOD and its "
                                                 "policy goes to WORK/METHOD/policy")
    p.add_argument("--cpu-seconds", type=float, default=300.0, help="training budget in process CPU seconds")
    p.add_argument("--max-steps", type=int, default=10_000, help="training step cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-eval", type=int, default=64, help="samples the evaluation draws")
    p.add_argument("--bar-aware", action="store_true",
                   help="give the task a bar-aware sampling grammar (domains.ABCConstraint from the corpus): methods "
                        "that sample may use it, and the evaluation adds bar-aware samples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--corpus", help=".abc file of training tunes (novelty reference, header prompts, replay); "
                                    "default: the fiddle collection's train split")
    p.add_argument("--heldout", help=".abc file of held-out tunes for the histogram divergences; default: the "
                                     "fiddle collection's test split")
    p.add_argument("--header-prompts", action="store_true",
                   help="sample from the corpus tunes' header lines (X: ... K:) instead of from the start")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1 keeps the KL estimate exact)")
    p.add_argument("--max-new-tokens", type=int, default=0, help="tokens per sample (0 = fill the context)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.set_defaults(func=cmd_distill)
