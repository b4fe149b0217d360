"""A plain training loop for the generator: progress bar, validation loss, checkpoints, resume.

Legend: b batch, t time, v vocab.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._abc_corpus import NormaliseConfig, save_normalisation
from ._files import write_atomic_with
from ._generator import context_length, pad_ids
from ._schedule import lr_schedule


@dataclass(frozen=True, kw_only=True)
class GeneratorTrainConfig:
    """How long and how to train the generator."""

    max_steps: int = 2000  # optimizer steps (the LR schedule spans these)
    cpu_minutes: float = 0.0  # stop after this much process CPU time, all threads (0 = no limit); resumable
    batch_size: int = 16  # sequences per step
    lr: float = 2e-3  # peak learning rate (AdamW), linear warmup then cosine decay
    warmup: int = 100  # warmup steps
    weight_decay: float = 0.01  # AdamW weight decay
    eval_every: int = 250  # steps between validation passes and checkpoints
    seed: int = 0  # data order and initial RNG
    pack: bool = True  # train on context-length windows of the concatenated corpus (no padding)
    keep_best: bool = False  # return the evaluated weights with the lowest validation cross-entropy, not the last

    def __post_init__(self) -> None:
        if self.max_steps <= 0 or self.batch_size <= 0 or self.eval_every <= 0:
            raise ValueError("max_steps, batch_size and eval_every must be positive")
        if self.lr <= 0 or self.warmup < 0 or self.cpu_minutes < 0:
            raise ValueError("lr must be > 0; warmup and cpu_minutes >= 0")


def encode_corpus(tokenizer, texts: Sequence[str]) -> list[torch.Tensor]:
    """Each text as a 1-d tensor ``<bos> ... <eos>``."""
    enc = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return [torch.tensor(e, dtype=torch.long) for e in enc]


def _crop(seq: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if len(seq) <= n:
        return seq
    start = int(torch.randint(0, len(seq) - n + 1, (1,), generator=gen))
    return seq[start : start + n]


def lm_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over real (unpadded) targets, and their count.

    Equals ``-sequence_log_probs(logits.float(), ids, mask).sum() / count`` with the same
    gradients, but fused cross-entropy sums in another order (1 ulp apart on a batch of 16), so it
    stays here to keep trained checkpoints and reported losses bit-identical."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (b, t-1, v)
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)
    return loss, int((target != -100).sum())


@torch.no_grad()
def evaluate(model, data: list[torch.Tensor], pad_id: int, batch_size: int = 32) -> float:
    """Validation cross-entropy in nats per token (each sequence cropped to the context)."""
    model.eval()
    n = context_length(model)
    total, count = 0.0, 0
    order = sorted(range(len(data)), key=lambda i: len(data[i]))  # less padding
    for i in range(0, len(order), batch_size):
        seqs = [data[j][:n] for j in order[i : i + batch_size]]
        ids, mask = pad_ids(seqs, pad_id)
        loss, k = lm_loss(model, ids, mask)
        total += float(loss) * k
        count += k
    return total / max(count, 1)


def unigram_cross_entropy(train: list[torch.Tensor], val: list[torch.Tensor], vocab_size: int) -> float:
    """Cross-entropy (nats/token) on `val` targets of add-one-smoothed token frequencies of `train`."""
    counts = torch.ones(vocab_size, dtype=torch.float64)
    for s in train:
        counts += torch.bincount(s[1:], minlength=vocab_size).double()
    logp = torch.log(counts / counts.sum())
    tgt = torch.cat([s[1:] for s in val])
    return float(-logp[tgt].mean())


def _lr_at(step: int, cfg: GeneratorTrainConfig, minutes: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% over steps or, if a time budget is set, over
    whichever of steps and CPU-minutes runs out first."""
    return lr_schedule(step, total=cfg.max_steps, warmup=cfg.warmup, floor=0.1, peak=cfg.lr,
                       min_progress=minutes / cfg.cpu_minutes if cfg.cpu_minutes else 0.0)


