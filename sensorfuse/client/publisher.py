"""Publisher: push frames, audio, text or records into a graph's `external.inputs`.

The graph declares the stream and the endpoint (``external: {inputs: {robot/frame:
"tcp://127.0.0.1:5700"}}``); this side binds it and the graph's nodes connect. Each graph
consumer subscribes to a readiness token (docs/protocol.md): `wait_for_consumers` counts
those, so nothing sent after it returns is lost to ZeroMQ's slow joiner. Headers are
built here: `seq` +1 per data message, `t_ns` the capture time on the engine's clock
(CLOCK_MONOTONIC ns, `sensorfuse.engine.clock`), `sample0` counted across audio blocks.
`close()` sends the end of stream and waits (bounded) for the graph's consumers to leave::

    import numpy as np
    from sensorfuse.client import Publisher

    with Publisher("robot/frame", "tcp://127.0.0.1:5700") as pub:
        pub.wait_for_consumers(1, timeout=30)
        pub.send_frame(np.zeros((480, 640, 3), np.uint8))   # captured now
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import zmq

from sensorfuse.client import locate
from sensorfuse.engine import transport, wire
from sensorfuse.engine.clock import Clock
from sensorfuse.engine.errors import UsageError

#: How long `close` waits for the graph's consumers to take the end of stream and leave.
DRAIN_S = 2.0


class Publisher:
    def __init__(self, stream: str, endpoint: str, *, keys: locate.KeysArg = None, src: str = "",
                 session: str = "", hwm: int = 64, context: zmq.Context | None = None) -> None:
        """Bind `endpoint` for `stream`. Beyond loopback, `keys` (a keys directory or loaded
        keys) is required: this side is the CurveZMQ server. `src`, `session`: the header
        fields of every message. `hwm`: messages queued per subscriber before drops."""
        self.stream = stream
        self.endpoint = locate.check_endpoint(endpoint)
        self._stamp = wire.StreamStamper(stream, src=src, session=session)
        try:
            self._pub: transport.Publisher | None = transport.Publisher(
                context or zmq.Context.instance(), stream, [endpoint], hwm=hwm, keys=locate.load_keys(keys, endpoint))
        except zmq.ZMQError as exc:
            raise UsageError(f"cannot bind {endpoint}: {exc}") from None

    @property
    def _sock(self) -> transport.Publisher:
        if self._pub is None:
            raise ValueError(f"publisher of {self.stream!r} is closed")
        return self._pub

    # -- who listens -------------------------------------------------------------------
    def wait_for_consumers(self, n: int = 1, timeout: float = 30.0) -> int:
        """Wait until `n` graph consumers (readiness tokens) have subscribed; returns how
        many have. Raises TimeoutError naming how many came."""
        return self._wait(lambda: self._sock.graph_consumers(), n, timeout, "graph consumers")

    def wait_for_subscribers(self, n: int = 1, timeout: float = 30.0) -> int:
        """Wait until `n` subscriptions of any kind (graph consumers and outside subscribers)."""
        pub = self._sock
        return self._wait(lambda: pub.poll_subscriptions() - pub.unsubscriptions, n, timeout, "subscribers")

    def _wait(self, count: Any, n: int, timeout: float, what: str) -> int:
        deadline = time.monotonic() + timeout
        while (have := count()) < n:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise TimeoutError(f"{self.stream}: {have} of {n} {what} at {self.endpoint} after {timeout:g} s")
            self._sock.sock.poll(left_ms)  # an XPUB turns readable when a (un)subscription arrives
        return have

    # -- sending -----------------------------------------------------------------------
    @property
    def seq(self) -> int:
        """The next data message's seq."""
        return self._stamp.seq

    def send(self, kind: str, data: Any, *, t_ns: int | None = None, **fields: Any) -> int:
        """One data message of `kind` (wire.KIND_*), header `fields` as `wire.encode_message`
        takes them; `t_ns` defaults to now. Returns its seq."""
        seq = self._stamp.seq
        self._sock.send(self._stamp.data(kind, data, Clock.now_ns() if t_ns is None else int(t_ns), **fields))
        return seq

    def send_frame(self, frame: np.ndarray, t_ns: int | None = None, *, layout: str | None = "HWC/bgr8") -> int:
        """A camera frame (uint8 [H, W, 3] BGR by default; any array with `layout`)."""
        return self.send(wire.KIND_TENSOR, frame, t_ns=t_ns, layout=layout)

    def send_audio(self, block: np.ndarray, rate: int, t_ns: int | None = None) -> int:
        """An audio block [frames, channels] (1-D: one channel) at `rate` Hz. `t_ns`: when its
        first sample was captured; default: the block ends now (now minus its duration)."""
        block = np.asarray(block)
        if block.ndim == 1:
            block = block.reshape(-1, 1)
        if block.ndim != 2:
            raise ValueError(f"audio block must be [frames, channels], got shape {list(block.shape)}")
        if t_ns is None:
            t_ns = Clock.now_ns() - block.shape[0] * 1_000_000_000 // int(rate)
        return self.send(wire.KIND_AUDIO, block, t_ns=t_ns, layout="TC", rate=int(rate))

    def send_text(self, text: str, t_ns: int | None = None) -> int:
        """A line of text (UTF-8); `t_ns` defaults to now (its arrival)."""
        return self.send(wire.KIND_BYTES, text, t_ns=t_ns)

    def send_record(self, record: Any, t_ns: int | None = None) -> int:
        """A record: any msgpack-able value, usually a dict."""
        return self.send(wire.KIND_RECORD, record, t_ns=t_ns)

    def send_idle(self, idle_ms: int = 1000) -> None:
        """An idle message (docs/protocol.md): call it every `idle_ms` while nothing is sent,
        so consumers can tell a quiet stream from a dead one. It consumes no seq."""
        self._sock.send(self._stamp.marker(wire.KIND_IDLE, meta={"idle_ms": int(idle_ms)}), data=False)

    # -- closing -----------------------------------------------------------------------
    def close(self, *, eos: bool = True, drain_s: float = DRAIN_S) -> None:
        """Send the end of stream (unless `eos=False`: a crash, as consumers see one), wait
        up to `drain_s` for the graph's consumers to leave, then close."""
        pub, self._pub = self._pub, None
        if pub is None:
            return
        try:
            if eos:
                pub.send_final(self._stamp.marker(wire.KIND_EOS), block_until=time.monotonic() + drain_s)
                deadline = time.monotonic() + drain_s
                while pub.graph_consumers() and (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
                    pub.sock.poll(left_ms)
        finally:
            pub.close(linger_ms=int(drain_s * 1000) if eos else 0)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
