"""The Foxglove schemas a recording embeds are Foxglove's own: field numbers, names and
types as in the official generated classes (foxglove-schemas-protobuf), and a log the
recorder writes decodes with those classes into what Foxglove's panels draw (Image,
Audio, Log). Events are `foxglove.Log` lines; older logs that hold them as
`sensorfuse.Message` still replay exactly."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message as ProtoMessage
from mcap.reader import make_reader
from mcap.writer import Writer
from tests.replay.replay_helpers import SESSION, make_session, payload_bytes, record

from sensorfuse.engine import wire
from sensorfuse.engine.events import format_event
from sensorfuse.replay import proto, schemas
from sensorfuse.replay.mcap_io import LogReader

FOXGLOVE = [name for name in schemas.SCHEMAS if name.startswith("foxglove.")]
#: the fields each panel reads (docs/replay.md, "In Foxglove"): they must be declared
PANEL_FIELDS = {
    "foxglove.RawImage": {"timestamp", "frame_id", "width", "height", "encoding", "step", "data"},
    "foxglove.CompressedImage": {"timestamp", "frame_id", "format", "data"},
    "foxglove.RawAudio": {"timestamp", "data", "format", "sample_rate", "number_of_channels"},
    "foxglove.Log": {"timestamp", "level", "message", "name"},
    "foxglove.ImageAnnotations": {"timestamp", "points", "texts"},
    "foxglove.PointsAnnotation": {"timestamp", "type", "points", "outline_color", "thickness"},
    "foxglove.TextAnnotation": {"timestamp", "position", "text", "font_size"},
    "foxglove.Point2": {"x", "y"},
    "foxglove.Color": {"r", "g", "b", "a"},
}
EVENTS = [
    {"type": "speaker.active", "phase": "start", "key": "track:1", "score": 0.83, "modalities": ["video", "audio"]},
    {"type": "speaker.active", "phase": "update", "key": "track:1", "score": 0.9, "modalities": ["video", "audio"]},
    {"type": "query.match", "phase": "end", "key": "q0", "subject": {"query": "a cat"}, "score": 0.41,
     "modalities": ["text", "video"], "duration_ns": 1_500_000_000},
]


def _official(full_name: str) -> type[ProtoMessage]:
    short = full_name.split(".", 1)[1]
    return getattr(importlib.import_module(f"foxglove_schemas_protobuf.{short}_pb2"), short)


def _ours(schema: str) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message type in the schema's embedded FileDescriptorSet, by full name."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(schemas.schema_data(schema))
    return {f"{f.package}.{m.name}": m for f in fds.file for m in f.message_type}


@pytest.mark.parametrize("schema", FOXGLOVE)
def test_embedded_foxglove_schemas_match_the_official_definitions(schema: str) -> None:
    for full_name, ours in _ours(schema).items():
        if not full_name.startswith("foxglove."):
            continue
        official = _official(full_name).DESCRIPTOR
        declared = {f.name for f in ours.field}
        assert PANEL_FIELDS[full_name] <= declared, f"{full_name} lacks {PANEL_FIELDS[full_name] - declared}"
        for f in ours.field:
            if f.number >= schemas.HEADER_FIELD:  # sensorfuse's own fields, past Foxglove's numbers
                assert f.name.startswith("sensorfuse"), (full_name, f.name)
                continue
            theirs = official.fields_by_name.get(f.name)
            assert theirs is not None, f"{full_name}.{f.name} is not a Foxglove field"
            assert (f.number, f.type, f.label == f.LABEL_REPEATED) == (
                theirs.number, theirs.type, theirs.is_repeated), f"{full_name}.{f.name}"
            if f.type_name:
                target = theirs.message_type or theirs.enum_type
                assert f.type_name == "." + target.full_name, f"{full_name}.{f.name}"
        for enum in ours.enum_type:
            values = {v.name: v.number for v in enum.value}
            assert values == {v.name: v.number for v in official.enum_types_by_name[enum.name].values}


def _session() -> list[wire.Message]:
    msgs = make_session(n_frames=4)
    t0 = msgs[0].header.t_ns
    for i, event in enumerate(EVENTS):
        msgs.append(wire.build_message("perceive/events", wire.KIND_RECORD, event, seq=1 + i, t_ns=t0 + 10 + i,
                                       t_pub_ns=t0, src="perceive", session=SESSION))
    boxes = {"frame": 0, "boxes": [{"subject": "face0", "box": [3.0, 4.0, 30.5, 40.0], "visible": 1.0}]}
    msgs.append(wire.build_message("labels/boxes", wire.KIND_RECORD, boxes, seq=0, t_ns=t0, t_pub_ns=t0,
                                   src="sample", session=SESSION))
    return msgs


def _t_ns(ts: ProtoMessage) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def _decoded(path: Path) -> list[tuple[str, str, int, ProtoMessage]]:
    """(topic, schema, log time, message) of the Foxglove-schema channels, decoded with the
    official classes: no sensorfuse code."""
    out = []
    with open(path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(log_time_order=False):
            if schema.name.startswith("foxglove."):
                decoded = _official(schema.name).FromString(message.data)
                out.append((channel.topic, schema.name, message.log_time, decoded))
    return out


@pytest.mark.parametrize("jpeg", [False, True])
def test_recording_decodes_with_official_classes_into_what_panels_draw(tmp_path: Path, jpeg: bool) -> None:
    msgs = _session()
    path = tmp_path / "s.mcap"
    record(msgs, path, **({"jpeg": ["cam0/frame"]} if jpeg else {}))
    originals = {(m.stream, m.header.seq): m for m in msgs}
    seen: set[str] = set()
    for topic, schema, log_time, msg in _decoded(path):
        seen.add(schema if topic != "perceive/events" else "events")
        # the message's own timestamp is its capture time: images, their annotations and the
        # event lines meet at the same instant on Foxglove's timeline
        assert _t_ns(msg.timestamp) == log_time
        original = next(m for (s, _), m in originals.items() if s == topic and m.header.t_ns == log_time)
        h, raw = original.header, payload_bytes(original)
        if schema == "foxglove.RawImage":
            height, width, channels = h.shape
            assert (msg.width, msg.height, msg.encoding, msg.step) == (width, height, "bgr8", width * channels)
            assert msg.data == raw and msg.frame_id == topic
        elif schema == "foxglove.CompressedImage":
            assert msg.format == "jpeg" and msg.frame_id == topic
            assert cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR).shape == tuple(h.shape)
        elif schema == "foxglove.RawAudio":
            samples = np.frombuffer(raw, np.float32)
            assert (msg.format, msg.sample_rate, msg.number_of_channels) == ("pcm-s16", 16000, 1)
            pcm = np.frombuffer(msg.data, "<i2")
            assert len(pcm) == len(samples) and np.abs(pcm / 32767.0 - samples).max() < 1e-4
        elif schema == "foxglove.ImageAnnotations":
            record_ = wire.decode_record(raw)
            item = (record_.get("faces") or record_.get("boxes"))[0]
            x0, y0, x1, y1 = item["box"]
            (box,) = msg.points
            assert box.type == box.LINE_LOOP and box.thickness > 0 and box.outline_color.a == 1.0
            assert [(p.x, p.y) for p in box.points] == [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            assert [t.text for t in msg.texts] == [item.get("label", item.get("subject"))]
            assert (msg.texts[0].position.x, msg.texts[0].position.y) == (x0, y0)
        elif topic == "perceive/events":
            event = wire.decode_record(raw)
            assert msg.message == format_event(event) and msg.name == event["type"]
            assert msg.level == (msg.DEBUG if event.get("phase") == "update" else msg.INFO)
        else:
            assert schema == "foxglove.Log" and topic == "text/in"
            assert msg.message == raw.decode() and msg.level == msg.INFO
    image = "foxglove.CompressedImage" if jpeg else "foxglove.RawImage"
    assert seen == {image, "foxglove.RawAudio", "foxglove.ImageAnnotations", "foxglove.Log", "events"}


def test_event_lines_replay_exactly(tmp_path: Path) -> None:
    msgs = [m for m in _session() if m.stream == "perceive/events"]
    path = tmp_path / "e.mcap"
    record(msgs, path)
    with LogReader(path) as reader:
        got = [(m.schema, *m.decode()) for m in reader.iter_messages()]
    assert [schema for schema, *_ in got] == ["foxglove.Log"] * len(msgs)
    for (_, header, header_bytes, payload), original in zip(got, msgs):
        assert payload == payload_bytes(original) and header == original.header
        assert header_bytes == bytes(wire.encode_header(original.header))


def test_events_recorded_as_sensorfuse_message_before_still_replay_exactly(tmp_path: Path) -> None:
    """The layout logs had before events became `foxglove.Log`: payload + json + header."""
    original = wire.build_message("perceive/events", wire.KIND_RECORD, EVENTS[0], seq=7, t_ns=5_000, t_pub_ns=6_000,
                                  src="perceive", session=SESSION)
    header_bytes = bytes(wire.encode_header(original.header))
    payload = payload_bytes(original)
    h = original.header
    sf = (proto.Builder().uint(1, h.proto).string(2, h.stream).string(3, h.kind).uint(4, h.seq).uint(5, h.t_ns)
          .uint(6, h.t_pub_ns).string(7, h.src).string(8, h.session).bytes_(15, header_bytes))
    data = proto.Builder().bytes_(1, payload).string(2, "{}").message(schemas.HEADER_FIELD, sf).build()
    buf = io.BytesIO()
    writer = Writer(buf)
    writer.start()
    schema_id = writer.register_schema("sensorfuse.Message", "protobuf", schemas.schema_data("sensorfuse.Message"))
    channel_id = writer.register_channel("perceive/events", "protobuf", schema_id)
    writer.add_message(channel_id, log_time=h.t_ns, data=data, publish_time=h.t_pub_ns, sequence=h.seq)
    writer.finish()
    path = tmp_path / "old.mcap"
    path.write_bytes(buf.getvalue())
    with LogReader(path) as reader:
        (m,) = list(reader.iter_messages())
    assert m.schema == "sensorfuse.Message"
    assert m.decode() == (original.header, header_bytes, payload)


@pytest.mark.parametrize("event", [{}, {"type": 5, "phase": None, "score": "high", "modalities": 3,
                                         "subject": "x", "duration_ns": "long"}, [1, 2]])
def test_events_off_the_schema_are_recorded_and_replay_exactly(event: object) -> None:
    """A hostile or older producer's record on an events stream never breaks the recorder."""
    m = wire.build_message("perceive/events", wire.KIND_RECORD, event, seq=0, t_ns=1, t_pub_ns=2, src="x",
                           session=SESSION)
    header_bytes = bytes(wire.encode_header(m.header))
    enc = schemas.encode(m.header, header_bytes, payload_bytes(m))
    assert enc.schema == ("foxglove.Log" if isinstance(event, dict) else "sensorfuse.Message")
    assert schemas.decode(enc.schema, enc.data) == (m.header, header_bytes, payload_bytes(m))
