"""Rendering: ABC -> MIDI with abc2midi (music21 as fallback), MIDI -> WAV with fluidsynth."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

SOUNDFONTS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
INSTALL_HINT = "apt-get install -y abcmidi fluidsynth timgm6mb-soundfont (or run `make setup`)"


class RenderError(RuntimeError):
    """A piece could not be rendered; the message says why and what to install."""


class UnrenderableError(RenderError, ValueError):
    """The piece itself is bad input: the renderer is there but cannot read it (also a ValueError)."""


_CHECK_HINT = "check the tune with `gradopt validate` (it needs an X: line, a K: line and notes)"


def abc_to_midi(text: str, path: str | Path) -> Path:
    """Write ABC `text` as a MIDI file at `path` (abc2midi if installed, else music21)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("abc2midi")
    if exe:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "tune.abc"
            src.write_text(text)
            # Always pass -o: without it abc2midi writes next to its input.
            proc = subprocess.run([exe, str(src), "-o", str(path)], capture_output=True, text=True, timeout=60)
        if path.exists() and path.stat().st_size > 0:
            return path
        path.unlink(missing_ok=True)  # no empty MIDI file left behind
        said = " ".join(f"{proc.stdout[-300:]} {proc.stderr[-300:]}".split())
        raise UnrenderableError(f"abc2midi could not render the tune to {path}: {said}; {_CHECK_HINT}")
    import music21

    try:
        score = music21.converter.parse(text, format="abc")
        score.write("midi", fp=str(path))
    except Exception as err:  # music21 raises many exception types on bad ABC
        path.unlink(missing_ok=True)
        raise UnrenderableError(f"music21 could not render the tune to {path}: {err}; {_CHECK_HINT}") from err
    return path


def find_soundfont() -> Path | None:
    for sf in SOUNDFONTS:
        if Path(sf).exists():
            return Path(sf)
    return None


def midi_to_wav(midi_path: str | Path, wav_path: str | Path, sample_rate: int = 22050) -> Path:
    """Render a MIDI file to WAV with fluidsynth; a clear `RenderError` if it is missing, a
    FileNotFoundError if `midi_path` is, an `UnrenderableError` if fluidsynth cannot read it."""
    if not Path(midi_path).is_file():
        raise FileNotFoundError(f"no MIDI file at {midi_path}; render one first (e.g. domains.abc_to_midi)")
    exe, sf = shutil.which("fluidsynth"), find_soundfont()
    if not exe or sf is None:
        raise RenderError(f"WAV rendering needs fluidsynth and a General MIDI soundfont: {INSTALL_HINT}")
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [exe, "-ni", "-r", str(sample_rate), "-F", str(wav_path), str(sf), str(midi_path)],
        capture_output=True, timeout=300, check=False,
    )
    if not wav_path.exists() or wav_path.stat().st_size == 0:
        wav_path.unlink(missing_ok=True)
        raise UnrenderableError(f"fluidsynth produced no audio for {midi_path}; is it a MIDI file with notes?")
    return wav_path


ABCJS_ENV = "GRADOPT_ABCJS"  # path of abcjs-basic-min.js, to use a copy installed elsewhere
ABCJS_HINT = "run `make abcjs` (npm install abcjs into the venv) or set GRADOPT_ABCJS to abcjs-basic-min.js"


def find_abcjs() -> Path | None:
    """abcjs (sheet music and playback of ABC in the browser), installed by `make abcjs` into the
    venv's npm folder, or the file named by $GRADOPT_ABCJS; None when neither exists. Pages inline
    it, so nothing is fetched when they are viewed."""
    import os
    import sys

    env = os.environ.get(ABCJS_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "npm" / "node_modules" / "abcjs" / "dist" / "abcjs-basic-min.js")
    return next((p for p in candidates if p.is_file()), None)


def abcjs_script() -> str | None:
    """The text of abcjs with its licence header, ready to inline in a <script> element (any
    "</script" inside is escaped), or None when abcjs is not installed (see `find_abcjs`)."""
    path = find_abcjs()
    if path is None:
        return None
    licence = path.with_name(path.name + ".LICENSE")
    text = licence.read_text().strip() if licence.is_file() else ""
    head = (text if text.startswith("/*") and text.endswith("*/") else f"/*! {text.replace('*/', '* /')} */") + "\n" if text else ""
    return (head + path.read_text(encoding="utf-8")).replace("</script", "<\\/script")
