"""A persistent helper process that runs one function with a hard time limit per call.

Some inputs make a library loop for minutes (music21 re-barring a note two million units long
took over 15 minutes and 4 GB). Python cannot interrupt a running function from outside, so the
function runs in a child process that is killed when a call overruns and replaced by a fresh one.
The child is reused across calls (starting one costs seconds: it imports music21), so a call
costs one pipe round trip beyond the work itself (about 0.1 ms).

A call's limit is the child's CPU time (read from /proc only once the call has taken that long
in wall time), with a wall-clock cap of `WALL_FACTOR` times it: on a machine shared by many jobs a
parse that needs 3 s of CPU can take 20 s of wall time, and must not be judged a hang for it.

The child is a plain ``subprocess`` running this file, not a ``multiprocessing`` process: `spawn`
would re-import the caller's ``__main__`` and the ``domains`` package (torch) in the child, and
`fork` would copy a process that holds torch's thread pools. This file and the served script
import only the standard library (and what the script needs), never the package they live in.

The served script defines ``handle(arg)`` (arguments and results are pickled) and optionally
``warm_up()``, called once before the first request.

Safety: calls from several threads are serialised by a lock; after `os.fork` the child process
forgets the parent's worker (it starts its own on first use); at interpreter exit every worker is
stopped; a worker whose parent dies exits within a second.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path


WALL_FACTOR = 6.0  # default wall-clock limit of a call, in multiples of its CPU limit


class WorkerError(RuntimeError):
    """The worker died or failed during a call (the call's result is unknown)."""


class WorkerStartError(RuntimeError):
    """The worker could not start (its script failed to import, or it did not answer in time)."""


class TimedWorker:
    """Runs ``handle(arg)`` of `script` in a persistent child process, at most `timeout` s per call.

    script: path of a Python file defining ``handle`` (and optionally ``warm_up``).
    startup_timeout: seconds the child may take to import and warm up before it is given up.
    """

    def __init__(self, script: str | Path, startup_timeout: float = 120.0) -> None:
        if not Path(script).is_file():
            raise ValueError(f"TimedWorker: no script at {script}; pass the path of a file that defines handle(arg)")
        if not startup_timeout > 0:
            raise ValueError(f"TimedWorker: startup_timeout must be > 0 seconds, got {startup_timeout}")
        self.script = str(script)
        self.startup_timeout = startup_timeout
        self.starts = 0  # processes started so far (tests and benchmarks read it)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._ready = False
        self._cpu_base = 0.0  # the worker's CPU seconds when it last answered
        _WORKERS.add(self)

    def call(self, arg, timeout: float, wall_timeout: float | None = None):
        """``handle(arg)`` in the worker, allowed `timeout` seconds of the worker's CPU time and
        `wall_timeout` seconds of wall time (default 6 x `timeout`). CPU time is what a hang burns
        and what a crowded machine does not inflate: a call that gets a fifth of a core still
        finishes. Where a process's CPU time cannot be read (no /proc), `timeout` is wall time.

        Raises TimeoutError on overrun (the worker is killed and replaced), WorkerError if the
        worker died or `handle` raised, WorkerStartError if no worker can be started. Starting a
        worker does not count against the limits."""
        if not timeout > 0:
            raise ValueError(f"TimedWorker.call: timeout must be > 0 seconds, got {timeout}")
        wall_timeout = WALL_FACTOR * timeout if wall_timeout is None else wall_timeout
        if not wall_timeout >= timeout:
            raise ValueError(f"TimedWorker.call: wall_timeout ({wall_timeout}) must be >= timeout ({timeout})")
        with self._lock:
            if self._pid != os.getpid():  # a forked copy: the worker belongs to the parent
                self._forget()
            self._ensure_ready()
            try:
                self._send.send(arg)
                overrun = self._wait(timeout, wall_timeout)
                if overrun is None:
                    status, value, self._cpu_base = self._recv.recv()
            except (EOFError, OSError) as err:
                code = self._proc.poll() if self._proc is not None else None
                self._discard()
                raise WorkerError(f"the worker died (exit code {code}): {type(err).__name__}") from None
            except BaseException:  # e.g. KeyboardInterrupt mid-call: the answer would come out of turn
                self._discard()
                raise
            if overrun is not None:
                self._restart()
                raise TimeoutError(overrun)
        if status == "err":
            raise WorkerError(value)
        return value

    def close(self) -> None:
        """Stop the worker (the next call starts a new one)."""
        with self._lock:
            if self._pid == os.getpid():
                self._discard()

    # -- internals --------------------------------------------------------------------------------
    def _wait(self, timeout: float, wall_timeout: float) -> str | None:
        """None once the answer is waiting, else how the call overran its limits."""
        start = time.monotonic()
        wait = timeout
        while not self._recv.poll(wait):
            waited = time.monotonic() - start
            used = self._cpu_used()
            if used is None:
                return f"no answer within {waited:.3g} s"
            if used >= timeout:
                return f"the call used {used:.3g} s of CPU (limit {timeout:g} s)"
            if waited >= wall_timeout:
                return f"no answer within {waited:.3g} s (limit {wall_timeout:g} s; {used:.3g} s of CPU used)"
            wait = max(0.01, min(timeout - used, wall_timeout - waited))
        return None

    def _cpu_used(self) -> float | None:
        """CPU seconds the worker spent on the current call (Linux /proc), or None."""
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") - self._cpu_base
        except (OSError, ValueError, IndexError):
            return None

    def _start(self) -> None:
        """Start a child; it sends "ready" once it has loaded the script (not waited for here)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            # -P: do not put this directory (or the cwd) on the child's sys.path
            self._proc = subprocess.Popen(
                [sys.executable, "-P", __file__, self.script, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self._ready = False
        self.starts += 1

    def _ensure_ready(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._discard()
            self._start()
        if self._ready:
            return
        try:
            if not self._recv.poll(self.startup_timeout):
                raise WorkerStartError(f"the worker for {self.script} did not start within {self.startup_timeout:g} s")
            status, value, self._cpu_base = self._recv.recv()
        except (EOFError, OSError):
            status, value = "err", f"it exited with code {self._proc.wait()}"
        except BaseException:
            self._discard()
            raise
        if status != "ready":
            self._discard()
            raise WorkerStartError(f"the worker for {self.script} could not start: {value}")
        self._ready = True

    def _restart(self) -> None:
        """Kill the worker and start its replacement now, so it warms up while the caller goes on."""
        self._discard()
        self._start()

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        self._ready = False
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _forget(self) -> None:
        """In a forked child: drop the parent's worker without touching it."""
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()  # closes this process's copies of the pipe ends only
        self._proc = self._send = self._recv = None
        self._ready = False
        self._pid = os.getpid()


_WORKERS: "weakref.WeakSet[TimedWorker]" = weakref.WeakSet()


def _close_all() -> None:
    for worker in list(_WORKERS):
        if worker._pid == os.getpid():
            worker._discard()


def _after_fork_in_child() -> None:
    for worker in list(_WORKERS):
        worker._lock = threading.Lock()  # another thread may have held it at the fork
        worker._forget()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the child side -------------------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (killed without running its exit handlers)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve(script: str, read_fd: int, write_fd: int) -> None:
    import pickle
    import runpy
    import signal
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then stops us
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    requests, answers = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        namespace = runpy.run_path(script, run_name="__timed_worker__")
        handle = namespace["handle"]
        if "warm_up" in namespace:
            namespace["warm_up"]()
    except BaseException:
        answers.send(("err", traceback.format_exc(limit=3), 0.0))
        return
    answers.send(("ready", None, time.process_time()))
    while True:
        try:
            arg = requests.recv()
        except EOFError:  # the parent closed the pipe: done
            return
        try:
            answer = pickle.dumps(("ok", handle(arg), time.process_time()))
        except Exception as err:
            answer = pickle.dumps(("err", f"{type(err).__name__}: {str(err)[:200]}", time.process_time()))
        answers.send_bytes(answer)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
