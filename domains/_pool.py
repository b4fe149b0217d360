"""A pool of worker processes for work that is embarrassingly parallel, such as the music21 parses
of many tunes: ``ProcessPool(2).map(fn, items)`` is ``[fn(x) for x in items]``, in order.

The workers are spawned, not forked (a fork would copy a process holding torch's thread pools and
the validity checker's helper process), and kept for the pool's life so each pays its imports
(seconds for music21 and torch) once. ``processes=1`` runs every call in the calling process: the
serial path the parallel one must agree with.

CPU time spent in the workers does not show in the caller's ``time.process_time()``, so each chunk
reports its own and the pool sums it in `cpu_seconds`: stage timings can then count all the work.
`fn` must be a module-level function (the workers import it by name) and items must pickle.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

CHUNKS_PER_PROCESS = 4  # a map is cut into about this many chunks per worker (parse times vary)


def _run_chunk(fn: Callable[[Any], Any], chunk: list) -> tuple[list, float]:
    """In a worker: fn over one chunk -> (results, the worker's CPU seconds for them)."""
    c0 = time.process_time()
    out = [fn(x) for x in chunk]
    return out, time.process_time() - c0


class ProcessPool:
    """`map` over `processes` spawned worker processes (1 = in this process). Close it when done
    (or use it as a context manager); a closed pool starts fresh workers on its next call."""

    def __init__(self, processes: int = 2) -> None:
        if not isinstance(processes, int) or processes < 1:
            raise ValueError(f"ProcessPool: processes must be an int >= 1 (1 = no workers), got {processes!r}")
        self.processes = processes
        self.cpu_seconds = 0.0  # CPU seconds the workers spent in calls whose results were collected
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self._executor

    def submit(self, fn: Callable[[Any], Any], items: Sequence, one_worker: bool = False) -> Callable[[], list]:
        """Start ``[fn(x) for x in items]`` now, in the background, and return a function that
        waits for the results and returns them in order. `one_worker` keeps the work on one worker
        (one chunk), leaving the other cores to the caller. With one process the work is done now,
        before this returns."""
        items = list(items)
        if self.processes == 1 or len(items) < 2:
            out = [fn(x) for x in items]
            return lambda desc=None: out
        chunks = 1 if one_worker else self.processes * CHUNKS_PER_PROCESS
        size = max(1, -(-len(items) // chunks))
        futures: list[Future] = [self._pool().submit(_run_chunk, fn, items[i:i + size])
                                 for i in range(0, len(items), size)]
        collected: list | None = None

        def result(desc: str | None = None) -> list:
            nonlocal collected
            if collected is None:
                collected = []
                for f in tqdm(futures, desc=desc, unit="chunk", disable=desc is None, leave=False):
                    part, cpu = f.result()
                    collected += part
                    self.cpu_seconds += cpu
            return collected

        return result

    def map(self, fn: Callable[[Any], Any], items: Sequence, desc: str | None = None) -> list:
        """``[fn(x) for x in items]``, computed by the workers in chunks; `desc` labels a progress
        bar over the chunks (None: no bar)."""
        return self.submit(fn, items)(desc)

    def close(self) -> None:
        """Stop the workers (after the calls already submitted finish)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
