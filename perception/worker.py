"""A model run at its own event-time rate, off the per-tick path, deterministic in replay.

`EventTimeWorker` starts `run(t_ns, frame)` at most every `period_ns` of event time (on
an executor when given, else inline) and hands its result over at the first tick at
least `delay_ns` of event time after the frame it was computed from. Which result a tick
sees depends only on tick times, never on how fast the worker was (a tick that reaches
the delay before the worker is done waits for it), so live, replay at any rate and
offline training see the same results. The scene encoder and the object detector run
this way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

import numpy as np

R = TypeVar("R")


class EventTimeWorker(Generic[R]):
    def __init__(self, run: Callable[[int, np.ndarray], R], *, period_ns: int, delay_ns: int,
                 executor: Executor | None = None, what: str = "worker") -> None:
        if not 0 <= delay_ns < period_ns:
            raise ValueError(f"{what} delay {delay_ns} ns must be ≥ 0 and below the {what} period {period_ns} ns")
        self.run = run
        self.period_ns = period_ns
        self.delay_ns = delay_ns
        self.executor = executor
        self._started_t: int | None = None  # frame time of the last run started
        self._pending: tuple[int, Future[R] | R] | None = None  # (apply at, result)

    def due(self, t_ns: int) -> bool:
        return self._pending is None and (self._started_t is None or t_ns - self._started_t >= self.period_ns)

    def start(self, t_ns: int, frame: np.ndarray) -> None:
        """Run on the frame captured at `t_ns` (call when `due`)."""
        self._started_t = t_ns
        apply_at = t_ns + self.delay_ns
        if self.executor is None:
            self._pending = (apply_at, self.run(t_ns, frame))
        else:
            self._pending = (apply_at, self.executor.submit(self.run, t_ns, frame))

    def advance(self, t_ns: int) -> tuple[bool, R | None]:
        """At tick time `t_ns`: (True, result) when a result is due, else (False, None)."""
        if self._pending is None or t_ns < self._pending[0]:
            return False, None
        result = self._pending[1]
        self._pending = None
        return True, result.result() if isinstance(result, Future) else result
