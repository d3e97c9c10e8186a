"""Synthetic source: frames, audio-like blocks or small events at a fixed rate.

Ports: out (tensor). Rate: `rate_hz`. Used by benchmarks, tests and the engine demo; its
payload is a pure function of the index (see `synthetic_payload`) so receivers can check
bytes end to end. `t_ns` is the moment the payload was made (its "capture"), read from
the session clock, never a counter.

Config example::

    producer:
      kind: synthetic
      params: {rate_hz: 30, count: 300, shape: [480, 640, 3]}
      outputs: {out: cam0/frame}
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import numpy as np

from sensorfuse.engine.node import Node, Out, OutputSpec
from sensorfuse.engine.params import Count, PositiveFloat, param_error


def synthetic_payload(index: int, shape: tuple[int, ...], dtype: str = "uint8") -> np.ndarray:
    """Index-stamped pattern: every byte (index % 251), first 8 bytes the index (little-endian)."""
    arr = np.full(shape, index % 251, dtype=dtype)
    flat = arr.reshape(-1).view(np.uint8)
    if flat.size >= 8:
        flat[:8] = np.frombuffer(int(index).to_bytes(8, "little"), dtype=np.uint8)
    return arr


class SyntheticSource(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        rate_hz: PositiveFloat = 30.0
        count: Count = 0  # 0: run until stopped
        shape: list[Count] = msgspec.field(default_factory=lambda: [480, 640, 3])
        dtype: str = "uint8"
        layout: str | None = "HWC/bgr8"

        def __post_init__(self) -> None:
            try:
                np.dtype(self.dtype)
            except TypeError:
                raise param_error("dtype", "a numpy dtype name (uint8, float32, ...)", self.dtype) from None

    outputs = {"out": OutputSpec(kind="tensor", doc="index-stamped array")}

    def start(self) -> None:
        self.period_ns = int(1e9 / self.params.rate_hz)
        self.index = 0
        # No schedule yet: it is anchored at the first `produce`, after the READY/START
        # handshake. Anchored here, the wait for the graph (a second or more) counted as
        # time behind schedule and the first ~10 frames went out in a burst.
        self.next_due_ns = None

    def produce(self, now_ns: int) -> Iterable[Out] | None:
        p = self.params
        if p.count and self.index >= p.count:
            return None
        arr = synthetic_payload(self.index, tuple(p.shape), p.dtype)
        out = Out.tensor("out", arr, self.ctx.clock.now_ns(), layout=p.layout, index=self.index)
        self.index += 1
        # Pace on the schedule, not on "now + period", so the rate does not drift.
        scheduled = now_ns if self.next_due_ns is None else self.next_due_ns
        self.next_due_ns = max(scheduled + self.period_ns, now_ns - 10 * self.period_ns)
        return [out]
