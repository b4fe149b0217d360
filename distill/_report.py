"""The demo's HTML report: one self-contained page a person opens after the run.

`write_report(workdir, data)` writes ``report.html`` and its figures (PNG, matplotlib Agg) in
``workdir/figures/``, embedded in the page as base64 so the page alone shows everything; MIDI and
WAV files of the tunes go to ``workdir/audio/`` and are linked relatively, so copying the folder
keeps every link working. Sheet music and in-page playback come from abcjs, inlined from
`domains.abcjs_script()` (never fetched); without it the page shows the ABC text and how to
install abcjs. Every text from the data is HTML-escaped, and the tunes reach the script as JSON
in a ``<script type="application/json">`` element with ``<``, ``>`` and ``&`` escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from gradopt import mean_interval

FIGURES = "figures"  # PNG figures, under the work directory
AUDIO = "audio"  # MIDI and WAV files of the tunes, under the work directory
TRAJECTORY_ROWS = 8  # rows drawn in the trajectory figure


def mean_ci(xs: Sequence[float], level: float = 0.95) -> dict:
    """{"mean", "lo", "hi", "n"}: the mean of the finite values of `xs` with its Student-t
    interval at `level` (lo = hi = mean for a single value; all NaN for none)."""
    m, lo, hi, n = mean_interval(xs, level)
    return {"mean": m, "lo": lo, "hi": hi, "n": n}


def _fmt(x, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return "-" if x is None else ("yes" if x else "no")
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}g}" if abs(x) >= 1e4 or (x and abs(x) < 1e-3) else f"{x:.{digits}f}"
    return html.escape(str(x))


def _ci_text(ci: dict) -> str:
    return f"{ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}] (n={ci['n']})"


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v if isinstance(v, _Raw) else _fmt(v)}</td></tr>"
                   for k, v in rows)
    return f"<table class='facts'>{body}</table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _figure(workdir: Path, name: str, draw, size=(8.0, 3.6)) -> str:
    """Draw with ``draw(fig)`` on an Agg figure, save ``figures/<name>.png`` and return an <img>
    with the PNG inlined as base64 (the file stays beside the page for reuse)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    draw(fig)
    path = workdir / FIGURES / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img class='figure' alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"


def _facts_section(data: dict) -> str:
    """Corpus, generator and sampling facts, as far as `data` has them."""
    corpus, gen, split = data.get("corpus", {}), data.get("generator", {}), data.get("split", {})
    rows = [("corpus tunes (distinct)", corpus.get("tunes")),
            ("split train / val / test", " / ".join(str(split.get(k, "-")) for k in ("train", "val", "test")) if split else None),
            ("generator", f"{gen.get('preset', '?')} ({gen.get('parameters', '?')} parameters, {gen.get('tokenizer', '?')} tokens)" if gen else None),
            ("generator training steps", gen.get("steps")),
            ("validation cross-entropy (nats/token)", data.get("val_cross_entropy")),
            ("ratio to a unigram model", data.get("ce_ratio_to_unigram")),
            ("samples drawn", data.get("n_samples")),
            ("valid, free sampling", data.get("valid_fraction_free_sampling")),
            ("valid, bar-aware sampling", data.get("valid_fraction_bar_aware_sampling")),
            ("valid if bar lengths are not checked", data.get("valid_fraction_ignoring_bar_lengths"))]
    rows = [(k, v) for k, v in rows if v is not None]
    if not rows:
        return ""
    return "<section id='facts'><h2>Corpus and generator</h2>" + _table(rows) + "</section>"


def _draw_before_after(rows: list[dict]):
    def draw(fig):
        axes = fig.subplots(1, 2)
        for ax, key in zip(axes, ("reward", "utility")):
            before = [r.get(f"{key}_before", math.nan) for r in rows]
            after = [r.get(f"{key}_after", math.nan) for r in rows]
            for b, a in zip(before, after):
                ax.plot([0, 1], [b, a], color="0.75", lw=0.8, zorder=1)
            for x, vals, colour in ((0, before, "tab:blue"), (1, after, "tab:orange")):
                ci = mean_ci(vals)
                ax.errorbar([x], [ci["mean"]], yerr=[[ci["mean"] - ci["lo"]], [ci["hi"] - ci["mean"]]],
                            fmt="o", color=colour, capsize=6, ms=8, zorder=3)
            ax.set_xticks([0, 1], ["before", "after"])
            ax.set_xlim(-0.4, 1.4)
            ax.set_title("reward model" if key == "reward" else "simulated rater's utility (hidden)")
        fig.suptitle("Ascent: mean ± 95% CI, grey lines = single tunes")
    return draw


