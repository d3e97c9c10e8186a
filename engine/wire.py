"""Wire protocol v1: every message is a ZeroMQ multipart ``[topic, header, payload...]``.

``topic`` is the UTF-8 stream name, ``header`` a msgpack map (see `Header`), and the
payload frames carry raw buffers. Arrays travel as one raw frame each and are rebuilt
on the receiving side with ``numpy.frombuffer`` over the received frame (no copy).
docs/protocol.md is the normative description; keep the two in step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

PROTOCOL_VERSION = 1

#: Message kinds and what their payload frames hold.
KIND_TENSOR = "tensor"  # one frame: raw array bytes, C order, `dtype` x `shape`
KIND_AUDIO = "audio"  # one frame: raw samples [frames, channels], plus `rate`, `sample0`
KIND_RECORD = "record"  # one frame: a msgpack map (events, detections, ticks, status)
KIND_BYTES = "bytes"  # one frame: opaque bytes described by `encoding` (utf-8, jpeg, ...)
KIND_EOS = "eos"  # no payload: the producer of this stream has finished
KIND_IDLE = "idle"  # no payload: the stream is alive but has had nothing to say (liveness)
KINDS = frozenset({KIND_TENSOR, KIND_AUDIO, KIND_RECORD, KIND_BYTES, KIND_EOS, KIND_IDLE})
#: Kinds that carry no payload and are not data: they mark the stream's end or its liveness.
MARKER_KINDS = frozenset({KIND_EOS, KIND_IDLE})
_ARRAY_KINDS = frozenset({KIND_TENSOR, KIND_AUDIO})

#: dtypes allowed on the wire (numpy names, little-endian).
DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float16", "float32", "float64", "bool"}
)

#: Largest accepted array, to refuse absurd shapes before allocating anything.
MAX_PAYLOAD_BYTES = 1 << 30

#: Topic prefix of the shared-memory channel of a stream: a subscriber of
#: ``SHM_CHANNEL + stream`` gets the stream's large payloads as descriptors into a pool in
#: /dev/shm (header field `ref` = REF_SHM) and everything else inline; a subscriber of the
#: plain stream name always gets inline bytes (docs/protocol.md, "Shared memory").
SHM_CHANNEL = b"\x00shm\x00"
REF_SHM = "shm"
#: Descriptor fields (a msgpack map): pool name, generation, slot, byte offset of the
#: payload in the pool file, size, the slot's seq, and a reserved device-memory handle.
DESCRIPTOR_FIELDS = ("pool", "gen", "slot", "offset", "size", "seq", "dev")


class Header(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """The envelope carried by every message (msgpack map with these keys)."""

    proto: int
    stream: str
    kind: str
    seq: int
    t_ns: int
    t_pub_ns: int = 0
    src: str = ""
    session: str = ""
    dtype: str | None = None
    shape: list[int] | None = None
    layout: str | None = None
    encoding: str | None = None
    rate: int | None = None
    sample0: int | None = None
    meta: dict[str, Any] = {}
    #: how the payload frame is carried: None = inline bytes; REF_SHM = a descriptor
    ref: str | None = None


class ProtocolError(ValueError):
    """A message that cannot be decoded; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnsupportedVersion(ProtocolError):
    def __init__(self, version: object) -> None:
        super().__init__(
            "bad_version",
            f"header field 'proto' is {version!r}; this build speaks protocol {PROTOCOL_VERSION}",
        )


class UnknownKind(ProtocolError):
    """A well-formed message of a kind this build does not know (a newer publisher's):
    receivers skip it (docs/protocol.md, "Versioning"), it is not malformed."""

    def __init__(self, kind: str) -> None:
        super().__init__("unknown_kind", f"header field 'kind' is {kind!r}, not one this build knows")


# msgspec raises UnicodeDecodeError (a ValueError) for invalid UTF-8 inside msgpack strings.
_DECODE_ERRORS = (msgspec.MsgspecError, ValueError)
_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(Header)
_any_decoder = msgspec.msgpack.Decoder()


