"""The node contract: logic without sockets.

A node is a class that declares its ports and implements `step` (and `produce` for
sources). The engine (`sensorfuse.engine.runtime`) owns the sockets, the loop, stamping of
`seq`/`t_pub_ns`, heartbeats and counters; tests drive a node directly with
`sensorfuse.engine.testing.NodeHarness`, and the very same class runs as its own process.

Example::

    class Relay(Node):
        '''Pass every input message through unchanged.'''
        inputs = {"in": InputSpec(policy="block")}
        outputs = {"out": OutputSpec(kind="any")}

        def step(self, port: str, msg: Message) -> list[Out]:
            return [Out.passthrough("out", msg)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import msgspec

from sensorfuse.engine import params as params_mod
from sensorfuse.engine import wire
from sensorfuse.engine.clock import Clock

Policy = Literal["latest", "drop_oldest", "block"]
POLICIES: tuple[str, ...] = ("latest", "drop_oldest", "block")


@dataclass(frozen=True)
class InputSpec:
    """A declared input port. The graph may override `policy` and `queue` per use.

    - ``latest``: keep only the newest message (camera frames for a slow model).
    - ``drop_oldest``: a bounded queue of `queue` messages; overflow evicts the oldest.
    - ``block``: lock-step; the publisher waits for this consumer (replay at max rate).
    Every message evicted by a policy is counted with the reason ``overflow``.
    """

    kind: str = "any"
    #: None: take the stream table's default for the wired stream (engine.streams).
    policy: Policy | None = None
    queue: int | None = None
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class OutputSpec:
    """A declared output port and the message kind it carries (`any` for pass-through)."""

    kind: str
    doc: str = ""


@dataclass
class Out:
    """One message a node wants published; the engine adds stream, seq, t_pub_ns, src, session."""

    port: str
    kind: str
    data: Any
    t_ns: int
    layout: str | None = None
    encoding: str | None = None
    rate: int | None = None
    sample0: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Replay only: publish with this recorded header's seq, t_ns, src and session
    #: instead of the engine's own stamps (the player republishes logs exactly).
    replay_header: wire.Header | None = None

    @classmethod
    def tensor(cls, port: str, array: Any, t_ns: int, *, layout: str | None = None, **meta: Any) -> Out:
        return cls(port, wire.KIND_TENSOR, array, t_ns, layout=layout, meta=meta)

    @classmethod
    def audio(cls, port: str, samples: Any, t_ns: int, *, rate: int, sample0: int, **meta: Any) -> Out:
        return cls(port, wire.KIND_AUDIO, samples, t_ns, layout="TC", rate=rate, sample0=sample0, meta=meta)

    @classmethod
    def record(cls, port: str, record: Any, t_ns: int, **meta: Any) -> Out:
        return cls(port, wire.KIND_RECORD, record, t_ns, meta=meta)

    @classmethod
    def text(cls, port: str, text: str, t_ns: int, **meta: Any) -> Out:
        return cls(port, wire.KIND_BYTES, text.encode("utf-8"), t_ns, encoding="utf-8", meta=meta)

    @classmethod
    def watermark(cls, port: str, t_ns: int) -> Out:
        """An `idle` on `port` now, carrying the watermark `t_ns` (no later message of the
        stream has a capture time below it), in line with the data: for a source that
        knows its stream ahead (the replay player), so consumers need not wait for the
        runtime's idle period. It uses up no seq."""
        return cls(port, wire.KIND_IDLE, None, t_ns)

    @classmethod
    def passthrough(cls, port: str, msg: wire.Message) -> Out:
        """Republish a received message's content and capture time on another port."""
        h = msg.header
        if h.kind in (wire.KIND_TENSOR, wire.KIND_AUDIO):
            data: Any = msg.array
        elif h.kind == wire.KIND_RECORD:
            data = msg.record
        else:
            data = msg.data
        return cls(
            port, h.kind, data, h.t_ns, layout=h.layout, encoding=h.encoding, rate=h.rate, sample0=h.sample0,
            meta=dict(h.meta),
        )


