"""Edit kinds: which tokens each position of an ABC tune may take during the ascent.

Legend: b batch, t time, v vocab.

An edit kind turns padded token ids (b, t) into ``(freeze (b,t) bool, allowed (b,t,v) bool)`` for
`optimize(..., freeze=, allowed=)`; either mask alone says the same thing (a frozen position's
allowed set is its own token). The ABC knowledge lives in `domains` (`domains.token_edits`,
`domains.edit_space`); this module names the kinds for the command line and re-exports them.

- ``any``: no restriction beyond the engine's own (specials excluded): ``(None, None)``.
- ``pitch``: rhythm-preserving edits (see `note_letters`). Only the letter of a real note may
  change, and only to another note letter ``A-G a-g``; every other character, including
  durations, bar lines, accidentals, octave marks, ties, slurs, chord symbols, decorations and
  header lines, stays exactly as it is, so no bar can grow longer than its meter (on 243 valid
  corpus tunes with every free letter redrawn at random, all still passed `domains.validate_abc`).
  Needs a character-level tokenizer.
- ``ending`` / ``cadence``: pitch edits (letters, single accidentals, single octave marks) of the
  last bar / of the final note only (`domains.ending_edits`, `domains.cadence_edits`).
- ``rhythm`` / ``bars``: every token frozen; these kinds change the tune through whole-tune moves
  (`domains.abc_moves`) that `move_search` scores exactly.
"""

from __future__ import annotations

from domains import NOTE_LETTERS, TOKEN_EDITS, char_pieces, note_letters, pitch_edits, token_edits

EDITS = TOKEN_EDITS  # kind -> mask function (None for "any")

__all__ = ["EDITS", "NOTE_LETTERS", "char_pieces", "edit_masks", "note_letters", "pitch_edits"]


def edit_masks(kind: str, ids, tokenizer):
    """(freeze, allowed) of an edit kind by name (used by the CLI); ``"any"`` gives (None, None)."""
    return token_edits(kind, ids, tokenizer)
