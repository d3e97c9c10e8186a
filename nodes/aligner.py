"""Aligner: event-time alignment of any number of streams into ticks (`sensorfuse.engine.align`).

Ports
    *     (in)  any port names the graph wires; each is configured under ``streams``
                (policy ``nearest`` for frames, ``window`` for audio, ``latest`` for
                text). A port not listed there joins as an optional stream with the
                default policy for its message kind.
    ticks (out) records -> ``align/ticks``, one per tick, in time order::

        {tick, t_ns, emitted_by: watermark|lateness|capacity|flush,
         streams: {port: stream}, mask: {port: bool}, status: {port: ok|missing|late|absent|ended},
         late_ns: {port: ns}, members: {port: member | null}}

    A ``nearest``/``latest`` member is ``{seq, t_ns, dt_ns}`` plus, with ``embed``, the
    payload (``text``, ``record``, or ``{dtype, shape, layout, data}`` for tensors). A
    ``window`` member is ``{sample0, n, rate, channels, valid, gaps, t_start_ns, t_end_ns,
    seqs}`` plus ``data`` (float32 [n, channels] bytes, zero where ``gaps`` says). See
    docs/time.md for what each field means to a user.

Rates
    One tick per message of ``trigger`` or ``rate_hz`` ticks a second of event time.
    Latency: a tick waits for every required stream up to ``lateness_ms`` of event time;
    a quiet required stream's ``idle`` watermark (graph ``supervisor.idle_s``) releases
    it sooner.

Failure behaviour
    Refused inputs are counted by stream and reason (late, over_capacity, duplicate_seq,
    out_of_order, bad_timestamp, bad_payload); nothing is dropped silently. At the end of
    all inputs the pending ticks are flushed.

Config example::

    align:
      kind: aligner
      params:
        trigger: frame
        lateness_ms: 100
        streams:
          frame: {policy: nearest, slop_ms: 20}
          audio: {policy: window, window_ms: 500}
          text:  {policy: latest, ttl_ms: 5000, required: false}
      inputs: {frame: cam0/frame, audio: {stream: mic0/audio16k, policy: block, queue: 64}, text: text/in}
      outputs: {ticks: align/ticks}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.align import Aligner, AlignerConfig, Item, StreamPolicy, Tick
from sensorfuse.engine.align_audio import AudioWindow
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.engine.params import NonNegativeFloat, PositiveFloat, PositiveInt, param_error

MS = 1_000_000


class StreamParams(msgspec.Struct, forbid_unknown_fields=True):
    policy: Literal["nearest", "window", "latest"]
    slop_ms: NonNegativeFloat = 20.0
    window_ms: PositiveFloat = 1000.0
    ttl_ms: NonNegativeFloat = 5000.0
    required: bool = True
    capacity: PositiveInt = 256
    embed: bool = True


DEFAULT_BY_KIND = {
    wire.KIND_TENSOR: StreamParams("nearest", required=False),
    wire.KIND_AUDIO: StreamParams("window", required=False),
    wire.KIND_BYTES: StreamParams("latest", required=False),
    wire.KIND_RECORD: StreamParams("latest", required=False),
}


def to_policy(sp: StreamParams) -> StreamPolicy:
    return StreamPolicy(
        sp.policy,  # type: ignore[arg-type]
        slop_ns=round(sp.slop_ms * MS) if sp.policy == "nearest" else 0,
        window_ns=round(sp.window_ms * MS) if sp.policy == "window" else 0,
        ttl_ns=round(sp.ttl_ms * MS) if sp.policy == "latest" else 0,
        required=sp.required, capacity=sp.capacity,
    )


class AlignerNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        streams: dict[str, StreamParams] = {}
        trigger: str | None = None
        rate_hz: PositiveFloat | None = None
        origin_ns: int = 0
        lateness_ms: NonNegativeFloat = 100.0
        reorder_ms: NonNegativeFloat | None = None
        max_pending_ticks: PositiveInt = 64

        def __post_init__(self) -> None:
            if (self.trigger is None) == (self.rate_hz is None):
                raise param_error("trigger", "a stream to tick on, or rate_hz (exactly one of them)",
                                  self.trigger)
            if self.trigger is not None and self.trigger not in self.streams:
                raise param_error("trigger", f"one of the ports under streams ({', '.join(self.streams) or 'none'})",
                                  self.trigger)

    inputs = {"*": InputSpec(policy="drop_oldest", queue=64)}
    outputs = {"ticks": OutputSpec(kind="record", doc="aligned ticks with masks (docs/time.md)")}

    def start(self) -> None:
        p = self.params
        try:
            config = AlignerConfig(
                {port: to_policy(sp) for port, sp in p.streams.items()},
                trigger=p.trigger,
                period_ns=round(1e9 / p.rate_hz) if p.rate_hz else None,
                origin_ns=p.origin_ns,
                lateness_ns=round(p.lateness_ms * MS),
                reorder_ns=round(p.reorder_ms * MS) if p.reorder_ms is not None else None,
                max_pending_ticks=p.max_pending_ticks,
            )
        except ValueError as exc:
            raise StartupError(f"aligner: {exc}") from None
        self.embed = {port: sp.embed for port, sp in p.streams.items()}
        self.stream_names: dict[str, str] = dict(self.ctx.inputs)
        self.aligner = Aligner(config, on_drop=self._count_drop)

    def _count_drop(self, port: str, reason: str, detail: str) -> None:
        self.ctx.reject(self.stream_names.get(port, port), reason, detail)

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        h = msg.header
        self.stream_names.setdefault(port, h.stream)
        if port not in self.aligner.streams:
            default = DEFAULT_BY_KIND.get(h.kind, StreamParams("latest", required=False))
            self.ctx.log.warning("port %r (%s) is not under streams: joining as optional %s",
                                 port, h.stream, default.policy)
            self.aligner.add_stream(port, to_policy(default))
            self.embed[port] = default.embed
        if h.kind == wire.KIND_AUDIO:
            ticks = self.aligner.add(port, h.seq, h.t_ns, msg.array, rate=h.rate, sample0=h.sample0)
        else:
            ticks = self.aligner.add(port, h.seq, h.t_ns, msg)
        return [self._out(t) for t in ticks]

    def watermark(self, port: str, seq: int, t_ns: int) -> Iterable[Out]:
        # A quiet producer's promise (its `idle`): a required sparse stream (text) stops
        # holding ticks back without waiting for the lateness bound.
        if port not in self.aligner.streams:
            return []
        return [self._out(t) for t in self.aligner.advance(port, seq, t_ns)]

    def end(self, port: str) -> Iterable[Out]:
        # A finished producer: ticks stop waiting for it instead of for the lateness bound.
        if port not in self.aligner.streams:
            return []
        return [self._out(t) for t in self.aligner.end_stream(port)]

    def finish(self) -> Iterable[Out]:
        return [self._out(t) for t in self.aligner.finish()]

    def _out(self, tick: Tick) -> Out:
        # Mask and status first: they are what a reader of a console line looks for.
        record = {
            "tick": tick.index, "t_ns": tick.t_ns, "mask": tick.mask, "status": tick.status,
            "late_ns": tick.late_ns, "emitted_by": tick.emitted_by,
            "members": {port: self._member(port, m, tick.t_ns) for port, m in tick.members.items()},
            "streams": dict(self.stream_names),
        }
        return Out.record("ticks", record, tick.t_ns)

    def _member(self, port: str, member: Item | AudioWindow | None, t_ns: int) -> dict[str, Any] | None:
        if member is None:
            return None
        embed = self.embed.get(port, True)
        if isinstance(member, AudioWindow):
            out: dict[str, Any] = {
                "sample0": member.sample0, "n": member.n, "rate": member.rate,
                "channels": int(member.samples.shape[1]), "valid": member.valid_count,
                "gaps": [list(g) for g in member.gaps()], "t_start_ns": member.t_start_ns,
                "t_end_ns": member.t_end_ns, "seqs": member.seqs,
            }
            if embed:
                # a flat byte view: msgpack writes the same `bin` as from bytes, without the copy
                out["data"] = _byte_view(member.samples)
            return out
        out = {"seq": member.seq, "t_ns": member.t_ns, "dt_ns": member.t_ns - t_ns}
        msg: wire.Message = member.data
        if embed:
            h = msg.header
            if h.kind == wire.KIND_TENSOR:
                out.update(dtype=h.dtype, shape=h.shape, layout=h.layout, data=_byte_view(msg.array))
            elif h.kind == wire.KIND_RECORD:
                out["record"] = msg.record
            elif h.kind == wire.KIND_BYTES and h.encoding == "utf-8":
                out["text"] = msg.text
            else:
                out["data"] = msg.data
        return out


def _byte_view(array: np.ndarray) -> memoryview:
    """The array's bytes as a flat memoryview (a copy only if it is not C-contiguous).

    Why not ``bytes(array.data)``: copying a 320×240×3 frame through a 3-d memoryview took
    ~0.2 ms a tick, and the tick record is encoded (copied) right after anyway.
    """
    return memoryview(np.ascontiguousarray(array)).cast("B")
