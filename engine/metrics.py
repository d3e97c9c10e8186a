"""Per-stream counters a node keeps and ships with every heartbeat.

Counted for each stream: received, published, lost (gaps in `seq`), dropped by reason
(queue overflow, ...), malformed by reason, rejected by the node with a reason, and
bounded reservoirs of latencies for p50/p99: capture → receipt (`t_ns` to now) and
publish → receipt (`t_pub_ns` to now). Capture latency is kept only for streams on this
host's clock: on replay `t_ns` is the recorded time base and a file source's is media
time, so "now − t_ns" would be the machine's uptime, not a latency.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any

import numpy as np

LATENCY_RESERVOIR = 1024
#: A capture time further back than this is not on this host's clock (replay, file media time).
CAPTURE_LATENCY_MAX_NS = 60_000_000_000


class StreamCounters:
    __slots__ = ("received", "published", "lost", "seq_resets", "dropped", "malformed", "rejected",
                 "last_seq", "latency_ns", "transit_ns", "_last_snapshot_received", "_last_snapshot_published",
                 "heard_ns", "silent_after_ns", "ended", "consumers_missing", "shm")

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
        #: receiving side, liveness: when anything (data, idle, eos) last arrived (monotonic
        #: ns), how long a silence means the publisher is gone (0: not judged), and whether
        #: the stream ended; see `silent_s`
        self.heard_ns = 0
        self.silent_after_ns = 0
        self.ended = False
        #: publishing side: graph consumers the plan declares that are not connected now
        self.consumers_missing = 0
        #: the shared-memory plane of this stream, as this end sees it (`plane`: shm or
        #: inline, slots, in_use, fallback by reason; a reader's pinned slots)
        self.shm: dict[str, Any] = {}

    def on_idle(self, seq: int, t_recv_ns: int) -> int:
        """Account an idle message: the publisher is alive, and its `seq` (the next data
        message's) tells whether messages were lost since the last one; returns that gap."""
        self.heard_ns = t_recv_ns
        if self.last_seq is None:
            if seq > 0:  # joined late: the idle sets the base, as a first data message would
                self.last_seq = seq - 1
            return 0
        if seq - 1 <= self.last_seq:  # nothing missed (or a restart, which the next data message counts)
            return 0
        gap = seq - 1 - self.last_seq
        self.lost += gap
        self.last_seq = seq - 1
        return gap

    def silent_s(self, now_ns: int) -> float:
        """Seconds without a single message on a live input, once that silence is longer than
        liveness allows (the publisher crashed, or the network between us is cut); else 0."""
        if self.ended or not self.silent_after_ns or not self.heard_ns:
            return 0.0
        quiet = now_ns - self.heard_ns
        return quiet / 1e9 if quiet > self.silent_after_ns else 0.0

    def on_receive(self, seq: int, t_ns: int, t_recv_ns: int, *, t_pub_ns: int | None = None,
                   data: bool = True) -> int:
        """Account one received message (`data=False` for end-of-stream markers, which only
        close a sequence); returns how many messages the seq gap says were lost."""
        gap = 0
        self.heard_ns = t_recv_ns
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
        if silent := self.silent_s(time.monotonic_ns()):
            out["silent_s"] = round(silent, 1)
        if self.consumers_missing:
            out["consumers_missing"] = self.consumers_missing
        if self.shm:
            out["shm"] = self.shm
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
