"""The stream table: every stream kind the built-in nodes publish, in one place.

Graphs name concrete streams (``cam0/frame``, ``mic1/audio``); the part after the last
``/`` selects the row here, which gives the message kind, payload layout, nominal rate
(for liveness in `sensorfuse status`) and the default input policy for consumers.
Capture nodes and the replay player must publish exactly these shapes so that any
graph runs unchanged on live sensors or on a log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorfuse.engine import wire


@dataclass(frozen=True)
class StreamType:
    suffix: str
    kind: str
    layout: str | None
    rate_hz: float | None
    policy: str
    queue: int
    doc: str


STREAM_TYPES: dict[str, StreamType] = {
    t.suffix: t
    for t in (
        StreamType("frame", wire.KIND_TENSOR, "HWC/bgr8", 30.0, "latest", 2,
                   "camera frame: uint8 [H, W, 3], BGR, C order; t_ns = capture time"),
        StreamType("audio", wire.KIND_AUDIO, "TC", 50.0, "drop_oldest", 100,
                   "audio block at the device rate: float32 [frames, channels] in [-1, 1]; "
                   "rate, sample0 set; t_ns = ADC time of the first sample; meta.discontinuity marks a gap"),
        StreamType("audio16k", wire.KIND_AUDIO, "TC", 50.0, "drop_oldest", 100,
                   "audio resampled for the models: float32 [frames, 1] at 16 kHz; sample0 counts 16 kHz samples"),
        StreamType("in", wire.KIND_BYTES, None, None, "drop_oldest", 64,
                   "text line, UTF-8 (encoding='utf-8'); t_ns = arrival time"),
        StreamType("status", wire.KIND_RECORD, None, None, "drop_oldest", 64,
                   "source status record: {event: source_lost | source_restored | gave_up | discontinuity, ...}"),
        StreamType("ticks", wire.KIND_RECORD, None, 30.0, "drop_oldest", 32,
                   "aligned tick: {t_ns, members, mask, late_ns, ...} (docs/time.md)"),
        StreamType("detections", wire.KIND_RECORD, None, 30.0, "drop_oldest", 32, "faces with boxes, keypoints, track ids"),
        StreamType("objects", wire.KIND_RECORD, None, None, "drop_oldest", 32,
                   "objects of the configured classes, with boxes and track ids, when a detector result enters"),
        StreamType("events", wire.KIND_RECORD, None, None, "drop_oldest", 256, "fused events (docs/protocol.md)"),
        StreamType("scores", wire.KIND_RECORD, None, 30.0, "drop_oldest", 32,
                   "per tick, the scores the event rules see, with their thresholds (docs/protocol.md)"),
    )
}


def stream_type(stream: str) -> StreamType | None:
    """The table row for a concrete stream name, by its last path component."""
    return STREAM_TYPES.get(stream.rsplit("/", 1)[-1])
