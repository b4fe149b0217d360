"""The ABC corpus bundled with music21: split files into tunes, normalise, deduplicate, split.

Collections: the fiddle/folk set (ryansMammoth, oneills1850, airdsAirs, miscFolk) is the default
training corpus; essenFolksong (mostly German, non-commercial terms) and josquin are options.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

from ._protocol import Piece

FIDDLE = ("ryansMammoth", "oneills1850", "airdsAirs", "miscFolk")
ESSEN = ("essenFolksong",)
ALL_COLLECTIONS = FIDDLE + ESSEN + ("josquin",)
# Not a data set: music21 ships a two-tune stub under this name.
_STUBS = ("nottingham-dataset",)

_HEADER = re.compile(r"^([A-Za-z]):\s*(.*)$")
_QUOTED = re.compile(r'"[^"\n]*"')
_DECORATION = re.compile(r"![^!\n]*!|\+[^+\n\s]*\+")
_KEEP_IN_BODY = {"K", "M", "L"}  # inline header changes that alter the music


@dataclass(frozen=True, kw_only=True)
class NormaliseConfig:
    """How raw ABC is cleaned into training text."""

    spaceless: bool = False  # drop all spaces in the body (the seed essay found this helps)
    keep_title: bool = True  # keep the T: line
    keep_annotations: bool = False  # keep "quoted" chord symbols / annotations
    max_chars: int = 2000  # drop tunes longer than this many characters

    def __post_init__(self) -> None:
        if self.max_chars <= 0:
            raise ValueError(f"max_chars must be positive, got {self.max_chars}")


# Saved beside a generator: how its training tunes were normalised, so that tools loading the
# generator (optimize, harvest, sample) treat a user's tunes the same way.
NORMALISATION_FILE = "normalisation.json"


def save_normalisation(cfg: NormaliseConfig, directory: str | Path) -> Path:
    """Write `cfg` to ``directory/normalisation.json``; returns the path."""
    path = Path(directory) / NORMALISATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    return path


def load_normalisation(directory: str | Path) -> NormaliseConfig:
    """The normalisation a generator in `directory` was trained with.

    A directory written before this file existed has none: the default (spaces kept) is returned
    with a warning, since a generator trained spaceless would then see tunes unlike its corpus.
    A file that cannot be read raises a ValueError naming it.
    """
    path = Path(directory) / NORMALISATION_FILE
    if not path.exists():
        warnings.warn(f"{directory} has no {NORMALISATION_FILE} (a generator saved before it was written); "
                      "normalising tunes with spaces kept. If this generator was trained spaceless, write "
                      f"{{\"spaceless\": true}} to {path}", stacklevel=2)
        return NormaliseConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}; delete it or write e.g. {{\"spaceless\": true}}") from err
    known = {f.name for f in fields(NormaliseConfig)}
    if not isinstance(data, dict) or set(data) - known:
        raise ValueError(f"{path} must be a JSON object with keys among {sorted(known)}, got {data!r}")
    try:
        return NormaliseConfig(**data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}; write e.g. {{\"spaceless\": true, \"max_chars\": 2000}} or delete it") from None


@dataclass
class CorpusReport:
    """What loading found: counts per collection, and why tunes were skipped."""

    raw: Counter = field(default_factory=Counter)  # tunes read per collection
    kept: Counter = field(default_factory=Counter)  # distinct tunes kept per collection
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    duplicates: int = 0

    def admit(self, seen: set[str], key: str, collection: str) -> bool:
        """Count a piece with content hash `key`: True (and kept) if new, else a duplicate."""
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        self.kept[collection] += 1
        return True

    def as_dict(self) -> dict:
        return {
            "tunes": sum(self.kept.values()),
            "collections": dict(sorted(self.kept.items())),
            "raw_tunes": dict(sorted(self.raw.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "duplicates": self.duplicates,
        }


class CorpusError(ValueError):
    """A corpus file or collection could not be used."""


def collection_files(collections: Sequence[str]) -> list[tuple[str, Path]]:
    """(collection, path) for every .abc file music21 ships in `collections`."""
    from music21 import corpus

    unknown = [c for c in collections if c not in ALL_COLLECTIONS]
    if unknown:
        raise CorpusError(f"unknown ABC collection(s) {unknown}; choose from {list(ALL_COLLECTIONS)}")
    out = []
    for p in sorted(corpus.getPaths(fileExtensions=["abc"]), key=str):
        p = Path(p)
        if p.parent.name in collections:
            out.append((p.parent.name, p))
    return out


def split_tunes(text: str) -> list[str]:
    """Split a multi-tune ABC file at its `X:` lines (text before the first X: is dropped)."""
    tunes, cur = [], None
    for line in text.splitlines():
        if re.match(r"^X:", line):
            if cur is not None:
                tunes.append("\n".join(cur))
            cur = [line]
        elif cur is not None:
            cur.append(line)
    if cur is not None:
        tunes.append("\n".join(cur))
    return tunes


def normalise(tune: str, cfg: NormaliseConfig = NormaliseConfig()) -> str:
    """Clean one tune: headers X/T/M/L/K then the body, without comments, lyrics or noise.

    Raises `CorpusError` with a reason if the tune has no K: line or no notes.
    """
    head: dict[str, str] = {}
    body: list[str] = []
    in_body = False
    pending = ""
    for raw in tune.splitlines():
        line = raw.split("%", 1)[0].rstrip() if not raw.startswith("%%") else ""
        if not line.strip():
            continue
        m = _HEADER.match(line)
        if m and not (in_body and m.group(1) == "|"):
            tag, value = m.group(1), m.group(2).strip()
            if not in_body:
                if tag in "TMLK" and tag not in head:
                    head[tag] = value
                if tag == "K":
                    in_body = True
                continue
            if tag in _KEEP_IN_BODY:
                body.append(f"{tag}:{value}")
            continue  # w:, W:, N:, P: ... inside the body are dropped
        if not in_body:
            continue
        if not cfg.keep_annotations:
            line = _QUOTED.sub("", line)
        line = _DECORATION.sub("", line)
        line = re.sub(r"[uv](?=[\s(\[{^_=A-Ga-gz|.~])", "", line)  # bowing marks
        line = re.sub(r"\s+", " ", line).strip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            body.append(line)
    if pending.strip():
        body.append(pending.strip())
    if "K" not in head:
        raise CorpusError("no K: (key) line")
    if not any(re.search(r"[A-Ga-g]", b) for b in body if not _HEADER.match(b)):
        raise CorpusError("no notes in the body")
    if cfg.spaceless:
        body = [_spaceless_line(b) for b in body]
    lines = ["X:1"]
    if cfg.keep_title and head.get("T"):
        lines.append(f"T:{head['T']}")
    lines.append(f"M:{head.get('M', '4/4')}")
    lines.append(f"L:{head.get('L', '1/8')}")
    lines.append(f"K:{head['K']}")
    text = "\n".join(lines + body) + "\n"
    if len(text) > cfg.max_chars:
        raise CorpusError(f"longer than {cfg.max_chars} characters")
    return text


def _spaceless_line(line: str) -> str:
    """A body line without spaces (header fields such as an inline ``K:`` keep theirs)."""
    return line if _HEADER.match(line) else line.replace(" ", "")


def respace(text: str, cfg: NormaliseConfig) -> str:
    """Apply `cfg`'s spacing to already normalised text or a prefix of it (e.g. a sampling
    prefix): with ``spaceless``, the body lines (after the first ``K:`` line) lose their spaces."""
    if not cfg.spaceless:
        return text
    lines = text.split("\n")
    k = next((i for i, line in enumerate(lines) if line.startswith("K:")), len(lines))
    return "\n".join(lines[: k + 1] + [_spaceless_line(line) for line in lines[k + 1 :]])


def content_hash(text: str) -> str:
    """sha256 of a tune's music (its title excluded, so retitled copies count as duplicates)."""
    music = "\n".join(l for l in text.splitlines() if not l.startswith(("X:", "T:")))
    return hashlib.sha256(music.encode()).hexdigest()