def _draw_trajectories(rows: list[dict]):
    def draw(fig):
        ax = fig.subplots()
        traced = [r for r in rows if len(r.get("trajectory") or []) > 1][:TRAJECTORY_ROWS]
        if traced:
            for i, r in enumerate(traced):
                ax.plot([p["step"] for p in r["trajectory"]], [p["reward"] for p in r["trajectory"]], marker=".",
                        label=f"tune {i + 1}")
            ax.set_xlabel("ascent step (verified discrete sequence at each check)")
            ax.set_title("Reward during the ascent")
        else:  # no per-step record: the verified scores at both ends
            for i, r in enumerate(rows[:TRAJECTORY_ROWS]):
                ax.plot([0, 1], [r["reward_before"], r["reward_after"]], marker="o", label=f"tune {i + 1}")
            ax.set_xticks([0, 1], ["start", "result"])
            ax.set_title("Reward before and after (verified)")
        ax.set_ylabel("reward")
        ax.legend(fontsize=7, ncol=2)
    return draw


def _ascent_section(workdir: Path, data: dict) -> str:
    ascent = data.get("ascent") or {}
    rows = ascent.get("rows") or []
    if not rows:
        return ""
    facts = []
    for key, label in (("reward", "reward"), ("utility", "utility (simulated rater)")):
        b = mean_ci([r.get(f"{key}_before", math.nan) for r in rows])
        a = mean_ci([r.get(f"{key}_after", math.nan) for r in rows])
        g = mean_ci([r.get(f"{key}_after", math.nan) - r.get(f"{key}_before", math.nan) for r in rows])
        facts += [(f"{label} before", _Raw(_ci_text(b))), (f"{label} after", _Raw(_ci_text(a))),
                  (f"{label} gain (paired)", _Raw(_ci_text(g)))]
    kept = sum(bool(r.get("kept")) for r in rows)
    facts.append(("tunes changed / kept unchanged by the do-no-harm guard", f"{len(rows) - kept} / {kept}"))
    valid = [r.get("valid_after") for r in rows if r.get("valid_after") is not None]
    if valid:
        facts.append(("valid after (strict check)", sum(valid) / len(valid)))
    if ascent.get("engine"):
        facts.append(("engine", ascent["engine"]))
    return ("<section id='ascent'><h2>Gradient ascent on a batch</h2>"
            "<p>The reward model is what the engine climbs; the simulated rater's utility is what a person "
            "would judge, and the reward model never saw it. A reward that rises while the utility falls is "
            "the reward model being gamed. Intervals are Student-t 95% intervals of the mean over tunes.</p>"
            + _table(facts) + _figure(workdir, "ascent_before_after", _draw_before_after(rows))
            + _figure(workdir, "ascent_trajectories", _draw_trajectories(rows)) + "</section>")


def _draw_bt(bt: dict):
    def draw(fig):
        mean, sd = np.asarray(bt["mean"], float), np.asarray(bt["sd"], float)
        origin = list(bt.get("origin") or ["item"] * len(mean))
        utility = bt.get("utility")
        axes = fig.subplots(1, 2 if utility is not None else 1, squeeze=False)[0]
        order = np.argsort(mean)
        for name in dict.fromkeys(origin):
            pos = [k for k, i in enumerate(order) if origin[i] == name]
            axes[0].errorbar(pos, mean[order][pos], yerr=1.96 * sd[order][pos], fmt=".", ms=3, lw=0.5, label=name)
        axes[0].set_xlabel("items, sorted by score")
        axes[0].set_ylabel("Bradley-Terry score ± 1.96 posterior SD")
        axes[0].legend(fontsize=7)
        if utility is not None:
            axes[1].scatter(np.asarray(utility, float), mean, s=5)
            axes[1].set_xlabel("hidden utility")
            axes[1].set_ylabel("Bradley-Terry score")
            axes[1].set_title("scores against the utility")
        fig.suptitle("Bradley-Terry scores of the rated items")
    return draw


