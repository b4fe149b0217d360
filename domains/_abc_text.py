"""The lexical basics of ABC that every reader shares: note letters, header lines, body, title.

Defined once here; the bar reader, the grammar, the edit spaces, the auto-judges, the engine's
masks and the command line import them rather than keep their own copies.
"""

from __future__ import annotations

import re

NOTE_LETTERS = frozenset("ABCDEFGabcdefg")  # the seven pitch letters, both octaves' cases
HEADER_LINE = re.compile(r"^[A-Za-z]:")  # a header field line: one letter then a colon (X:, T:, K: ...)


def abc_body(text: str) -> str:
    """The tune body: every line that is not a header field (``X:``, ``K:`` ...)."""
    return "\n".join(l for l in text.splitlines() if not HEADER_LINE.match(l))


def abc_title(text: str) -> str:
    """The value of the first ``T:`` line, stripped; "" when the tune has none."""
    return next((l[2:].strip() for l in text.splitlines() if l.startswith("T:")), "")