def encode_header(header: Header) -> bytes:
    return _encoder.encode(header)


def encode_record(record: Any) -> bytes:
    return _encoder.encode(record)


def decode_record(buf: Any) -> Any:
    return _any_decoder.decode(buf)


def decode_header(buf: Any) -> Header:
    """Decode and validate a header frame; raises `ProtocolError` with a reason."""
    try:
        header = _header_decoder.decode(buf)
    except _DECODE_ERRORS as exc:
        # Give the version error precedence: a future header may not fit our struct.
        try:
            raw = _any_decoder.decode(buf)
        except _DECODE_ERRORS:
            raise ProtocolError("bad_header", f"header is not msgpack: {exc}") from None
        if isinstance(raw, dict) and "proto" in raw and raw["proto"] != PROTOCOL_VERSION:
            raise UnsupportedVersion(raw["proto"]) from None
        raise ProtocolError("bad_header", str(exc)) from None
    if header.proto != PROTOCOL_VERSION:
        raise UnsupportedVersion(header.proto)
    if header.seq < 0:
        raise ProtocolError("bad_header", f"header field 'seq' is negative ({header.seq})")
    if header.kind not in KINDS:
        raise UnknownKind(header.kind)
    return header


_ITEMSIZE = {name: np.dtype(name).itemsize for name in DTYPES}
_WIRE_NAME = {np.dtype(name): name for name in DTYPES}


def array_nbytes(dtype: str, shape: Sequence[int]) -> int:
    itemsize = _ITEMSIZE.get(dtype)
    if itemsize is None:
        raise ProtocolError("bad_dtype", f"header field 'dtype' is {dtype!r}")
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise ProtocolError("bad_shape", f"header field 'shape' is {list(shape)!r}")
    n = math.prod(shape) * itemsize
    if n > MAX_PAYLOAD_BYTES:
        raise ProtocolError("bad_shape", f"shape {list(shape)} is {n} bytes, over the {MAX_PAYLOAD_BYTES} limit")
    return n


_UNSET: Any = object()


class Message:
    """A received (or locally built) message: header plus payload buffers.

    `array` is a read-only numpy view over the received frame (no copy).
    """

    __slots__ = ("header", "payload", "t_recv_ns", "_array", "_record", "shm")

    def __init__(self, header: Header, payload: Sequence[Any], t_recv_ns: int = 0) -> None:
        self.header = header
        self.payload = payload
        self.t_recv_ns = t_recv_ns
        self._array: np.ndarray | None = None
        self._record: Any = _UNSET
        #: a descriptor (dict) as received; once resolved by the subscriber, the pool slot
        #: the payload is a view of (see `sensorfuse.engine.transport.Subscriber.hold`)
        self.shm: Any = None

    @property
    def stream(self) -> str:
        return self.header.stream

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def t_ns(self) -> int:
        return self.header.t_ns

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            h = self.header
            if h.kind not in _ARRAY_KINDS or h.dtype is None or h.shape is None:
                raise TypeError(f"message on {h.stream!r} is {h.kind!r}, not an array")
            part = self.payload[0]
            if isinstance(part, np.ndarray):  # a read-only view of a shared-memory slot
                self._array = part.view(h.dtype).reshape(h.shape)
            else:
                self._array = np.frombuffer(_buffer(part), dtype=h.dtype).reshape(h.shape)
        return self._array

    @property
    def record(self) -> Any:
        if self.header.kind != KIND_RECORD:
            raise TypeError(f"message on {self.header.stream!r} is {self.header.kind!r}, not a record")
        if self._record is _UNSET:
            self._record = decode_record(_buffer(self.payload[0]))
        return self._record

    @property
    def data(self) -> bytes:
        return bytes(_buffer(self.payload[0]))

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def _buffer(part: Any) -> Any:
    # zmq.Frame exposes `.buffer` (a memoryview); bytes/memoryview are used as they are.
    return getattr(part, "buffer", part)


