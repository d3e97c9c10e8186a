"""Node kinds that misbehave on purpose, for supervisor tests (loaded by file path)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import msgspec

from sensorfuse.engine import wire
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec


class HangingRelay(Node):
    """Relays messages, then stops responding (no heartbeats) after `hang_after` of them,
    but only in its first incarnation (a marker file tells restarts apart)."""

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        hang_after: int
        marker: str

    inputs = {"in": InputSpec(policy="drop_oldest", queue=8)}
    outputs = {"out": OutputSpec(kind="any")}

    def start(self) -> None:
        import os

        self.first_life = not os.path.exists(self.params.marker)
        open(self.params.marker, "a").close()
        self.seen = 0

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        self.seen += 1
        if self.first_life and self.seen > self.params.hang_after:
            threading.Event().wait()  # a hung model call, say: never returns, never heartbeats
        return [Out.passthrough("out", msg)]


class CrashOnStart(Node):
    """Raises in start() every time: the supervisor must back off, then give up."""

    outputs = {"out": OutputSpec(kind="tensor")}

    def start(self) -> None:
        raise RuntimeError("simulated crash during start")

    def produce(self, now_ns: int) -> Iterable[Out] | None:
        return None


class CrashOnStep(Node):
    """Relays nothing: raises on every message, as a node with a broken model would (the
    supervisor restarts it; every message it was given is lost)."""

    inputs = {"in": InputSpec(policy="drop_oldest", queue=8)}

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        raise RuntimeError(f"simulated crash on message {msg.header.seq}")


class CrashOnProduce(Node):
    """A source that starts fine and raises on its first `produce`, every life: it becomes
    READY, then crash-loops until the supervisor gives up on it during the run."""

    outputs = {"out": OutputSpec(kind="tensor")}

    def start(self) -> None:
        self.next_due_ns = 0

    def produce(self, now_ns: int) -> Iterable[Out] | None:
        raise RuntimeError("simulated crash in produce")
