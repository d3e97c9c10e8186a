"""Time for file-backed sources (camera, microphone and text reading from files).

A file carries its own media time (frame timestamps, sample index / rate, timestamps
written in a text file). Two ways to put it on the session time base:

- ``clock: file`` (default): ``t_ns = origin_ns + media time``. Every file source in a
  graph shares the same origin (0 unless configured), so a video and a WAV recorded
  together stay exactly aligned no matter when each node process started, and a rerun
  gives the same stamps (the "replay" rule of docs/time.md).
- ``clock: live``: ``t_ns = session time at the first read + media time``, for mixing a
  file with live devices whose stamps are the host monotonic clock.

Pacing is separate from stamping: ``pace: native`` publishes each item when its media
time comes due (measured from the first read), ``pace: max`` as fast as the graph takes
it (use a ``block`` input downstream so nothing is dropped).
"""

from __future__ import annotations

from typing import Literal

ClockMode = Literal["file", "live"]
PaceMode = Literal["native", "max"]


class MediaClock:
    def __init__(self, mode: ClockMode, origin_ns: int, pace: PaceMode) -> None:
        if mode not in ("file", "live"):
            raise ValueError(f"clock {mode!r}: use file or live")
        if pace not in ("native", "max"):
            raise ValueError(f"pace {pace!r}: use native or max")
        self.mode = mode
        self.origin_ns = origin_ns
        self.pace = pace
        self.started_ns: int | None = None  # session time of the first read

    def begin(self, now_ns: int) -> None:
        if self.started_ns is None:
            self.started_ns = now_ns

    def stamp(self, media_ns: int) -> int:
        """Capture time on the session base for an item at `media_ns` into the file."""
        assert self.started_ns is not None, "begin() first"
        base = self.origin_ns if self.mode == "file" else self.started_ns
        return base + media_ns

    def due(self, media_ns: int) -> int | None:
        """Session time at which to publish the item at `media_ns` (None: right away)."""
        if self.pace == "max":
            return None
        assert self.started_ns is not None, "begin() first"
        return self.started_ns + media_ns