class NodeContext:
    """What a node may use from the engine: identity, the session clock, counters, logging."""

    def __init__(
        self,
        name: str,
        session: str,
        clock: Clock,
        counters: Any = None,
        *,
        inputs: dict[str, str] | None = None,
        outputs: dict[str, str] | None = None,
        run_dir: str | None = None,
        restarts: int = 0,
        blocking: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        #: how often the supervisor restarted this node in this run (0: its first start); a
        #: sink truncates its file only on the first start, not over its crashed predecessor's
        self.restarts = restarts
        #: the graph's run directory (status.json, fingerprint.json); None outside a graph.
        self.run_dir = run_dir
        self.session = session
        self.clock = clock
        #: port -> stream as wired by the graph (what "*" ports resolved to).
        self.inputs: dict[str, str] = dict(inputs or {})
        self.outputs: dict[str, str] = dict(outputs or {})
        #: input ports with policy `block` (lock-step): holding one back (`Node.accepts`)
        #: back-pressures its publisher instead of losing anything
        self.blocking: frozenset[str] = frozenset(blocking)
        self.log = logging.getLogger(f"sensorfuse.{name}")
        self._counters = counters
        self.rejected: dict[tuple[str, str], int] = {}
        #: set by the runtime: sends a heartbeat saying what the node is busy with and for
        #: how many more seconds (None outside a graph).
        self.keepalive: Callable[[str, float], None] | None = None
        #: what the node could not write (file, device) -> the error; see `write_failed`
        self.write_errors: dict[str, str] = {}

    def reject(self, stream: str, reason: str, detail: str = "") -> None:
        """Count one input the node refused (bad content, wrong shape, NaN ...), with a reason."""
        key = (stream, reason)
        self.rejected[key] = self.rejected.get(key, 0) + 1
        if self._counters is not None:
            self._counters.count(stream, "rejected", reason)
        if detail:
            self.log.warning("%s rejected (%s): %s", stream, reason, detail)

    def wait(self, done: Callable[[], bool], timeout_s: float, why: str) -> bool:
        """Wait up to `timeout_s` for `done()` while the supervisor keeps hearing from the
        node: a long wait (finalising a file on a slow disk) is not a hang, and at the stop
        deadline the node gets the time it declared. True if `done()` came true."""
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.keepalive is not None:
                self.keepalive(why, left)
            time.sleep(min(0.05, left))
        return True

    def write_failed(self, target: str, error: str) -> None:
        """Report that writing `target` (a file, a device) failed; the node logs it its own way
        and may go on (counting what it cannot write as rejected). The supervisor sees the
        report in the metrics, names it when the run ends and exits 1: the output is incomplete."""
        self.write_errors[target] = error
        if self._counters is not None:
            self._counters.write_failed(target, error)

    def gauge(self, name: str, value: float) -> None:
        """Report a node-specific measurement (e.g. clock drift ppm) in the metrics stream."""
        if self._counters is not None:
            self._counters.gauge(name, value)


class Node:
    """Base class of every node kind. Subclasses override the class attributes and methods."""

    inputs: ClassVar[dict[str, InputSpec]] = {}
    outputs: ClassVar[dict[str, OutputSpec]] = {}

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        """Node parameters from the graph YAML; subclasses define their own Struct."""

    #: Sources set this to the session time (ns) at which `produce` should next run.
    next_due_ns: int | None = None

    def __init__(self, params: Any, ctx: NodeContext) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def parse_params(cls, raw: dict[str, Any] | None) -> Any:
        """`Params` from the graph's dict; `params.ParamsError` (a StartupError) naming the
        field and the value when they do not fit."""
        return params_mod.parse(cls.Params, raw)

    @classmethod
    def check(cls, params: Any) -> None:
        """Check what the node needs beyond its parameters (files it reads, a model's
        manifest) before any process starts: `sensorfuse graph check` and `run` call it for
        the nodes placed on the local host. Raise `UsageError` with one line. Keep it cheap
        (no model loading); `start` still fails on what only opening can tell."""

    def start(self) -> None:
        """Open devices and load models. Raising here fails the node before READY: a
        configuration error (`StartupError`, `OSError`, `ValueError`, `KeyError`,
        `ImportError`) for good, anything else as a crash that is retried (docs/engine.md)."""

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        """Handle one input message; return the messages to publish."""
        return ()

    def accepts(self, port: str) -> bool:
        """Whether the node takes the next message of `port` now. False leaves it queued (the
        runtime steps the other inputs meanwhile): a node that buffers one input until
        another catches up (perceive's frames waiting for their ticks) says False when its
        buffer is full instead of evicting; on a `block` input that back-pressures the
        publisher, so lock-step replay loses nothing. Never False for every input at once."""
        return True

    def produce(self, now_ns: int) -> Iterable[Out] | None:
        """Sources only: called when `now_ns >= next_due_ns`. Return None when exhausted."""
        return None

    def end(self, port: str) -> Iterable[Out]:
        """The producer of `port`'s stream has finished (end-of-stream); others may go on."""
        return ()

    def watermark_ns(self, port: str) -> int | None:
        """Output side: the watermark of `port`'s stream for the `idle` the runtime sends while
        it is quiet, a promise that no later message on it (what the node has not yet
        returned) has a capture time below this. None: the capture time of its last message
        (true for a stream stamped in time order). Called between the node's own calls, never
        while what it returned is still being published."""
        return None

    def watermark(self, port: str, seq: int, t_ns: int) -> Iterable[Out]:
        """Input side: `port`'s producer promises that no message from `seq` on (the next
        one it will send) has a capture time below `t_ns`; delivered after every message of
        `port` received before it has been stepped (docs/time.md, "Watermarks")."""
        return ()

    def snapshot(self, port: str) -> Iterable[Out]:
        """State a subscriber that joins `port` late should get first (docs/protocol.md, "State
        on join"): e.g. the events that are open now. The runtime publishes what this returns
        marked `meta.snapshot`, to every subscriber; graph nodes never see them."""
        return ()

    def finish(self) -> Iterable[Out]:
        """All inputs have ended (or a source is exhausted): flush what is pending."""
        return ()

    def stop(self) -> None:
        """Release devices, files and models. Called on every exit path."""

    @classmethod
    def is_source(cls) -> bool:
        return not cls.inputs and cls.produce is not Node.produce