def decode_message(parts: Sequence[Any], t_recv_ns: int = 0) -> Message:
    """Validate a received multipart message. Raises `ProtocolError` (never anything else)."""
    if len(parts) < 2:
        raise ProtocolError("missing_frames", f"{len(parts)} frame(s), need at least topic and header")
    raw_topic = bytes(_buffer(parts[0])).removeprefix(SHM_CHANNEL)
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_topic", "topic frame is not UTF-8") from None
    header = decode_header(_buffer(parts[1]))
    if header.stream != topic:
        raise ProtocolError("topic_mismatch", f"topic {topic!r} but header field 'stream' is {header.stream!r}")
    payload = parts[2:]
    if header.kind in MARKER_KINDS:
        return Message(header, payload, t_recv_ns)
    if len(payload) != 1:
        raise ProtocolError("payload_frames", f"kind {header.kind!r} needs 1 payload frame, got {len(payload)}")
    if header.ref is not None:
        return _descriptor_message(header, payload, t_recv_ns)
    if header.kind in _ARRAY_KINDS:
        if header.dtype is None or header.shape is None:
            raise ProtocolError("bad_header", f"kind {header.kind!r} needs header fields 'dtype' and 'shape'")
        expected = array_nbytes(header.dtype, header.shape)
        got = len(_buffer(payload[0]))
        if got != expected:
            raise ProtocolError(
                "payload_size", f"dtype {header.dtype} x shape {header.shape} is {expected} bytes, payload is {got}"
            )
        if header.kind == KIND_AUDIO and (header.rate is None or header.rate <= 0 or header.sample0 is None):
            raise ProtocolError("bad_header", "kind 'audio' needs header fields 'rate' > 0 and 'sample0'")
    elif header.kind == KIND_RECORD:
        try:
            record = decode_record(_buffer(payload[0]))
        except _DECODE_ERRORS as exc:
            raise ProtocolError("bad_record", f"record payload is not msgpack: {exc}") from None
        msg = Message(header, payload, t_recv_ns)
        msg._record = record  # validated once above: `Message.record` must not decode again
        return msg
    return Message(header, payload, t_recv_ns)


def _descriptor_message(header: Header, payload: Sequence[Any], t_recv_ns: int) -> Message:
    """A message whose payload is in shared memory: its descriptor checked, in `Message.shm`."""
    if header.ref != REF_SHM or header.kind == KIND_RECORD:
        raise ProtocolError("bad_ref", f"header field 'ref' is {header.ref!r} on kind {header.kind!r}")
    try:
        desc = decode_record(_buffer(payload[0]))
    except _DECODE_ERRORS as exc:
        raise ProtocolError("bad_descriptor", f"descriptor is not msgpack: {exc}") from None
    if not isinstance(desc, dict) or any(
            not isinstance(desc.get(k), int) or desc[k] < 0 for k in ("gen", "slot", "offset", "size", "seq")) \
            or not isinstance(desc.get("pool"), str):
        raise ProtocolError("bad_descriptor", f"descriptor {desc!r} lacks one of {DESCRIPTOR_FIELDS}")
    if header.kind in _ARRAY_KINDS:
        if header.dtype is None or header.shape is None:
            raise ProtocolError("bad_header", f"kind {header.kind!r} needs header fields 'dtype' and 'shape'")
        expected = array_nbytes(header.dtype, header.shape)
        if desc["size"] != expected:
            raise ProtocolError("payload_size", f"dtype {header.dtype} x shape {header.shape} is {expected} bytes, "
                                f"descriptor says {desc['size']}")
    msg = Message(header, payload, t_recv_ns)
    msg.shm = desc
    return msg


