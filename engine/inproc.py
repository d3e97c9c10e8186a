"""Run a graph from Python and read its streams, or feed it: `sensorfuse.run`.

    with sensorfuse.run("demo", set={"player.path": "s.mcap", "player.rate": "max"}) as g:
        for event in g.events():            # perceive/events records, until end of stream
            print(event["type"], event["phase"])
    print(g.wait().exit_code)

The graph is planned and supervised exactly as `sensorfuse run` does it (`cli.plan_run`,
`Supervisor`): one process per node, readiness, restarts, ordered shutdown. The streams
the caller reads (`streams=`, default `perceive/events`) are declared to the planner as
consumers of the graph, so their producers wait for them before READY (nothing lost at the
start) and keep their end of stream for them; with `policy="block"` (the default) the
graph waits for a caller that reads slowly, as it waits for its own lock-step sinks.

Why the supervisor runs in a background thread of the caller's process, not in a child
process: the plan with the caller's consumers declared in it is the one the supervisor
writes for its nodes (a child `sensorfuse run` would plan again without them); the
outcome (exit code, problems, the final status) is read from the `Supervisor` object, not
parsed back from a file; and the nodes still get their own process groups, so a Ctrl-C
in the caller's terminal reaches only the caller, whose `with` block then stops the graph
in order. The thread only ever touches its own sockets: the caller asks it to stop
through a `threading.Event` (`Supervisor.run(stop=...)`). Nodes get SIGTERM when the
thread that started them ends (Linux ties PR_SET_PDEATHSIG to the thread), so the thread
lives until every node is gone, and a caller killed outright takes its nodes with it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from sensorfuse.engine import wire
from sensorfuse.engine.clock import Clock
from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.engine.graph import GraphPlan
from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.node import Out
from sensorfuse.engine.transport import Publisher, Subscriber

#: The name this process's consumers and feeds go by in the graph (readiness tokens, `src`).
CALLER = "sensorfuse.run"
EVENTS = "perceive/events"
_DATA_KINDS = frozenset({wire.KIND_TENSOR, wire.KIND_AUDIO, wire.KIND_RECORD, wire.KIND_BYTES})
#: How long one wait for a message lasts before the loop looks at whether the graph ended.
_POLL_MS = 100


@dataclass
class Outcome:
    """How a run ended: `exit_code` as `sensorfuse run` would exit (docs/engine.md, "Exit
    codes"), one line per reason it is not 0, the final status (as `sensorfuse status
    --json`) and the one-screen summary `sensorfuse run` prints ("" if the graph never started)."""

    exit_code: int
    problems: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run(graph: str | os.PathLike[str] | Mapping[str, Any], *, set: Mapping[str, Any] | None = None,  # noqa: A002
        duration: float | None = None, streams: Sequence[str] | None = None, policy: str = "block",
        queue: int = 256, run_dir: str | None = None, cwd: str | None = None, quiet: bool = True) -> GraphRun:
    """Start `graph` (a built-in graph name like `sensorfuse run`'s, a YAML path, or a graph
    as a dict) and return its handle, a context manager; leaving the `with` block stops it.

    - `set`: `{"NODE.PARAM": value}`, the overrides `--set NODE.PARAM=VALUE` makes, with
      Python values (`{"perceive.rules": {...}}`), checked with the rest of the graph;
    - `duration`: stop after this many seconds (`--duration`);
    - `streams`: the streams to read with `events()` / `stream()`, subscribed before the graph
      starts (default: `perceive/events` if the graph has it); `policy` and `queue` are their
      input policy and queue (`block`: the graph waits for this caller, nothing dropped;
      `drop_oldest` / `latest`: drops are counted, the graph never waits);
    - `run_dir`, `cwd`: as `--run-dir`, and the nodes' working directory;
    - `quiet`: no READY line on stderr (a node that fails at start is named there either way).

    A bad graph, override or stream raises `UsageError` before anything starts.
    """
    from sensorfuse.engine.cli import plan_run

    overrides = []
    for key, value in (set or {}).items():
        node, dot, param = str(key).partition(".")
        if not dot or not node or not param:
            raise UsageError(f"set= wants 'NODE.PARAM' keys, got {key!r}")
        overrides.append((node, param, value))
    source = dict(graph) if isinstance(graph, Mapping) else graph
    plan, session = plan_run(source, overrides, run_dir=run_dir, what="set=")
    if streams is None:
        streams = [EVENTS] if plan.producers.get(EVENTS) else []
    return GraphRun(plan, session, streams=list(streams), policy=policy, queue=queue, duration=duration, cwd=cwd,
                    quiet=quiet)


def declare_consumer(plan: GraphPlan, stream: str, *, policy: str, queue: int) -> str:
    """Count one more consumer of `stream` in `plan`, as the planner counts a node input
    (readiness waits for it; `block` makes its publisher lock-step); returns the endpoint."""
    producer = plan.producers.get(stream)
    if not producer:
        produced = sorted(s for s, p in plan.producers.items() if p)
        raise UsageError(f"no node of graph {plan.name!r} publishes stream {stream!r}; it has {', '.join(produced)}")
    np_ = plan.nodes[producer]
    np_.subscribers[stream] += 1
    np_.nodrop[stream] = np_.nodrop[stream] or policy == "block"
    np_.hwm[stream] = max(np_.hwm[stream], queue)
    return np_.bind[stream][0]  # the run directory's ipc endpoint comes first


class GraphRun:
    """A running graph (see `run`). Iterate `events()` or `stream(name)`, push with `feed(name)`,
    end with `wait()` (run to the end) or `stop()`; `with` stops it on the way out."""

    def __init__(self, plan: GraphPlan, session: str, *, streams: list[str], policy: str, queue: int,
                 duration: float | None, cwd: str | None, quiet: bool) -> None:
        from sensorfuse.engine.supervisor import Supervisor

        self.plan = plan
        self.session = session
        self.run_dir = plan.run_dir
        self.counters = Counters()
        self._zctx = zmq.Context()
        self._subs: dict[str, Subscriber] = {}
        self._feeds: dict[str, Feed] = {}
        self._ended: set[str] = set()  # streams read to their end of stream
        try:
            for stream in dict.fromkeys(streams):
                endpoint = declare_consumer(plan, stream, policy=policy, queue=queue)
                self._subs[stream] = Subscriber(self._zctx, stream, stream, [endpoint], policy=policy, queue=queue,
                                                counters=self.counters, consumer=f"{CALLER}/{stream}")
            self._sup = Supervisor(plan, session=session, quiet=quiet, cwd=cwd)
        except BaseException:
            self._close_sockets()
            raise
        self._stop = threading.Event()
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._supervise, args=(duration,), name=f"sensorfuse {plan.name}",
                                        daemon=True)
        atexit.register(self.close)
        self._thread.start()

    # -- the supervisor thread --------------------------------------------------------------
    def _supervise(self, duration: float | None) -> None:
        from sensorfuse.engine import summary as summary_mod

        sup = self._sup
        code = 1
        try:
            code = sup.run(duration_s=duration, stop=self._stop)
        except BaseException as exc:  # handed to the caller by `wait`
            self._error = exc
        finally:
            sup.close()
        problems = [f"node {n!r} failed at start: {sup.nodes[n].last_error or 'startup error'}"
                    for n in sup.start_failed] + sup.problems()
        status = sup.status()
        summary = summary_mod.render(status, exit_code=code) if sup.started else ""
        self._outcome = Outcome(code, problems, status, summary)

    # -- reading ------------------------------------------------------------------------------
    def stream(self, name: str) -> Iterator[wire.Message]:
        """The messages of stream `name` (declared in `run(streams=...)`), decoded
        (`msg.header`, `msg.array`, `msg.record`, `msg.text`), until its end of stream or the
        end of the run. Raises SensorfuseError if the run failed before the stream ended."""
        sub = self._subs.get(name)
        if sub is None and name in self._ended:
            return
        if sub is None:
            raise UsageError(f"stream {name!r} was not declared: sensorfuse.run(..., streams=[{name!r}, ...]) "
                             "subscribes before the graph starts")
        while not sub.sock.closed:  # closed: `stop` was called
            msg = sub.pop()
            if msg is None:
                if self._thread.is_alive():
                    if sub.sock.poll(_POLL_MS):
                        sub.drain()
                    continue
                if sub.drain():  # the graph is gone: what was already delivered, then the end
                    continue
                self._end_without_eos(name)
                return
            kind = msg.header.kind
            if kind == wire.KIND_EOS:
                self._unsubscribe(name)  # a publisher keeps its end of stream until its consumers leave
                return
            # Snapshots repeat open events for late subscribers; this one has read from the start.
            if kind in _DATA_KINDS and not msg.header.meta.get("snapshot"):
                yield msg

    def events(self) -> Iterator[dict[str, Any]]:
        """The event records (dicts, docs/protocol.md "Events") of `perceive/events`."""
        for msg in self.stream(EVENTS):
            yield msg.record

    def _end_without_eos(self, name: str) -> None:
        outcome = self.wait()
        if not outcome.ok:
            raise SensorfuseError(f"graph {self.plan.name!r} ended before the end of {name!r} "
                                  f"(exit code {outcome.exit_code}): {'; '.join(outcome.problems) or 'see stderr'}")

    def _unsubscribe(self, name: str) -> None:
        self._ended.add(name)
        sub = self._subs.pop(name, None)
        if sub is not None:
            sub.close()

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, stream: str, *, src: str = CALLER) -> Feed:
        """A publisher for `stream`, one of the graph's `external.inputs`: binds its endpoint
        (once per stream) and stamps every message as a node of this run would."""
        feed = self._feeds.get(stream)
        if feed is not None:
            return feed
        endpoint = self.plan.decl.external.inputs.get(stream)
        if endpoint is None:
            declared = ", ".join(sorted(self.plan.decl.external.inputs)) or "none"
            raise UsageError(f"stream {stream!r} is not one of graph {self.plan.name!r}'s external.inputs "
                             f"({declared})")
        inputs = [ip for np_ in self.plan.nodes.values() for ip in np_.inputs if ip.stream == stream]
        try:
            pub = Publisher(self._zctx, stream, [endpoint], nodrop=any(ip.policy == "block" for ip in inputs),
                            hwm=max([ip.queue for ip in inputs] + [2]), counters=self.counters.streams[stream])
        except zmq.ZMQError as exc:
            raise SensorfuseError(f"cannot bind {endpoint} for stream {stream!r}: {exc}") from None
        feed = self._feeds[stream] = Feed(pub, consumers=len(inputs), session=self.session, src=src,
                                          running=self._thread.is_alive,
                                          startup_timeout_s=self.plan.decl.supervisor.startup_timeout_s)
        return feed

    # -- ending -------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> Outcome:
        """Wait for the run to end by itself (every source exhausted, `duration`, or `stop`);
        messages of declared streams nobody reads are discarded meanwhile, so an unread
        lock-step stream cannot hold the graph. Raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"graph {self.plan.name!r} still running after {timeout} s")
            for sub in list(self._subs.values()):
                sub.drain()
                sub.pending.clear()
            self._thread.join(_POLL_MS / 1000)
        if self._error is not None:
            raise SensorfuseError(f"supervisor of graph {self.plan.name!r} failed: {self._error}") from self._error
        assert self._outcome is not None
        return self._outcome

    def stop(self) -> Outcome:
        """Stop the graph in order, as Ctrl-C stops `sensorfuse run`, and return its outcome.
        Ctrl-C while waiting here skips the drain, as a second Ctrl-C does."""
        interrupted = False
        for sub in self._subs.values():  # a caller that stopped reading must not hold a lock-step graph
            sub.close()
        self._subs.clear()
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._thread.join(_POLL_MS / 1000)
            except KeyboardInterrupt:
                interrupted = True
                if self._sup.stop_requested:
                    self._sup.shutdown_at = -1e9  # what the CLI's second Ctrl-C does: kill at once
        if interrupted:
            raise KeyboardInterrupt
        return self.wait()

    def close(self) -> None:
        """Stop the graph (if running) and release this handle's sockets."""
        atexit.unregister(self.close)
        try:
            if self._thread.is_alive():
                self.stop()
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()
        for feed in self._feeds.values():
            feed.close()
        self._feeds.clear()
        self._zctx.term()

    def __enter__(self) -> GraphRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Feed:
    """Publishes into one external input stream of a running graph with the headers its own
    nodes write: `seq` +1 per message from 0, `t_ns` the capture time on the engine's clock
    (CLOCK_MONOTONIC, `time.monotonic_ns()`; default: the moment of the call), `t_pub_ns`,
    `src`, the run's `session`. The first message waits until every node reading the stream
    has subscribed (ZeroMQ drops what is sent before); a lock-step (`block`) reader makes
    `send` wait for room."""

    def __init__(self, pub: Publisher, *, consumers: int, session: str, src: str, running: Callable[[], bool],
                 startup_timeout_s: float) -> None:
        self.stream = pub.stream
        self._pub = pub
        self._consumers = consumers
        self._headers = wire.StreamStamper(pub.stream, src=src, session=session)
        self._running = running
        self._startup_timeout_s = startup_timeout_s
        self._connected = False

    @property
    def seq(self) -> int:
        """The next data message's seq."""
        return self._headers.seq

    def frame(self, image: np.ndarray, *, t_ns: int | None = None, layout: str = "HWC/bgr8") -> None:
        """An image (H x W x 3 uint8 BGR by default, as the camera node publishes)."""
        self.send(Out.tensor("", image, self._stamp(t_ns), layout=layout))

    def tensor(self, array: np.ndarray, *, t_ns: int | None = None, layout: str | None = None) -> None:
        self.send(Out.tensor("", array, self._stamp(t_ns), layout=layout))

    def audio(self, samples: np.ndarray, *, rate: int, t_ns: int) -> None:
        """A block of samples (frames x channels, float32 in [-1, 1]); `t_ns` is the capture
        time of its first sample (required: only the capture side knows it). `sample0`
        counts the samples sent before."""
        samples = np.asarray(samples)
        samples = samples.reshape(-1, 1) if samples.ndim == 1 else samples
        self.send(Out.audio("", samples, t_ns, rate=rate, sample0=0))  # sample0: the stamper's

    def text(self, text: str, *, t_ns: int | None = None) -> None:
        self.send(Out.text("", text, self._stamp(t_ns)))

    def record(self, record: Any, *, t_ns: int | None = None) -> None:
        self.send(Out.record("", record, self._stamp(t_ns)))

    def end(self) -> None:
        """End of stream: the nodes reading it finish once they have handled everything."""
        self._transmit(self._headers.marker(wire.KIND_EOS), data=False)

    def send(self, out: Out) -> None:
        """One message built like a node's output (`sensorfuse.engine.node.Out`; its port is
        ignored, `seq`, `sample0`, `src`, `session` are this stream's)."""
        if out.kind in wire.MARKER_KINDS:
            self._transmit(self._headers.marker(out.kind, meta=out.meta), data=False)
            return
        fields = {"layout": out.layout, "encoding": out.encoding, "rate": out.rate, "meta": out.meta}
        self._transmit(self._headers.data(out.kind, out.data, out.t_ns, **fields), data=True)

    def _transmit(self, frames: list[Any], *, data: bool) -> None:
        self._wait_connected()
        while not self._pub.send(frames, block_until=time.monotonic() + _POLL_MS / 1000, data=data):
            if not self._running():
                raise SensorfuseError(f"graph ended: nothing reads {self.stream!r} any more")

    @staticmethod
    def _stamp(t_ns: int | None) -> int:
        return Clock.now_ns() if t_ns is None else int(t_ns)

    def _wait_connected(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._connected:
            if self._pub.graph_consumers() >= self._consumers:
                self._connected = True
            elif not self._running():
                raise SensorfuseError(f"graph ended before its readers of {self.stream!r} subscribed")
            elif time.monotonic() > deadline:
                raise SensorfuseError(f"the graph's readers of {self.stream!r} did not subscribe within "
                                      f"{self._startup_timeout_s} s")
            else:
                self._pub.sock.poll(10)

    def close(self) -> None:
        self._pub.close(linger_ms=0)
