"""Received messages as the client hands them out, and the client's own errors.

Decoding and validation are the engine's (`sensorfuse.engine.wire.decode_message`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sensorfuse.engine import wire
from sensorfuse.engine.errors import SensorfuseError

#: Liveness messages: no payload; `seq` is the next data message's, `t_ns` a watermark,
#: `meta.idle_ms` the period (docs/protocol.md).
KIND_IDLE: str = wire.KIND_IDLE


class PublisherLost(SensorfuseError):
    """Nothing at all (data, idle, end of stream) arrived on a stream for the liveness
    limit: the publisher crashed, was killed or cannot be reached, it is not just quiet."""

    def __init__(self, stream: str, endpoint: str, silence_s: float, limit_s: float, heard: bool) -> None:
        since = "since the last message" if heard else "since connecting"
        super().__init__(f"{stream}: nothing from {endpoint} for {silence_s:.1f} s {since} (limit {limit_s:g} s): "
                         "the publisher is gone (crashed, killed or unreachable)")
        self.stream = stream
        self.silence_s = silence_s


class Message(wire.Message):
    """One received message: `header` (every field), `array` (a numpy view over
    the received frame, tensor and audio), `record` (record), `text` / `data` (bytes).
    `end` is true for the end-of-stream message, the last one a subscriber yields."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def end(self) -> bool:
        return self.header.kind == wire.KIND_EOS

    @property
    def snapshot(self) -> bool:
        """Re-sent state for a late joiner (an event stream's open events), not new data."""
        return self.header.meta.get("snapshot") is True

    @property
    def t_pub_ns(self) -> int:
        return self.header.t_pub_ns

    @property
    def src(self) -> str:
        return self.header.src

    @property
    def session(self) -> str:
        return self.header.session

    @property
    def meta(self) -> dict[str, Any]:
        return self.header.meta


def decode(parts: Sequence[Any], t_recv_ns: int) -> Message:
    """Validate one multipart message; raises `wire.ProtocolError` with the engine's reasons
    (`wire.UnknownKind` for a kind newer than this build, which a subscriber skips)."""
    msg = wire.decode_message(parts, t_recv_ns)
    out = Message(msg.header, msg.payload, t_recv_ns)
    out._record = msg._record  # decoded (and so validated) once already
    return out
