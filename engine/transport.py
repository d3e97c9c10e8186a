"""Publisher and subscriber sockets with declared overflow policies.

One XPUB socket per output stream, one SUB socket per input. XPUB lets a publisher
see subscriptions arrive, which is the readiness handshake: a node reports READY only
once every consumer the graph declares has subscribed, so nothing published after the
graph is READY is lost to ZeroMQ's slow-joiner effect. A graph consumer also subscribes
to a token (`READY_TOKEN` + its name), a topic no message carries; readiness counts
distinct tokens, so a subscriber from outside the graph (which sends none) cannot stand
in for a consumer that has not connected yet. For `block` consumers the
publisher sets XPUB_NODROP, so a full queue pushes back instead of dropping.

Receive-side policies (see `sensorfuse.engine.node.InputSpec`):
- latest: drain what is available (bounded, to avoid livelock against a saturating
  producer) and keep the newest; older ones are counted as dropped/overflow.
- drop_oldest: a bounded queue refilled from the socket; evictions counted.
- block: read only while the queue has room; ZeroMQ's HWM then pushes back.
Transport-level losses (PUB HWM, a dead consumer) surface as gaps in `seq`.

Outside subscribers (a stream's `expose` endpoints that are not declared lock-step) get
their own XPUB socket that never sets XPUB_NODROP: a slow one loses messages (a gap in
`seq`, which its client counts) instead of slowing the graph.

Liveness: a publisher sends an `idle` message on a stream that has been quiet for the
idle period, so a consumer tells quiet from gone: an input that hears nothing for three
periods reports `silent_s` (publisher gone, or the network to it cut). Subscribers'
tcp connections also run ZMTP heartbeats so that they dial again after a partition.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import zmq

from sensorfuse.engine import wire
from sensorfuse.engine.metrics import Counters, StreamCounters
from sensorfuse.engine.security import CurveKeys, apply_client, apply_server
from sensorfuse.engine.shm import Lease, PoolReader, ShmOutput

#: pyzmq copies small frames anyway; zero-copy only pays above this size.
ZERO_COPY_MIN_BYTES = 64 * 1024
#: How long a closing publisher keeps trying to deliver its last messages (EOS).
CLOSE_LINGER_MS = 1000
#: Topic prefix of the readiness tokens graph consumers subscribe to (stream names are
#: UTF-8 text and never start with a NUL byte, so no message ever matches one).
READY_TOKEN = b"\x00sf-consumer\x00"
#: Receive queue of a `latest` input's socket. Between two drains (one `step`) the socket
#: must take every message that arrives, else ZeroMQ pushes back and the frames wait,
#: oldest first, in the publisher's queue (a 133 ms step at 30 Hz: p50 380 ms with a queue
#: of 2, 149 ms with 8). The bound `w` + one period holds while a step lasts fewer than
#: ~7 periods; memory is at most this many messages (48 MB of 1080p frames).
LATEST_RCVHWM = 8
#: Send queue (messages) of the socket for outside subscribers: they drop what they cannot
#: keep up with, and a short queue lets the end of stream reach a slow one soon after it is
#: sent (a queue of 100 frames would take 4 s to drain at 25 messages/s).
OUTSIDE_HWM = 16
#: A finished publisher repeats its `eos` this often while subscribers have not left.
EOS_REPEAT_S = 0.5
#: How long a stream may be quiet before its publisher sends an `idle`; a consumer that
#: hears nothing for `LIVENESS_PERIODS` of these knows the publisher is gone.
IDLE_S = 1.0
LIVENESS_PERIODS = 3


def _heartbeats(sock: zmq.Socket, idle_s: float) -> None:
    """ZMTP heartbeats on a subscriber's tcp connections: one that brings nothing at all
    (no data, no PONG) for LIVENESS_PERIODS x idle_s is dropped and dialled again, so a
    link cut without FIN or RST recovers as soon as the network does. Only subscribers:
    any message received resets the timeout, so a consumer that reads, however slowly,
    keeps its connection; a publisher's PING would wait behind its queued data and cut a
    slow consumer."""
    ivl = max(1, int(idle_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, LIVENESS_PERIODS * ivl)


class Publisher:
    def __init__(
        self,
        zctx: zmq.Context,
        stream: str,
        endpoints: Sequence[str],
        *,
        nodrop: bool = False,
        hwm: int = 64,
        keys: CurveKeys | None = None,
        counters: StreamCounters | None = None,
        outside: Sequence[str] = (),
        shm: ShmOutput | None = None,
    ) -> None:
        """`endpoints`: where graph consumers (and lock-step outside ones) connect;
        `outside`: endpoints for outside subscribers, on a socket that drops for them;
        `shm`: the stream's pool, for subscribers of its shared-memory channel."""
        self.stream = stream
        self.topic = stream.encode("utf-8")
        self.shm = shm
        self.shm_topic = wire.SHM_CHANNEL + self.topic
        #: data subscriptions on the graph socket now: to the shm channel, to anything else
        self.shm_subscribed = 0
        self.plain_subscribed = 0
        #: a message whose sending stopped half way (a block consumer's full queue): the
        #: inline frames, the shm channel's frames (written into the pool once), what is sent
        self._staged: list[Any] | None = None
        self.sock = self._xpub(zctx, endpoints, hwm, keys)
        if nodrop:
            self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.nodrop = nodrop
        self.outside = self._xpub(zctx, outside, min(hwm, OUTSIDE_HWM), keys) if outside else None
        self.subscriptions = 0
        self.unsubscriptions = 0
        #: graph consumers subscribed now (their readiness tokens)
        self.consumers: set[bytes] = set()
        #: subscriptions on the outside socket: subscribed now
        self.outside_subscribed = 0
        #: data subscriptions ever made on either socket (a new one may want a snapshot)
        self.joins = 0
        self._sndtimeo = -1
        self.counters = counters or StreamCounters()
        #: time.monotonic() of the last message sent (data, idle or eos)
        self.last_send = time.monotonic()
        #: the end-of-stream marker once sent, and when it was last sent (`repeat_final`)
        self._final: list[Any] | None = None
        self._final_at = 0.0

    @staticmethod
    def _xpub(zctx: zmq.Context, endpoints: Sequence[str], hwm: int, keys: CurveKeys | None) -> zmq.Socket:
        sock = zctx.socket(zmq.XPUB)
        # VERBOSER: every subscribe and unsubscribe is passed up, so a publisher can tell
        # when its consumers have left (see `wait_consumers_left`).
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        sock.sndhwm = hwm
        sock.linger = CLOSE_LINGER_MS
        for ep in endpoints:
            apply_server(sock, ep, keys)
            sock.bind(ep)
        return sock

    def poll_subscriptions(self) -> int:
        """Consume pending (un)subscription notices on both sockets; returns the running
        subscribe count of the graph socket (graph consumers and outside subscribers alike)."""
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg[1:].startswith(READY_TOKEN):
                if msg[:1] == b"\x01":
                    self.consumers.add(msg[1:])
                elif msg[:1] == b"\x00":
                    self.consumers.discard(msg[1:])
            elif msg[:1] == b"\x01":
                self.subscriptions += 1
                self.joins += 1
                self._count_channel(msg[1:], 1)
            elif msg[:1] == b"\x00":
                self.unsubscriptions += 1
                self._count_channel(msg[1:], -1)
        while self.outside is not None:
            try:
                msg = self.outside.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg[:1] == b"\x01":
                self.outside_subscribed += 1
                self.joins += 1
            elif msg[:1] == b"\x00":
                self.outside_subscribed -= 1
        return self.subscriptions

    def _count_channel(self, topic: bytes, delta: int) -> None:
        if topic == self.shm_topic:
            self.shm_subscribed += delta
        else:
            self.plain_subscribed += delta

    def outside_subscribers(self) -> int:
        """Outside subscribers connected now, on either socket (graph consumers not counted)."""
        self.poll_subscriptions()
        graph_side = self.subscriptions - self.unsubscriptions - len(self.consumers)
        return max(0, graph_side) + max(0, self.outside_subscribed)

    def graph_consumers(self) -> int:
        """How many graph consumers (not outside subscribers) are subscribed now."""
        self.poll_subscriptions()
        return len(self.consumers)

    def send(self, frames: list[Any], *, block_until: float | None = None, data: bool = True,
             outside: bool = True) -> bool:
        """Send one multipart message. With NODROP, waits while consumers' queues are full
        (until `block_until`, a time.monotonic() deadline) and returns False on timeout.
        `data=False` (end-of-stream and idle markers) is not counted as published;
        `outside=False` sends to graph consumers only."""
        copy = sum(len(f) if isinstance(f, (bytes, bytearray)) else memoryview(f).nbytes for f in frames) < ZERO_COPY_MIN_BYTES
        if self.shm is not None:
            return self._send_channels(frames, copy, block_until, data, outside)
        if not self._send_graph(frames, copy, block_until):
            return False
        self._sent(frames, copy, data, outside)
        return True

    def _send_graph(self, frames: list[Any], copy: bool, block_until: float | None) -> bool:
        if not self.nodrop:
            self.sock.send_multipart(frames, copy=copy)
            return True
        # XPUB always reports POLLOUT (libzmq #1597), so poll() cannot wait for room and the
        # old loop spun; libzmq's blocking send sleeps until a consumer reads, bounded by SNDTIMEO.
        remaining_ms = -1 if block_until is None else max(0, int((block_until - time.monotonic()) * 1000))
        if self._sndtimeo != remaining_ms:
            self.sock.sndtimeo = self._sndtimeo = remaining_ms
        try:
            self.sock.send_multipart(frames, copy=copy)
        except zmq.Again:
            return False
        return True

    def _send_channels(self, frames: list[Any], copy: bool, block_until: float | None, data: bool,
                       outside: bool) -> bool:
        """One message to both channels of the graph socket: subscribers of the shm channel
        get a descriptor (or, for small payloads, markers and fallbacks, the inline frames
        under the channel's topic), the others inline bytes. Resumes a message a full
        block queue stopped half way without writing its payload into the pool again."""
        if self.sock.get(zmq.EVENTS) & zmq.POLLIN:
            self.poll_subscriptions()  # a (re)joining consumer: which channel it wants
        staged = self._staged
        if staged is None or staged[0] is not frames:
            shm_frames = None
            if self.shm_subscribed > 0:
                shm_frames = self._shm_frames(frames, block_until)
                if shm_frames is None:
                    return False
            staged = self._staged = [frames, shm_frames, shm_frames is None, self.plain_subscribed <= 0]
        if not staged[2]:
            if not self._send_graph(staged[1], copy or staged[1][-1] is not frames[-1], block_until):
                return False
            staged[2] = True
        if not staged[3] and not self._send_graph(frames, copy, block_until):
            return False
        self._staged = None
        self._sent(frames, copy, data, outside)
        return True

    def _shm_frames(self, frames: list[Any], block_until: float | None) -> list[Any] | None:
        """The shm channel's version of a message; None when a block reader held the pool's
        slot until `block_until`."""
        inline = [self.shm_topic, *frames[1:]]
        assert self.shm is not None
        if len(frames) != 3:
            return inline  # a marker
        payload = frames[2]
        n = len(payload) if isinstance(payload, (bytes, bytearray)) else memoryview(payload).nbytes
        if n < self.shm.min_bytes:
            return inline
        header = wire.decode_header(frames[1])
        if header.kind == wire.KIND_RECORD:
            return inline
        desc = self.shm.write(payload, n, block_until=block_until)
        if desc is None:
            return None
        if desc is False:
            return inline
        header.ref = wire.REF_SHM
        return [self.shm_topic, wire.encode_header(header), wire.encode_record(desc)]

    def _sent(self, frames: list[Any], copy: bool, data: bool, outside: bool) -> None:
        self.counters.published += int(data)
        self.last_send = time.monotonic()
        if outside and self.outside is not None:
            # never NODROP before the end: a full outside queue drops (a gap its reader counts)
            self.outside.send_multipart(frames, copy=copy)

    def send_idle(self, frames: list[Any]) -> bool:
        """An `idle` marker, best effort: never waits for a full queue (a stream whose
        consumers are behind is not idle)."""
        if self.nodrop:
            return self.send(frames, block_until=time.monotonic(), data=False)
        return self.send(frames, data=False)

    def send_final(self, frames: list[Any], *, block_until: float) -> bool:
        """Send the end-of-stream marker without the drop a full PUB queue would cause, to
        graph consumers and outside subscribers alike (each waits until `block_until`)."""
        for sock in (self.sock, self.outside):
            if sock is not None:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.nodrop = True
        sent = self.send(frames, block_until=block_until, data=False, outside=False)
        if self.outside is not None:
            self._send_nowait(self.outside, frames)
        self._final = frames
        self._final_at = time.monotonic()
        return sent

    def repeat_final(self) -> None:
        """Send the end-of-stream marker again, every EOS_REPEAT_S, while the caller waits
        for subscribers to leave. ZeroMQ skips a subscriber whose queue was full when a
        message is sent, and XPUB_NODROP does not help there: a queue that filled up while
        the stream dropped stays out of the distribution until its reader catches up, so
        the one `eos` is lost for exactly the subscriber that was behind. Receivers ignore
        a repeated `eos` (same seq) (docs/protocol.md)."""
        if self._final is None or time.monotonic() - self._final_at < EOS_REPEAT_S:
            return
        self._final_at = time.monotonic()
        for sock in (self.sock, self.outside):
            if sock is not None:
                self._send_nowait(sock, self._final)
        if self.shm is not None and self.shm_subscribed > 0:
            self._send_nowait(self.sock, [self.shm_topic, *self._final[1:]])

    @staticmethod
    def _send_nowait(sock: zmq.Socket, frames: list[Any]) -> bool:
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def close(self, linger_ms: int = CLOSE_LINGER_MS) -> None:
        self.sock.close(linger=linger_ms)
        if self.outside is not None:
            self.outside.close(linger=linger_ms)
        if self.shm is not None:
            self.shm.close()


