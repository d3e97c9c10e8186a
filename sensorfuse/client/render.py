"""What `sensorfuse echo` and `sensorfuse hz` print: one line per message, rate over a window."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorfuse.client.message import Message
from sensorfuse.engine import wire


def describe(msg: Message) -> str:
    """One line: stream, seq, capture time, then the payload decoded (arrays summarised)."""
    h = msg.header
    head = f"{h.stream} seq={h.seq} t_ns={h.t_ns}{' snapshot' if msg.snapshot else ''}"
    return f"{head} {payload_summary(msg)}"


def payload_summary(msg: Message) -> str:
    h = msg.header
    if h.kind in (wire.KIND_TENSOR, wire.KIND_AUDIO):
        arr = msg.array
        shape = "x".join(str(d) for d in arr.shape)
        extra = f" rate={h.rate} sample0={h.sample0}" if h.kind == wire.KIND_AUDIO else ""
        stats = f" mean={float(arr.mean()):.4g}" if arr.size else ""
        return f"{h.kind} {h.dtype}[{shape}]{f' {h.layout}' if h.layout else ''}{extra}{stats}"
    if h.kind == wire.KIND_RECORD:
        return f"record {_json(msg.record)}"
    if h.kind == wire.KIND_BYTES:
        if h.encoding == "utf-8":
            return f"text {_json(msg.text)}"
        return f"bytes {len(msg.data)} B{f' {h.encoding}' if h.encoding else ''}"
    if msg.end:
        return "eos (end of stream)"
    return h.kind


def raw(msg: Message) -> str:
    """One line: the whole header as JSON, then the payload's size per frame."""
    h = msg.header
    header = {f: getattr(h, f) for f in h.__struct_fields__ if getattr(h, f) not in (None, {})}
    sizes = [len(wire._buffer(part)) for part in msg.payload]
    return f"{_json(header)} payload={sizes}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)


@dataclass
class Rate:
    rate_hz: float
    jitter_ms: float  # standard deviation of the inter-arrival times
    min_ms: float
    max_ms: float
    window: int  # intervals measured


class RateWindow:
    """Arrival times of the last `size` + 1 messages; rate and jitter over them."""

    def __init__(self, size: int = 100) -> None:
        self.arrivals_ns: deque[int] = deque(maxlen=size + 1)

    def add(self, t_recv_ns: int) -> None:
        self.arrivals_ns.append(t_recv_ns)

    def rate(self) -> Rate | None:
        if len(self.arrivals_ns) < 2:
            return None
        gaps_ms = np.diff(np.fromiter(self.arrivals_ns, dtype=np.int64)) / 1e6
        mean_ms = float(gaps_ms.mean())
        return Rate(rate_hz=1000.0 / mean_ms if mean_ms > 0 else float("inf"), jitter_ms=float(gaps_ms.std()),
                    min_ms=float(gaps_ms.min()), max_ms=float(gaps_ms.max()), window=len(gaps_ms))


def rate_line(stream: str, rate: Rate | None, *, lost: int, malformed: int, new: bool = True) -> str:
    """`new`: whether messages arrived since the last line (else the window is old news)."""
    counts = f"lost {lost}  malformed {malformed}"
    if rate is None or not new:
        return f"{stream}: no {'new ' if rate else ''}messages  {counts}"
    return (f"{stream}: rate {rate.rate_hz:.2f} Hz  jitter {rate.jitter_ms:.2f} ms  min {rate.min_ms:.1f} ms  "
            f"max {rate.max_ms:.1f} ms  window {rate.window}  {counts}")
