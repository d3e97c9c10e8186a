"""How one wire message becomes one MCAP message, and back.

Every stream is written with a protobuf schema embedded in the file, so any MCAP
reader can decode it without sensorfuse code:

| wire message | MCAP schema | where the payload lives |
|---|---|---|
| tensor uint8 [H,W,3] / [H,W] / [H,W,1] | `foxglove.RawImage` | `data` (exact bytes) |
| bytes, encoding jpeg / png | `foxglove.CompressedImage` | `data` |
| bytes, valid UTF-8 text | `foxglove.Log` | `message` |
| record on a `*/events` stream | `foxglove.Log` | `message` = the event's line; exact msgpack in `sensorfuse_payload`, JSON in `sensorfuse_json` |
| audio | `foxglove.RawAudio` | `data` = pcm-s16 for viewers; exact samples in `sensorfuse_payload` |
| record on a `*/detections` or `*/boxes` stream | `foxglove.ImageAnnotations` | boxes drawn as `points`; exact msgpack in `sensorfuse_payload` |
| anything else (records, other tensors, eos) | `sensorfuse.Message` | `payload`; records also as `json` for humans |

The `foxglove.*` schemas declare the official field numbers, names and types
(foxglove-schemas-protobuf; tests/replay/test_foxglove_schemas.py compares them), so
Foxglove's panels recognise them by name. Logs written before events became
`foxglove.Log` hold them as `sensorfuse.Message`; `decode` reads both.

Each schema carries field 100, `sensorfuse.Header sensorfuse`: the readable envelope
fields plus `wire`, the msgpack header exactly as on the wire, which replay decodes.
Field 101, `sensorfuse_payload`, holds the exact payload where the Foxglove field
cannot (float audio, detection and event records); field 102, `sensorfuse_json`, an
event record as JSON. Extra fields are legal protobuf: Foxglove's
panels read the fields they know and ignore the rest.

MCAP message fields: `log_time` = capture time `t_ns` (so seek and the index work in
the recorded time base), `publish_time` = `t_pub_ns`, `sequence` = `seq` mod 2^32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.events import format_event
from sensorfuse.replay import proto
from sensorfuse.replay.proto import EnumDef, FieldDef, FileDef, MessageDef

SCHEMA_ENCODING = "protobuf"
MESSAGE_ENCODING = "protobuf"

HEADER_FIELD = 100
PAYLOAD_FIELD = 101
JSON_FIELD = 102
#: foxglove.Log levels an event phase is logged at: updates below starts and ends, so
#: the Log panel's minimum level hides them
_LOG_DEBUG, _LOG_INFO = 1, 2

_TS = ".google.protobuf.Timestamp"
_SF_HEADER = FieldDef("sensorfuse", HEADER_FIELD, proto.T_MESSAGE, ".sensorfuse.Header")
_SF_PAYLOAD = FieldDef("sensorfuse_payload", PAYLOAD_FIELD, proto.T_BYTES)
_SF_JSON = FieldDef("sensorfuse_json", JSON_FIELD, proto.T_STRING)


def _pool() -> proto.DescriptorPool:
    pool = proto.DescriptorPool()
    pool.add(FileDef("google/protobuf/timestamp.proto", "google.protobuf", (
        MessageDef("Timestamp", (FieldDef("seconds", 1, proto.T_INT64), FieldDef("nanos", 2, proto.T_INT32))),
    )))
    pool.add(FileDef("sensorfuse/Header.proto", "sensorfuse", (
        MessageDef("Header", (
            FieldDef("proto", 1, proto.T_UINT32), FieldDef("stream", 2, proto.T_STRING),
            FieldDef("kind", 3, proto.T_STRING), FieldDef("seq", 4, proto.T_UINT64),
            FieldDef("t_ns", 5, proto.T_INT64), FieldDef("t_pub_ns", 6, proto.T_INT64),
            FieldDef("src", 7, proto.T_STRING), FieldDef("session", 8, proto.T_STRING),
            FieldDef("wire", 15, proto.T_BYTES),
        )),
    )))
    deps = ("google/protobuf/timestamp.proto", "sensorfuse/Header.proto")
    pool.add(FileDef("sensorfuse/Message.proto", "sensorfuse", (
        MessageDef("Message", (
            FieldDef("payload", 1, proto.T_BYTES), FieldDef("json", 2, proto.T_STRING), _SF_HEADER,
        )),
    ), deps))
    pool.add(FileDef("foxglove/RawImage.proto", "foxglove", (
        MessageDef("RawImage", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS), FieldDef("frame_id", 7, proto.T_STRING),
            FieldDef("width", 2, proto.T_FIXED32), FieldDef("height", 3, proto.T_FIXED32),
            FieldDef("encoding", 4, proto.T_STRING), FieldDef("step", 5, proto.T_FIXED32),
            FieldDef("data", 6, proto.T_BYTES), _SF_HEADER,
        )),
    ), deps))
    pool.add(FileDef("foxglove/CompressedImage.proto", "foxglove", (
        MessageDef("CompressedImage", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS), FieldDef("frame_id", 4, proto.T_STRING),
            FieldDef("data", 2, proto.T_BYTES), FieldDef("format", 3, proto.T_STRING), _SF_HEADER,
        )),
    ), deps))
    pool.add(FileDef("foxglove/RawAudio.proto", "foxglove", (
        MessageDef("RawAudio", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS), FieldDef("data", 2, proto.T_BYTES),
            FieldDef("format", 3, proto.T_STRING), FieldDef("sample_rate", 4, proto.T_FIXED32),
            FieldDef("number_of_channels", 5, proto.T_FIXED32), _SF_HEADER, _SF_PAYLOAD,
        )),
    ), deps))
    pool.add(FileDef("foxglove/Log.proto", "foxglove", (
        MessageDef("Log", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS), FieldDef("level", 2, proto.T_ENUM, ".foxglove.Log.Level"),
            FieldDef("message", 3, proto.T_STRING), FieldDef("name", 4, proto.T_STRING),
            FieldDef("file", 5, proto.T_STRING), FieldDef("line", 6, proto.T_FIXED32), _SF_HEADER,
            _SF_PAYLOAD, _SF_JSON,
        ), (EnumDef("Level", (("UNKNOWN", 0), ("DEBUG", 1), ("INFO", 2), ("WARNING", 3), ("ERROR", 4),
                              ("FATAL", 5))),)),
    ), deps))
    pool.add(FileDef("foxglove/Color.proto", "foxglove", (
        MessageDef("Color", tuple(FieldDef(c, i + 1, proto.T_DOUBLE) for i, c in enumerate("rgba"))),
    )))
    pool.add(FileDef("foxglove/Point2.proto", "foxglove", (
        MessageDef("Point2", (FieldDef("x", 1, proto.T_DOUBLE), FieldDef("y", 2, proto.T_DOUBLE))),
    )))
    pool.add(FileDef("foxglove/PointsAnnotation.proto", "foxglove", (
        MessageDef("PointsAnnotation", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS),
            FieldDef("type", 2, proto.T_ENUM, ".foxglove.PointsAnnotation.Type"),
            FieldDef("points", 3, proto.T_MESSAGE, ".foxglove.Point2", repeated=True),
            FieldDef("outline_color", 4, proto.T_MESSAGE, ".foxglove.Color"),
            FieldDef("outline_colors", 5, proto.T_MESSAGE, ".foxglove.Color", repeated=True),
            FieldDef("fill_color", 6, proto.T_MESSAGE, ".foxglove.Color"),
            FieldDef("thickness", 7, proto.T_DOUBLE),
        ), (EnumDef("Type", (("UNKNOWN", 0), ("POINTS", 1), ("LINE_LOOP", 2), ("LINE_STRIP", 3),
                             ("LINE_LIST", 4))),)),
    ), ("google/protobuf/timestamp.proto", "foxglove/Color.proto", "foxglove/Point2.proto")))
    pool.add(FileDef("foxglove/TextAnnotation.proto", "foxglove", (
        MessageDef("TextAnnotation", (
            FieldDef("timestamp", 1, proto.T_MESSAGE, _TS), FieldDef("position", 2, proto.T_MESSAGE, ".foxglove.Point2"),
            FieldDef("text", 3, proto.T_STRING), FieldDef("font_size", 4, proto.T_DOUBLE),
            FieldDef("text_color", 5, proto.T_MESSAGE, ".foxglove.Color"),
            FieldDef("background_color", 6, proto.T_MESSAGE, ".foxglove.Color"),
        )),
    ), ("google/protobuf/timestamp.proto", "foxglove/Color.proto", "foxglove/Point2.proto")))
    pool.add(FileDef("foxglove/ImageAnnotations.proto", "foxglove", (
        MessageDef("ImageAnnotations", (
            FieldDef("timestamp", 5, proto.T_MESSAGE, _TS),
            FieldDef("points", 2, proto.T_MESSAGE, ".foxglove.PointsAnnotation", repeated=True),
            FieldDef("texts", 3, proto.T_MESSAGE, ".foxglove.TextAnnotation", repeated=True),
            _SF_HEADER, _SF_PAYLOAD,
        )),
    ), ("google/protobuf/timestamp.proto", "sensorfuse/Header.proto", "foxglove/PointsAnnotation.proto",
        "foxglove/TextAnnotation.proto")))
    return pool


_POOL = _pool()
#: schema name -> (file in the pool, field number holding the payload when field 101 is absent)
SCHEMAS: dict[str, tuple[str, int]] = {
    "sensorfuse.Message": ("sensorfuse/Message.proto", 1),
    "foxglove.RawImage": ("foxglove/RawImage.proto", 6),
    "foxglove.CompressedImage": ("foxglove/CompressedImage.proto", 2),
    "foxglove.RawAudio": ("foxglove/RawAudio.proto", 2),
    "foxglove.Log": ("foxglove/Log.proto", 3),
    "foxglove.ImageAnnotations": ("foxglove/ImageAnnotations.proto", 0),
}
#: record streams (by last path component) drawn as `foxglove.ImageAnnotations`, with their
#: outline colour (r, g, b): perceive's detections green, a sample session's true boxes amber
ANNOTATION_COLORS = {"detections": (0.1, 1.0, 0.2), "boxes": (1.0, 0.75, 0.0)}
_IMAGE_ENCODINGS = {"HWC/bgr8": "bgr8", "HWC/rgb8": "rgb8", "HW/mono8": "mono8", "HWC/mono8": "mono8"}


def schema_data(name: str) -> bytes:
    """The FileDescriptorSet (schema record data) for one of `SCHEMAS`."""
    return _POOL.file_set(SCHEMAS[name][0])


@dataclass(frozen=True)
class Encoded:
    schema: str
    data: bytes


def _header_proto(h: wire.Header, header_bytes: bytes) -> proto.Builder:
    return (proto.Builder().uint(1, h.proto).string(2, h.stream).string(3, h.kind).uint(4, h.seq).uint(5, h.t_ns)
            .uint(6, h.t_pub_ns).string(7, h.src).string(8, h.session).bytes_(15, header_bytes))


def encode(h: wire.Header, header_bytes: bytes, payload: bytes | memoryview, *, jpeg: bytes | None = None) -> Encoded:
    """The MCAP message for one wire message (`header_bytes` is its msgpack header).

    `jpeg`: a frame (tensor) stored lossily as JPEG; `decode` turns it back into a frame.
    """
    sf = _header_proto(h, header_bytes)
    ts = proto.timestamp(h.t_ns)
    if jpeg is not None:
        msg = (proto.Builder().message(1, ts).string(4, h.stream).bytes_(2, jpeg).string(3, "jpeg")
               .message(HEADER_FIELD, sf))
        return Encoded("foxglove.CompressedImage", msg.build())
    if h.kind == wire.KIND_TENSOR and h.dtype == "uint8" and h.shape and _image_dims(h.shape):
        height, width, channels = _image_dims(h.shape)
        enc = _IMAGE_ENCODINGS.get(h.layout or "", "bgr8" if channels == 3 else "mono8")
        msg = (proto.Builder().message(1, ts).string(7, h.stream).fixed32(2, width).fixed32(3, height)
               .string(4, enc).fixed32(5, width * channels).bytes_(6, payload).message(HEADER_FIELD, sf))
        return Encoded("foxglove.RawImage", msg.build())
    if h.kind == wire.KIND_BYTES and h.encoding in ("jpeg", "png"):
        msg = (proto.Builder().message(1, ts).string(4, h.stream).bytes_(2, payload).string(3, h.encoding)
               .message(HEADER_FIELD, sf))
        return Encoded("foxglove.CompressedImage", msg.build())
    if h.kind == wire.KIND_BYTES and _is_utf8(payload):
        msg = (proto.Builder().message(1, ts).uint(2, 2).bytes_(3, payload).string(4, h.stream)
               .message(HEADER_FIELD, sf))
        return Encoded("foxglove.Log", msg.build())
    if h.kind == wire.KIND_AUDIO and h.dtype and h.shape and len(h.shape) == 2:
        samples = np.frombuffer(payload, dtype=h.dtype).reshape(h.shape)
        msg = (proto.Builder().message(1, ts).bytes_(2, _pcm_s16(samples)).string(3, "pcm-s16")
               .fixed32(4, h.rate or 0).fixed32(5, h.shape[1]).message(HEADER_FIELD, sf).bytes_(PAYLOAD_FIELD, payload))
        return Encoded("foxglove.RawAudio", msg.build())
    if h.kind == wire.KIND_RECORD and h.stream.rsplit("/", 1)[-1] in ANNOTATION_COLORS:
        record = wire.decode_record(payload)
        red, green, blue = ANNOTATION_COLORS[h.stream.rsplit("/", 1)[-1]]
        msg = proto.Builder()
        for box, label in _boxes(record):
            x0, y0, x1, y1 = box
            points = proto.Builder().message(1, ts).uint(2, 2)
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
                points.message(3, proto.Builder().double(1, x).double(2, y))
            points.message(4, proto.Builder().double(1, red).double(2, green).double(3, blue).double(4, 1.0))
            msg.message(2, points.double(7, 2.0))
            if label:
                msg.message(3, proto.Builder().message(1, ts).message(2, proto.Builder().double(1, x0).double(2, y0))
                            .string(3, label).double(4, 14.0))
        msg.message(5, ts).message(HEADER_FIELD, sf).bytes_(PAYLOAD_FIELD, payload)
        return Encoded("foxglove.ImageAnnotations", msg.build())
    if h.kind == wire.KIND_RECORD and h.stream.rsplit("/", 1)[-1] == "events":
        event = _record_or_none(payload)
        if isinstance(event, dict):
            level = _LOG_DEBUG if event.get("phase") == "update" else _LOG_INFO
            msg = (proto.Builder().message(1, ts).uint(2, level).string(3, format_event(event))
                   .string(4, str(event.get("type") or h.stream)).message(HEADER_FIELD, sf)
                   .bytes_(PAYLOAD_FIELD, payload).string(JSON_FIELD, _json_of(payload)))
            return Encoded("foxglove.Log", msg.build())
    msg = proto.Builder().bytes_(1, payload)
    if h.kind == wire.KIND_RECORD:
        msg.string(2, _json_of(payload))
    return Encoded("sensorfuse.Message", msg.message(HEADER_FIELD, sf).build())


def decode(schema: str, data: bytes | memoryview) -> tuple[wire.Header, bytes, bytes]:
    """(header, its exact msgpack bytes, exact payload bytes) of one MCAP message.

    Raises `proto.ProtoDecodeError` or `wire.ProtocolError` for damaged content.
    """
    if schema not in SCHEMAS:
        raise proto.ProtoDecodeError(f"schema {schema!r} is not one sensorfuse writes")
    fields = proto.fields_by_number(data)
    sf = fields.get(HEADER_FIELD)
    if not isinstance(sf, memoryview):
        raise proto.ProtoDecodeError("message has no sensorfuse header (field 100)")
    header_bytes = proto.fields_by_number(sf).get(15)
    if not isinstance(header_bytes, memoryview):
        raise proto.ProtoDecodeError("sensorfuse header has no wire bytes (field 15)")
    header = wire.decode_header(header_bytes)
    payload = fields.get(PAYLOAD_FIELD, fields.get(SCHEMAS[schema][1], b""))
    if isinstance(payload, int):
        raise proto.ProtoDecodeError("payload field has the wrong wire type")
    if schema == "foxglove.CompressedImage" and header.kind == wire.KIND_TENSOR:
        return header, bytes(header_bytes), _decode_jpeg_frame(header, payload)
    return header, bytes(header_bytes), bytes(payload)


def _decode_jpeg_frame(header: wire.Header, jpeg: memoryview) -> bytes:
    import cv2

    flags = cv2.IMREAD_COLOR if (header.shape and len(header.shape) == 3 and header.shape[2] == 3) else cv2.IMREAD_GRAYSCALE
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    if frame is None or list(frame.shape[:2]) != list((header.shape or [])[:2]):
        raise proto.ProtoDecodeError("JPEG frame does not decode to the recorded shape")
    return frame.tobytes()


def _image_dims(shape: list[int]) -> tuple[int, int, int] | None:
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 3 and shape[2] in (1, 3):
        return shape[0], shape[1], shape[2]
    return None


def _is_utf8(payload: bytes | memoryview) -> bool:
    try:
        bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pcm_s16(samples: np.ndarray) -> bytes:
    if samples.dtype == np.int16:
        return samples.tobytes()
    if samples.dtype.kind == "f":
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return samples.astype("<i2").tobytes()


def _record_or_none(payload: bytes | memoryview) -> Any:
    try:
        return wire.decode_record(payload)
    except ValueError:  # msgspec.DecodeError subclasses ValueError
        return None


def _json_of(payload: bytes | memoryview) -> str:
    try:
        return json.dumps(wire.decode_record(payload), default=repr, ensure_ascii=False)
    except ValueError as exc:  # msgspec.DecodeError subclasses ValueError
        return json.dumps({"undecodable": str(exc)})


def _boxes(record: Any) -> list[tuple[tuple[float, float, float, float], str]]:
    """Best-effort boxes from a detections record: any list of maps with box/bbox [x0,y0,x1,y1]."""
    items: list[Any] = []
    if isinstance(record, dict):
        for value in record.values():
            if isinstance(value, list):
                items += value
    elif isinstance(record, list):
        items = record
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        box = item.get("box", item.get("bbox"))
        if isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            label = item.get("label", item.get("track_id", item.get("subject", "")))
            out.append(((float(box[0]), float(box[1]), float(box[2]), float(box[3])), str(label)))
    return out
