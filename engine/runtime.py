"""Runs one node of a graph as its own process: sockets, loop, stamping, heartbeats.

Lifecycle: load plan → construct node → bind outputs, connect inputs → `node.start()` →
wait until every declared consumer has subscribed → READY → wait for START → loop →
EOS on every output → DONE. SIGINT/SIGTERM or a STOP from the supervisor ends the loop
cleanly; an exception in node code ends the process with exit code 1 so the supervisor
restarts it. A configuration error before READY (`CONFIG_ERRORS` raised while the node
is built or in its `start`: bad params, a path that cannot be opened, a missing module)
prints one line naming the node and the cause and exits with code 3: not retried.

Invoked by the supervisor as ``python -m sensorfuse.engine.runtime RUN_DIR NODE SESSION RESTARTS``.
Under Ray (docs/cluster.md) the plan names the supervisor's tcp control endpoint
(`control`) and says the CurveZMQ keys come on stdin (`keys_from: stdin`), never from a
file or the command line; a `connect` control message points an input at the new
address of a producer that moved to another host.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterable
from typing import Any

import zmq

from sensorfuse.engine import control, fingerprint, wire
from sensorfuse.engine.clock import Clock
from sensorfuse.engine.errors import EXIT_CRASH, EXIT_OK, EXIT_STARTUP, StartupError
from sensorfuse.engine.graph import GraphPlan, InputPlan, NodePlan, load_plan_json, resolve_kind
from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.node import Node, NodeContext, Out
from sensorfuse.engine.security import CurveKeys, apply_client
from sensorfuse.engine.shm import PoolReader, ShmOutput, pool_name
from sensorfuse.engine.transport import Publisher, Subscriber

#: Messages handled per input per loop turn before control and heartbeats get a look.
STEP_BATCH = 16
#: What a node's constructor or `start` raises when its configuration is wrong: retrying
#: cannot help, so these end the node with `EXIT_STARTUP` (docs/engine.md, "Startup errors").
CONFIG_ERRORS: tuple[type[Exception], ...] = (StartupError, OSError, ValueError, KeyError, ImportError)


def startup_error(exc: Exception) -> StartupError:
    """`exc`, a configuration error, as a one-line StartupError (the type named unless it is one)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return StartupError(text if isinstance(exc, StartupError) else f"{type(exc).__name__}: {text}")