class Subscriber:
    """One input port: a SUB socket plus the policy's queue of decoded messages."""

    def __init__(
        self,
        zctx: zmq.Context,
        port: str,
        stream: str,
        endpoints: Sequence[str],
        *,
        policy: str,
        queue: int,
        counters: Counters,
        keys: CurveKeys | None = None,
        consumer: str | None = None,
        idle_s: float = IDLE_S,
        shm: PoolReader | None = None,
    ) -> None:
        """`consumer` names this input in the graph (``node/port``) for the readiness
        token; None: a unique one (every Subscriber is a consumer the publisher waits for).
        `idle_s`: the publisher's idle period (liveness: see `arm_liveness`). `shm`: this
        input's reader row in the producer's pools: subscribe to the stream's shared-memory
        channel (same host only) instead of its inline bytes."""
        if policy not in ("latest", "drop_oldest", "block"):
            raise ValueError(f"unknown policy {policy!r}")
        self.port = port
        self.stream = stream
        self.policy = policy
        self.capacity = 1 if policy == "latest" else max(1, queue)
        self.pending: deque[wire.Message] = deque()
        #: (seq, t_ns) of the last `idle` not yet followed by data: the runtime hands it to
        #: the node (`Node.watermark`) once the queue is empty
        self.watermark: tuple[int, int] | None = None
        self.ended = False
        self.counters = counters
        self.stats = counters.streams[stream]
        self.sock = zctx.socket(zmq.SUB)
        self.sock.rcvhwm = LATEST_RCVHWM if policy == "latest" else max(2, self.capacity)
        self.sock.linger = 0
        if any(ep.startswith("tcp://") for ep in endpoints):
            _heartbeats(self.sock, idle_s)
        self.idle_s = idle_s
        self.keys = keys
        self.endpoints = list(endpoints)
        for ep in endpoints:
            apply_client(self.sock, ep, keys)
            self.sock.connect(ep)
        self.shm = shm
        channel = wire.SHM_CHANNEL if shm is not None else b""
        self.sock.setsockopt(zmq.SUBSCRIBE, channel + stream.encode("utf-8"))
        token = consumer if consumer is not None else f"{port}@{uuid.uuid4().hex}"
        self.sock.setsockopt(zmq.SUBSCRIBE, READY_TOKEN + token.encode("utf-8"))
        # Bound one drain so a saturating producer cannot starve the node's own loop.
        self._drain_budget = 4 * self.sock.rcvhwm + 16

    def reconnect(self, endpoints: Sequence[str]) -> None:
        """Dial `endpoints` instead of the current ones: the producer moved to another host
        (docs/cluster.md). Its subscriptions go along; what it sent meanwhile is a seq gap."""
        for ep in self.endpoints:
            if ep not in endpoints:
                self.sock.disconnect(ep)
        for ep in endpoints:
            if ep not in self.endpoints:
                apply_client(self.sock, ep, self.keys)
                self.sock.connect(ep)
        self.endpoints = list(endpoints)

    def drain(self) -> int:
        """Move available messages from the socket into the queue per policy."""
        taken = 0
        while taken < self._drain_budget:
            if self.full:
                break
            # Ask before reading: a failed NOBLOCK recv costs a raised zmq.Again per drain.
            if not self.sock.get(zmq.EVENTS) & zmq.POLLIN:
                break
            parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            taken += 1
            self._accept(parts)
        return taken

    def _accept(self, parts: list[Any]) -> None:
        t_recv = time.monotonic_ns()
        try:
            msg = wire.decode_message(parts, t_recv)
        except wire.UnknownKind:
            self.stats.dropped["unknown_kind"] += 1  # a newer kind: skipped, as the protocol says
            return
        except wire.ProtocolError as exc:
            self.stats.malformed[exc.reason] += 1
            return
        if msg.header.stream != self.stream:
            # SUB filters by prefix: "cam0/frame" also matches "cam0/frame2".
            return
        if msg.header.kind == wire.KIND_IDLE:
            self.stats.on_idle(msg.header.seq, t_recv)
            self.watermark = (msg.header.seq, msg.header.t_ns)
            return
        is_eos = msg.header.kind == wire.KIND_EOS
        if is_eos and self.stats.ended:
            return  # a repeated end of stream (see `Publisher.repeat_final`)
        self.stats.on_receive(msg.header.seq, msg.header.t_ns, t_recv, t_pub_ns=msg.header.t_pub_ns, data=not is_eos)
        if is_eos:
            self.stats.ended = True
            self.pending.append(msg)
            return
        if msg.header.meta.get("snapshot") is True:
            return  # state re-sent for a late outside subscriber: a graph node saw it live
        if self.policy != "block" and len(self.pending) >= self.capacity:
            self._evict_oldest_data()
        self.pending.append(msg)
        self.watermark = None  # data after an idle says more than its watermark

    def _resolve(self, msg: wire.Message) -> bool:
        """Turn a descriptor into a read-only view of its pool slot (`msg.payload[0]`);
        False when the slot holds a newer payload already (or the pool is gone)."""
        if self.shm is None:
            return False  # a descriptor we did not ask for
        got = self.shm.resolve(msg.shm)
        if got is None:
            return False
        root, mapping = got
        root.flags.writeable = False
        msg.shm = (mapping, msg.shm["slot"], msg.shm["seq"])
        msg.payload = [root]
        msg.header.ref = None  # what a node (and a recorder) sees is the inline message's header
        return True

    def hold(self, msg: wire.Message) -> Lease | None:
        """Map a queued descriptor's slot and lease it for the handler; None (counted
        `slot_recycled`) when the producer reused the slot since it was sent. Checked here,
        not on receipt: what a policy drops anyway counts as its own drop (`overflow`). Call `let_go`
        after the handler, from a frame as deep as this call's."""
        if not self._resolve(msg):
            self.stats.dropped["slot_recycled"] += 1
            return None
        assert self.shm is not None
        mapping, slot, seq = msg.shm
        lease = self.shm.acquire(mapping, slot, seq)
        if lease is None:
            self.stats.dropped["slot_recycled"] += 1
            return None
        root = msg.payload[0]
        lease.msg_refs = sys.getrefcount(msg)
        lease.root_refs = sys.getrefcount(root)
        return lease

    def let_go(self, msg: wire.Message, lease: Lease) -> None:
        """After the handler. The view of the slot is valid while the handler runs: a node
        that kept the message gets it detached (its payload copied out, still under the
        lease); one that kept an array view of it pins the slot until that view is freed."""
        assert self.shm is not None
        root = msg.payload[0]
        arr = msg._array
        retained = sys.getrefcount(msg) > lease.msg_refs
        # `root` is the base of every array made from it: count the references beyond ours
        # (msg._array's included), and msg._array itself if the node kept that.
        escaped = sys.getrefcount(root) - lease.root_refs - (arr is not None) > 0
        escaped |= arr is not None and sys.getrefcount(arr) > 3  # msg._array, `arr`, the argument
        if retained:
            msg.payload = [root.tobytes()]
            msg._array = None
            msg.shm = None
        del arr
        self.shm.release(lease, root, escaped=escaped)

    def _evict_oldest_data(self) -> None:
        for i, queued in enumerate(self.pending):
            if queued.header.kind != wire.KIND_EOS:
                del self.pending[i]
                self.stats.dropped["overflow"] += 1
                return

    def arm_liveness(self) -> None:
        """From now on (the graph started), a silence of LIVENESS_PERIODS idle periods on
        this input is reported (`StreamCounters.silent_s`)."""
        self.stats.heard_ns = time.monotonic_ns()
        self.stats.silent_after_ns = int(LIVENESS_PERIODS * self.idle_s * 1e9)

    @property
    def full(self) -> bool:
        """A `block` queue at capacity: `drain` reads no more until one is popped."""
        return self.policy == "block" and len(self.pending) >= self.capacity

    def pop(self) -> wire.Message | None:
        return self.pending.popleft() if self.pending else None

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.shm is not None:
            self.shm.close()
