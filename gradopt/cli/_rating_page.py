"""The rating page served by `gradopt serve-ratings` (HTML, CSS and script in one string).

The script asks the API for a pair, draws both tunes with abcjs (one SVG each), plays them with
a small Web Audio synthesiser over abcjs's note events (nothing is downloaded), and posts each
verdict with a rating id it makes up; a request that fails for want of the server (restarting)
is retried with the same id until it gets an answer, so nothing is lost or stored twice. The
server fills in <!--ABCJS--> (the inlined library, or nothing) and {{NOTE}}.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gradopt: rate tunes</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem 2rem; color: #222; }
  #pair { display: flex; gap: 1.5rem; }
  .tune { flex: 1; border: 1px solid #bbb; border-radius: 6px; padding: .5rem 1rem; min-width: 0; }
  .tune h2 { font-size: 1.1rem; margin: .2rem 0; }
  pre { white-space: pre-wrap; font-size: .85rem; background: #f6f6f6; padding: .5rem; }
  #buttons button { font-size: 1rem; margin: .5rem .4rem .5rem 0; padding: .4rem .9rem; }
  #status { color: #a40; min-height: 1.3em; }
  #note { color: #a40; }
  .meta { color: #777; font-size: .8rem; }
</style>
<!--ABCJS-->
</head>
<body>
<h1>Which tune is better?</h1>
<form id="who">
  <label>Your name <input id="name" autocomplete="name" required maxlength="100"></label>
  <button id="start" type="submit">Start rating</button>
</form>
<div id="rating" hidden>
  <p id="progress"></p>
  <div id="buttons">
    <button id="first">1: first is better</button>
    <button id="second">2: second is better</button>
    <button id="tie">t: tie</button>
    <button id="skip">s: skip</button>
    <button id="undo">u: undo</button>
  </div>
  <div id="pair">
    <div class="tune"><h2>1: first <button id="play-a">play</button></h2><div class="meta" id="meta-a"></div>
      <div id="sheet-a"></div><pre id="text-a"></pre></div>
    <div class="tune"><h2>2: second <button id="play-b">play</button></h2><div class="meta" id="meta-b"></div>
      <div id="sheet-b"></div><pre id="text-b"></pre></div>
  </div>
</div>
<p id="status"></p>
<p id="note">{{NOTE}}</p>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
let rater = params.get("rater") || sessionStorage.getItem("gradopt-rater") || "";
let pair = null, busy = false, audio = null, playing = [];
const mine = [];  // rating ids this tab stored, newest last: undo names the one it means
const tunes = {a: null, b: null};
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// One API call; retried with the same body while the server cannot be reached.
async function api(path, body) {
  const opts = {method: body ? "POST" : "GET", headers: {"Content-Type": "application/json"}};
  if (token) opts.headers["Authorization"] = "Bearer " + token;
  if (body) opts.body = JSON.stringify(body);
  for (let attempt = 0; ; attempt++) {
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      $("status").textContent = "cannot reach the server, retrying...";
      await sleep(Math.min(2000, 200 * (attempt + 1)));
      continue;
    }
    if (r.status >= 500) { await sleep(500); continue; }
    const data = await r.json();
    if (!r.ok) { $("status").textContent = "error: " + data.error; return null; }
    $("status").textContent = "";
    return data;
  }
}

function show(data) {
  pair = data.pair;
  const p = data.progress;
  $("progress").textContent = rater + ": " + p.rated + " rated, " + p.skipped + " skipped, " + p.queue +
    " queued pairs waiting; " + p.comparisons + " comparisons of " + p.items + " items in all";
  if (!pair) { $("status").textContent = data.error; return; }
  for (const side of ["a", "b"]) {
    const item = data[side];
    $("meta-" + side).textContent = item.origin + " " + item.id.slice(0, 10);
    $("text-" + side).textContent = item.text;
    $("sheet-" + side).innerHTML = "";
    tunes[side] = null;
    if (window.ABCJS && item.domain === "abc") {
      tunes[side] = ABCJS.renderAbc("sheet-" + side, item.text, {responsive: "resize"})[0];
      $("text-" + side).hidden = true;
    }
    $("play-" + side).hidden = !tunes[side];
  }
  $("rating").dataset.pair = pair;
}

async function loadNext() {
  const data = await api("/api/next?rater=" + encodeURIComponent(rater));
  if (data) show(data);
}

async function verdict(v) {
  if (busy || !pair) return;
  busy = true;
  try {
    const id = newId();  // sent again unchanged if the request has to be retried
    const data = await api("/api/verdict", {rater: rater, pair: pair, verdict: v, rating_id: id});
    if (data) { mine.push(id); await loadNext(); }
  } finally { busy = false; }
}

async function undo() {
  if (busy) return;
  busy = true;
  try {
    const body = mine.length ? {rater: rater, rating_id: mine[mine.length - 1]} : {rater: rater};
    const data = await api("/api/undo", body);
    if (data) {
      if (body.rating_id) mine.pop();
      $("status").textContent = data.undone ? "undone: that pair is shown again" : "nothing to undo";
      await loadNext();
    }
  } finally { busy = false; }
}

// A small synthesiser over abcjs's note events: no sound font to download.
function stop() { playing.forEach((o) => { try { o.stop(); } catch (e) {} }); playing = []; }
function play(side) {
  const tune = tunes[side];
  if (!tune) return;
  stop();
  audio = audio || new AudioContext();
  const seq = tune.setUpAudio({});
  const meter = tune.getMeterFraction();
  const secondsPerWhole = tune.millisecondsPerMeasure(seq.tempo) / 1000 / (meter.den ? meter.num / meter.den : 1);
  const t0 = audio.currentTime + 0.05;
  for (const track of seq.tracks) {
    for (const ev of track) {
      if (ev.cmd !== "note" || ev.pitch === undefined) continue;
      const osc = audio.createOscillator(), gain = audio.createGain();
      const start = t0 + ev.start * secondsPerWhole, end = start + Math.max(0.05, ev.duration * secondsPerWhole);
      osc.type = "triangle";
      osc.frequency.value = 440 * Math.pow(2, (ev.pitch - 69) / 12);
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.25, start + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, end);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(end + 0.02);
      playing.push(osc);
    }
  }
}

function begin(name) {
  rater = name.trim();
  if (!rater) return;
  sessionStorage.setItem("gradopt-rater", rater);
  $("who").hidden = true;
  $("rating").hidden = false;
  loadNext();
}

$("who").addEventListener("submit", (e) => { e.preventDefault(); begin($("name").value); });
$("first").onclick = () => verdict("first");
$("second").onclick = () => verdict("second");
$("tie").onclick = () => verdict("tie");
$("skip").onclick = () => verdict("skip");
$("undo").onclick = () => undo();
$("play-a").onclick = () => play("a");
$("play-b").onclick = () => play("b");
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || $("rating").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = {"1": () => verdict("first"), "2": () => verdict("second"), "t": () => verdict("tie"),
                "s": () => verdict("skip"), "u": () => undo()};
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});
if (rater) begin(rater);
</script>
</body>
</html>
"""