def encode_payload(kind: str, data: Any) -> tuple[list[Any], dict[str, Any]]:
    """Payload frames and the header fields they imply for one outgoing message."""
    if kind in _ARRAY_KINDS:
        arr = np.ascontiguousarray(data)
        name = _WIRE_NAME.get(arr.dtype)  # dtype.name is computed in Python: ~3 µs a call
        if name is None:
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            name = _WIRE_NAME.get(arr.dtype)
            if name is None:
                raise TypeError(f"dtype {arr.dtype} cannot go on the wire")
        # A zero-size array has no bytes to view (memoryview refuses to cast a 0 in the shape).
        frame = memoryview(arr).cast("B") if arr.size else b""
        return [frame], {"dtype": name, "shape": list(arr.shape)}
    if kind == KIND_RECORD:
        return [encode_record(data)], {}
    if kind == KIND_BYTES:
        if isinstance(data, str):
            return [data.encode("utf-8")], {"encoding": "utf-8"}
        return [bytes(data) if not isinstance(data, (bytes, memoryview)) else data], {}
    if kind in MARKER_KINDS:
        return [], {}
    raise ValueError(f"unknown message kind {kind!r}")


def encode_message(
    stream: str,
    kind: str,
    data: Any,
    *,
    seq: int,
    t_ns: int,
    t_pub_ns: int = 0,
    src: str = "",
    session: str = "",
    layout: str | None = None,
    encoding: str | None = None,
    rate: int | None = None,
    sample0: int | None = None,
    meta: dict[str, Any] | None = None,
) -> list[Any]:
    """The multipart frames of one message, payload frames zero-copy where possible."""
    payload, implied = encode_payload(kind, data)
    header = Header(
        proto=PROTOCOL_VERSION, stream=stream, kind=kind, seq=seq, t_ns=t_ns, t_pub_ns=t_pub_ns, src=src,
        session=session, layout=layout, encoding=implied.get("encoding", encoding), rate=rate, sample0=sample0,
        meta=meta or {}, dtype=implied.get("dtype"), shape=implied.get("shape"),
    )
    return [stream.encode("utf-8"), encode_header(header), *payload]


class StreamStamper:
    """The header state of one outgoing stream, for publishers outside a node's runtime
    (`sensorfuse.client.Publisher`, `sensorfuse.run`'s feeds): `seq` +1 per data message
    from 0, `sample0` counted across audio blocks, `t_pub_ns` on the engine's clock
    (CLOCK_MONOTONIC), and the end of stream and `idle` markers built from that state."""

    def __init__(self, stream: str, *, src: str = "", session: str = "") -> None:
        self.stream = stream
        self.src = src
        self.session = session
        self.seq = 0  # the next data message's
        self.sample0 = 0  # the next audio block's first sample
        self.last_t_ns = 0  # capture time of the last data message

    def data(self, kind: str, data: Any, t_ns: int, **fields: Any) -> list[Any]:
        """The frames of the next data message (`fields` as `encode_message` takes them; an
        audio block gets `sample0`). Advances the state: call once per message sent."""
        if kind == KIND_AUDIO:
            fields["sample0"] = self.sample0
            self.sample0 += int(np.shape(data)[0])
        frames = encode_message(self.stream, kind, data, seq=self.seq, t_ns=t_ns, t_pub_ns=time.monotonic_ns(),
                                src=self.src, session=self.session, **fields)
        self.seq += 1
        self.last_t_ns = t_ns
        return frames

    def marker(self, kind: str, **fields: Any) -> list[Any]:
        """An `eos` or `idle` (docs/protocol.md): the next data seq, the last capture time."""
        return encode_message(self.stream, kind, None, seq=self.seq, t_ns=self.last_t_ns,
                              t_pub_ns=time.monotonic_ns(), src=self.src, session=self.session, **fields)


def build_message(stream: str, kind: str, data: Any, *, seq: int, t_ns: int, **fields: Any) -> Message:
    """Encode then decode one message: what a receiver would see (used by tests and fakes)."""
    frames = encode_message(stream, kind, data, seq=seq, t_ns=t_ns, **fields)
    return decode_message([bytes(f) for f in frames])
