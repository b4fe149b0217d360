"""Improve a whole corpus with the ascent engine: sharded, parallel, resumable, reproducible.

The corpus (one file of pieces, or a folder of them) is cut into fixed shards (`plan_shards`); each
shard is improved by `improve_shard`, a pure function of its pieces, the model directories and the
config, and written as one JSONL file. So a shard's result does not depend on which worker ran it
or when: the engine seeds every row from the run seed and the row's own tokens (`row_seed`), and
torch's global stream is reseeded from the batch's content before each call. Workers are
processes (`concurrent.futures`, spawn, one torch thread each) or Ray tasks; only the driver
writes files.

Files of a job directory ``out_dir``:

    manifest.json            content hashes of inputs, config and models; the shards and their status
    shards/shard-XXXXX.jsonl a header line {"shard", "key", "tunes"} then one row per piece
    summary.json             counts, mean reward and simulated-utility gains with 95% CIs, kept reasons

Every file is written atomically (temporary file, fsync, rename), so a job killed at any moment
leaves whole shard files or none; ``resume=True`` skips the shards whose file is whole and whose
key (config + models + the shard's pieces) matches the manifest, and refuses when the config,
models or inputs changed. The improved pieces are assembled in input order into one output file;
a piece the do-no-harm guard (`TrustConfig`) did not trust is written exactly as it was read.

Pieces are read, validated, masked, moved and written through the generator's `domains.Domain`
hooks (`job_domain`: the config's domain, else the one the generator directory records, else ABC),
so ABC tunes, and text with one piece per line, run the same job; the simulated rater's utility
(summary gains) exists for ABC only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from domains import DOMAIN_NAMES

from ._ascent import AscentConfig
from ._ascent_batch import row_seed
from ._moves import MoveConfig
from ._stats import mean_interval

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
FORMAT = 1  # version of the manifest and shard files


_SIMULATED_DOMAINS = ("abc",)  # the simulated rater reads ABC music; other domains get no utility
_ONE_FILE_DOMAINS = ("abc", "text")  # domains whose `write` makes one file (MIDI writes a folder: unsupported)


@dataclass(frozen=True, kw_only=True)
class CorpusJobConfig:
    """Settings of a corpus job; all of them (and nothing else) make the config hash."""

    ascent: AscentConfig = field(default_factory=AscentConfig)  # engine settings; its trust guard = do no harm
    moves: MoveConfig | None = None  # whole-piece moves searched after the ascent (None = off)
    shard_size: int = 50  # pieces per shard: the unit of work, of output files and of resumption
    batch_size: int = 16  # pieces per `optimize` call inside a shard
    edit_header: bool = False  # let the ascent change header lines (ABC: T:, M:, K: ...)
    domain: str | None = None  # "abc" or "text"; None = the generator's (its domain.json, else abc)
    utility: bool = True  # rate inputs and outputs with the simulated rater (summary gains; ABC only)

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {self.shard_size}, {self.batch_size}")
        if self.domain is not None and self.domain not in DOMAIN_NAMES:
            raise ValueError(f"unknown domain {self.domain!r}; choose from {', '.join(DOMAIN_NAMES)} "
                             "(or None: the generator's)")
        if " at 0x" in repr(self):
            raise ValueError("the config holds an object without a stable repr; its hash would change every run")

    def digest(self) -> str:
        """sha256 of the config's repr (dataclass reprs: every field, in order)."""
        return _sha(repr(self).encode())


@dataclass(frozen=True)
class ModelsSpec:
    """Where a worker loads the models from (directories written by `save_pretrained`)."""

    generator: str
    reward: str


@dataclass(frozen=True)
class Shard:
    """Consecutive pieces of the corpus: `texts[k]` is piece `first + k`, read from `sources[k]`."""

    index: int
    first: int
    texts: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def digest(self) -> str:
        return _sha(json.dumps(self.texts).encode())

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}.jsonl"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dir_digest(path: str | Path) -> str:
    """Content hash of a directory: every file's relative path and bytes, in sorted order."""
    path, h = Path(path), hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + _sha(f.read_bytes()).encode())
    return h.hexdigest()


