"""Player node: republishes a recorded MCAP log exactly as the capture nodes did.

Ports: outputs ``*`` — one port per recorded stream, named like the stream
(``cam0/frame: cam0/frame`` in the graph); streams the graph does not wire are skipped.
Every message keeps its recorded topic, kind, payload bytes, ``seq``, ``t_ns``,
``src``, ``session``, layout, rate, ``sample0`` and meta (`Out.replay_header`); only
``t_pub_ns`` is new (it is wall-clock by definition).

Pacing: messages go out in capture-time order (ties in file order). ``rate: 1`` paces
them at the recorded spacing, ``rate: X`` X times faster, ``rate: max`` as fast as the
graph consumes — wire consumers with ``policy: block`` and nothing is dropped
(lock-step). ``start_s`` / ``end_s`` (seconds from the log's first message) seek
through the MCAP chunk index; ``streams`` selects topics; ``loop`` replays forever,
shifting each pass by the log's span + ``loop_gap_s`` so time and ``seq`` keep rising
(``sample0`` moves with time; each pass starts with a discontinuity).

Watermarks: the log says when a quiet stream will speak next, so the player promises it.
Before handing out a message at log time ``L``, every wired stream that has carried
nothing (data or watermark) for ``watermark_ms`` of log time gets an ``idle`` in line with
the data (`Out.watermark`) saying ``L - 1``: no later message of it is captured before.
The same ``L - 1`` (``L`` the next message still to go, shifted on a ``loop`` pass) is the
``watermark_ns`` of the runtime's own idles. In log time, so the same at every rate: an
aligner requiring a sparse stream (text) emits the same ticks at rate 1 and at max, by
watermark, never by lateness. Only for logs whose capture times are their log times
(everything sensorfuse records); otherwise no promise.

Progress: gauges ``replay_position_s`` (recorded capture time of the newest published message,
seconds from the log's first message, within the current ``loop`` pass),
``replay_published`` (messages handed over; ``replay_published:STREAM`` per stream,
end-of-stream markers not counted) and ``replay_pass`` go out with the
heartbeats; `sensorfuse replay` draws its progress line from them (`sensorfuse.replay.progress`).

Damaged logs: unreadable messages are counted (``rejected``/``damaged``) and skipped;
a truncated log plays its readable prefix; problems are logged at the end.
A missing or non-MCAP file fails the node at start (not retried).

Config example::

    player:
      kind: player
      params: {path: s.mcap, rate: max, start_s: 2.0, streams: [cam0/frame, mic0/audio16k]}
      outputs: {cam0/frame: cam0/frame, mic0/audio16k: mic0/audio16k}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Node, Out, OutputSpec
from sensorfuse.engine.params import NonNegativeFloat, PositiveFloat, PositiveInt, param_error, require_file
from sensorfuse.replay.mcap_io import LogError, LogMessage, LogReader


def replay_out(header: wire.Header, payload: bytes) -> Out:
    """The `Out` that republishes one recorded message byte for byte."""
    data: Any
    if header.kind in (wire.KIND_TENSOR, wire.KIND_AUDIO):
        data = np.frombuffer(payload, dtype=header.dtype or "uint8").reshape(header.shape or [-1])
    elif header.kind == wire.KIND_RECORD:
        data = msgspec.Raw(payload)  # re-encoded verbatim: the record bytes stay exact
    else:
        data = payload
    return Out(header.stream, header.kind, data, header.t_ns, layout=header.layout, encoding=header.encoding,
               rate=header.rate, sample0=header.sample0, meta=dict(header.meta), replay_header=header)


class PlayerNode(Node):
    """Replay an MCAP log (see the module docstring)."""

    inputs = {}
    outputs = {"*": OutputSpec(kind="any", doc="each recorded stream, on a port named like the stream")}

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        path: str
        rate: PositiveFloat | Literal["max"] = 1.0
        start_s: NonNegativeFloat | None = None
        end_s: NonNegativeFloat | None = None
        loop: bool = False
        loop_gap_s: NonNegativeFloat = 1.0
        streams: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
        #: messages handed over per `produce` call at most (keeps the runtime responsive)
        batch: PositiveInt = 32
        #: a stream quiet this long in log time gets a watermark in line (0: never)
        watermark_ms: NonNegativeFloat = 200.0

        def __post_init__(self) -> None:
            if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
                raise param_error("end_s", f"a time after start_s ({self.start_s})", self.end_s)

    @classmethod
    def check(cls, params: Params) -> None:
        require_file("path", params.path, "log")

    def start(self) -> None:
        p = self.params
        try:
            self.reader = LogReader(p.path)
        except FileNotFoundError:
            raise StartupError(f"player: no such log {p.path!r}") from None
        except LogError as exc:
            raise StartupError(f"player: {exc}") from None
        self.first_ns, self.last_ns = self.reader.time_range()
        self.start_ns = None if p.start_s is None else self.first_ns + int(p.start_s * 1e9)
        self.end_ns = None if p.end_s is None else self.first_ns + int(p.end_s * 1e9)
        self.published: dict[str, int] = {}
        self.damaged = 0
        self._pass = 0
        self._seq_span: dict[str, int] = {}
        self._anchor_wall_ns: int | None = None
        self._anchor_log_ns: int | None = None
        self._pending: LogMessage | None = None
        self._iter = self._messages()
        self.next_due_ns = None
        self._watermark_every_ns = round(p.watermark_ms * 1e6)
        #: port -> log time (shifted) of its last message or watermark
        self._marked: dict[str, int] = {}
        #: False once a message's capture time is not its log time: then nothing is promised
        self._promises_hold = True

    def stop(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            for problem in reader.problems:
                self.ctx.log.warning("%s: %s", self.params.path, problem)
            reader.close()

    # --- pacing ----------------------------------------------------------------------

    def produce(self, now_ns: int) -> list[Out] | None:
        outs: list[Out] = []
        while len(outs) < self.params.batch:
            msg = self._peek()
            if msg is None:
                return outs if outs else None
            # paced on the time the message goes out with: a looped pass is shifted forward
            log_ns = msg.log_time + self._pass_shift_ns()
            due = self._due_ns(log_ns, now_ns)
            if due > now_ns:
                self.next_due_ns = due
                return outs
            self._pending = None
            out = self._decode(msg)
            if out is not None:
                outs += self._watermarks_before(log_ns, out.port)
                outs.append(out)
                self._marked[out.port] = log_ns
        self.next_due_ns = None if self.params.rate == "max" else now_ns
        return outs

    def _due_ns(self, log_ns: int, now_ns: int) -> int:
        if self.params.rate == "max":
            return now_ns
        if self._anchor_wall_ns is None or self._anchor_log_ns is None:
            self._anchor_wall_ns, self._anchor_log_ns = now_ns, log_ns
        return self._anchor_wall_ns + int((log_ns - self._anchor_log_ns) / float(self.params.rate))

    # --- watermarks -------------------------------------------------------------------

    def watermark_ns(self, port: str) -> int | None:
        msg = self._peek() if self._promises_hold else None
        return None if msg is None else msg.log_time + self._pass_shift_ns() - 1

    def _watermarks_before(self, log_ns: int, sender: str) -> list[Out]:
        """In-line watermarks for the other wired streams quiet for `watermark_ms` before the
        message of `sender` at `log_ns`."""
        if not self._watermark_every_ns or not self._promises_hold:
            return []
        outs = []
        for port in self.ctx.outputs:
            last = self._marked.setdefault(port, log_ns)
            if port == sender:
                continue
            if log_ns - 1 - last >= self._watermark_every_ns:
                outs.append(Out.watermark(port, log_ns - 1))
                self._marked[port] = log_ns - 1
        return outs

    def _peek(self) -> LogMessage | None:
        if self._pending is None:
            self._pending = next(self._iter, None)
        return self._pending

    # --- reading ---------------------------------------------------------------------

    def _messages(self) -> Iterator[LogMessage]:
        while True:
            yield from self.reader.iter_messages(self.params.streams, start_ns=self.start_ns, end_ns=self.end_ns)
            if not self.params.loop or not self.published:
                return
            self._pass += 1

    def _decode(self, msg: LogMessage) -> Out | None:
        try:
            header, _, payload = msg.decode()
        except ValueError as exc:  # ProtoDecodeError and wire.ProtocolError are ValueErrors
            self.damaged += 1
            self.ctx.reject(msg.topic, "damaged", str(exc))
            return None
        if header.kind == wire.KIND_EOS:
            return None  # the runtime sends its own end-of-stream when the log is done
        if header.t_ns != msg.log_time and self._promises_hold:
            self._promises_hold = False
            self.ctx.log.warning("%s: %s at log time %d has capture time %d: no watermarks from this log",
                                 self.params.path, msg.topic, msg.log_time, header.t_ns)
        self.published[header.stream] = self.published.get(header.stream, 0) + 1
        self._report_position(header.stream, header.t_ns)  # before the loop shift: the position in the log
        if self._pass:
            header = self._shift(header)
        if not self._pass:
            self._seq_span[header.stream] = max(self._seq_span.get(header.stream, 0), header.seq + 1)
        return replay_out(header, payload)

    def _report_position(self, stream: str, t_ns: int) -> None:
        self.ctx.gauge("replay_position_s", (t_ns - self.first_ns) / 1e9)
        self.ctx.gauge("replay_published", sum(self.published.values()))
        self.ctx.gauge(f"replay_published:{stream}", self.published[stream])
        self.ctx.gauge("replay_pass", self._pass)

    def _pass_shift_ns(self) -> int:
        """How far the current `loop` pass is shifted in time (0 on the first pass)."""
        if not self._pass:
            return 0
        lo = self.start_ns if self.start_ns is not None else self.first_ns
        hi = min(self.end_ns, self.last_ns + 1) if self.end_ns is not None else self.last_ns + 1
        return self._pass * ((hi - lo) + int(self.params.loop_gap_s * 1e9))

    def _shift(self, header: wire.Header) -> wire.Header:
        """Header of a looped pass: time and seq continue past the previous pass."""
        shift = self._pass_shift_ns()
        sample0 = header.sample0
        if sample0 is not None and header.rate:
            sample0 += round(shift * header.rate / 1e9)
        return msgspec.structs.replace(header, t_ns=header.t_ns + shift, sample0=sample0,
                                       seq=header.seq + self._pass * self._seq_span.get(header.stream, 0))