class NodeRunner:
    def __init__(self, plan: dict[str, Any], node_name: str, *, session: str, restarts: int = 0,
                 keys: CurveKeys | None = None) -> None:
        self.plan = plan
        #: handed over by the launcher (Ray); else loaded from `keys_dir` in `setup`
        self.keys = keys
        self.restarts = restarts
        self.np: dict[str, Any] = plan["nodes"][node_name]
        self.name = node_name
        self.session = session
        self.clock = Clock()
        self.counters = Counters()
        self.zctx = zmq.Context()
        self.control = self.zctx.socket(zmq.DEALER)
        self.control.identity = node_name.encode("utf-8")
        self.control.linger = 500
        control_ep = plan.get("control") or control.control_endpoint(plan["run_dir"])
        apply_client(self.control, control_ep, self.keys)
        self.control.connect(control_ep)
        sup = plan["decl"]["supervisor"]
        self.heartbeat_interval = float(sup["heartbeat_interval_s"])
        self.startup_timeout = float(sup["startup_timeout_s"])
        self.drain_timeout = float(sup.get("drain_timeout_s", 10.0))
        self.eos_linger = float(sup.get("eos_linger_s", 5.0))
        self.idle_s = float(sup.get("idle_s", 1.0))
        #: between START and the end of stream: idles go out and missing consumers count
        self.running = False
        self.stopping = False
        self.publishers: dict[str, Publisher] = {}
        self.subscribers: list[Subscriber] = []
        #: input sockets the loop polls now (not those whose full queue the node holds back)
        self._polled: set[zmq.Socket] = set()
        self.out_seq: dict[str, int] = {}
        self.last_t_ns: dict[str, int] = {}
        #: inside `publish`: the node's `watermark_ns` may not count what is still unsent
        self._publishing = False
        #: stream -> (src, session) of the last message: a replayed stream's end keeps them
        self.last_origin: dict[str, tuple[str, str]] = {}
        self._unsubs_at_eos: dict[str, int] = {}
        self._last_hb = 0.0
        self._busy_why: str | None = None
        self._joins_seen: dict[str, int] = {}
        self._last_hb_snapshot = time.monotonic()
        self.node: Node | None = None

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        _, cls = resolve_kind(self.np["cls_path"])
        params = cls.parse_params(self.np["params"])  # a ParamsError (StartupError) names field and value
        keys = self.keys or (CurveKeys.load(self.plan["keys_dir"]) if self.plan.get("keys_dir") else None)
        outside: dict[str, list[str]] = self.np.get("outside") or {}
        for port, stream in self.np["outputs"].items():
            self.publishers[port] = Publisher(
                self.zctx, stream, [ep for ep in self.np["bind"][stream] if ep not in outside.get(stream, ())],
                nodrop=self.np["nodrop"][stream], hwm=self.np["hwm"][stream], keys=keys,
                counters=self.counters.streams[stream], outside=outside.get(stream, ()),
                shm=self._shm_output(stream),
            )
        for ip in self.np["inputs"]:
            ip = InputPlan(**ip)
            reader = PoolReader(ip.shm_row, ip.policy == "block") if ip.shm_row >= 0 else None
            self.subscribers.append(
                Subscriber(self.zctx, ip.port, ip.stream, ip.endpoints, policy=ip.policy, queue=ip.queue,
                           counters=self.counters, keys=keys, consumer=f"{self.name}/{ip.port}", idle_s=self.idle_s,
                           shm=reader)
            )
        ctx = NodeContext(self.name, self.session, self.clock, self.counters,
                          inputs={ip["port"]: ip["stream"] for ip in self.np["inputs"]}, outputs=self.np["outputs"],
                          run_dir=self.plan["run_dir"], restarts=self.restarts,
                          blocking={ip["port"] for ip in self.np["inputs"] if ip["policy"] == "block"})
        ctx.keepalive = self.keepalive
        try:
            self.node = cls(params, ctx)
            self.node.start()
        except CONFIG_ERRORS as exc:
            raise startup_error(exc) from None

    def _shm_output(self, stream: str) -> ShmOutput | None:
        """The stream's pool when same-host graph consumers read it; a restart is a new
        generation (a new pool: consumers map it with its first descriptor)."""
        cfg = (self.np.get("shm") or {}).get(stream)
        if cfg is None:
            return None
        return ShmOutput(pool_name(self.plan["run_dir"], self.name, stream, self.restarts), slots=cfg["slots"],
                         slot_bytes=cfg["slot_bytes"], block=cfg["block"], min_bytes=cfg["min_bytes"],
                         generation=self.restarts)

    def bound(self) -> dict[str, str]:
        """stream -> the address its graph socket bound last (the tcp one where there is one)."""
        return {p.stream: p.sock.getsockopt(zmq.LAST_ENDPOINT).decode() for p in self.publishers.values()}

    def wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self.stopping:
            # graph consumers only: an outside subscriber connected early must not stand in
            # for one of ours that is still connecting (its first messages would be lost)
            missing = {
                p.stream: self.np["subscribers"][p.stream] - n
                for p in self.publishers.values()
                if (n := p.graph_consumers()) < self.np["subscribers"][p.stream]
            }
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumers never subscribed: {missing}")
            self._service_control(timeout_ms=10)

    # -- control -------------------------------------------------------------------------
    def send_control(self, msg: dict[str, Any]) -> None:
        self.control.send(control.encode(msg))

    def _service_control(self, timeout_ms: int = 0) -> str | None:
        """Handle pending control messages; returns 'start' if one arrived."""
        got = None
        if self.control.poll(timeout_ms, zmq.POLLIN):
            while True:
                try:
                    msg = control.decode(self.control.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if msg["type"] == "stop":
                    self.stopping = True
                elif msg["type"] == "start":
                    got = "start"
                elif msg["type"] == "connect":
                    for sub in self.subscribers:
                        if sub.port == msg.get("port"):
                            sub.reconnect(list(msg.get("endpoints") or []))
        return got

    def heartbeat(self, force: bool = False, busy: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        self.send_idles()  # on their own period, which may be shorter than the heartbeats'
        if not force and now - self._last_hb < self.heartbeat_interval:
            return
        for p in self.publishers.values():
            missing = self.np["subscribers"][p.stream] - p.graph_consumers()
            p.counters.consumers_missing = max(0, missing) if self.running else 0
            p.counters.shm = p.shm.stats() if p.shm is not None else {}
        for sub in self.subscribers:
            if sub.shm is not None:
                sub.stats.shm = {"plane": "shm", "pinned": len(sub.shm.pins), "unpinned": sub.shm.unpinned}
        metrics = self.counters.snapshot(now - self._last_hb_snapshot)
        self._last_hb = self._last_hb_snapshot = now
        msg: dict[str, Any] = {"type": "heartbeat", "metrics": metrics}
        if busy is not None:
            msg["busy"] = busy
        self.send_control(msg)

    def start_running(self) -> None:
        """START arrived: inputs are judged for liveness and quiet outputs send idles from now."""
        self.running = True
        for sub in self.subscribers:
            sub.arm_liveness()
        self._joins_seen = {pub.stream: pub.joins for pub in self.publishers.values()}

    def send_snapshots(self) -> None:
        """A subscriber joined an output since the last look: publish the node's `snapshot`
        of that port (e.g. the open events), marked, so a late joiner learns the state."""
        assert self.node is not None
        for port, pub in self.publishers.items():
            if pub.joins > self._joins_seen.get(pub.stream, 0):
                self._joins_seen[pub.stream] = pub.joins
                self.publish(list(self.node.snapshot(port)))

    def send_idles(self) -> None:
        """An `idle` on every output that has sent nothing for `idle_s` (docs/protocol.md):
        its seq is the next data message's, its t_ns the stream's watermark (the node's
        `watermark_ns`, except while what the node returned is still being published)."""
        if not self.running:
            return
        now = time.monotonic()
        for port, pub in self.publishers.items():
            if now - pub.last_send < self.idle_s:
                continue
            promised = None if self._publishing or self.node is None else self.node.watermark_ns(port)
            pub.send_idle(self._idle_frames(pub, promised))

    def _idle_frames(self, pub: Publisher, t_ns: int | None) -> list[Any]:
        src, session = self.last_origin.get(pub.stream, (self.name, self.session))
        return wire.encode_message(
            pub.stream, wire.KIND_IDLE, None, seq=self.out_seq.get(pub.stream, 0),
            t_ns=self.last_t_ns.get(pub.stream, 0) if t_ns is None else t_ns, t_pub_ns=self.clock.now_ns(),
            src=src, session=session, meta={"idle_ms": round(self.idle_s * 1000)})

    def keepalive(self, why: str, left_s: float) -> None:
        """Heartbeats during a node's long wait (`NodeContext.wait`), saying for how long
        more: the supervisor does not take it for hung, nor kill it at the stop deadline
        before that time is up."""
        new = why != self._busy_why  # the first one goes at once: the stop deadline may be near
        self._busy_why = why
        self.heartbeat(force=new, busy={"why": why, "left_s": round(left_s, 3)})

    # -- data ----------------------------------------------------------------------------
    def publish(self, outs: Iterable[Out] | None) -> None:
        self._publishing = True
        try:
            for out in outs or ():
                if not self._publish_one(out):
                    return
        finally:
            self._publishing = False

    def _publish_one(self, out: Out) -> bool:
        """Send one of the node's messages; False when STOP came while it waited."""
        pub = self.publishers.get(out.port)
        if pub is None:
            declared = type(self.node).outputs
            if out.port in declared or "*" in declared:
                return True  # declared but not wired in this graph: nobody listens
            raise KeyError(f"node {self.name!r} published on undeclared port {out.port!r}")
        data = out.kind != wire.KIND_IDLE
        if not data:  # `Out.watermark`: an idle in line with the data, using up no seq
            frames = self._idle_frames(pub, out.t_ns)
        else:
            rh = out.replay_header
            if rh is not None:
                seq, t_ns, src, session = rh.seq, rh.t_ns, rh.src, rh.session
            else:
                seq, t_ns, src, session = self.out_seq.get(pub.stream, 0), out.t_ns, self.name, self.session
            self.out_seq[pub.stream] = seq + 1
            self.last_t_ns[pub.stream] = t_ns
            self.last_origin[pub.stream] = (src, session)
            frames = wire.encode_message(
                pub.stream, out.kind, out.data, seq=seq, t_ns=t_ns, t_pub_ns=self.clock.now_ns(), src=src,
                session=session, layout=out.layout, encoding=out.encoding, rate=out.rate, sample0=out.sample0,
                meta=out.meta,
            )
        while not pub.send(frames, block_until=time.monotonic() + self.heartbeat_interval, data=data):
            # Back-pressure from a lock-step consumer: keep heartbeats and STOP flowing.
            self.heartbeat()
            self._service_control()
            if self.stopping:
                return False
        return True

    def send_eos(self) -> None:
        self.running = False
        for pub in self.publishers.values():
            pub.poll_subscriptions()
            self._unsubs_at_eos[pub.stream] = pub.unsubscriptions
            seq = self.out_seq.get(pub.stream, 0)
            # t_ns of an end-of-stream is the stream's last capture time, so receivers that
            # step inputs in capture-time order see it after everything captured before; a
            # replayed stream's end keeps the recorded src and session of its data.
            src, session = self.last_origin.get(pub.stream, (self.name, self.session))
            frames = wire.encode_message(pub.stream, wire.KIND_EOS, None, seq=seq,
                                         t_ns=self.last_t_ns.get(pub.stream, 0),
                                         t_pub_ns=self.clock.now_ns(), src=src, session=session)
            pub.send_final(frames, block_until=time.monotonic() + 1.0)

    def wait_consumers_left(self) -> None:
        """Keep the publishers open until every graph consumer has unsubscribed (it closes
        its socket after handling our end-of-stream), or `drain_timeout_s`, or STOP; then
        until every outside subscriber has left too, or `eos_linger_s`.

        Closing an XPUB right after its last send can lose the tail of what is still queued
        for a slow consumer, whatever the linger: ZeroMQ drops what has not reached the
        kernel by then, `eos` last. Waiting for the consumers to leave is what makes the
        end of a stream arrive; a subscriber that never leaves learns it from the silence
        that follows (docs/protocol.md, "Liveness")."""
        deadline = time.monotonic() + self.drain_timeout
        while not self.stopping and time.monotonic() < deadline:
            waiting = [p for p in self.publishers.values() if not self._consumers_left(p)]
            if not waiting:
                break
            for pub in waiting:
                pub.repeat_final()
            self.heartbeat()
            self._service_control(timeout_ms=10)
        deadline = time.monotonic() + self.eos_linger
        while not self.stopping and time.monotonic() < deadline:
            for pub in self.publishers.values():
                pub.repeat_final()
            outside = sum(p.outside_subscribers() for p in self.publishers.values())
            if not outside:
                return
            self.keepalive(f"delivering the end of stream to {outside} outside subscriber(s)",
                           deadline - time.monotonic())
            self._service_control(timeout_ms=10)

    def _consumers_left(self, pub: Publisher) -> bool:
        pub.poll_subscriptions()
        left_since_eos = pub.unsubscriptions - self._unsubs_at_eos.get(pub.stream, 0)
        # A consumer that died earlier unsubscribed before our eos: nobody left at all counts too.
        return left_since_eos >= self.np["subscribers"][pub.stream] or pub.subscriptions <= pub.unsubscriptions

    def loop(self) -> None:
        node = self.node
        assert node is not None
        is_source = type(node).is_source() and not self.subscribers
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        while not self.stopping:
            timeout_ms = min(self.heartbeat_interval, self.idle_s) * 1000
            if is_source:
                due = node.next_due_ns
                wait_ns = 0 if due is None else due - self.clock.now_ns()
                timeout_ms = min(timeout_ms, max(0.0, wait_ns / 1e6))
            if self._steppable(node):
                timeout_ms = 0
            self._poll_only_unheld(poller, node)
            events = dict(poller.poll(timeout_ms))
            if self.control in events:
                self._service_control()
            for sub in self.subscribers:
                sub.drain()
            self._step_inputs(node)
            self._deliver_watermarks(node)
            if is_source and (node.next_due_ns is None or self.clock.now_ns() >= node.next_due_ns):
                outs = node.produce(self.clock.now_ns())
                if outs is None:
                    break
                self.publish(outs)
            # Every input ended; a node that is not a source and has no inputs at all (a sink
            # wired to nothing) is done at once instead of waiting forever.
            if not is_source and all(s.ended for s in self.subscribers):
                break
            self.heartbeat()
            self.send_snapshots()

    def _step_inputs(self, node: Node) -> None:
        """Step queued messages in capture-time order across inputs, re-draining the sockets
        after every step so a slow `step` never lets a backlog build up behind a dropping
        policy. Event-time order keeps multi-input nodes (the aligner) deterministic when
        inputs are backed up (replay at max rate), whatever the streams' message rates."""
        for _ in range(STEP_BATCH * max(1, len(self.subscribers))):
            ready = self._steppable(node)
            if not ready or self.stopping:
                return
            sub = min(ready, key=lambda s: s.pending[0].header.t_ns)
            msg = sub.pop()
            assert msg is not None
            if msg.header.kind == wire.KIND_EOS:
                sub.ended = True
                self.publish(node.end(sub.port))
                continue
            self._step(node, sub, msg)
            sub.drain()

    def _poll_only_unheld(self, poller: zmq.Poller, node: Node) -> None:
        """A full queue the node holds back (`Node.accepts`) is not polled: its readable
        socket would wake the loop at once, again and again, until the node takes it."""
        for sub in self.subscribers:
            held = sub.full and not node.accepts(sub.port)
            if held and sub.sock in self._polled:
                poller.unregister(sub.sock)
                self._polled.discard(sub.sock)
            elif not held and sub.sock not in self._polled:
                poller.register(sub.sock, zmq.POLLIN)
                self._polled.add(sub.sock)

    def _steppable(self, node: Node) -> list[Subscriber]:
        """Inputs with a queued message the node takes now (`Node.accepts`)."""
        return [s for s in self.subscribers if s.pending and node.accepts(s.port)]

    def _step(self, node: Node, sub: Subscriber, msg: wire.Message) -> None:
        """One message through the node; one whose payload is in shared memory under a
        lease on its slot (skipped, counted `slot_recycled`, when the slot was reused)."""
        if msg.shm is None:
            self.publish(node.step(sub.port, msg))
            return
        lease = sub.hold(msg)
        if lease is None:
            return
        try:
            self.publish(node.step(sub.port, msg))
        finally:
            sub.let_go(msg, lease)

    def _deliver_watermarks(self, node: Node) -> None:
        """Hand the node the watermark of an input's last `idle` once nothing of that input
        is queued any more: then it comes after all the data sent before it."""
        for sub in self.subscribers:
            if sub.watermark is not None and not sub.pending and not self.stopping:
                seq, t_ns = sub.watermark
                sub.watermark = None
                self.publish(node.watermark(sub.port, seq, t_ns))

    def drain_remaining(self) -> None:
        """On STOP: handle what is already queued (no new reads), then finish."""
        assert self.node is not None
        for sub in self.subscribers:
            while (msg := sub.pop()) is not None:
                if msg.header.kind == wire.KIND_EOS:
                    self.publish(self.node.end(sub.port))
                else:
                    self._step(self.node, sub, msg)

    def close(self) -> None:
        for sub in self.subscribers:
            sub.close()
        for pub in self.publishers.values():
            pub.close()
        self.control.close(linger=500)
        self.zctx.term()


#: The signal a node gets when its parent dies, if not SIGTERM: under Ray the parent is the
#: actor, which dies with its host; an end of stream from the orphan would end its
#: consumers, where a lost host must look like a crash (restarted, the gap counted).
DEATH_SIGNAL_ENV = "SENSORFUSE_PARENT_DEATH_SIGNAL"


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the supervisor dies, even by SIGKILL, so no node outlives it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    signum = getattr(signal, os.environ.get(DEATH_SIGNAL_ENV, "SIGTERM"), signal.SIGTERM)
    if libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
        logging.getLogger("sensorfuse").warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def _keys_from_stdin() -> CurveKeys:
    """The keys a Ray actor writes to this process's stdin (JSON of Z85 text), CURVE on every tcp hop."""
    import json

    try:
        text = json.loads(sys.stdin.read())
    except ValueError as exc:
        raise StartupError(f"no CurveZMQ keys on stdin: {exc}") from None
    finally:
        sys.stdin.close()
    return CurveKeys.from_text(text, on_loopback=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir, node_name = argv[0], argv[1]
    session = argv[2] if len(argv) > 2 else ""
    restarts = int(argv[3]) if len(argv) > 3 else 0
    logging.basicConfig(level=logging.INFO, format=f"[{node_name}] %(levelname)s %(message)s", stream=sys.stderr)
    log = logging.getLogger(f"sensorfuse.{node_name}")
    plan = load_plan_json(f"{run_dir}/plan.json")
    try:
        keys = _keys_from_stdin() if plan.get("keys_from") == "stdin" else None
        runner = NodeRunner(plan, node_name, session=session, restarts=restarts, keys=keys)
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP

    def on_signal(signum: int, _frame: Any) -> None:
        runner.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before the death signal was armed
        return EXIT_OK
    code = EXIT_OK
    try:
        try:
            runner.setup()
            runner.wait_for_subscribers()
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            runner.send_control({"type": "failed", "error": str(exc), "permanent": True})
            return EXIT_STARTUP
        runner.send_control({"type": "ready", "models": fingerprint.loaded_models(),
                             "providers": fingerprint.used_providers(), "bound": runner.bound()})
        while not runner.stopping and runner._service_control(timeout_ms=50) != "start":
            runner.heartbeat()
        runner.start_running()
        runner.loop()
        stopped = runner.stopping
        runner.stopping = False  # let the final publishes through
        if stopped:
            runner.drain_remaining()
        assert runner.node is not None
        runner.publish(runner.node.finish())
        runner.send_eos()
        runner.heartbeat(force=True)
        # "done" before the drain wait: the supervisor then counts this node as gone when
        # deciding to stop its consumers, so the two never wait for each other.
        runner.send_control({"type": "done"})
        runner.wait_consumers_left()
    except Exception as exc:
        log.error("crashed: %s\n%s", exc, traceback.format_exc())
        try:
            runner.send_control({"type": "failed", "error": f"{type(exc).__name__}: {exc}"})
        except zmq.ZMQError:
            pass  # the supervisor sees the exit code either way
        code = EXIT_CRASH
    finally:
        if runner.node is not None:
            runner.node.stop()
        runner.close()
    return code


def _exit(code: int) -> None:
    """Leave without interpreter finalisation: a sensor's daemon thread blocked in a read
    (stdin, a device) makes finalisation abort ("could not acquire lock for <stdin>").
    Everything a node owns was closed by `node.stop()` and `runner.close()` already."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            continue  # a closed or broken pipe: nothing left to flush into
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