def job_domain(generator_dir: str | Path, name: str | None = None):
    """The `domains.Domain` a job on the generator in `generator_dir` reads and writes pieces with:
    `name` if given, else the domain its ``domain.json`` records (`train-generator` writes it), else
    ABC; ABC tunes are normalised like the generator's corpus (`load_normalisation`). A `name` that
    contradicts the recorded one is refused, and so is a domain whose pieces are not one file."""
    import domains

    name = domains.resolve_domain_name(generator_dir, name)
    if name not in _ONE_FILE_DOMAINS:
        raise ValueError(f"improve-corpus writes the improved pieces to one file, and the {name} domain writes "
                         f"one file per piece; improve-corpus supports {', '.join(_ONE_FILE_DOMAINS)}. Improve "
                         f"{name} pieces with `gradopt optimize --in FOLDER --out FOLDER`")
    return domains.domain_from_name(name, normalise=domains.load_normalisation(generator_dir))


@lru_cache(maxsize=2)
def _job_domain(generator_dir: str, name: str):
    """`job_domain`, built once per worker process."""
    return job_domain(generator_dir, name)


def input_files(inputs: str | Path, domain) -> list[Path]:
    """The files of `inputs`: itself, or the folder's files with one of the domain's `suffixes`
    (recursively, sorted by path)."""
    inputs = Path(inputs)
    if not inputs.exists():
        raise FileNotFoundError(f"input {inputs} does not exist")
    if inputs.is_file():
        return [inputs]
    files = sorted(p for p in inputs.rglob("*") if p.suffix.lower() in domain.suffixes and p.is_file())
    if not files:
        raise ValueError(f"input folder {inputs} holds no {' or '.join(domain.suffixes)} file of {domain.name} pieces")
    return files