def music_key(text: str) -> str:
    """sha256 of a tune's music with every space and line break removed (title and X: excluded):
    the identity used to deduplicate, so copies that differ only in spacing or line layout count
    as one tune and cannot land on both sides of the train/val/test split."""
    music = "".join(l for l in text.splitlines() if not l.startswith(("X:", "T:")))
    return hashlib.sha256(re.sub(r"\s+", "", music).encode()).hexdigest()


def split_of(text: str, val: float = 0.05, test: float = 0.05) -> str:
    """Deterministic train/val/test assignment by `music_key`: a tune lands in the same split
    whether its body keeps its spaces or not, so spaced and spaceless corpora share one split."""
    u = int(music_key(text)[:12], 16) / float(16**12)
    return "val" if u < val else "test" if u < val + test else "train"


def load_abc_corpus(
    collections: Sequence[str] = FIDDLE,
    cfg: NormaliseConfig = NormaliseConfig(),
    report: CorpusReport | None = None,
    files: Iterable[tuple[str, Path]] | None = None,
) -> list[Piece]:
    """Distinct normalised tunes of `collections` (or of explicit `(collection, path)` `files`);
    distinct by `music_key` (the first copy is kept).

    Unusable tunes are counted in `report.skipped` by reason and skipped; loading never stops
    midway. Order is deterministic (file order, then position in file).
    """
    report = report if report is not None else CorpusReport()
    seen: set[str] = set()
    pieces: list[Piece] = []
    for collection, path in files if files is not None else collection_files(collections):
        path = Path(path)
        if not path.exists():
            raise CorpusError(f"corpus file {path} does not exist")
        raw = path.read_text(encoding="utf-8", errors="replace")
        tunes = split_tunes(raw)
        if not tunes:
            report.skipped["file without X: lines"] += 1
            continue
        for i, tune in enumerate(tunes):
            report.raw[collection] += 1
            try:
                text = normalise(tune, cfg)
            except CorpusError as err:
                report.skipped[str(err)] += 1
                continue
            if report.admit(seen, music_key(text), collection):
                pieces.append(Piece(text=text, collection=collection, source=f"{path.name}#{i + 1}"))
    return pieces


def load_abc_file(path: str | Path, cfg: NormaliseConfig = NormaliseConfig()) -> list[str]:
    """Normalised tunes of a user's .abc file. Raises `CorpusError` if it holds no usable tune."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"ABC file {path} does not exist")
    raw = path.read_text(encoding="utf-8", errors="replace")
    if not raw.strip():
        raise CorpusError(f"ABC file {path} is empty")
    tunes = split_tunes(raw) or [raw]
    out, errors = [], []
    for i, t in enumerate(tunes):
        try:
            out.append(normalise(t, cfg))
        except CorpusError as err:
            errors.append(f"tune {i + 1}: {err}")
    if not out:
        raise CorpusError(f"no usable tune in {path}: " + "; ".join(errors[:5]))
    if errors:
        warnings.warn(f"{path}: skipped {len(errors)} tune(s): " + "; ".join(errors[:5]))
    return out


def split_corpus(pieces: Sequence[Piece]) -> dict[str, list[Piece]]:
    """{'train': [...], 'val': [...], 'test': [...]} by `split_of` (the music, not its spacing)."""
    out: dict[str, list[Piece]] = {"train": [], "val": [], "test": []}
    for p in pieces:
        out[split_of(p.text)].append(p)
    return out
