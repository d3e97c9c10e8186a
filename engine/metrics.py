"""Per-stream counters a node keeps and ships with every heartbeat.

Counted for each stream: received, published, lost (gaps in `seq`), dropped by reason
(queue overflow, ...), malformed by reason, rejected by the node with a reason, and
bounded reservoirs of latencies for p50/p99: capture → receipt (`t_ns` to now) and
publish → receipt (`t_pub_ns` to now). Capture latency is kept only for streams on this
host's clock: on replay `t_ns` is the recorded time base and a file source's is media
time, so "now − t_ns" would be the machine's uptime, not a latency.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import numpy as np

LATENCY_RESERVOIR = 1024
#: A capture time further back than this is not on this host's clock (replay, file media time).
CAPTURE_LATENCY_MAX_NS = 60_000_000_000


class StreamCounters:
    __slots__ = ("received", "published", "lost", "seq_resets", "dropped", "malformed", "rejected",
                 "last_seq", "latency_ns", "transit_ns", "_last_snapshot_received", "_last_snapshot_published")

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
        self.transit_ns: deque[int] = deque(maxlen=LATENCY_RESERVOIR)
        self._last_snapshot_received = 0
        self._last_snapshot_published = 0

    def on_receive(self, seq: int, t_ns: int, t_recv_ns: int, *, t_pub_ns: int | None = None,
                   data: bool = True) -> int:
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
            if 0 <= t_recv_ns - t_ns <= CAPTURE_LATENCY_MAX_NS:
                self.latency_ns.append(t_recv_ns - t_ns)
            if t_pub_ns:
                self.transit_ns.append(t_recv_ns - t_pub_ns)
        return gap

    def snapshot(self, dt_s: float) -> dict[str, Any]:
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
        for name, reservoir in (("latency", self.latency_ns), ("transit", self.transit_ns)):
            if reservoir:
                p50, p99 = np.percentile(np.fromiter(reservoir, dtype=np.int64), [50, 99])
                out[f"{name}_p50_ms"] = float(p50) / 1e6
                out[f"{name}_p99_ms"] = float(p99) / 1e6
        self._last_snapshot_received = self.received
        self._last_snapshot_published = self.published
        return out


class Counters:
    """All counters of one node process."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamCounters] = defaultdict(StreamCounters)
        self.gauges: dict[str, float] = {}
        #: target (file, device) -> error, from `NodeContext.write_failed`
        self.write_errors: dict[str, str] = {}

    def count(self, stream: str, category: str, reason: str, n: int = 1) -> None:
        """category: dropped | malformed | rejected."""
        getattr(self.streams[stream], category)[reason] += n

    def gauge(self, name: str, value: float) -> None:
        self.gauges[name] = float(value)

    def write_failed(self, target: str, error: str) -> None:
        self.write_errors[target] = error

    def snapshot(self, dt_s: float) -> dict[str, Any]:
        out = {"streams": {k: v.snapshot(dt_s) for k, v in self.streams.items()}, "gauges": dict(self.gauges)}
        if self.write_errors:  # only then: most nodes write no file, status.json stays small
            out["write_errors"] = dict(self.write_errors)
        return out
