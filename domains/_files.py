"""Small files the programs write and read back: written atomically, read with a clear error.

`write_atomic` writes to a temporary file beside the target, fsyncs it and renames it over the
target, so a killed process or a full disk leaves either the old file or the new one, never half
of one. `read_json_object` reads a JSON object a program wrote earlier (scores, a saved config)
and names the file and the keys when it cannot be used: garbage, not an object, a required key
missing (a file written by an older version, before the key existed) or, when `known` is given,
a key this version does not know (a file written by a newer version, or a typo).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable


def write_atomic_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Make the file `path` with ``write(tmp)`` (any writer of a file: text, `torch.save`, a
    domain's `write`) so that a reader sees the old file or the whole new one: `tmp` is a fresh
    file beside `path`, fsynced, renamed over it, then the folder is fsynced. On any error the
    temporary file is removed and `path` is untouched; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_atomic(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Replace `path` with `data` (text or bytes) in one rename (`write_atomic_with`)."""
    raw = data.encode(encoding) if isinstance(data, str) else data
    return write_atomic_with(path, lambda tmp: tmp.write_bytes(raw))


def read_json_object(path: str | Path, *, required: Iterable[str] = (), known: Iterable[str] | None = None,
                     what: str = "file", hint: str = "") -> dict:
    """The JSON object in `path`. Raises FileNotFoundError if it is missing and ValueError naming
    the file (and the keys) if it is not a JSON object, lacks a `required` key, or holds a key
    outside `known` (when given). `what` names the file's kind ("scores file"); `hint` says what to
    do, e.g. "run `gradopt fit-bt` again"."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}{tail}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable {what} ({err}){tail}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a {what}: expected a JSON object, got {type(data).__name__}{tail}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {', '.join(map(repr, missing))} of a {what} (written by an older "
                         f"version, or by hand?){tail}")
    if known is not None:
        extra = sorted(set(data) - set(known))
        if extra:
            raise ValueError(f"{path} holds key(s) {', '.join(map(repr, extra))} that a {what} of this version does "
                             f"not have (known: {', '.join(sorted(known))}; written by a newer version, or a typo?){tail}")
    return data
