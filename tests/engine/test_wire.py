"""Wire protocol v1: round trips, zero-copy views, refusals with reasons, fuzzing."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorfuse.engine import wire


def frames_of(stream: str, kind: str, data: object, **kw: object) -> list[bytes]:
    return [bytes(f) for f in wire.encode_message(stream, kind, data, seq=kw.pop("seq", 0), t_ns=kw.pop("t_ns", 1), **kw)]


@pytest.mark.parametrize("dtype", ["uint8", "float32", "int16", "float64"])
def test_tensor_round_trip_is_a_view_over_the_frame(dtype: str) -> None:
    arr = (np.arange(2 * 3 * 4) % 7).astype(dtype).reshape(2, 3, 4)
    frames = frames_of("cam0/frame", wire.KIND_TENSOR, arr, layout="HWC/bgr8", src="cam", session="s1")
    msg = wire.decode_message(frames)
    np.testing.assert_array_equal(msg.array, arr)
    assert msg.array.dtype == np.dtype(dtype)
    # No copy: the array's memory is the received payload frame itself.
    assert np.shares_memory(msg.array, np.frombuffer(frames[2], dtype=np.uint8))
    assert not msg.array.flags.writeable
    h = msg.header
    assert (h.proto, h.stream, h.kind, h.layout, h.src, h.session) == (1, "cam0/frame", "tensor", "HWC/bgr8", "cam", "s1")


def test_audio_record_bytes_and_eos_round_trip() -> None:
    samples = np.linspace(-1, 1, 320, dtype=np.float32).reshape(160, 2)
    m = wire.decode_message(frames_of("mic0/audio", wire.KIND_AUDIO, samples, rate=16000, sample0=480, layout="TC"))
    assert m.header.rate == 16000 and m.header.sample0 == 480
    np.testing.assert_array_equal(m.array, samples)
    rec = {"type": "face.appeared", "score": 0.9, "boxes": [[1, 2, 3, 4]]}
    assert wire.decode_message(frames_of("p/events", wire.KIND_RECORD, rec)).record == rec
    assert wire.decode_message(frames_of("text/in", wire.KIND_BYTES, "héllo")).text == "héllo"
    eos = wire.decode_message(frames_of("a/b", wire.KIND_EOS, None, seq=9))
    assert eos.header.kind == "eos" and eos.payload == []


def test_header_is_a_plain_msgpack_map_with_documented_keys() -> None:
    frames = frames_of("cam0/frame", wire.KIND_TENSOR, np.zeros((2, 2, 3), np.uint8), seq=5, t_ns=77, t_pub_ns=78)
    header = msgspec.msgpack.decode(frames[1])
    assert isinstance(header, dict)
    assert header["proto"] == 1 and header["seq"] == 5 and header["t_ns"] == 77 and header["t_pub_ns"] == 78
    assert header["dtype"] == "uint8" and header["shape"] == [2, 2, 3]


def test_unknown_version_is_refused_naming_the_field() -> None:
    frames = frames_of("a/b", wire.KIND_RECORD, {"x": 1})
    raw = msgspec.msgpack.decode(frames[1])
    raw["proto"] = 2
    raw["new_field_from_the_future"] = [1, 2]
    with pytest.raises(wire.UnsupportedVersion, match="'proto'"):
        wire.decode_message([frames[0], msgspec.msgpack.encode(raw), frames[2]])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f[:1], "missing_frames"),
        (lambda f: [f[0], b"\xc1not msgpack", f[2]], "bad_header"),
        (lambda f: [b"other/topic", f[1], f[2]], "topic_mismatch"),
        (lambda f: [f[0], f[1], f[2][:-1]], "payload_size"),
        (lambda f: [f[0], f[1]], "payload_frames"),
        (lambda f: [f[0], f[1], f[2], b"extra"], "payload_frames"),
        (lambda f: [b"\xff\xfe", f[1], f[2]], "bad_topic"),
    ],
)
def test_malformed_messages_raise_protocol_error_with_reason(mutate: object, reason: str) -> None:
    frames = frames_of("cam0/frame", wire.KIND_TENSOR, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode_message(mutate(frames))  # type: ignore[operator]
    assert info.value.reason == reason


def test_absurd_shapes_and_dtypes_are_refused_before_allocating() -> None:
    for fields, reason in (({"dtype": "object"}, "bad_dtype"), ({"shape": [1 << 40, 1 << 20]}, "bad_shape"),
                           ({"shape": [-1, 3]}, "bad_shape")):
        frames = frames_of("cam0/frame", wire.KIND_TENSOR, np.zeros(3, np.uint8))
        raw = msgspec.msgpack.decode(frames[1])
        raw.update(fields)
        with pytest.raises(wire.ProtocolError) as info:
            wire.decode_message([frames[0], msgspec.msgpack.encode(raw), frames[2]])
        assert info.value.reason == reason


_header_values = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8), st.binary(max_size=8),
                           st.lists(st.integers(-5, 1 << 33), max_size=4), st.floats(allow_nan=True))


@settings(max_examples=300, deadline=None)
@given(
    topic=st.binary(max_size=12),
    header=st.one_of(st.binary(max_size=64), st.dictionaries(st.sampled_from(
        ["proto", "stream", "kind", "seq", "t_ns", "dtype", "shape", "rate", "sample0", "meta", "x"]), _header_values)),
    payload=st.lists(st.binary(max_size=64), max_size=3),
)
def test_fuzzed_messages_only_ever_raise_protocol_error(topic: bytes, header: object, payload: list[bytes]) -> None:
    header_bytes = header if isinstance(header, bytes) else msgspec.msgpack.encode(header)
    try:
        msg = wire.decode_message([topic, header_bytes, *payload])
    except wire.ProtocolError as exc:
        assert exc.reason
        return
    # Whatever decodes must be self-consistent.
    if msg.header.kind in ("tensor", "audio"):
        assert msg.array.nbytes == len(payload[0])


def test_a_kind_from_a_newer_publisher_is_skipped_not_malformed() -> None:
    header = msgspec.msgpack.encode({"proto": 1, "stream": "x/a", "kind": "hologram", "seq": 3, "t_ns": 0})
    with pytest.raises(wire.UnknownKind) as err:
        wire.decode_message([b"x/a", header])
    assert err.value.reason == "unknown_kind"
    bad_seq = msgspec.msgpack.encode({"proto": 1, "stream": "x/a", "kind": "hologram", "seq": -1, "t_ns": 0})
    with pytest.raises(wire.ProtocolError) as err:
        wire.decode_message([b"x/a", bad_seq])
    assert err.value.reason == "bad_header"


def test_the_stamper_numbers_data_and_counts_audio_samples() -> None:
    st = wire.StreamStamper("mic9/audio", src="me", session="s")
    block = np.zeros((160, 1), np.float32)
    first = wire.decode_message(st.data(wire.KIND_AUDIO, block, 100, rate=16000))
    second = wire.decode_message(st.data(wire.KIND_AUDIO, block, 200, rate=16000))
    idle = wire.decode_message(st.marker(wire.KIND_IDLE, meta={"idle_ms": 1000}))
    eos = wire.decode_message(st.marker(wire.KIND_EOS))
    assert [(m.seq, m.header.sample0) for m in (first, second)] == [(0, 0), (1, 160)]
    assert (idle.seq, idle.t_ns, eos.seq, eos.t_ns) == (2, 200, 2, 200)
    assert {m.header.src for m in (first, idle, eos)} == {"me"}