def _ratings_section(workdir: Path, data: dict) -> str:
    bt, ratings, reward = data.get("bradley_terry"), data.get("ratings") or {}, data.get("reward_model") or {}
    if not bt or not bt.get("mean"):
        return ""
    facts = [("items rated", ratings.get("items", len(bt["mean"]))), ("comparisons (simulated rater)", ratings.get("comparisons")),
             ("ties", ratings.get("ties")), ("correlation of scores with the hidden utility", bt.get("corr_utility")),
             ("median posterior SD", float(np.median(bt["sd"]))),
             ("reward model", reward.get("kind")),
             ("reward vs utility on held-out tunes (Pearson)", reward.get("heldout_corr_utility")),
             ("held-out tunes", reward.get("heldout_n"))]
    facts = [(k, v) for k, v in facts if v is not None]
    return ("<section id='ratings'><h2>Ratings, Bradley-Terry and the reward model</h2>"
            "<p>The simulated rater compares pairs (noisy, with ties) in place of people; Bayesian Bradley-Terry "
            "turns the comparisons into scores with posterior SDs, and the reward model regresses on them.</p>"
            + _table(facts) + _figure(workdir, "bradley_terry", _draw_bt(bt)) + "</section>")


def _harvest_section(data: dict) -> str:
    h = data.get("harvest")
    if not h:
        return ""
    facts = [("starts", h.get("starts")), ("likely blind spots found", h.get("suspects")),
             ("comparisons recorded for them", h.get("rated")),
             ("rater preferred the edit over its start", h.get("rater_preferred_edit")),
             ("utility change of the edits", _Raw(_ci_text(h["utility_gain"])) if h.get("utility_gain") else None)]
    facts += [(f"why: {k}", v) for k, v in (h.get("reasons") or {}).items()]
    facts = [(k, v) for k, v in facts if v is not None]
    return ("<section id='harvest'><h2>Harvest</h2><p>The engine edits fresh samples with the guard off; edits the "
            "reward model likes but another signal doubts are queued in the rating store and rated.</p>"
            + _table(facts) + "</section>")


def _draw_history(history: list[dict]):
    keys = [k for k in history[0] if k not in ("step", "cpu_s") and all(isinstance(h.get(k), (int, float)) for h in history)][:4]

    def draw(fig):
        axes = fig.subplots(1, max(len(keys), 1), squeeze=False)[0]
        steps = [h.get("step", i) for i, h in enumerate(history)]
        for ax, key in zip(axes, keys):
            ax.plot(steps, [h[key] for h in history], marker=".")
            ax.set_title(key)
            ax.set_xlabel("step")
    return draw


def _distill_section(workdir: Path, data: dict) -> str:
    """Shown only when the distillation round's data exist."""
    d = data.get("distill")
    if not d or not d.get("history"):
        return ""
    facts = [("method", d.get("method")), ("steps or rounds", len(d["history"])),
             ("CPU seconds", d["history"][-1].get("cpu_s"))] + [("note", n) for n in d.get("notes", [])]
    return ("<section id='distill'><h2>Distillation</h2><p>The generator moved toward the reward model.</p>"
            + _table([(k, v) for k, v in facts if v is not None])
            + _figure(workdir, "distill", _draw_history(d["history"])) + "</section>")


def _render_audio(workdir: Path, abc: str) -> tuple[str | None, str | None]:
    """(MIDI path, WAV path) relative to `workdir` for a tune (named by its content's hash, reused
    when present); None for what could not be rendered."""
    import domains

    stem = hashlib.sha256(abc.encode("utf-8")).hexdigest()[:16]
    midi, wav = workdir / AUDIO / f"{stem}.mid", workdir / AUDIO / f"{stem}.wav"
    try:
        if not midi.exists():
            domains.abc_to_midi(abc, midi)
    except domains.RenderError:
        return None, None
    try:
        if not wav.exists():
            domains.midi_to_wav(midi, wav)
    except domains.RenderError:
        return f"{AUDIO}/{midi.name}", None
    return f"{AUDIO}/{midi.name}", f"{AUDIO}/{wav.name}"


