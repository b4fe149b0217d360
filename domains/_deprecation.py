"""Old public names kept importable, with a DeprecationWarning, for scripts outside the repository."""

from __future__ import annotations

import warnings
from typing import Any, Callable


def deprecated_aliases(module: str, aliases: dict[str, tuple[str, Any]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for `module` that serves each old name in `aliases`
    (old name -> (new name, object)) with a DeprecationWarning naming the replacement."""

    def __getattr__(name: str) -> Any:
        if name in aliases:
            new, obj = aliases[name]
            warnings.warn(f"{module}.{name} is deprecated; use {module}.{new}", DeprecationWarning, stacklevel=2)
            return obj
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
