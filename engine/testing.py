"""Drive a node's logic without sockets or processes (a fake bus).

Messages go through the real wire encoding both ways, so what a node sees here is
what it sees in a running graph::

    h = NodeHarness(Relay, streams={"in": "cam0/frame", "out": "relay/frame"})
    published = h.send("in", Out.tensor("in", frame, t_ns=123))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sensorfuse.engine import wire
from sensorfuse.engine.clock import Clock
from sensorfuse.engine.node import Node, NodeContext, Out


class NodeHarness:
    def __init__(
        self,
        node_cls: type[Node],
        params: dict[str, Any] | None = None,
        *,
        name: str = "node",
        session: str = "test",
        streams: dict[str, str] | None = None,
        unwired: tuple[str, ...] = (),
        start: bool = True,
    ) -> None:
        self.streams = {port: port for port in [*node_cls.inputs, *node_cls.outputs]}
        self.streams.update(streams or {})
        # `unwired`: optional inputs the graph under test leaves unconnected
        wired_in = {p: self.streams[p] for p in node_cls.inputs if p != "*" and p not in unwired}
        wired_in.update({p: st for p, st in (streams or {}).items() if p not in node_cls.outputs and p not in unwired})
        wired_out = {p: self.streams[p] for p in node_cls.outputs if p != "*"}
        self.ctx = NodeContext(name, session, Clock(), inputs=wired_in, outputs=wired_out)
        self.node = node_cls(node_cls.parse_params(params), self.ctx)
        self._in_seq: dict[str, int] = {}
        self._out_seq: dict[str, int] = {}
        self.published: list[wire.Message] = []
        #: (stream, t_ns) of every `Out.watermark` (an idle: not a message, uses up no seq)
        self.watermarks: list[tuple[str, int]] = []
        if start:
            self.node.start()

    def message(self, out: Out, seq: int | None = None) -> wire.Message:
        """Encode `out` as it would travel on `out.port`'s stream and decode it again."""
        stream = self.streams[out.port]
        if seq is None:
            seq = self._in_seq.get(stream, 0)
            self._in_seq[stream] = seq + 1
        return wire.build_message(
            stream, out.kind, out.data, seq=seq, t_ns=out.t_ns, src="harness", session=self.ctx.session,
            layout=out.layout, encoding=out.encoding, rate=out.rate, sample0=out.sample0, meta=out.meta,
        )

    def _publish(self, outs: Iterable[Out] | None) -> list[wire.Message]:
        msgs = []
        for out in outs or ():
            if out.port not in self.node.outputs and "*" not in self.node.outputs:
                raise KeyError(f"{type(self.node).__name__} has no output port {out.port!r}")
            # A "*" output port publishes on the stream of the same name unless mapped.
            stream = self.streams.get(out.port, out.port)
            if out.kind == wire.KIND_IDLE:
                self.watermarks.append((stream, out.t_ns))
                continue
            rh = out.replay_header
            if rh is not None:  # as the runtime does: the recorded stamps, not ours
                seq, t_ns, src, session = rh.seq, rh.t_ns, rh.src, rh.session
            else:
                seq, t_ns, src, session = self._out_seq.get(stream, 0), out.t_ns, self.ctx.name, self.ctx.session
            self._out_seq[stream] = seq + 1
            msgs.append(
                wire.build_message(
                    stream, out.kind, out.data, seq=seq, t_ns=t_ns, src=src, session=session,
                    layout=out.layout, encoding=out.encoding, rate=out.rate, sample0=out.sample0, meta=out.meta,
                )
            )
        self.published.extend(msgs)
        return msgs

    def send(self, port: str, out_or_msg: Out | wire.Message, seq: int | None = None) -> list[wire.Message]:
        """Deliver one input message to `port`; returns what the node published in response."""
        msg = out_or_msg if isinstance(out_or_msg, wire.Message) else self.message(out_or_msg, seq)
        return self._publish(self.node.step(port, msg))

    def produce(self, now_ns: int | None = None) -> list[wire.Message] | None:
        """Call a source's `produce` once (at its due time unless `now_ns` is given)."""
        if now_ns is None:
            now_ns = self.node.next_due_ns if self.node.next_due_ns is not None else self.ctx.clock.now_ns()
        outs = self.node.produce(now_ns)
        if outs is None:
            return None
        return self._publish(outs)

    def produce_all(self, limit: int = 100_000) -> list[wire.Message]:
        """Run a source until exhausted (ignoring pacing) and return everything it published."""
        msgs: list[wire.Message] = []
        for _ in range(limit):
            got = self.produce()
            if got is None:
                return msgs
            msgs.extend(got)
        raise RuntimeError(f"source did not finish within {limit} produce calls")

    def watermark(self, port: str, seq: int, t_ns: int) -> list[wire.Message]:
        """Deliver an input's watermark (its producer's `idle`) on `port`."""
        return self._publish(self.node.watermark(port, seq, t_ns))

    def end(self, port: str) -> list[wire.Message]:
        """Deliver end-of-stream on `port`."""
        return self._publish(self.node.end(port))

    def finish(self) -> list[wire.Message]:
        return self._publish(self.node.finish())

    def close(self) -> None:
        self.node.stop()
