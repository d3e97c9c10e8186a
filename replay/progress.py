"""Progress display for `sensorfuse replay`, read from the run's ``status.json``.

The player node reports where it is as gauges (``replay_position_s``,
``replay_published``, ``replay_pass``) in its heartbeat metrics; the supervisor merges
them into ``RUN_DIR/status.json`` every 0.5 s. `ProgressWatcher` polls that file from a
thread of the replay command and writes to stderr:

- on a terminal, one line redrawn in place (``\\r``) a few times a second;
- otherwise (a pipe, a log file, CI) a plain line every ``interval_s`` (2 s), e.g.
  ``replay 43% 4.3/10.0 s (1.2x) 280/659 msgs``.

`format_progress` and `progress_from_status` are pure, so the wording is unit-tested
without a graph.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True)
class Position:
    """Where the player is: capture time (s from the log's start), messages handed over, loop pass."""

    position_s: float
    published: int
    loop_pass: int = 0


def format_progress(position_s: float, *, start_s: float, end_s: float, published: int, total: int | None,
                    speed: float | None, loop_pass: int = 0) -> str:
    """One progress line: percent of the span [start_s, end_s], position, speed, messages.

    `position_s` is within the current loop pass; `total` is None when it is not known
    (seek, loop)."""
    span = max(end_s - start_s, 1e-9)
    frac = min(max((position_s - start_s) / span, 0.0), 1.0)
    line = f"replay {frac * 100:3.0f}% {position_s:.1f}/{end_s:.1f} s"
    if speed is not None:
        line += f" ({speed:.1f}x)"
    line += f" {published}/{total} msgs" if total is not None else f" {published} msgs"
    if loop_pass:
        line += f" pass {loop_pass + 1}"
    return line


def progress_from_status(status: dict[str, Any] | None, node: str = "player") -> Position | None:
    """The player's position from a status.json dict, or None before its first report."""
    if not status:
        return None
    gauges = ((status.get("nodes") or {}).get(node) or {}).get("gauges") or {}
    if "replay_position_s" not in gauges:
        return None
    return Position(float(gauges["replay_position_s"]), int(gauges.get("replay_published", 0)),
                    int(gauges.get("replay_pass", 0)))


class ProgressWatcher:
    """Polls ``RUN_DIR/status.json`` and writes progress lines until `stop`.

    `start_s`/`end_s` are the replayed span in seconds from the log's start; `total` the
    number of messages the player will hand over (None if unknown)."""

    def __init__(self, run_dir: str | Path, out: TextIO, *, start_s: float, end_s: float, total: int | None,
                 tty: bool | None = None, interval_s: float = 2.0, node: str = "player") -> None:
        self.status_path = Path(run_dir) / "status.json"
        self.out = out
        self.start_s, self.end_s, self.total = start_s, end_s, total
        self.tty = out.isatty() if tty is None else tty
        self.interval_s = 0.25 if self.tty else interval_s
        self.node = node
        self.lines: list[str] = []
        self.last: Position | None = None
        self._first: tuple[float, Position] | None = None  # (wall s, position) of the first report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-progress", daemon=True)

    def start(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the final position, so the summary is exact
        if self.tty and self.lines:
            self.out.write("\n")
            self.out.flush()

    def speed(self, now_s: float, pos: Position) -> float | None:
        """Event seconds replayed per wall second since the first report."""
        if self._first is None:
            return None
        t0, p0 = self._first
        if now_s - t0 < 1e-3 or pos.position_s <= p0.position_s:
            return None
        return (pos.position_s - p0.position_s) / (now_s - t0)

    def poll(self) -> str | None:
        """Read status.json once; write and return a progress line if the player reported."""
        try:
            status = json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # not written yet, or caught mid-replace: the next poll sees it
        pos = progress_from_status(status, self.node)
        if pos is None:
            return None
        now = time.monotonic()
        if self._first is None or self._first[1].loop_pass != pos.loop_pass:
            self._first = (now, pos)  # speed is measured within one pass
        self.last = pos
        line = format_progress(pos.position_s, start_s=self.start_s, end_s=self.end_s, published=pos.published,
                               total=self.total, speed=self.speed(now, pos), loop_pass=pos.loop_pass)
        self.lines.append(line)
        self.out.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        self.out.flush()
        return line

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()