def _tunes_section(workdir: Path, tunes: list[dict], abcjs: str | None, audio: bool) -> str:
    """One card per tune: a render div (abcjs draws one SVG into it), a synth controller box, the
    MIDI/WAV links and a local audio player when the WAV exists."""
    from tqdm.auto import tqdm

    import domains

    if not tunes:
        return ""
    cards = []
    for i, t in enumerate(tqdm(tunes, desc="report audio", unit="tune", disable=not audio)):
        midi, wav = _render_audio(workdir, t["abc"]) if audio else (None, None)
        links = [f"<a href='{html.escape(p)}'>{kind}</a>" for kind, p in (("MIDI", midi), ("WAV", wav)) if p]
        player = f"<audio controls preload='none' src='{html.escape(wav)}'></audio>" if wav else ""
        fallback = "" if abcjs else f"<pre>{html.escape(t['abc'])}</pre>"
        cards.append(f"<div class='tune'><h3>{html.escape(t.get('name', f'tune {i + 1}'))}</h3>"
                     f"<p class='caption'>{html.escape(t.get('caption', ''))}</p>"
                     f"<div class='abc-render' id='tune-{i}'>{fallback}</div>"
                     f"<div class='synth' id='synth-{i}'></div><p class='links'>{' · '.join(links)} {player}</p></div>")
    note = ("<p>The play buttons use abcjs's synthesiser, which loads instrument samples from the web on first "
            "play; offline, use the WAV player or the MIDI file.</p>" if abcjs else
            f"<p class='warn'>abcjs is not installed, so the tunes are shown as ABC text: {html.escape(domains.ABCJS_HINT)}.</p>")
    return "<section id='tunes'><h2>Tunes before and after</h2>" + note + "".join(cards) + "</section>"


def _stages_section(data: dict) -> str:
    stages = data.get("stages") or {}
    if not stages:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v.get('seconds'), 1)}</td><td>{_fmt(v.get('cpu_seconds'), 1)}</td>"
                   f"<td>{_fmt(v.get('worker_cpu_seconds'), 1)}</td><td>{'reused' if v.get('reused') else 'ran'}</td></tr>"
                   for k, v in stages.items())
    prefetch = stages.get("prefetch")
    note = (f" The prefetch row: {prefetch.get('tunes', '?')} corpus tunes scored by a worker while the generator "
            "trained; its wall time is only the wait after training." if prefetch else "")
    return ("<section id='stages'><h2>Stages</h2><table class='facts'><tr><th>stage</th><th>wall s</th><th>CPU s</th>"
            f"<th>worker CPU s</th><th>this run</th></tr>{rows}</table><p>Times of the run that produced each stage's "
            "output. CPU s is this process's; worker CPU s is the parse workers' (validity checks, utilities; "
            "not counting the helper process each check parses in)."
            f"{note}</p></section>")