def _batch_indices(step: int, n: int, cfg: GeneratorTrainConfig) -> list[int]:
    """Deterministic batch for `step`: a fresh permutation per epoch, so resuming replays exactly."""
    per_epoch = max(1, n // cfg.batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
    return perm[k * cfg.batch_size : (k + 1) * cfg.batch_size].tolist()


def _resume(model, opt, ckpt: Path, progress: bool) -> tuple[int, float, float]:
    """Load the checkpoint in `ckpt` into `model` and `opt` if there is one -> (step, wall seconds,
    CPU seconds) already trained; (0, 0, 0) for a fresh start."""
    if not (ckpt / "state.pt").exists():
        return 0, 0.0, 0.0
    from transformers import GPT2LMHeadModel

    model.load_state_dict(GPT2LMHeadModel.from_pretrained(str(ckpt)).state_dict())
    state = torch.load(ckpt / "state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    step, elapsed, cpu_before = state["step"], state["elapsed"], state.get("cpu", 0.0)
    if progress:
        print(f"resuming from step {step} ({elapsed / 60:.1f} min already trained)")
    return step, elapsed, cpu_before


def _save_checkpoint(model, opt, workdir: Path, step: int, elapsed: float, cpu: float) -> None:
    """Model, optimizer, step and times into ``workdir/checkpoint``, written aside and then moved
    into place, so a killed run leaves the previous checkpoint whole."""
    ckpt = workdir / "checkpoint"
    tmp = workdir / "checkpoint.tmp"
    model.save_pretrained(str(tmp))
    torch.save({"optimizer": opt.state_dict(), "step": step, "elapsed": elapsed, "cpu": cpu}, tmp / "state.pt")
    if ckpt.exists():
        import shutil

        shutil.rmtree(ckpt)
    tmp.rename(ckpt)


BEST_FILE = "best.pt"  # keep_best: the best evaluated weights, their step and validation cross-entropy


def _best_so_far(workdir: Path) -> dict | None:
    """What ``workdir/best.pt`` holds (weights, step, validation cross-entropy), None when absent."""
    path = workdir / BEST_FILE
    return torch.load(path, weights_only=True) if path.exists() else None


def _train_batch(step: int, train: list[torch.Tensor], stream: torch.Tensor, n_ctx: int, cfg: GeneratorTrainConfig,
                 pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (b, t) of `step`, a function of the step alone (exact resume): context-length
    windows of the concatenated corpus (`cfg.pack`), else whole pieces cropped to the context."""
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    if cfg.pack and len(stream) > n_ctx:
        starts = torch.randint(0, len(stream) - n_ctx + 1, (cfg.batch_size,), generator=gen)
        ids = torch.stack([stream[i : i + n_ctx] for i in starts.tolist()])
        return ids, torch.ones_like(ids)
    seqs = [_crop(train[i], n_ctx, gen) for i in _batch_indices(step, len(train), cfg)]
    return pad_ids(seqs, pad_id)


def _optimizer_step(model, opt, ids: torch.Tensor, mask: torch.Tensor, lr: float) -> tuple[torch.Tensor, int]:
    """One AdamW step at learning rate `lr` with gradients clipped to norm 1 -> (loss, targets)."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss, k = lm_loss(model, ids, mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach(), k


def train_generator(
    model,
    tokenizer,
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    cfg: GeneratorTrainConfig,
    workdir: str | Path,
    progress: bool = True,
    normalisation: NormaliseConfig | None = None,
) -> dict:
    """Train `model` on `train_texts`, checkpointing into `workdir`; resumes if a checkpoint is there.

    Writes ``workdir/`` (final model + tokenizer, `save_pretrained`; with `cfg.keep_best` the
    evaluated weights of lowest validation cross-entropy, kept in ``workdir/best.pt``), ``workdir/checkpoint/``
    (model, optimizer, step) and ``workdir/train_log.jsonl`` (one line per evaluation).
    `normalisation`: how ABC `train_texts` were normalised; saved as ``normalisation.json`` so that
    tools loading the generator normalise a user's tunes the same way (`load_normalisation`).
    Returns a summary with the final validation cross-entropy.
    """
    if not train_texts:
        raise ValueError("no training texts")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train = encode_corpus(tokenizer, train_texts)
    val = encode_corpus(tokenizer, val_texts) if val_texts else train[: max(1, len(train) // 20)]
    n_ctx = context_length(model)
    stream = torch.cat(train)  # (n,) every tune as <bos> ... <eos>, back to back
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    step, elapsed, cpu_before = _resume(model, opt, workdir / "checkpoint", progress)
    tokenizer.save_pretrained(str(workdir))
    if normalisation is not None:
        save_normalisation(normalisation, workdir)
    (workdir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    log = (workdir / "train_log.jsonl").open("a")
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not progress, desc="train generator", unit="step")
    t0 = time.time() - elapsed
    c0 = time.process_time() - cpu_before

    def cpu_minutes() -> float:
        return (time.process_time() - c0) / 60
    val_ce = float("nan")
    best_ce = (_best_so_far(workdir) or {}).get("val_cross_entropy", math.inf)  # keep_best's bar, across resumes
    tokens_seen = 0
    stopped_early = False
    while step < cfg.max_steps:
        model.train()
        ids, mask = _train_batch(step, train, stream, n_ctx, cfg, tokenizer.pad_token_id)
        loss, k = _optimizer_step(model, opt, ids, mask, _lr_at(step, cfg, cpu_minutes()))
        step += 1
        tokens_seen += k
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}", tok_s=f"{tokens_seen / max(time.time() - t0 - elapsed, 1e-9):.0f}")
        out_of_time = bool(cfg.cpu_minutes) and cpu_minutes() > cfg.cpu_minutes
        if step % cfg.eval_every == 0 or step == cfg.max_steps or out_of_time:
            val_ce = evaluate(model, val, tokenizer.pad_token_id)
            rec = {"step": step, "train_loss": float(loss), "val_cross_entropy": val_ce,
                   "minutes": (time.time() - t0) / 60, "cpu_minutes": cpu_minutes()}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.write(f"step {step}: train {float(loss):.3f}  val {val_ce:.3f} nats/token")
            if cfg.keep_best and val_ce < best_ce:
                best_ce, state = val_ce, {"model": model.state_dict(), "step": step, "val_cross_entropy": val_ce}
                write_atomic_with(workdir / BEST_FILE, lambda tmp: torch.save(state, tmp))
            _save_checkpoint(model, opt, workdir, step, time.time() - t0, cpu_minutes() * 60)
        if out_of_time:
            stopped_early = True
            break
    bar.close()
    log.close()
    model.eval()
    best_info = {}
    best = _best_so_far(workdir) if cfg.keep_best else None
    if best is not None:
        best_info = {"last_val_cross_entropy": val_ce, "best_step": best["step"]}
        if math.isnan(val_ce) or best["val_cross_entropy"] < val_ce:  # last weights worse or not evaluated
            model.load_state_dict(best["model"])
            val_ce = best["val_cross_entropy"]
    model.save_pretrained(str(workdir))
    minutes = (time.time() - t0) / 60
    return {"steps": step, "val_cross_entropy": val_ce, "minutes": minutes, "cpu_minutes": cpu_minutes(),
            "torch_threads": torch.get_num_threads(), "stopped_early": stopped_early,
            "finished": step >= cfg.max_steps, **best_info}
