"""Node kinds for the shared-memory plane tests (loaded by file path)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import msgspec
import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.nodes.synthetic import synthetic_payload

#: Shapes every wire dtype is sent in: 1-d, image-like, 4-d; each at least 64 KiB for
#: the widest dtypes (bool and uint8 ones too: 96 KiB and more).
SHAPES = ([98304], [128, 256, 3], [2, 3, 128, 64])
BIG = 3 * 1024 * 1024  # a payload over the test's slot size: inline, counted too_large


def payloads() -> list[tuple[str, np.ndarray | bytes]]:
    """Every (kind, payload) `AllDtypes` sends, in order."""
    out: list[tuple[str, np.ndarray | bytes]] = []
    rng = np.random.default_rng(7)
    for dtype in sorted(wire.DTYPES):
        for shape in SHAPES:
            raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
            out.append(("tensor", raw.view(dtype).reshape(shape) if dtype != "bool" else (raw % 2).astype(bool)
                        .reshape(shape)))
    out.append(("audio", rng.standard_normal((40000, 2)).astype(np.float32)))
    out.append(("bytes", rng.integers(0, 256, size=200_000, dtype=np.uint8).tobytes()))
    out.append(("tensor", np.arange(BIG, dtype=np.uint8)))
    return out


class AllDtypes(Node):
    """One message per `payloads()` entry, then the end of stream."""

    outputs = {"out": OutputSpec(kind="any")}

    def start(self) -> None:
        self.items = payloads()
        self.next_due_ns = None
        self.sample0 = 0

    def produce(self, now_ns: int) -> Iterable[Out] | None:
        if not self.items:
            return None
        kind, data = self.items.pop(0)
        t_ns = self.ctx.clock.now_ns()
        if kind == "audio":
            out = Out.audio("out", data, t_ns, rate=16000, sample0=self.sample0)
            self.sample0 += len(data)
        elif kind == "bytes":
            out = Out("out", wire.KIND_BYTES, data, t_ns, encoding="raw")
        else:
            out = Out.tensor("out", data, t_ns)
        return [out]


class FrameChecker(Node):
    """Checks every frame of a `synthetic` source against its index stamp (torn = a frame
    whose bytes do not all belong to one index), optionally keeping the previous message
    (`keep: message`, detached by the runtime) or its array (`keep: array`, a pinned view)
    and checking it again one step later; sleeps `work_ms` per frame; writes its counts
    to `path` at the end."""

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        path: str
        work_ms: float = 0.0
        keep: str = ""

    inputs = {"in": InputSpec(policy="latest")}
    outputs: dict[str, OutputSpec] = {}

    def start(self) -> None:
        self.checked = self.torn = self.rechecked = 0
        self.kept: wire.Message | np.ndarray | None = None

    @staticmethod
    def _intact(arr: np.ndarray) -> bool:
        flat = arr.reshape(-1).view(np.uint8)
        index = int.from_bytes(flat[:8].tobytes(), "little")
        return bool(np.array_equal(flat, synthetic_payload(index, arr.shape, str(arr.dtype)).reshape(-1).view(np.uint8)))

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        if self.kept is not None:
            kept = self.kept.array if isinstance(self.kept, wire.Message) else self.kept
            self.torn += not self._intact(kept)
            self.rechecked += 1
        self.checked += 1
        self.torn += not self._intact(msg.array)
        if self.params.keep == "message":
            self.kept = msg
        elif self.params.keep == "array":
            self.kept = msg.array[:]  # a view derived from the slot, not msg._array itself
        if self.params.work_ms:
            time.sleep(self.params.work_ms / 1000)
        return []

    def stop(self) -> None:
        with open(self.params.path, "w") as f:
            json.dump({"checked": self.checked, "torn": self.torn, "rechecked": self.rechecked}, f)
