"""Domains by name, and the name a generator directory was trained on (``domain.json``).

`domain_from_name` is the one place a name ("abc", "midi", "text") becomes a `Domain`; the
command line reads the name from ``--domain`` or from the generator directory and from then on
calls only the domain's hooks.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._abc import ABCDomain
from ._abc_corpus import NormaliseConfig
from ._midi import MIDIDomain
from ._protocol import Domain
from ._text import TextConfig, TextDomain

DOMAIN_NAMES = ("abc", "midi", "text")
DOMAIN_FILE = "domain.json"  # {"domain": "text"} next to a generator's config.json


def domain_from_name(name: str, *, normalise: NormaliseConfig | None = None, corpus: str | Path | None = None,
                     progress: bool = False) -> Domain:
    """The domain called `name`.

    normalise: how ABC tunes are normalised (a generator's `load_normalisation`); the other domains
      take their pieces as written and refuse a non-default one.
    corpus: a text file (text: one piece per line) or MIDI files/folder (midi) that `corpus()`
      returns; None: ABC's bundled fiddle tunes, MIDI's rendering of them, text has none.
    """
    if name not in DOMAIN_NAMES:
        raise ValueError(f"unknown domain {name!r}; choose from {', '.join(DOMAIN_NAMES)}")
    if name != "abc" and normalise not in (None, NormaliseConfig()):
        raise ValueError(f"{normalise} normalises ABC tunes; the {name} domain takes its pieces as written")
    if name == "abc":
        return ABCDomain(normalise=normalise or NormaliseConfig())
    if name == "midi":
        return MIDIDomain(files=None if corpus is None else [corpus], progress=progress)
    return TextDomain(corpus, TextConfig(by="line"))


def save_domain_name(directory: str | Path, name: str) -> Path:
    """Record that the generator in `directory` was trained on domain `name`."""
    if name not in DOMAIN_NAMES:
        raise ValueError(f"unknown domain {name!r}; choose from {', '.join(DOMAIN_NAMES)}")
    path = Path(directory) / DOMAIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"domain": name}) + "\n")
    return path


def load_domain_name(directory: str | Path) -> str | None:
    """The domain name recorded in `directory` (None if it has no ``domain.json``: a generator
    saved before the file existed, or not by `train-generator`). A file that cannot be read raises
    a ValueError naming it."""
    path = Path(directory) / DOMAIN_FILE
    if not path.exists():
        return None
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("domain")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"cannot read {path}: {err}; write e.g. {{\"domain\": \"abc\"}} or delete it") from err
    if name not in DOMAIN_NAMES:
        raise ValueError(f"{path} names domain {name!r}; it must be one of {', '.join(DOMAIN_NAMES)}")
    return name


def resolve_domain_name(directory: str | Path, name: str | None = None) -> str:
    """The domain of the generator in `directory`: `name` if given, else the one its ``domain.json``
    records (`save_domain_name`), else ``"abc"`` (generators saved before the file existed). A
    `name` that contradicts the recorded one raises a ValueError: the generator cannot read pieces
    of another domain."""
    saved = load_domain_name(directory)
    if name is not None and saved is not None and name != saved:
        raise ValueError(f"domain {name!r}: the generator in {directory} was trained on {saved} pieces "
                         f"({DOMAIN_FILE}); leave the domain (--domain) out or choose {saved!r}")
    return name or saved or "abc"
