"""A consumer that spends `work_ms` per message and writes, per message, its capture
time and when its step began and ended: a graph node for the latency fault tests,
loaded by path (`kind: tests/faults/latency_probe.py:LatencyProbe`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import msgspec

from sensorfuse.engine import wire
from sensorfuse.engine.node import InputSpec, Node, Out


class LatencyProbe(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        path: str
        work_ms: float

    inputs = {"*": InputSpec(policy="latest")}

    def start(self) -> None:
        self.file = open(self.params.path, "w", encoding="utf-8")

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        began = time.monotonic_ns()
        time.sleep(self.params.work_ms / 1000)
        row = {"t_ns": msg.header.t_ns, "began_ns": began, "done_ns": time.monotonic_ns()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        return ()

    def stop(self) -> None:
        self.file.close()
