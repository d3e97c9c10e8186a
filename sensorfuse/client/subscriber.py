"""Subscriber: one stream of a running graph (or any protocol v1 publisher), decoded.

Iterating yields data messages and, last, the end-of-stream message (`msg.end`); then the
subscriber closes its socket, which is how a sensorfuse publisher learns that this
consumer has what it needs. `idle` messages are consumed here: they keep the stream
alive and reveal losses through their `seq`. Counted: received, lost (gaps in `seq`),
seq_resets (the producer restarted), malformed by reason (the engine's reasons). If
nothing at all arrives for 3 idle periods (the period the stream's idle messages carry,
else 1 s) the publisher is gone and iteration raises `PublisherLost`::

    from sensorfuse.client import Subscriber

    with Subscriber("cam0/frame") as sub:          # the newest run; or run_dir=, endpoint=
        for msg in sub:
            print(msg.seq, msg.t_ns, msg.array.shape if msg.kind == "tensor" else msg.kind)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

import zmq

from sensorfuse.client import locate
from sensorfuse.client.message import KIND_IDLE, Message, PublisherLost, decode
from sensorfuse.engine import wire
from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.engine.metrics import StreamCounters
from sensorfuse.engine.security import apply_client

#: The liveness rule: a publisher silent for this many idle periods is gone.
LIVENESS_PERIODS = 3
#: The idle period assumed until the stream's own idle messages say otherwise.
DEFAULT_IDLE_S = 1.0
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class Subscriber:
    def __init__(
        self,
        stream: str,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        keys: locate.KeysArg = None,
        timeout: float | None = None,
        hwm: int = 1000,
        context: zmq.Context | None = None,
    ) -> None:
        """Subscribe to `stream` at `endpoint`, or where the run in `run_dir` (default: the
        newest run) publishes it. `keys`: a keys directory (`sensorfuse keys generate DIR`)
        for endpoints beyond loopback; by run, the graph's own `security.keys` by default.
        `timeout`: seconds of total silence before `PublisherLost`; None: 3 idle periods;
        `math.inf`: never. `hwm`: messages queued here before ZeroMQ drops newer ones."""
        if endpoint is None:
            endpoint, keys_dir = locate.stream_endpoint(stream, run_dir)
            keys = keys if keys is not None else keys_dir
        self.stream = stream
        self.endpoint = locate.check_endpoint(endpoint)
        self.timeout = timeout
        self.counters = StreamCounters()
        self.idle_s: float | None = None  # from the stream's idle messages
        self.ended = False
        curve = locate.load_keys(keys, endpoint)
        self.sock = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = hwm
        self._monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED)
        self._connected = False
        try:
            apply_client(self.sock, endpoint, curve)
            self.sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise UsageError(f"bad endpoint {endpoint!r}: {exc}") from None
        self.sock.setsockopt(zmq.SUBSCRIBE, stream.encode("utf-8"))
        self._heard = False
        self._last_heard = time.monotonic()  # silence counts from the connect

    # -- counts ------------------------------------------------------------------------
    @property
    def received(self) -> int:
        return self.counters.received

    @property
    def lost(self) -> int:
        return self.counters.lost

    @property
    def seq_resets(self) -> int:
        return self.counters.seq_resets

    @property
    def malformed(self) -> dict[str, int]:
        return dict(self.counters.malformed)

    @property
    def silence_limit_s(self) -> float:
        """How long total silence may last before the publisher counts as gone."""
        if self.timeout is not None:
            return self.timeout
        return LIVENESS_PERIODS * (self.idle_s or DEFAULT_IDLE_S)

    # -- receiving ---------------------------------------------------------------------
    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until the connection to the publisher is up (the subscription goes out with
        it); False on timeout. A refused CurveZMQ handshake raises SensorfuseError."""
        from zmq.utils.monitor import recv_monitor_message

        deadline = time.monotonic() + timeout
        while not self._connected and self._monitor is not None:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self._monitor.poll(left_ms):
                return False
            event = recv_monitor_message(self._monitor)["event"]
            if event & _HANDSHAKE_FAILED:
                raise SensorfuseError(f"{self.stream}: handshake with {self.endpoint} refused "
                                      "(CurveZMQ keys: does this side hold the publisher's server.key?)")
            self._connected = event == zmq.EVENT_HANDSHAKE_SUCCEEDED
        return self._connected

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next data message or the end of stream; None when `timeout` seconds pass
        without one, or after the end of stream. Raises `PublisherLost` (the liveness rule)."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self.ended and self.sock is not None:
            now = time.monotonic()
            lost_at = self._last_heard + self.silence_limit_s
            if now >= lost_at:
                raise PublisherLost(self.stream, self.endpoint, now - self._last_heard, self.silence_limit_s,
                                    self._heard)
            wait_s = max(0.0, min(lost_at, deadline) - now)
            if not self.sock.poll(-1 if math.isinf(wait_s) else math.ceil(wait_s * 1000)):
                if time.monotonic() >= deadline:
                    return None
                continue
            parts = self.sock.recv_multipart(copy=False)
            self._heard = True
            self._last_heard = time.monotonic()
            msg = self._accept(parts)
            if msg is not None:
                return msg
        return None

    def __iter__(self) -> Iterator[Message]:
        while (msg := self.recv()) is not None:
            yield msg

    def _accept(self, parts: list[Any]) -> Message | None:
        t_recv_ns = time.monotonic_ns()
        try:
            msg = decode(parts, t_recv_ns)
        except wire.UnknownKind:
            return None  # a kind newer than this client: not for us to interpret
        except wire.ProtocolError as exc:
            self.counters.malformed[exc.reason] += 1
            return None
        h = msg.header
        if h.stream != self.stream:
            return None  # subscriptions match prefixes: "cam0/frame" also gets "cam0/frame2"
        if h.kind == KIND_IDLE:
            self._on_idle(h, t_recv_ns)
            return None
        self.counters.on_receive(h.seq, h.t_ns, t_recv_ns, t_pub_ns=h.t_pub_ns, data=not msg.end)
        if msg.end:
            self.ended = True
            self.close()  # the publisher waits for its consumers to leave before it closes
        return msg

    def _on_idle(self, header: wire.Header, t_recv_ns: int) -> None:
        idle_ms = header.meta.get("idle_ms")
        if isinstance(idle_ms, (int, float)) and idle_ms > 0:
            self.idle_s = idle_ms / 1000.0
        self.counters.on_idle(header.seq, t_recv_ns)  # its seq is the next data message's: gaps count

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        if self._monitor is not None:
            self.sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None  # type: ignore[assignment]

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
