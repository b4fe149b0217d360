"""`gradopt rate STORE --rater NAME`: rate pairs of a store in the terminal (a textual app).

Both tunes side by side; keys 1 / 2 / t / s (first better, second better, tie, skip), u (undo
your last rating), a / b (play the first / second tune), q (quit). Every verdict is on disk
before the next pair shows (`rewardmodels.RatingSession`), so quitting or a crash loses nothing
and running the command again carries on. Playing needs abc2midi (or music21) and timidity, or
fluidsynth with a soundfont and aplay; without them the tunes are shown and a note says so.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

PLAYER_HINT = "install timidity, or fluidsynth + a General MIDI soundfont + aplay (alsa-utils)"


def find_player() -> Callable[[str], subprocess.Popen] | None:
    """A function that starts playing an ABC tune and returns the player process, or None when
    this machine has no way to play one (see `PLAYER_HINT`)."""
    import domains

    timidity, fluidsynth, aplay = (shutil.which(x) for x in ("timidity", "fluidsynth", "aplay"))
    soundfont = domains.find_soundfont()
    if not timidity and not (fluidsynth and aplay and soundfont):
        return None
    folder = Path(tempfile.mkdtemp(prefix="gradopt-rate-"))

    def play(text: str) -> subprocess.Popen:
        # one file per tune (named by its content): playing it again renders nothing, and a
        # tune's file is never overwritten by the other's
        stem = folder / hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        midi = stem.with_suffix(".mid")
        if not midi.exists():
            domains.abc_to_midi(text, midi)
        if timidity:
            cmd = [timidity, "-q", str(midi)]
        else:
            wav = stem.with_suffix(".wav")
            if not wav.exists():
                domains.midi_to_wav(midi, wav)
            cmd = [aplay, "-q", str(wav)]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return play


def build_app(session, player: Callable[[str], subprocess.Popen] | None = None):
    """The textual app rating with `session` (a `RatingSession`); `player` as from `find_player`."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal, VerticalScroll
    from textual.widgets import Footer, Static

    class RateApp(_RateActions, App):
        TITLE = "gradopt rate"
        CSS = """
        #progress, #note { height: auto; padding: 0 1; }
        #note { color: $warning; }
        #pair { height: 1fr; }
        .tune { width: 1fr; border: round $accent; padding: 0 1; }
        """
        BINDINGS = [
            Binding("1", "verdict('first')", "first better"),
            Binding("2", "verdict('second')", "second better"),
            Binding("t", "verdict('tie')", "tie"),
            Binding("s", "verdict('skip')", "skip"),
            Binding("u", "undo", "undo"),
            Binding("a", "play(0)", "play first"),
            Binding("b", "play(1)", "play second"),
            Binding("q", "quit", "quit"),
        ]

        def __init__(self) -> None:
            super().__init__()
            self.session = session
            self.player = player
            self.pair = None
            self.playing: subprocess.Popen | None = None

        def compose(self) -> ComposeResult:
            yield Static(id="progress")
            with Horizontal(id="pair"):
                with VerticalScroll(classes="tune"):
                    yield Static(id="first")
                with VerticalScroll(classes="tune"):
                    yield Static(id="second")
            yield Static(id="note")
            yield Footer()

    return RateApp()


class _RateActions:
    """What the rating app does on mount, on each key and on exit; mixed into the textual app
    `build_app` makes, which supplies `session`, `player`, `pair`, `playing` and `query_one`."""

    def on_mount(self) -> None:
        if self.player is None:
            self.note(f"no player found, tunes are shown but not played ({PLAYER_HINT})")
        self.show_next()

    def note(self, text: str) -> None:
        from textual.widgets import Static

        self.query_one("#note", Static).update(text)

    def show_next(self) -> None:
        from textual.widgets import Static

        self.pair = self.session.next_pair()
        p = self.session.progress()
        self.query_one("#progress", Static).update(
            f"{self.session.rater}: {p['rated']} rated, {p['skipped']} skipped, {p['queue']} queued pairs "
            f"waiting; {p['comparisons']} comparisons of {p['items']} items in all"
            + ("  (you have rated every pair: these come round again)" if self.pair.source == "repeat" else ""))
        for key, item, label in (("#first", self.pair.a, "1  first"), ("#second", self.pair.b, "2  second")):
            self.query_one(key, Static).update(f"[b]{label}[/b]  [dim]{item.id[:10]} {item.origin}[/dim]\n\n"
                                               + _escape(item.text))

    def action_verdict(self, verdict: str) -> None:
        self.session.record(self.pair, verdict)
        self.note("")
        self.show_next()

    def action_undo(self) -> None:
        undone = self.session.undo()
        self.note("nothing to undo" if undone is None else "undone: that pair is shown again")
        self.show_next()

    def action_play(self, which: int) -> None:
        if self.player is None:
            self.note(f"cannot play: {PLAYER_HINT}")
            return
        item = (self.pair.a, self.pair.b)[which]
        if item.domain != "abc":
            self.note(f"cannot play {item.domain!r} items, only ABC tunes")
            return
        self.stop()
        try:
            self.playing = self.player(item.text)
        except Exception as err:  # rendering a broken tune fails: say so and keep rating
            self.note(f"could not play: {err}")

    def stop(self) -> None:
        if self.playing is not None and self.playing.poll() is None:
            self.playing.terminate()
        self.playing = None

    def on_unmount(self) -> None:
        self.stop()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def cmd_rate(args) -> int:
    import rewardmodels as rm

    store = rm.RatingStore(args.store, create=False)
    if len(store) < 2:
        raise ValueError(f"{args.store} holds {len(store)} item(s); add tunes to rate with `gradopt ratings add`")
    session = rm.RatingSession(store, args.rater, strategy=args.strategy, seed=args.seed)
    player = None if args.no_audio else find_player()
    build_app(session, player).run()
    p = session.progress()
    print(f"{session.rater}: {p['rated']} rated, {p['skipped']} skipped; stored in {store.directory}")
    return 0


def register(subparsers) -> None:
    import argparse

    from rewardmodels import STRATEGIES

    p = subparsers.add_parser(
        "rate", help="rate pairs of tunes in the terminal", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Show two tunes of a rating store side by side and record which is better: 1 / 2 / t / s "
                    "(first, second, tie, skip), u undo, a / b play, q quit. Queued pairs (e.g. harvested) "
                    "come first, then the pairs active selection asks for. Run it again to carry on.")
    p.add_argument("store", help="rating store directory")
    p.add_argument("--rater", required=True, help="your name, recorded with each rating")
    p.add_argument("--strategy", choices=STRATEGIES, default="racing", help="active selection after the queue")
    p.add_argument("--seed", type=int, default=0, help="random seed of the selection and display order")
    p.add_argument("--no-audio", action="store_true", help="never try to play tunes")
    p.set_defaults(func=cmd_rate)
