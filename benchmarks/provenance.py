"""Where a benchmark figure came from: every JSON under benchmarks/results/ carries the git commit
(and whether the tree had uncommitted changes), the machine, and the configuration that wrote it
with a hash of that configuration, so two result files can be compared knowing whether they come
from the same code and the same settings.

    config_hash = sha256(canonical JSON of the config)    (sorted keys, no spaces, str() for the rest)

`dirty` ignores benchmarks/results/ itself: a run that rewrites a result file does not make the
next run's tree dirty. The git state is read when the script starts (it imports this module), not
when it writes. A tree that is not a git checkout records commit None.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = "benchmarks/results/"


def canonical_json(config: dict) -> str:
    """The one JSON text of `config` that is hashed: sorted keys, no spaces, non-JSON values as str."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    """sha256 hex digest of `canonical_json(config)`."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def git_state(root: Path = ROOT) -> dict:
    """{"commit": HEAD's hash or None, "dirty": uncommitted changes outside benchmarks/results/}."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if not line[3:].startswith(RESULTS_DIR)]
    return {"commit": commit.strip() if commit else None, "dirty": bool(changed) if status is not None else None,
            "dirty_paths": changed}


# The tree as the benchmark started (scripts import this module first thing): a commit made while a
# long run is under way is not claimed by its results.
RUN_STATE = git_state()


def machine() -> dict:
    """CPU count, torch threads, platform and the versions of python, torch and numpy."""
    import numpy
    import torch

    return {"nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def provenance(config: dict) -> dict:
    """The fields every result file starts with: commit, dirty, machine, command, config, config_hash."""
    state = RUN_STATE
    return {"commit": state["commit"], "dirty": state["dirty"], "dirty_paths": state["dirty_paths"],
            "machine": machine(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "config": json.loads(canonical_json(config)), "config_hash": config_hash(config)}


def write_result(path: Path, result: dict, config: dict) -> Path:
    """Write `result` to `path` as JSON, after the provenance of `config` (the run's settings:
    parsed arguments plus the derived sizes and seeds). A key in both raises: nothing is
    silently overwritten."""
    head = provenance(config)
    clash = sorted(set(head) & set(result))
    if clash:
        raise ValueError(f"result keys {clash} are provenance fields: rename them in the benchmark")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**head, **result}, indent=1, default=str))
    return path


def json_pointer(doc, pointer: str):
    """The value at JSON pointer `pointer` ("/a/b/0"; "~1" stands for "/" in a key, "~0" for "~") in
    `doc`; KeyError naming the missing part when the path is absent."""
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise KeyError(f"no key {part!r} on the way to {pointer}")
    return doc
