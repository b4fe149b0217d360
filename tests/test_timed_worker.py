"""TimedWorker: one persistent child process per worker, a hard time limit per call, no leaks."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from domains import _timed_worker
from domains._timed_worker import TimedWorker, WorkerError, WorkerStartError

SCRIPT = """
import os, time

def handle(arg):
    kind, value = arg
    if kind == "echo":
        return value
    if kind == "sleep":
        time.sleep(value)
        return value
    if kind == "spin":  # burn CPU for `value` seconds
        end = time.process_time() + value
        while time.process_time() < end:
            pass
        return value
    if kind == "pid":
        return os.getpid()
    if kind == "raise":
        raise ValueError(value)
    if kind == "exit":
        os._exit(3)
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("worker") / "handler.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def worker(script):
    w = TimedWorker(script)
    yield w
    w.close()


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def test_round_trip_is_cheap(worker):
    """A call costs one pipe round trip: well under a millisecond on an idle core."""
    assert worker.call(("echo", {"a": [1, 2]}), timeout=60) == {"a": [1, 2]}  # started and warm
    n = 300
    start = time.perf_counter()
    for i in range(n):
        assert worker.call(("echo", "x" * 500), timeout=60) == "x" * 500
    per_call = (time.perf_counter() - start) / n
    print(f"TimedWorker round trip: {per_call * 1e3:.3f} ms per call")
    assert per_call < 5e-3, per_call  # ~0.1 ms measured; 5 ms leaves room for a loaded shared machine


@pytest.mark.parametrize("kind,wall,limit", [("spin", 60, "CPU \\(limit 0.5 s\\)"), ("sleep", None, "limit 3 s")])
def test_overrun_is_killed_and_replaced(worker, kind, wall, limit):
    """A busy call is stopped by its CPU limit, an idle one by the wall cap (6 x the CPU limit)."""
    worker.call(("echo", 0), timeout=60)
    old_pid, starts = worker.call(("pid", None), timeout=60), worker.starts
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=limit):
        worker.call((kind, 600), timeout=0.5, wall_timeout=wall)
    assert time.monotonic() - start < 60  # never the 600 s (0.5 s of CPU can take 10x longer on a loaded machine)
    assert wait_gone(old_pid, 5)
    assert worker.starts == starts + 1
    assert worker.call(("echo", "again"), timeout=60) == "again"
    assert worker.call(("pid", None), timeout=60) != old_pid


def test_cpu_limit_spares_slow_wall_time(worker):
    """A call that waits (no CPU) longer than its CPU limit but within the wall cap completes."""
    assert worker.call(("sleep", 1.0), timeout=0.5, wall_timeout=30) == 1.0
    with pytest.raises(ValueError, match="wall_timeout"):
        worker.call(("echo", 1), timeout=2, wall_timeout=1)


def test_handler_errors_keep_the_worker(worker):
    pid = worker.call(("pid", None), timeout=60)
    with pytest.raises(WorkerError, match="ValueError: bad input"):
        worker.call(("raise", "bad input"), timeout=60)
    assert worker.call(("pid", None), timeout=60) == pid


def test_a_dead_worker_is_replaced(worker):
    with pytest.raises(WorkerError, match="died"):
        worker.call(("exit", None), timeout=60)
    assert worker.call(("echo", 7), timeout=60) == 7


def test_start_failure_is_reported(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    w = TimedWorker(broken)
    with pytest.raises(WorkerStartError, match="no_such_module_here"):
        w.call(("echo", 1), timeout=60)
    with pytest.raises(ValueError, match="no script"):
        TimedWorker(tmp_path / "missing.py")
    with pytest.raises(ValueError, match="timeout"):
        w.call(("echo", 1), timeout=0)


def test_threads_share_one_worker(worker):
    results, errors = {}, []

    def run(k):
        try:
            for i in range(20):
                results[(k, i)] = worker.call(("echo", (k, i)), timeout=60)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and all(not t.is_alive() for t in threads)
    assert results == {(k, i): (k, i) for k in range(4) for i in range(20)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_worker(worker):
    """A fork while another thread is inside a call: the child must neither deadlock on the copied
    lock nor talk to the parent's worker."""
    parent_pid = worker.call(("pid", None), timeout=60)
    busy = threading.Thread(target=worker.call, args=(("sleep", 1.0),), kwargs={"timeout": 60})
    busy.start()
    time.sleep(0.3)  # the busy thread now holds the lock
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            ok = worker.call(("pid", None), timeout=60) not in (parent_pid, None)
            _timed_worker._close_all()
        finally:
            os._exit(0 if ok else 1)
    busy.join(60)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(child, 9)
            pytest.fail("the forked child hung calling the worker")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert worker.call(("pid", None), timeout=60) == parent_pid  # the parent's worker is untouched


def run_owner(script, tail: str) -> int:
    """Start a Python process that owns a worker, prints its pid, then runs `tail`; the worker's pid."""
    code = (f"import runpy; ns = runpy.run_path({str(Path(_timed_worker.__file__))!r}); "
            f"w = ns['TimedWorker']({str(script)!r}); print(w.call(('pid', None), timeout=60), flush=True); {tail}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[0])


def test_worker_stops_at_exit(script):
    assert wait_gone(run_owner(script, "pass"), 5)


def test_worker_stops_when_its_owner_is_killed(script):
    """No exit handler runs after SIGKILL; the worker notices its parent is gone within a second."""
    assert wait_gone(run_owner(script, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), 10)
