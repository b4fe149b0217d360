"""Durable JSON lines: append with one write + flush + fsync, read tolerating a torn last line.

A killed writer can only leave a *torn last line* (an incomplete record with no newline).
`read_jsonl` skips it with a warning naming file and line; `repair_tail`, called once before a
file is appended to, moves it to ``<file>.torn`` so the next record starts on a clean line. Any
other malformed line raises `StoreError` naming file and line.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterator


class StoreError(ValueError):
    """A ratings file holds a record that cannot be used (the message names file and line)."""


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(1-based line number, text, ends with newline) for each non-blank line."""
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            complete = raw.endswith(b"\n")
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                yield no, text, complete


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """Records of a JSONL file with their line numbers; a torn last line is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[tuple[int, dict]] = []
    rows = list(_lines(path))
    for k, (no, text, complete) in enumerate(rows):
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as err:
            if k == len(rows) - 1 and not complete:
                warnings.warn(f"{path}:{no}: skipping torn last line (a writer was killed mid-record)")
                continue
            raise StoreError(f"{path}:{no}: malformed JSON ({err.msg}); fix or delete that line") from None
        if not isinstance(rec, dict):
            raise StoreError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
        out.append((no, rec))
    return out


def repair_tail(path: Path) -> None:
    """Before appending: move a torn last line to `<path>.torn`, or end a complete one with '\\n'."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail.decode("utf-8"))
        torn = False
    except (json.JSONDecodeError, UnicodeDecodeError):
        torn = tail.strip() != b""
    line_no = data[:cut].count(b"\n") + 1
    with open(path, "r+b") as f:
        if torn:
            with open(path.with_name(path.name + ".torn"), "ab") as side:
                side.write(tail + b"\n")
            f.truncate(cut)
            warnings.warn(f"{path}:{line_no}: moved torn last line to {path.name}.torn")
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def append(path: Path, *records: dict) -> None:
    """Append records as JSON lines with one write, then flush and fsync."""
    if not records:
        return
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())