def read_corpus(files: Sequence[Path], domain, generator_dir: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(texts, sources) of every piece of `files` in order, read by `domain.read` (a `domains.Domain`,
    or a domain name built for the generator in `generator_dir` by `job_domain`); sources are
    "file#k" (k from 1). Pieces a domain skips (an ABC tune without notes, an invalid text line) are
    named in a warning, so the output's pieces are the ones read."""
    if isinstance(domain, str):
        if generator_dir is None:
            raise ValueError(f"read_corpus: the domain name {domain!r} needs the generator_dir it is built for")
        domain = job_domain(generator_dir, domain)
    texts, sources = [], []
    for f in files:
        pieces = [p.text for p in domain.read(f)]
        skipped = dict(getattr(getattr(domain, "report", None), "skipped", {}) or {})
        if skipped:
            warnings.warn(f"{f}: skipped {sum(skipped.values())} piece(s) the {domain.name} domain cannot use "
                          f"({', '.join(f'{n} {why}' for why, n in skipped.items())}); the output holds the "
                          f"{len(pieces)} read")
        texts += pieces
        sources += [f"{f}#{k}" for k in range(1, len(pieces) + 1)]
    if not texts:
        raise ValueError(f"the corpus {', '.join(map(str, files))} is empty: no piece to improve")
    return texts, sources


def plan_shards(texts: Sequence[str], shard_size: int, sources: Sequence[str] | None = None) -> list[Shard]:
    """Cut the pieces into consecutive shards of `shard_size` (the last may be shorter): the same
    inputs give the same shards."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    sources = list(sources) if sources is not None else [f"#{i + 1}" for i in range(len(texts))]
    return [Shard(index=k, first=lo, texts=tuple(texts[lo : lo + shard_size]), sources=tuple(sources[lo : lo + shard_size]))
            for k, lo in enumerate(range(0, len(texts), shard_size))]


@lru_cache(maxsize=2)
def _models(generator: str, reward: str):
    """(tokenizer, generator, reward model), loaded once per process."""
    import domains
    from rewardmodels import load_reward_model

    return domains.load_tokenizer(generator), domains.load_generator(generator), load_reward_model(reward)


def _finite(x):
    return x if isinstance(x, (bool, int, str)) or x is None or math.isfinite(x) else None


MOVE_KIND = "any"  # the job's edit kind: any unfrozen token, then the domain's whole-piece moves of this kind


def _header(domain, edit_header: bool) -> str:
    """The bars `freeze_bars` keeps: the header lines, for a domain with bars, unless `edit_header`."""
    return "header" if domain.has_bars and not edit_header else ""


def token_masks(domain, ids, tokenizer, edit_header: bool):
    """(freeze (b,t) | None, allowed (b,t,v) | None) of a padded batch: the domain's token edits of
    `MOVE_KIND`, with the header frozen for a domain with bars unless `edit_header`."""
    from ._masks import freeze_bars

    spec = _header(domain, edit_header)
    freeze = freeze_bars(ids, tokenizer, spec) if spec else None
    edit_freeze, allowed = domain.token_edits(MOVE_KIND, ids, tokenizer)
    if edit_freeze is not None:
        freeze = edit_freeze if freeze is None else freeze | edit_freeze
    return freeze, allowed


def move_proposer(domain, edit_header: bool):
    """text -> the domain's whole-piece moves of `MOVE_KIND`, the header kept as it was unless
    `edit_header` (for a domain with bars)."""
    from ._masks import parse_bars
    from ._moves import keep_bars

    propose = lambda text: domain.moves(text, MOVE_KIND)  # noqa: E731
    spec = _header(domain, edit_header)
    return keep_bars(propose, parse_bars(spec)) if spec else propose


@lru_cache(maxsize=1)
def _rater():
    """The simulated rater, one per process: its cache (utility by text) rates a kept piece once,
    not once as input and again as output, and a tune met in two shards once."""
    from rewardmodels import SimulatedRater

    return SimulatedRater(seed=0)


def _utility(texts: list[str]) -> list[float]:
    """The simulated rater's utility of ABC tunes (`_SIMULATED_DOMAINS`): a function of each text
    alone (the rater's noise plays no part), so the shared cache changes no number."""
    return [float(u) for u in _rater().utility(list(texts))]


def improve_shard(shard: Shard, models: ModelsSpec, cfg: CorpusJobConfig) -> list[dict]:
    """One row per piece of `shard`: its input, the improved text (the input itself, exactly, when
    kept), scores before/after and why a piece was kept. A pure function of its arguments."""
    import domains
    import torch

    from ._ascent import optimize
    from ._ascent_batch import pad_batch
    from ._moves import apply_moves, move_search, vet_moves
    from ._starts import starts_from_texts

    dom = _job_domain(models.generator, cfg.domain)
    tok, gen, rm = _models(models.generator, models.reward)
    starts = starts_from_texts(tok, shard.texts, domains.context_length(gen))
    rows = []
    for lo in range(0, len(starts), cfg.batch_size):
        batch = starts[lo : lo + cfg.batch_size]
        torch.manual_seed(row_seed(cfg.ascent.seed, 0, [t for s in batch for t in s]))  # by content, not order
        freeze, allowed = token_masks(dom, pad_batch(batch, tok.pad_token_id)[0], tok, cfg.edit_header)
        rows += optimize(batch, rm, gen, cfg.ascent, tokenizer=tok, freeze=freeze, allowed=allowed,
                         validate=dom.validate).rows
    if cfg.moves is not None and cfg.moves.rounds and MOVE_KIND in dom.move_kinds:
        moved = move_search([r.text for r in rows], move_proposer(dom, cfg.edit_header), rm, gen, tok, cfg.moves,
                            weights=cfg.ascent.objective, validate=dom.validate)
        rows = apply_moves(rows, moved, vet_moves(starts, moved, rm, tok.pad_token_id, cfg.ascent.trust, gen))
    texts = [src if r.kept else r.text for src, r in zip(shard.texts, rows)]
    rated = cfg.utility and dom.name in _SIMULATED_DOMAINS
    u0 = _utility(list(shard.texts)) if rated else [None] * len(rows)
    u1 = _utility(texts) if rated else [None] * len(rows)
    return [{"n": shard.first + k, "source": shard.sources[k], "input": shard.texts[k], "text": texts[k],
             "kept": r.kept, "status": r.status, "changed": r.changed,
             **{f: _finite(getattr(r, f)) for f in ("reward_before", "reward_after", "gain_mean", "gain_sd",
                                                    "valid_before", "valid_after")},
             "utility_before": u0[k], "utility_after": u1[k]} for k, r in enumerate(rows)]


def _one_thread_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shard_task(shard: Shard, models: ModelsSpec, cfg: CorpusJobConfig) -> list[dict]:
    _one_thread_worker()
    return improve_shard(shard, models, cfg)


def atomic_write(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (`domains.write_atomic`)."""
    import domains

    domains.write_atomic(path, text)


def write_pieces(domain, texts: Sequence[str], path: str | Path) -> None:
    """Write `texts` to the file `path` with `domain.write` (its own format), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        written = domain.write(texts, tmp)
        if [Path(w) for w in written] != [tmp]:
            raise ValueError(f"the {domain.name} domain wrote {written}, not the one file {tmp}")

    import domains

    domains.write_atomic_with(path, write)


def _shard_key(job_digest: str, shard: Shard) -> str:
    return _sha(f"{job_digest}:{shard.index}:{shard.first}:{shard.digest}".encode())


def read_shard(path: Path, key: str, n: int) -> list[dict] | None:
    """The rows of a finished shard file, or None when it is missing, torn or of another key."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        head, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return rows if head.get("key") == key and head.get("tunes") == n == len(rows) else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_resume(old: dict, new: dict, out_dir: Path) -> None:
    """Refuse to resume a job whose config, models or inputs changed, naming what changed."""
    what = []
    if old.get("format") != new["format"] or old.get("config_hash") != new["config_hash"]:
        was, now = _flat(old.get("config", {})), _flat(new["config"])
        diff = [f"{k} {was.get(k)} -> {now.get(k)}" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        what.append(f"the configuration ({', '.join(diff) or 'format'})")
    for role in ("generator", "reward"):
        if old.get("models", {}).get(role, {}).get("sha256") != new["models"][role]["sha256"]:
            what.append(f"the {role} model in {new['models'][role]['path']}")
    if [(i["path"], i["sha256"]) for i in old.get("inputs", [])] != [(i["path"], i["sha256"]) for i in new["inputs"]]:
        what.append("the inputs (" + ", ".join(i["path"] for i in new["inputs"]) + ")")
    if what:
        raise ValueError(f"cannot resume the job in {out_dir}: " + "; ".join(what) + " changed since it started. "
                         "Rerun with the original settings and files, or start a new job in another directory")


def run_corpus_job(inputs: str | Path, out_dir: str | Path, cfg: CorpusJobConfig, models: ModelsSpec, *,
                   out_file: str | Path | None = None, backend: str = "local", workers: int = 1,
                   address: str | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Improve every piece of `inputs` (a file or folder, see `input_files`) into `out_file`
    (default out_dir/improved<suffix>, in the domain's format: `job_domain` of `cfg.domain`) with the
    job files of the module docstring; returns the summary."""
    from tqdm.auto import tqdm

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for role, d in (("generator", models.generator), ("reward model", models.reward)):
        if not (Path(d) / "config.json").is_file():
            raise FileNotFoundError(f"no {role} in {d} (config.json missing)")
    dom = job_domain(models.generator, cfg.domain)
    cfg = replace(cfg, domain=dom.name)  # the manifest and the workers see the domain the job runs on
    files = input_files(inputs, dom)
    texts, sources = read_corpus(files, dom)
    _check_fits(texts, sources, models)
    out_dir = Path(out_dir)
    out_file = Path(out_file) if out_file is not None else out_dir / f"improved{dom.suffixes[0]}"
    manifest = {"format": FORMAT, "config": json.loads(json.dumps(asdict(cfg), default=str)),
                "config_hash": cfg.digest(),
                "models": {r: {"path": str(Path(d).resolve()), "sha256": dir_digest(d)}
                           for r, d in (("generator", models.generator), ("reward", models.reward))},
                "inputs": [{"path": str(f), "sha256": _sha(f.read_bytes())} for f in files]}
    job_digest = _sha(json.dumps([manifest["config_hash"], manifest["models"]["generator"]["sha256"],
                                  manifest["models"]["reward"]["sha256"]]).encode())
    shards = plan_shards(texts, cfg.shard_size, sources)
    manifest["shards"] = [{"index": s.index, "file": f"shards/{s.name}", "first": s.first, "tunes": len(s.texts),
                           "key": _shard_key(job_digest, s), "status": "pending"} for s in shards]
    old_path = out_dir / MANIFEST
    if old_path.exists():
        if not resume:
            raise ValueError(f"{out_dir} already holds a job ({MANIFEST}); pass --resume to finish it, "
                             "or choose an empty directory")
        _check_resume(json.loads(old_path.read_text(encoding="utf-8")), manifest, out_dir)
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    results: dict[int, list[dict]] = {}
    for s, entry in zip(shards, manifest["shards"]):
        rows = read_shard(out_dir / entry["file"], entry["key"], len(s.texts)) if resume else None
        if rows is not None:
            results[s.index], entry["status"] = rows, "done"
        elif (out_dir / entry["file"]).exists():
            warnings.warn(f"{out_dir / entry['file']} is not a finished shard of this job; redoing it")
    atomic_write(old_path, json.dumps(manifest, indent=1))
    todo = [s for s in shards if s.index not in results]
    bar = tqdm(total=len(texts), initial=len(texts) - sum(len(s.texts) for s in todo), unit="tune",
               desc="improve-corpus", disable=not progress, smoothing=0.1)

    def finished(shard: Shard, rows: list[dict]) -> None:
        entry = manifest["shards"][shard.index]
        head = json.dumps({"shard": shard.index, "key": entry["key"], "tunes": len(rows)})
        atomic_write(out_dir / entry["file"], "\n".join([head, *(json.dumps(r) for r in rows)]) + "\n")
        results[shard.index], entry["status"] = rows, "done"
        atomic_write(old_path, json.dumps(manifest, indent=1))
        bar.update(len(rows))

    runner = _run_local if backend == "local" else _run_ray
    try:
        runner(todo, models, cfg, workers, address, finished)
    finally:
        bar.close()
    rows = [r for s in shards for r in results[s.index]]
    write_pieces(dom, [r["text"] for r in rows], out_file)
    summary = summarise(rows)
    atomic_write(out_dir / SUMMARY, json.dumps(summary, indent=1))
    return summary


def _check_fits(texts: Sequence[str], sources: Sequence[str], models: ModelsSpec) -> None:
    """Every piece in the tokenizer's vocabulary and the model's context, before any work starts."""
    import domains
    from transformers import AutoConfig

    tok = domains.load_tokenizer(models.generator)
    limit = AutoConfig.from_pretrained(models.generator).n_positions
    for text, src in zip(texts, sources):
        try:
            domains.check_in_vocab(tok, text)
        except domains.OutOfVocabularyError as err:
            raise ValueError(f"piece {src}: {err}") from err
        n = len(tok(text)["input_ids"])
        if n > limit:
            raise ValueError(f"piece {src} has {n} tokens but the model's context is {limit}; shorten it "
                             "or use models with a longer context")


def _run_local(todo, models, cfg, workers, address, finished) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if not todo:
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread_worker) as pool:
        futures = {pool.submit(improve_shard, s, models, cfg): s for s in todo}
        for fut in as_completed(futures):
            finished(futures[fut], fut.result())


def _run_ray(todo, models, cfg, workers, address, finished) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1)(_shard_task)
        pending = {task.remote(s, models, cfg): s for s in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            finished(pending.pop(done[0]), ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()


def _mean_ci(xs: Sequence[float]) -> dict:
    """Mean and 95% confidence interval (Student t) of `xs`; the interval is None below 2 values."""
    m, lo, hi, n = mean_interval(xs)
    return {"mean": m if n else None, "ci95": [lo, hi] if n > 1 else None, "n": n}


def _reason(status: str) -> str:
    """The kind of a 'kept the input: <why> (numbers)' status, without its numbers."""
    why = status.split("kept the input:", 1)[-1].split(";")[0]
    return re.sub(r"\s*\(.*", "", why).strip() or "unknown"


def summarise(rows: Sequence[dict]) -> dict:
    """Counts, gains with 95% CIs and why pieces were kept, over the rows of a job (input order)."""
    def gain(a, b):
        return [r[b] - r[a] for r in rows if r[a] is not None and r[b] is not None]

    kept: dict[str, int] = {}
    for r in rows:
        if r["kept"]:
            kept[_reason(r["status"])] = kept.get(_reason(r["status"]), 0) + 1
    was_valid = [r for r in rows if r["valid_before"]]
    return {"tunes": len(rows), "changed": sum(not r["kept"] for r in rows), "kept": sum(r["kept"] for r in rows),
            "kept_why": dict(sorted(kept.items())),
            "reward_gain": _mean_ci(gain("reward_before", "reward_after")),
            "utility_gain": _mean_ci(gain("utility_before", "utility_after")),
            "valid_before": len(was_valid), "valid_after": sum(bool(r["valid_after"]) for r in rows),
            "validity_kept": sum(bool(r["valid_after"]) for r in was_valid)}


__all__ = ["CorpusJobConfig", "ModelsSpec", "Shard", "atomic_write", "dir_digest", "improve_shard", "input_files",
           "job_domain", "move_proposer", "plan_shards", "read_corpus", "read_shard", "run_corpus_job", "summarise",
           "token_masks", "write_pieces"]