def _json_for_script(obj) -> str:
    """JSON safe inside a <script> element: no "</script", "<!--" or "&" survives."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report(workdir: str | Path, data: dict, *, audio: bool = True) -> Path:
    """Write ``workdir/report.html`` from the demo's `data` (the content of report.json) -> its path.

    Sections appear when their data do: "corpus"/"split"/"generator"/validity rates (facts),
    "ascent" {"rows": [{reward_before, reward_after, utility_before, utility_after, kept,
    valid_after, trajectory: [{step, reward}]}], "engine"}, "bradley_terry" {mean, sd, origin,
    utility, corr_utility}, "ratings", "reward_model", "harvest", "distill" {method, history:
    [{step, cpu_s, ...}], notes}, "tunes" [{name, abc, caption}] (one sheet-music div each) and
    "stages" {name: {seconds, cpu_seconds, reused}}. `audio`: render MIDI and WAV files of the tunes.
    """
    import domains

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    abcjs = domains.abcjs_script()
    tunes = [{"name": t.get("name", f"tune {i + 1}"), "abc": t["abc"], "caption": t.get("caption", "")}
             for i, t in enumerate(data.get("tunes") or [])]
    body = "".join([_facts_section(data), _ratings_section(workdir, data), _ascent_section(workdir, data),
                    _harvest_section(data), _distill_section(workdir, data),
                    _tunes_section(workdir, tunes, abcjs, audio), _stages_section(data)])
    page = PAGE.format(style=STYLE, body=body, tunes_json=_json_for_script([{"abc": t["abc"]} for t in tunes]),
                       abcjs=abcjs or "", script=SCRIPT)
    path = workdir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } section { margin: 2em 0; } .figure { max-width: 100%; display: block; margin: 1em 0; }
table.facts { border-collapse: collapse; } table.facts th, table.facts td { text-align: left; padding: 2px 12px 2px 0;
  border-bottom: 1px solid #eee; font-weight: normal; } table.facts th { color: #555; }
.tune { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
.tune h3 { margin: 0.2em 0; } .caption { color: #555; margin: 0.2em 0; } .warn { color: #a40; }
pre { white-space: pre-wrap; font-size: 0.85em; background: #f7f7f7; padding: 0.5em; }
.synth { margin: 0.4em 0; max-width: 500px; } .abcjs-inline-audio { display: flex; align-items: center; height: 26px;
  padding: 0 5px; border-radius: 3px; background: #424242; color: #f4f4f4; font-size: 12px; }
.abcjs-inline-audio .abcjs-btn { width: 28px; height: 26px; padding: 5px 4px; background: none; border: 0; }
.abcjs-btn g { fill: #f4f4f4; stroke: #f4f4f4; } .abcjs-midi-start .abcjs-pause-svg,
.abcjs-midi-start .abcjs-loading-svg { display: none; } .abcjs-midi-progress-background { flex: 1; height: 8px;
  margin: 0 8px; background: #888; border-radius: 4px; } .abcjs-midi-progress-indicator { width: 6px; height: 8px;
  background: #f4f4f4; } .abcjs-midi-clock { margin-left: 4px; } .abcjs-css-warning { display: none; }
"""

SCRIPT = """
(function () {
  var tunes = JSON.parse(document.getElementById('tunes-data').textContent);
  function note(box, text) { if (box) { box.textContent = text; } }
  window.addEventListener('unhandledrejection', function (ev) {
    ev.preventDefault();
    var box = document.getElementById('audio-note');
    note(box, 'In-page playback failed (' + ev.reason + '); use the WAV player or the MIDI link.');
  });
  if (typeof ABCJS === 'undefined') { return; }
  var audio = !!(window.AudioContext || window.webkitAudioContext) && !!ABCJS.synth;
  tunes.forEach(function (tune, i) {
    var box = document.getElementById('synth-' + i);
    var visual;
    try {
      visual = ABCJS.renderAbc('tune-' + i, tune.abc, { responsive: 'resize', add_classes: true })[0];
    } catch (err) {
      note(document.getElementById('tune-' + i), tune.abc);
      return;
    }
    if (!audio) { note(box, 'In-page playback is not available in this browser; use the WAV or MIDI link.'); return; }
    try {
      var synth = new ABCJS.synth.SynthController();
      synth.load('#synth-' + i, null, { displayPlay: true, displayProgress: true, displayRestart: true });
      synth.setTune(visual, false).catch(function (err) { note(box, 'playback unavailable: ' + err); });
    } catch (err) {
      note(box, 'playback unavailable: ' + err);
    }
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gradopt demo report</title>
<style>{style}</style></head>
<body><h1>gradopt demo</h1>
<p>The whole loop on the bundled tunes, with a simulated rater standing in for people: generator &rarr;
ratings &rarr; Bradley-Terry &rarr; reward model &rarr; gradient ascent &rarr; harvest.</p>
<p id="audio-note" class="warn"></p>
{body}
<script type="application/json" id="tunes-data">{tunes_json}</script>
<script>{abcjs}</script>
<script>{script}</script>
</body></html>
"""
