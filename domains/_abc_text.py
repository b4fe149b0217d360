"""The lexical basics of ABC that every reader shares: note letters, header lines, body, title.

Defined once here; the bar reader, the grammar, the edit spaces, the auto-judges, the engine's
masks and the command line import them rather than keep their own copies.
"""

from __future__ import annotations

import re
from fractions import Fraction

NOTE_LETTERS = frozenset("ABCDEFGabcdefg")  # the seven pitch letters, both octaves' cases
HEADER_LINE = re.compile(r"^[A-Za-z]:")  # a header field line: one letter then a colon (X:, T:, K: ...)


def abc_body(text: str) -> str:
    """The tune body: every line that is not a header field (``X:``, ``K:`` ...)."""
    return "\n".join(l for l in text.splitlines() if not HEADER_LINE.match(l))


def abc_title(text: str) -> str:
    """The value of the first ``T:`` line, stripped; "" when the tune has none."""
    return next((l[2:].strip() for l in text.splitlines() if l.startswith("T:")), "")


def length_value(spec: str) -> Fraction:
    """Multiplier of an ABC length: ``""`` 1, ``"3"`` 3, ``"/"`` 1/2, ``"//"`` 1/4, ``"3/2"`` 3/2;
    ValueError for anything else, a zero denominator (``"/0"``) included."""
    m = re.fullmatch(r"(\d*)(/*)(\d*)", spec)
    if m is None or (m.group(2) and m.group(3) and int(m.group(3)) == 0):
        raise ValueError(f"not an ABC length: {spec!r}")
    num = int(m.group(1)) if m.group(1) else 1
    slashes, den = len(m.group(2)), m.group(3)
    if not slashes:
        return Fraction(num)
    return Fraction(num, int(den) * 2 ** (slashes - 1)) if den else Fraction(num, 2**slashes)
