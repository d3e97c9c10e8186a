"""Writing and (defensively) reading sensorfuse MCAP logs.

`LogWriter` wraps the `mcap` library's writer: chunked, zstd-compressed, chunk CRCs on,
one channel per (stream, schema), schemas from `sensorfuse.replay.schemas`.

`LogReader` reads logs that may be damaged: truncated by a crash, bit-flipped, or
hostile. Every record length is checked against the file size and a limit before
anything is read, decompression is bounded by the declared (and checked) size, chunk
CRCs are verified, and damage ends iteration cleanly: a damaged chunk is skipped, a
record that cannot be framed ends the readable prefix. What was skipped or cut is
listed in `LogReader.problems`. Finalised logs are read through their chunk index
(fast seek); unfinalised ones (recorder killed) by scanning, which is MCAP's usual
recovery: every complete chunk comes back.
"""

from __future__ import annotations

import heapq
import io
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import lz4.frame
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, ChunkIndex, Message, Schema, Statistics
from mcap.writer import CompressionType, Writer

from sensorfuse import __version__
from sensorfuse.engine import schemas as record_schemas
from sensorfuse.engine import wire
from sensorfuse.replay import proto, schemas

MAGIC = b"\x89MCAP0\r\n"
#: Largest record (chunk, summary, message) a reader will load; bounds memory on hostile files.
MAX_RECORD_BYTES = 256 << 20
DEFAULT_CHUNK_BYTES = 4 << 20
PROFILE = "sensorfuse"
#: channel metadata key holding the JSON Schema of a record stream's records
RECORD_SCHEMA_KEY = "sensorfuse.record_schema"


class LogError(Exception):
    """A log that cannot be read at all (not MCAP, no readable header)."""


