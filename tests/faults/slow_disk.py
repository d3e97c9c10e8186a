"""A recorder on a slow disk (each write takes 0.6 s, like a stalled network filesystem):
a graph node for the slow-disk fault tests, loaded by path
(`kind: tests/faults/slow_disk.py:SlowDiskRecorder`). Latency per write rather than a
byte rate: the recorder's chunks are zstd-compressed and synthetic frames shrink to
almost nothing."""

from __future__ import annotations

import time
from typing import Any

from sensorfuse.replay.recorder import RecorderNode

WRITE_LATENCY_S = 0.6


class _SlowFile:
    def __init__(self, path: str) -> None:
        self._f = open(path, "wb")

    def write(self, data: Any) -> int:
        time.sleep(WRITE_LATENCY_S)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class SlowDiskRecorder(RecorderNode):
    opener = staticmethod(_SlowFile)
