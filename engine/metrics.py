"""Per-stream counters a node keeps and ships with every heartbeat.

Counted for each stream: received, published, lost (gaps in `seq`), dropped by reason
(queue overflow, ...), malformed by reason, rejected by the node with a reason, and a
bounded reservoir of capture-to-receipt latencies for p50/p99.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import numpy as np

LATENCY_RESERVOIR = 1024


class StreamCounters:
    __slots__ = ("received", "published", "lost", "seq_resets", "dropped", "malformed", "rejected",
                 "last_seq", "latency_ns", "_last_snapshot_received", "_last_snapshot_published")

    def __init__(self) -> None:
        self.received = 0
        self.published = 0
        self.lost = 0
        self.seq_resets = 0
        self.dropped: dict[str, int] = defaultdict(int)
        self.malformed: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.last_seq: int | None = None
        self.latency_ns: deque[int] = deque(maxlen=LATENCY_RESERVOIR)
        self._last_snapshot_received = 0
        self._last_snapshot_published = 0

    def on_receive(self, seq: int, t_ns: int, t_recv_ns: int, *, data: bool = True) -> int:
        """Account one received message (`data=False` for end-of-stream markers, which only
        close a sequence); returns how many messages the seq gap says were lost."""
        gap = 0
        if self.last_seq is not None:
            if seq > self.last_seq + 1:
                gap = seq - self.last_seq - 1
                self.lost += gap
            elif seq <= self.last_seq:
                # The producer restarted and counts from 0 again (or a duplicate arrived).
                self.seq_resets += 1
        self.last_seq = seq
        if data:
            self.received += 1
            self.latency_ns.append(t_recv_ns - t_ns)
        return gap

    def snapshot(self, dt_s: float) -> dict[str, Any]:
        lat = np.fromiter(self.latency_ns, dtype=np.int64) if self.latency_ns else None
        out: dict[str, Any] = {
            "received": self.received,
            "published": self.published,
            "lost": self.lost,
            "seq_resets": self.seq_resets,
            "dropped": dict(self.dropped),
            "malformed": dict(self.malformed),
            "rejected": dict(self.rejected),
            "rate_hz": ((self.received - self._last_snapshot_received) + (self.published - self._last_snapshot_published))
            / dt_s if dt_s > 0 else 0.0,
        }
        if lat is not None:
            p50, p99 = np.percentile(lat, [50, 99])
            out["latency_p50_ms"] = float(p50) / 1e6
            out["latency_p99_ms"] = float(p99) / 1e6
        self._last_snapshot_received = self.received
        self._last_snapshot_published = self.published
        return out


class Counters:
    """All counters of one node process."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamCounters] = defaultdict(StreamCounters)
        self.gauges: dict[str, float] = {}

    def count(self, stream: str, category: str, reason: str, n: int = 1) -> None:
        """category: dropped | malformed | rejected."""
        getattr(self.streams[stream], category)[reason] += n

    def gauge(self, name: str, value: float) -> None:
        self.gauges[name] = float(value)

    def snapshot(self, dt_s: float) -> dict[str, Any]:
        return {"streams": {k: v.snapshot(dt_s) for k, v in self.streams.items()}, "gauges": dict(self.gauges)}