class HeaderStamper:
    """Headers for a session written offline (sample generator, import): per-stream `seq`
    from 0, with the given capture time; `counts` is how many each stream got."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.counts: dict[str, int] = {}

    def __call__(self, stream: str, kind: str, t_ns: int, src: str, **fields: Any) -> wire.Header:
        seq = self.counts.get(stream, 0)
        self.counts[stream] = seq + 1
        return wire.Header(proto=wire.PROTOCOL_VERSION, stream=stream, kind=kind, seq=seq, t_ns=t_ns, src=src,
                           session=self.session, **fields)


class LogWriter:
    """Append wire messages to an MCAP stream. Not thread-safe: one writer thread owns it."""

    def __init__(self, output: IO[bytes], *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 metadata: dict[str, str] | None = None) -> None:
        self._writer = Writer(output, chunk_size=chunk_bytes, compression=CompressionType.ZSTD, enable_crcs=True)
        self._writer.start(profile=PROFILE, library=f"sensorfuse/{__version__}")
        if metadata:
            self._writer.add_metadata("sensorfuse", metadata)
        self._schema_ids: dict[str, int] = {}
        self._channel_ids: dict[tuple[str, str], int] = {}
        self.messages = 0
        self.first_t_ns: int | None = None
        self.last_t_ns: int | None = None

    def write(self, header: wire.Header, header_bytes: bytes, payload: bytes | memoryview, *,
              jpeg: bytes | None = None) -> int:
        """Write one message; returns the encoded size in bytes (`jpeg`: see `schemas.encode`)."""
        enc = schemas.encode(header, header_bytes, payload, jpeg=jpeg)
        channel_id = self._channel(header, enc.schema)
        log_time = max(0, header.t_ns)
        self._writer.add_message(channel_id, log_time=log_time, data=enc.data,
                                 publish_time=max(0, header.t_pub_ns), sequence=header.seq & 0xFFFFFFFF)
        self.messages += 1
        self.first_t_ns = log_time if self.first_t_ns is None else min(self.first_t_ns, log_time)
        self.last_t_ns = log_time if self.last_t_ns is None else max(self.last_t_ns, log_time)
        return len(enc.data)

    def write_frames(self, frames: list[Any]) -> int:
        """Write one message given as wire frames `[topic, header, payload]`."""
        header_bytes = bytes(frames[1])
        header = wire.decode_header(header_bytes)
        payload = frames[2] if len(frames) > 2 else b""
        return self.write(header, header_bytes, payload)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        self._writer.add_metadata(name, data)

    def flush(self) -> None:
        """Close the open chunk and push it to the OS: a later crash keeps everything so far."""
        self._writer.flush()

    def finish(self) -> None:
        """Write the summary and index (the output stream stays open)."""
        self._writer.finish()

    def _channel(self, header: wire.Header, schema: str) -> int:
        key = (header.stream, schema)
        if key not in self._channel_ids:
            if schema not in self._schema_ids:
                self._schema_ids[schema] = self._writer.register_schema(
                    schema, schemas.SCHEMA_ENCODING, schemas.schema_data(schema))
            meta = {"kind": header.kind}
            if header.layout:
                meta["layout"] = header.layout
            if header.src:
                meta["src"] = header.src
            record_schema = record_schemas.schema_name(header.stream)
            if record_schema is not None:  # the record's JSON Schema (docs/replay.md)
                meta[RECORD_SCHEMA_KEY] = record_schemas.schema_text(record_schema)
            self._channel_ids[key] = self._writer.register_channel(
                header.stream, schemas.MESSAGE_ENCODING, self._schema_ids[schema], meta)
        return self._channel_ids[key]


@dataclass(frozen=True, slots=True)
class LogMessage:
    topic: str
    schema: str
    log_time: int
    publish_time: int
    sequence: int
    data: bytes

    def decode(self) -> tuple[wire.Header, bytes, bytes]:
        """(header, exact header bytes, exact payload bytes); raises ValueError when damaged."""
        return schemas.decode(self.schema, self.data)


@dataclass
class LogSummary:
    channels: dict[int, Channel] = field(default_factory=dict)
    schemas: dict[int, Schema] = field(default_factory=dict)
    chunk_indexes: list[ChunkIndex] = field(default_factory=list)
    statistics: Statistics | None = None


_RECORD_ERRORS = (McapError, struct.error, UnicodeDecodeError, ValueError, KeyError, IndexError, OverflowError)


class LogReader:
    """Read a (possibly damaged) log with bounded memory. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.path = os.fspath(path)
        self.max_record_bytes = max_record_bytes
        self._file = open(self.path, "rb")
        self.size = os.fstat(self._file.fileno()).st_size
        self.problems: list[str] = []
        if self._file.read(len(MAGIC)) != MAGIC:
            self._file.close()
            raise LogError(f"{self.path}: not an MCAP file (bad magic)")
        self.summary = self._read_summary()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _problem(self, text: str) -> None:
        if text not in self.problems:  # the same damage is met again on every pass
            self.problems.append(text)

    @property
    def finalised(self) -> bool:
        return self.summary is not None

    def metadata(self) -> dict[str, dict[str, str]]:
        """Metadata records (name -> map), by scanning top-level records."""
        out: dict[str, dict[str, str]] = {}
        for opcode, body, _ in self._scan(stop_at_data_end=True):
            if opcode == Opcode.METADATA:
                stream = ReadDataStream(io.BytesIO(body))
                try:
                    name = stream.read_prefixed_string()
                    out[name] = _read_string_map(stream)
                except _RECORD_ERRORS as exc:
                    self._problem(f"metadata record unreadable: {exc}")
        return out

    def time_range(self) -> tuple[int, int]:
        """(first, last) message log time: from the statistics when finalised, else by a
        pass over the readable messages; (0, 0) when there is none."""
        stats = self.summary.statistics if self.summary is not None else None
        if stats is not None and stats.message_count:
            return stats.message_start_time, stats.message_end_time
        first = last = None
        for msg in self.iter_messages():
            first = msg.log_time if first is None else first
            last = msg.log_time
        if first is None or last is None:
            return 0, 0
        return first, last

    def iter_messages(self, topics: Iterable[str] | None = None, *, start_ns: int | None = None,
                      end_ns: int | None = None) -> Iterator[LogMessage]:
        """Messages in log-time order (ties in file order), `start_ns <= log_time < end_ns`."""
        wanted = set(topics) if topics is not None else None
        heap: list[tuple[int, int, LogMessage]] = []
        order = 0
        for chunk_start, messages in self._chunks(start_ns, end_ns):
            # Chunks may overlap in time; everything before the next chunk's start is final.
            while heap and chunk_start is not None and heap[0][0] < chunk_start:
                yield heapq.heappop(heap)[2]
            for m in messages:
                if wanted is not None and m.topic not in wanted:
                    continue
                if (start_ns is not None and m.log_time < start_ns) or (end_ns is not None and m.log_time >= end_ns):
                    continue
                heapq.heappush(heap, (m.log_time, order, m))
                order += 1
        while heap:
            yield heapq.heappop(heap)[2]

    # --- internals ---------------------------------------------------------------------

    def _read_summary(self) -> LogSummary | None:
        footer_len = 9 + 20
        if self.size < len(MAGIC) * 2 + footer_len:
            return None
        self._file.seek(self.size - len(MAGIC) - footer_len)
        tail = self._file.read(footer_len + len(MAGIC))
        if tail[-len(MAGIC):] != MAGIC or tail[0] != Opcode.FOOTER:
            self._problem("no footer at the end (not finalised, or truncated): reading by scan, no index")
            return None
        summary_start, _offsets, _crc = struct.unpack("<QQI", tail[9:29])
        summary_end = self.size - len(MAGIC) - footer_len
        if summary_start == 0 or not len(MAGIC) <= summary_start <= summary_end:
            return None
        if summary_end - summary_start > self.max_record_bytes:
            self._problem("summary section larger than the record limit; scanning instead")
            return None
        self._file.seek(summary_start)
        section = self._file.read(summary_end - summary_start)
        summary = LogSummary()
        for opcode, body in _iter_records(section, self.max_record_bytes):
            stream = ReadDataStream(io.BytesIO(body))
            try:
                if opcode == Opcode.SCHEMA:
                    s = Schema.read(stream)
                    summary.schemas[s.id] = s
                elif opcode == Opcode.CHANNEL:
                    c = Channel.read(stream)
                    summary.channels[c.id] = c
                elif opcode == Opcode.CHUNK_INDEX:
                    summary.chunk_indexes.append(ChunkIndex.read(stream))
                elif opcode == Opcode.STATISTICS:
                    summary.statistics = Statistics.read(stream)
            except _RECORD_ERRORS as exc:
                self._problem(f"summary unreadable ({exc}); scanning instead")
                return None
        for index in summary.chunk_indexes:
            if not len(MAGIC) <= index.chunk_start_offset < summary_start or index.chunk_length > self.max_record_bytes:
                self._problem("chunk index points outside the data section; scanning instead")
                return None
        return summary

    def _scan(self, *, stop_at_data_end: bool = False) -> Iterator[tuple[int, bytes, int]]:
        """Top-level records (opcode, body, offset) from the start until the end or first damage."""
        offset = len(MAGIC)
        self._file.seek(offset)
        while True:
            head = self._file.read(9)
            if not head:
                self._problem(f"log ends at byte {offset} without a footer (not finalised)")
                return
            if len(head) < 9:
                self._problem(f"log truncated inside a record header at byte {offset}")
                return
            opcode, length = struct.unpack("<BQ", head)
            if length > self.max_record_bytes or offset + 9 + length > self.size:
                self._problem(
                    f"record at byte {offset} (opcode {opcode}) declares {length} bytes; "
                    f"{self.size - offset - 9} remain in the file: readable prefix ends here")
                return
            body = self._file.read(length)
            yield opcode, body, offset
            offset += 9 + length
            if opcode == Opcode.FOOTER and self._file.read(len(MAGIC)) != MAGIC:
                self._problem("log ends without the closing magic after its footer")
            if opcode == Opcode.FOOTER or (stop_at_data_end and opcode == Opcode.DATA_END):
                return

    def _chunks(self, start_ns: int | None, end_ns: int | None) -> Iterator[tuple[int | None, list[LogMessage]]]:
        """(chunk start time, its messages) in time order (index) or file order (scan)."""
        channels: dict[int, Channel] = {}
        schema_names: dict[int, str] = {}
        if self.summary is not None and self.summary.chunk_indexes:
            channels.update(self.summary.channels)
            schema_names.update({i: s.name for i, s in self.summary.schemas.items()})
            indexes = sorted(self.summary.chunk_indexes, key=lambda c: (c.message_start_time, c.chunk_start_offset))
            for ci in indexes:
                if (start_ns is not None and ci.message_end_time < start_ns) or (
                        end_ns is not None and ci.message_start_time >= end_ns):
                    continue
                self._file.seek(ci.chunk_start_offset)
                head = self._file.read(9)
                if len(head) < 9 or head[0] != Opcode.CHUNK or struct.unpack("<Q", head[1:])[0] != ci.chunk_length - 9:
                    self._problem(f"chunk index entry at byte {ci.chunk_start_offset} does not match the file")
                    continue
                body = self._file.read(ci.chunk_length - 9)
                yield ci.message_start_time, self._chunk_messages(body, ci.chunk_start_offset, channels, schema_names)
            return
        loose: list[LogMessage] = []
        for opcode, body, offset in self._scan():
            try:
                if opcode == Opcode.CHUNK:
                    msgs = self._chunk_messages(body, offset, channels, schema_names)
                    yield (msgs[0].log_time if msgs else None), msgs
                elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
                    m = _inner_record(opcode, body, channels, schema_names)
                    if m is not None:
                        loose.append(m)
                elif opcode == Opcode.DATA_END:
                    break
            except _RECORD_ERRORS as exc:
                self._problem(f"record at byte {offset} unreadable ({exc}): readable prefix ends here")
                break
        if loose:
            yield None, loose

    def _chunk_messages(self, body: bytes, offset: int, channels: dict[int, Channel],
                        schema_names: dict[int, str]) -> list[LogMessage]:
        try:
            chunk = Chunk.read(ReadDataStream(io.BytesIO(body)))
            data = self._decompress(chunk)
            if chunk.uncompressed_crc != 0 and zlib.crc32(data) != chunk.uncompressed_crc:
                raise ValueError("CRC mismatch")
            out = []
            for opcode, rec in _iter_records(data, self.max_record_bytes):
                m = _inner_record(opcode, rec, channels, schema_names)
                if m is not None:
                    out.append(m)
            return out
        except (*_RECORD_ERRORS, zstandard.ZstdError, RuntimeError, proto.ProtoDecodeError) as exc:
            self._problem(f"chunk at byte {offset} is damaged ({exc}); skipped")
            return []

    def _decompress(self, chunk: Chunk) -> bytes:
        size = chunk.uncompressed_size
        if size > self.max_record_bytes:
            raise ValueError(f"declares {size} uncompressed bytes, over the {self.max_record_bytes} limit")
        if chunk.compression == "":
            data = chunk.data
        elif chunk.compression == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(chunk.data)) as reader:
                data = reader.read(size + 1)
        elif chunk.compression == "lz4":
            data = lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=size + 1)
        else:
            raise ValueError(f"unsupported compression {chunk.compression!r}")
        if len(data) != size:
            raise ValueError(f"decompressed to {len(data)} bytes, header says {size}")
        return data


