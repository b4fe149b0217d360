"""The MIDI corpus: ABC tunes rendered once with abc2midi, or a user's MIDI files, as REMI text.

Two caches make reruns instant: rendered MIDI files named by the tune's content hash
(``<cache>/<hash>.mid``), and the REMI text of every MIDI file, keyed by the sha256 of its bytes,
in an append-only JSONL per `REMIConfig` (``<cache>/remi-<fingerprint>.jsonl``). A file that
cannot be rendered, written or read is counted in `CorpusReport.skipped` by reason and skipped;
loading never stops midway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from tqdm.auto import tqdm

from ._abc_corpus import CorpusError, CorpusReport, content_hash
from ._protocol import Piece
from ._remi import REMIConfig, midi_to_remi
from ._render import RenderError, abc_to_midi

# symusic raises these for missing, truncated or malformed files.
_UNREADABLE = (RuntimeError, ValueError, OSError, EOFError, IndexError)


def default_cache_dir() -> Path:
    """``$GRADOPT_CACHE/midi``, or ``~/.cache/gradopt/midi``."""
    return Path(os.environ.get("GRADOPT_CACHE", "~/.cache/gradopt")).expanduser() / "midi"


def render_abc_pieces(
    pieces: Sequence[Piece],
    cache_dir: str | Path,
    report: CorpusReport | None = None,
    progress: bool = True,
) -> list[tuple[Piece, Path]]:
    """(piece, MIDI path) for every ABC piece abc2midi can render, reusing ``<hash>.mid`` files.

    A new file is written under a temporary name and moved into place, so a killed run never
    leaves a half-written MIDI file in the cache. A cache directory that cannot be written is
    not fatal for tunes already cached there (a shared read-only cache works).
    """
    report = report if report is not None else CorpusReport()
    cache_dir = Path(cache_dir).expanduser()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # counted per tune below if a tune actually needs writing
    out: list[tuple[Piece, Path]] = []
    for piece in tqdm(pieces, desc="abc2midi", unit="tune", disable=not progress):
        path = cache_dir / f"{content_hash(piece.text)[:24]}.mid"
        if path.is_file() and path.stat().st_size > 0:
            out.append((piece, path))
            continue
        tmp = cache_dir / f".{path.stem}.{os.getpid()}.tmp.mid"
        try:
            abc_to_midi(piece.text, tmp)
            os.replace(tmp, path)
        except (RenderError, subprocess.TimeoutExpired):
            report.skipped["abc2midi could not render"] += 1
            continue
        except OSError as err:
            report.skipped[f"cannot write the MIDI cache {cache_dir}: {type(err).__name__}"] += 1
            continue
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        out.append((piece, path))
    return out


class _RemiCache:
    """REMI text per MIDI-bytes hash, in an append-only JSONL; a torn last line is skipped."""

    def __init__(self, cache_dir: Path | None, cfg: REMIConfig):
        self.path = None if cache_dir is None else Path(cache_dir) / f"remi-{cfg.fingerprint()}.jsonl"
        self.entries: dict[str, str] = {}
        self.writable = self.path is not None
        if self.path is not None and self.path.is_file():
            for i, line in enumerate(self.path.read_text(encoding="utf-8").splitlines()):
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    warnings.warn(f"{self.path}: skipping unreadable line {i + 1}")

    def add(self, key: str, text: str) -> None:
        self.entries[key] = text
        if not self.writable:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "text": text}) + "\n")
        except OSError as err:
            self.writable = False
            warnings.warn(f"cannot write the REMI cache {self.path} ({err}); continuing without it")


def midi_pieces(
    items: Iterable[tuple[str, str, Path]],
    cfg: REMIConfig = REMIConfig(),
    report: CorpusReport | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[Piece]:
    """Distinct REMI pieces from `(collection, source, midi_path)` items, in order.

    Unreadable files (`"unreadable MIDI file (...)"`), files without notes and duplicates (same
    REMI text) are counted in `report` and skipped.
    """
    import symusic

    report = report if report is not None else CorpusReport()
    cache = _RemiCache(None if cache_dir is None else Path(cache_dir).expanduser(), cfg)
    items = list(items)
    seen: set[str] = set()
    pieces: list[Piece] = []
    for collection, source, path in tqdm(items, desc="REMI", unit="file", disable=not progress):
        report.raw[collection] += 1
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            report.skipped[f"unreadable MIDI file ({type(err).__name__})"] += 1
            continue
        key = hashlib.sha256(data).hexdigest()
        text = cache.entries.get(key)
        if text is None:
            try:
                score = symusic.Score.from_midi(data)
            except _UNREADABLE as err:
                report.skipped[f"unreadable MIDI file ({type(err).__name__})"] += 1
                continue
            try:
                text = midi_to_remi(score, cfg)
            except Exception as err:  # miditok raises assorted types on odd files
                report.skipped[f"miditok could not encode ({type(err).__name__})"] += 1
                continue
            cache.add(key, text)
        if not any(t.startswith("Pitch_") for t in text.split()):
            report.skipped["no notes"] += 1
            continue
        if report.admit(seen, hashlib.sha256(text.encode()).hexdigest(), collection):
            pieces.append(Piece(text=text, collection=collection, source=source))
    return pieces


def load_midi_corpus(
    abc_pieces: Sequence[Piece],
    cache_dir: str | Path | None = None,
    cfg: REMIConfig = REMIConfig(),
    report: CorpusReport | None = None,
    progress: bool = True,
) -> list[Piece]:
    """ABC pieces rendered to MIDI (cached) and encoded as REMI text; collections carry over.

    Raises `CorpusError` only if no piece at all survives, with the skip reasons.
    """
    report = report if report is not None else CorpusReport()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    rendered = render_abc_pieces(abc_pieces, cache_dir, report, progress)
    done = {id(p) for p, _ in rendered}
    for p in abc_pieces:  # midi_pieces counts the rendered ones
        if id(p) not in done:
            report.raw[p.collection] += 1
    items = [(p.collection, f"{p.source} -> {path.name}", path) for p, path in rendered]
    pieces = midi_pieces(items, cfg, report, cache_dir, progress)
    if abc_pieces and not pieces:
        raise CorpusError(f"no tune could be turned into MIDI in {cache_dir}: {dict(report.skipped)}")
    return pieces


def load_midi_files(
    paths: Iterable[str | Path],
    cfg: REMIConfig = REMIConfig(),
    report: CorpusReport | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> list[Piece]:
    """A user's MIDI files (or directories of them, searched recursively; the first `limit`
    files only if given) as REMI pieces.

    The collection of a piece is the name of its file's directory. Raises `CorpusError` naming
    the path if a given path does not exist or nothing usable was found.
    """
    paths = [Path(p).expanduser() for p in paths]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("*") if f.suffix.lower() in (".mid", ".midi") and not f.name.startswith(".")
            )
        elif p.exists():
            files.append(p)
        else:
            raise CorpusError(f"MIDI path {p} does not exist")
    if not files:
        raise CorpusError(f"no .mid/.midi files in {[str(p) for p in paths]}")
    files = files[:limit] if limit is not None else files
    report = report if report is not None else CorpusReport()
    items = [(f.parent.name or "midi", f.name, f) for f in files]
    pieces = midi_pieces(items, cfg, report, cache_dir, progress)
    if not pieces:
        raise CorpusError(f"no usable MIDI file among {len(files)}: {dict(report.skipped)}")
    return pieces
