"""Session time base: host monotonic nanoseconds, with the wall-clock offset recorded once.

Live sessions stamp with `Clock.now_ns` (CLOCK_MONOTONIC). Replay never reads this clock
for data timestamps; it republishes the recorded stamps.
"""

from __future__ import annotations

import time


class Clock:
    """Monotonic nanoseconds plus the wall offset measured once at construction."""

    def __init__(self) -> None:
        # Bracket the wall read by two monotonic reads so the offset error is bounded.
        m0 = time.monotonic_ns()
        wall = time.time_ns()
        m1 = time.monotonic_ns()
        self.wall_offset_ns = wall - (m0 + m1) // 2

    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def to_wall_ns(self, t_ns: int) -> int:
        return t_ns + self.wall_offset_ns
