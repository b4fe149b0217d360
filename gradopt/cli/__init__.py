"""The `gradopt` command: one subcommand per job.

The command line is the top layer: it may import every package (domains, rewardmodels, the engine,
distill) and nothing in the library imports it. Each group of subcommands lives in its own module
of this package (`_domains`, `_ratings`, `_ascent`) exposing ``register(subparsers)``; this file
only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that add subcommands; each defines `register(subparsers) -> None`.
_COMMAND_MODULES = (
    "gradopt.cli._domains", "gradopt.cli._ratings", "gradopt.cli._ascent", "gradopt.cli._batch",
    "gradopt.cli._distill", "gradopt.cli._rate", "gradopt.cli._serve_ratings",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradopt",
        description="Improve ABC tunes, MIDI and text by gradient ascent through a learned reward model.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as err:  # bad input, a missing file, a full disk: a message, not a traceback
        print(f"gradopt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
