"""A minimal protobuf wire-format encoder/decoder and FileDescriptorSet builder.

The log schemas (see `sensorfuse.replay.schemas`) are protobuf so that standard MCAP tools
(Foxglove, `mcap cat`, mcap-protobuf-support) decode them from the schema embedded in
the file. We only need a handful of flat messages, so instead of depending on the
`protobuf` runtime we write the wire format directly: varints, fixed32/64 and
length-delimited fields. The descriptors are themselves protobuf messages
(`google/protobuf/descriptor.proto`) and are built with the same encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5

# FieldDescriptorProto.Type values.
T_DOUBLE, T_INT64, T_UINT64, T_INT32, T_FIXED32, T_BOOL = 1, 3, 4, 5, 7, 8
T_STRING, T_MESSAGE, T_BYTES, T_UINT32, T_ENUM = 9, 11, 12, 13, 14
L_OPTIONAL, L_REPEATED = 1, 3

_WIRE_OF_TYPE = {
    T_DOUBLE: I64, T_INT64: VARINT, T_UINT64: VARINT, T_INT32: VARINT, T_FIXED32: I32, T_BOOL: VARINT,
    T_STRING: LEN, T_MESSAGE: LEN, T_BYTES: LEN, T_UINT32: VARINT, T_ENUM: VARINT,
}


class ProtoDecodeError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1  # two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


class Builder:
    """Appends fields to one message. Zero / empty values are written as given (no elision)."""

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []

    def uint(self, number: int, value: int) -> Builder:
        self.parts += [_key(number, VARINT), varint(value)]
        return self

    def fixed32(self, number: int, value: int) -> Builder:
        self.parts += [_key(number, I32), struct.pack("<I", value)]
        return self

    def double(self, number: int, value: float) -> Builder:
        self.parts += [_key(number, I64), struct.pack("<d", value)]
        return self

    def bytes_(self, number: int, value: bytes | memoryview) -> Builder:
        self.parts += [_key(number, LEN), varint(len(value)), value]
        return self

    def string(self, number: int, value: str) -> Builder:
        return self.bytes_(number, value.encode("utf-8"))

    def message(self, number: int, sub: Builder) -> Builder:
        return self.bytes_(number, sub.build())

    def build(self) -> bytes:
        return b"".join(self.parts)


def timestamp(t_ns: int) -> Builder:
    """google.protobuf.Timestamp for a nanosecond time (floor division keeps nanos >= 0)."""
    seconds, nanos = divmod(t_ns, 1_000_000_000)
    return Builder().uint(1, seconds).uint(2, nanos)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ProtoDecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoDecodeError("varint longer than 10 bytes")


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field; LEN values are zero-copy views."""
    buf = memoryview(data)
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtoDecodeError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise ProtoDecodeError(f"field {number} declares {length} bytes, {len(buf) - pos} remain")
            yield number, wire_type, buf[pos:pos + length]
            pos += length
        elif wire_type in (I32, I64):
            size = 4 if wire_type == I32 else 8
            if pos + size > len(buf):
                raise ProtoDecodeError("truncated fixed-width field")
            yield number, wire_type, buf[pos:pos + size]
            pos += size
        else:
            raise ProtoDecodeError(f"unsupported wire type {wire_type}")


def fields_by_number(data: bytes | memoryview) -> dict[int, int | memoryview]:
    """Last value of each field (proto3 semantics for singular fields)."""
    return {number: value for number, _, value in iter_fields(data)}


def as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# --- descriptors -----------------------------------------------------------------------

@dataclass(frozen=True)
class FieldDef:
    name: str
    number: int
    type: int
    type_name: str = ""  # fully qualified with a leading dot, for messages and enums
    repeated: bool = False


@dataclass(frozen=True)
class EnumDef:
    name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class MessageDef:
    name: str
    fields: tuple[FieldDef, ...]
    enums: tuple[EnumDef, ...] = ()


@dataclass(frozen=True)
class FileDef:
    name: str
    package: str
    messages: tuple[MessageDef, ...]
    dependencies: tuple[str, ...] = ()
    syntax: str = "proto3"


@dataclass
class DescriptorPool:
    """Files by name; `file_set` emits a message's file with its dependencies first."""

    files: dict[str, FileDef] = field(default_factory=dict)

    def add(self, file: FileDef) -> None:
        self.files[file.name] = file

    def file_set(self, file_name: str) -> bytes:
        ordered: list[str] = []

        def visit(name: str) -> None:
            if name in ordered:
                return
            for dep in self.files[name].dependencies:
                visit(dep)
            ordered.append(name)

        visit(file_name)
        out = Builder()
        for name in ordered:
            out.message(1, _file_proto(self.files[name]))
        return out.build()


def _field_proto(f: FieldDef) -> Builder:
    b = Builder().string(1, f.name).uint(3, f.number).uint(4, L_REPEATED if f.repeated else L_OPTIONAL)
    b.uint(5, f.type)
    if f.type_name:
        b.string(6, f.type_name)
    return b.string(10, f.name)  # json_name


def _enum_proto(e: EnumDef) -> Builder:
    b = Builder().string(1, e.name)
    for name, number in e.values:
        b.message(2, Builder().string(1, name).uint(2, number))
    return b


def _message_proto(m: MessageDef) -> Builder:
    b = Builder().string(1, m.name)
    for f in m.fields:
        b.message(2, _field_proto(f))
    for e in m.enums:
        b.message(4, _enum_proto(e))
    return b


def _file_proto(f: FileDef) -> Builder:
    b = Builder().string(1, f.name).string(2, f.package)
    for dep in f.dependencies:
        b.string(3, dep)
    for m in f.messages:
        b.message(4, _message_proto(m))
    return b.string(12, f.syntax)


def wire_type_of(field_type: int) -> int:
    return _WIRE_OF_TYPE[field_type]


def names(defs: Iterable[MessageDef]) -> list[str]:
    return [d.name for d in defs]
