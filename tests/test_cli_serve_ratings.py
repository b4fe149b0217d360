"""`gradopt serve-ratings`: the JSON API through starlette's TestClient (verdicts on disk and fsynced
before the answer, idempotent retries, 4xx messages, the token), then the page in headless
Chromium: two raters, the server killed and restarted mid-session, nothing lost or doubled."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from browser import chromium, console_errors
from gradopt.cli._serve_ratings import build_app
from rewardmodels import RatingStore

ROOT = Path(__file__).resolve().parents[1]
TUNES = [f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\n{body}|]" for k, body in enumerate(
    ["GABc dedB|dedB A2G2", "D2FA d2fd|e2ge d2BA", "B2AG FGAB|c2BA G4", "g2fe dcBA|G2B2 d4",
     "ABcd efga|g2e2 d4", "dBAG FDFA|B2A2 G4"], 1)]


def _store(path):
    store = RatingStore(path)
    ids = [store.add_item(t).id for t in TUNES]
    store.enqueue([(ids[4], ids[5])], strategy="harvest")
    return store, ids


def test_verdict_flow_is_on_disk_fsynced_and_idempotent(tmp_path, monkeypatch):
    store, ids = _store(tmp_path / "s")
    client = TestClient(build_app(store))
    page = client.get("/")
    assert page.status_code == 200 and "Which tune is better?" in page.text
    assert "<script src" not in page.text  # abcjs is inlined or absent, never fetched
    got = client.get("/api/next", params={"rater": "ann"}).json()
    assert got["pair"] == f"{ids[4]}:{ids[5]}" and got["source"] == "queue" and got["a"]["text"] == TUNES[4]

    synced = []  # (path, size) at each fsync: the rating must be durable before the answer
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append((os.readlink(f"/proc/self/fd/{fd}"),
                                                                 os.fstat(fd).st_size)), real_fsync(fd)))
    body = {"rater": "ann", "pair": got["pair"], "verdict": "second", "rating_id": "id-1"}
    r = client.post("/api/verdict", json=body)
    assert r.status_code == 200 and r.json()["stored"]["winner"] == "b" and r.json()["progress"]["rated"] == 1
    path = tmp_path / "s" / "comparisons.jsonl"
    assert synced and synced[-1] == (str(path), path.stat().st_size)
    monkeypatch.setattr(os, "fsync", real_fsync)

    # the server restarts (a new app on the same directory) and the page retries the same POST
    again = TestClient(build_app(tmp_path / "s"))
    assert again.post("/api/verdict", json=body).status_code == 200
    stored = RatingStore(tmp_path / "s")
    assert [(c.a, c.b, c.winner, c.rater, c.id) for c in stored.comparisons] == [(ids[4], ids[5], "b", "ann", "id-1")]
    assert len(path.read_text().splitlines()) == 1

    nxt = again.get("/api/next", params={"rater": "bob"}).json()  # bob has not rated the queued pair... but ann did
    assert nxt["source"] != "queue" and nxt["progress"]["rated"] == 0
    skip = {"rater": "bob", "pair": nxt["pair"], "verdict": "skip", "rating_id": "id-2"}
    assert again.post("/api/verdict", json=skip).json()["stored"]["kind"] == "skip"
    undone = again.post("/api/undo", json={"rater": "bob", "rating_id": "id-2"}).json()
    assert undone["undone"]["id"] == "id-2" and RatingStore(tmp_path / "s").skips == []
    assert again.get("/api/next", params={"rater": "bob"}).json()["pair"] == nxt["pair"]  # shown again


@pytest.mark.parametrize("body, status, message", [
    ({"rater": "ann", "pair": "P", "verdict": "first"}, 400, "missing field(s) ['rating_id']"),
    ({"rater": "ann", "pair": "P", "verdict": "left", "rating_id": "x"}, 400, "verdict must be one of"),
    ({"rater": "ann", "pair": "UNKNOWN", "verdict": "first", "rating_id": "x"}, 400, "unknown item id"),
    ({"rater": "ann", "pair": "nonsense", "verdict": "first", "rating_id": "x"}, 400, "pair id must be"),
    ({"rater": "", "pair": "P", "verdict": "first", "rating_id": "x"}, 400, "rater must be a name"),
    ({"rater": "ann", "pair": "P", "verdict": "first", "rating_id": ""}, 400, "rating id must be a non-empty"),
    ({"rater": "ann", "pair": "P", "verdict": ["first"], "rating_id": "x"}, 400, "verdict must be one of"),
    ({"rater": ["ann"], "pair": "P", "verdict": "first", "rating_id": "x"}, 400, "rater must be a name"),
    ([1, 2], 400, "must be a JSON object"),
    ({"rating_id": "x"}, 400, "missing field 'rater'"),
    ({"rater": "ann", "rating_id": ["x"]}, 400, "no rating with id ['x']"),
])
def test_malformed_requests_get_a_4xx_with_a_message(tmp_path, body, status, message):
    store, ids = _store(tmp_path / "s")
    pair = f"{ids[0]}:{ids[1]}"
    if isinstance(body, dict):
        body = {k: (pair if v == "P" else f"{ids[0]}:{'0' * 64}" if v == "UNKNOWN" else v) for k, v in body.items()}
    route = "/api/verdict" if isinstance(body, list) or "pair" in body else "/api/undo"
    r = TestClient(build_app(store)).post(route, json=body)
    assert r.status_code == status and message in r.json()["error"]
    assert not (tmp_path / "s" / "comparisons.jsonl").exists()


def test_reusing_a_rating_id_for_another_verdict_is_refused(tmp_path):
    store, ids = _store(tmp_path / "s")
    client = TestClient(build_app(store))
    body = {"rater": "ann", "pair": f"{ids[0]}:{ids[1]}", "verdict": "first", "rating_id": "same"}
    assert client.post("/api/verdict", json=body).status_code == 200
    r = client.post("/api/verdict", json={**body, "verdict": "tie"})
    assert r.status_code == 400 and "already used for another rating" in r.json()["error"]
    assert client.post("/api/verdict", content=b"{not json").status_code == 400


def test_token_is_required_on_every_request(tmp_path):
    store, ids = _store(tmp_path / "s")
    client = TestClient(build_app(store, token="s3cret"))
    for method, url in (("GET", "/"), ("GET", "/api/next?rater=ann"), ("POST", "/api/verdict"), ("POST", "/api/undo")):
        r = client.request(method, url, json={"rater": "ann"})
        assert r.status_code == 401 and "needs its token" in r.json()["error"]
        r = client.request(method, url, json={"rater": "ann"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403 and r.json()["error"] == "wrong token"
    assert client.get("/?token=s3cret").status_code == 200
    r = client.get("/api/next", params={"rater": "ann"}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["pair"]
    with pytest.raises(ValueError, match="--token must not be empty"):
        build_app(store, token="")


# --- the page in headless Chromium ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(store_dir, port, log):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from gradopt.cli import main; sys.exit(main(sys.argv[1:]))",
                             "serve-ratings", str(store_dir), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/next?rater=probe", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None, f"the server exited: {Path(log.name).read_text()}"
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start within 40 s")


def test_two_raters_in_chromium_survive_a_server_kill(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _store(tmp_path / "s")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    clicked = []  # (rater, pair, stored winner or "skip")
    winner = {"first": "a", "second": "b", "tie": "tie", "skip": "skip"}
    with open(tmp_path / "server.log", "w") as log, chromium() as driver:
        server = _serve(tmp_path / "s", port, log)
        try:
            wait = WebDriverWait(driver, 40, poll_frequency=0.1)
            tabs = {}
            driver.get(url)  # ann types her name once
            driver.find_element(By.ID, "name").send_keys("ann")
            driver.find_element(By.ID, "start").click()
            tabs["ann"] = driver.current_window_handle
            driver.switch_to.new_window("window")  # bob, at the same time, in another window
            driver.get(url + "?rater=bob")
            tabs["bob"] = driver.current_window_handle

            def progress():
                return driver.find_element(By.ID, "progress").text

            def shown():
                wait.until(lambda d: d.find_element(By.ID, "rating").get_attribute("data-pair"))
                return driver.find_element(By.ID, "rating").get_attribute("data-pair")

            def rate(rater, verdict, by_key=False):
                driver.switch_to.window(tabs[rater])
                pair, before = shown(), progress()
                if by_key:
                    driver.find_element(By.TAG_NAME, "body").send_keys({"first": "1", "tie": "t"}[verdict])
                else:
                    driver.find_element(By.ID, verdict).click()
                clicked.append((rater, pair, winner[verdict]))
                wait.until(lambda d: progress() != before)

            for verdict in ("first", "second", "tie"):
                rate("ann", verdict)
                rate("bob", verdict, by_key=verdict in ("first", "tie"))
            rate("bob", "skip")
            driver.switch_to.window(tabs["ann"])
            assert driver.find_elements(By.CSS_SELECTOR, "#sheet-a svg") and driver.find_elements(By.CSS_SELECTOR, "#sheet-b svg")
            driver.find_element(By.ID, "play-a").click()
            assert console_errors(driver) == []
            driver.save_screenshot(str(tmp_path / "rating.png"))

            server.send_signal(signal.SIGKILL)  # mid-session
            server.wait(10)
            driver.switch_to.window(tabs["ann"])
            pair, before = shown(), progress()
            driver.find_element(By.ID, "second").click()  # while the server is down: the page retries
            clicked.append(("ann", pair, "b"))
            wait.until(lambda d: "cannot reach the server" in d.find_element(By.ID, "status").text)
            server = _serve(tmp_path / "s", port, log)
            wait.until(lambda d: progress() != before)
            console_errors(driver)  # forget the refused connections of the outage
            driver.switch_to.window(tabs["bob"])
            console_errors(driver)
            rate("bob", "first")
            before = progress()
            driver.find_element(By.ID, "undo").click()  # takes back bob's last rating
            clicked.pop()
            wait.until(lambda d: progress() != before)
            rate("bob", "second")
            rate("ann", "tie")

            bad = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/verdict', {method: 'POST', body: JSON.stringify({rater: 'bob'})})"
                ".then(r => r.json().then(j => done([r.status, j.error])));")
            assert bad[0] == 400 and "missing field(s)" in bad[1]
            assert console_errors(driver) == [] or all("400" in e for e in console_errors(driver))
            for rater in tabs:
                driver.switch_to.window(tabs[rater])
                assert console_errors(driver) == []
        finally:
            server.kill()
            server.wait(10)
    store = RatingStore(tmp_path / "s")
    got = [(c.rater, f"{c.a}:{c.b}", c.winner) for c in store.comparisons]
    got += [(s.rater, f"{s.a}:{s.b}", "skip") for s in store.skips]
    assert sorted(got) == sorted(clicked) and len(got) == 10
    lines = (tmp_path / "s" / "comparisons.jsonl").read_text().splitlines()
    ids = [json.loads(x).get("id") for x in lines if '"retract"' not in x]
    assert len(ids) == len(set(ids)) == 11 and len(lines) == 12  # + bob's undone rating and its retraction
    assert (tmp_path / "rating.png").stat().st_size > 0