def _iter_records(data: bytes, limit: int) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(data):
        if pos + 9 > len(data):
            raise ValueError(f"record header cut at byte {pos}")
        opcode, length = struct.unpack_from("<BQ", data, pos)
        if length > limit or pos + 9 + length > len(data):
            raise ValueError(f"record at byte {pos} declares {length} bytes, {len(data) - pos - 9} remain")
        yield opcode, data[pos + 9:pos + 9 + length]
        pos += 9 + length


def _inner_record(opcode: int, body: bytes, channels: dict[int, Channel],
                  schema_names: dict[int, str]) -> LogMessage | None:
    stream = ReadDataStream(io.BytesIO(body))
    if opcode == Opcode.SCHEMA:
        s = Schema.read(stream)
        schema_names[s.id] = s.name
    elif opcode == Opcode.CHANNEL:
        c = Channel.read(stream)
        channels[c.id] = c
    elif opcode == Opcode.MESSAGE:
        m = Message.read(stream, len(body))
        channel = channels.get(m.channel_id)
        if channel is None:
            raise ValueError(f"message on unknown channel {m.channel_id}")
        return LogMessage(channel.topic, schema_names.get(channel.schema_id, ""), m.log_time, m.publish_time,
                          m.sequence, bytes(m.data))
    return None


def _read_string_map(stream: ReadDataStream) -> dict[str, str]:
    total = stream.read4()
    start = stream.count
    out: dict[str, str] = {}
    while stream.count - start < total:
        key = stream.read_prefixed_string()
        out[key] = stream.read_prefixed_string()
    return out

