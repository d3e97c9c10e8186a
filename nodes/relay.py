"""Relay: republish every input unchanged on the output stream, keeping `seq` and `t_ns`.

Ports: in (any kind) → out. Keeping the upstream `seq` means a consumer sees exactly the
gaps that happened upstream or while the relay was down. Useful to bridge a stream onto
another endpoint (e.g. expose it over tcp) and as the middle node in engine tests.

Config example::

    relay:
      kind: relay
      inputs: {in: {stream: cam0/frame, policy: block}}
      outputs: {out: relay/frame}
"""

from __future__ import annotations

from collections.abc import Iterable

from sensorfuse.engine import wire
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec


class Relay(Node):
    inputs = {"in": InputSpec(policy="drop_oldest", queue=8)}
    outputs = {"out": OutputSpec(kind="any")}

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        out = Out.passthrough("out", msg)
        h = msg.header
        out.replay_header = wire.Header(proto=h.proto, stream=h.stream, kind=h.kind, seq=h.seq, t_ns=h.t_ns,
                                        src=h.src, session=h.session)
        return [out]
