"""Recorder node: writes every stream the graph wires to it into an MCAP log.

Ports: inputs ``*`` (any number, any stream; the stream name comes from each message's
header); output ``status`` (records: ``recorder_error`` once when writing fails,
``recorder_summary`` at the end with counts, drops and files).

Every file carries a `clock` metadata record, the wall-clock time of its first message
(`sensorfuse.replay.wallclock`): log times stay capture times, the anchor maps them to dates.

The node's `step` never touches the disk: it hands the message (header and payload,
not copied; a frame that came through shared memory is copied out of its pool slot) to a
bounded write cache drained by a writer thread. When the cache is
full the message is dropped and counted per stream (``cache_full``), so a slow disk
never blocks the live graph. The writer closes a chunk at least every ``flush_s``
(default 0.5 s) and pushes it to the OS, so a SIGKILL loses at most that much (the
chunk in memory); `stop()` finalises the file with its summary and index. A write
error (disk full, I/O error) is reported once on ``status`` and in the log; the
graph keeps running, later messages are counted as dropped (``write_error``) and the
file keeps its readable prefix.

An existing file is never overwritten: the next free ``NAME.N.mcap`` is used (so a
recorder restarted by the supervisor keeps its crashed predecessor's log).

Splitting: with ``split_mb`` and/or ``split_s`` the log becomes ``NAME_0000.mcap``,
``NAME_0001.mcap``, ...; the message that crosses a limit opens the next file, so no
message falls between two files. ``split_s`` counts capture time (t_ns), not wall time.

Config example::

    recorder:
      kind: recorder
      params: {path: runs/s.mcap, flush_s: 0.5, split_mb: 512, jpeg: [cam0/frame]}
      inputs: {frames: cam0/frame, audio: mic0/audio, events: perceive/events}
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import msgspec

from sensorfuse.engine import fingerprint, wire
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.engine.params import PositiveFloat
from sensorfuse.replay import wallclock
from sensorfuse.replay.mcap_io import LogWriter

Opener = Callable[[str], IO[bytes]]


def _open_file(path: str) -> IO[bytes]:
    return open(path, "wb")


@dataclass
class RecorderStats:
    written: Counter[str] = field(default_factory=Counter)
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: messages known to be in the OS (a flushed chunk) — what survives a SIGKILL
    flushed_messages: int = 0
    files: list[str] = field(default_factory=list)
    error: str | None = None


class _Writer(threading.Thread):
    """Owns the files: drains the cache, flushes on a wall-clock cadence, splits, finalises."""

    def __init__(self, params: Any, opener: Opener, jpeg_quality: int, run_dir: str | None = None) -> None:
        super().__init__(name="recorder-writer", daemon=True)
        self.params = params
        self.run_dir = run_dir
        self.opener = opener
        self.jpeg_quality = jpeg_quality
        self.cache: deque[tuple[wire.Header, bytes, Any, int]] = deque()
        self.cache_bytes = 0  # queued plus being written
        self.peak_bytes = 0  # the most cache_bytes reached (tests check the bound)
        self.cond = threading.Condition()
        self.closing = False
        self.stats = RecorderStats()
        self._file: IO[bytes] | None = None
        self._log: LogWriter | None = None
        self._file_bytes = 0
        self._file_first_t: int | None = None
        self._unflushed = 0
        self._index = 0
        self.flush_listeners: list[Callable[[int], None]] = []
        #: set once a write fails (tests and the node wait on it)
        self.failed = threading.Event()

    # called from the node thread
    def offer(self, header: wire.Header, payload: Any) -> str | None:
        """Queue one message for writing; returns the drop reason when it cannot be."""
        size = len(payload) if payload is not None else 0
        with self.cond:
            reason = None
            if self.stats.error is not None:
                reason = "write_error"
            elif self.cache_bytes + size > self.params.cache_mb * 1e6 and self.cache:
                reason = "cache_full"
            if reason is not None:
                self.stats.dropped[(header.stream, reason)] += 1
                return reason
            self.cache.append((header, wire.encode_header(header), payload, size))
            self.cache_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.cache_bytes)
            self.cond.notify()
        return None

    def close(self, timeout_s: float, wait: Callable[[Callable[[], bool], float, str], bool] | None = None) -> None:
        """Finalise and wait up to `timeout_s`; `wait` (the node context's) keeps the node's
        heartbeats going meanwhile, so a slow disk is not taken for a hang."""
        with self.cond:
            self.closing = True
            self.cond.notify()
        if wait is None:
            self.join(timeout_s)
        else:
            wait(lambda: not self.is_alive(), timeout_s, "finalising the recording")

    def run(self) -> None:
        next_flush = time.monotonic() + self.params.flush_s
        while True:
            with self.cond:
                while not self.cache and not self.closing:
                    remaining = next_flush - time.monotonic()
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
                batch = list(self.cache)
                self.cache.clear()
                closing = self.closing
            # The batch's bytes stay counted in cache_bytes until written: the cache holds
            # at most `cache_mb` including what is being written (before, a slow disk let
            # it refill meanwhile and memory reached twice the cap).
            for header, header_bytes, payload, _ in batch:
                self._write(header, header_bytes, payload)
            if batch:
                with self.cond:
                    self.cache_bytes -= sum(size for *_, size in batch)
            if time.monotonic() >= next_flush or closing:
                self._guard(self._flush)
                next_flush = time.monotonic() + self.params.flush_s
            if closing:
                self._guard(self._finish)
                return

    def _write(self, header: wire.Header, header_bytes: bytes, payload: Any) -> None:
        if self.stats.error is not None:
            self.stats.dropped[(header.stream, "write_error")] += 1
            return
        try:
            if self._log is None or self._should_split(header):
                self._rotate()
            assert self._log is not None
            if self._file_first_t is None:  # each file maps its log times to dates (replay/wallclock.py)
                self._log.add_metadata(wallclock.CLOCK_METADATA, wallclock.host_anchor(header.t_ns))
            jpeg = None
            if header.stream in self.params.jpeg and header.kind == wire.KIND_TENSOR and jpeg_able(header):
                jpeg = _as_jpeg(header, payload, self.jpeg_quality)
            self._file_bytes += self._log.write(header, header_bytes, payload if payload is not None else b"",
                                                jpeg=jpeg)
            if self._file_first_t is None:
                self._file_first_t = header.t_ns
            self._unflushed += 1
            self.stats.written[header.stream] += 1
        except OSError as exc:
            self._fail(exc)
            self.stats.dropped[(header.stream, "write_error")] += 1

    def _should_split(self, header: wire.Header) -> bool:
        p = self.params
        if p.split_mb is not None and self._file_bytes >= p.split_mb * 1e6:
            return True
        return (p.split_s is not None and self._file_first_t is not None
                and header.t_ns - self._file_first_t >= p.split_s * 1e9)

    def _path(self) -> str:
        """The next file name; an existing file is never overwritten (a restarted recorder
        must not destroy the log its crashed predecessor left), it gets a `.N` suffix."""
        stem, ext = os.path.splitext(self.params.path)
        ext = ext or ".mcap"
        if self.params.split_mb is not None or self.params.split_s is not None:
            stem = f"{stem}_{self._index:04d}"
        path, n = f"{stem}{ext}", 0
        while os.path.exists(path):
            n += 1
            path = f"{stem}.{n}{ext}"
        return path

    def _rotate(self) -> None:
        if self._log is not None:
            self._finish()
        path = self._path()
        self._index += 1
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = self.opener(path)
        self._log = LogWriter(self._file, chunk_bytes=int(self.params.chunk_mb * 1e6))
        self._log.add_metadata("fingerprint", fingerprint.flatten(self._fingerprint()))
        self._file_bytes = 0
        self._file_first_t = None
        self.stats.files.append(path)

    def _fingerprint(self) -> dict[str, Any]:
        """The graph's fingerprint (every node's models, written by the supervisor when the
        graph started), else this process's own (no models: e.g. a recorder outside a graph)."""
        if self.run_dir is not None:
            try:
                return json.loads(Path(self.run_dir, "fingerprint.json").read_text())
            except (OSError, ValueError):
                pass
        return fingerprint.fingerprint()

    def _flush(self) -> None:
        if self._log is not None and self._file is not None and self._unflushed:
            self._log.flush()
            self._file.flush()
            self.stats.flushed_messages += self._unflushed
            self._unflushed = 0
            for listener in self.flush_listeners:
                listener(self.stats.flushed_messages)

    def _finish(self) -> None:
        if self._log is not None and self._file is not None:
            log, f = self._log, self._file
            self._log = self._file = None
            log.finish()
            self.stats.flushed_messages += self._unflushed
            self._unflushed = 0
            f.close()

    def _guard(self, action: Callable[[], None]) -> None:
        if self.stats.error is not None:
            return
        try:
            action()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        with self.cond:
            if self.stats.error is None:
                self.stats.error = f"{type(exc).__name__}: {exc}"
        self.failed.set()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the error is already recorded; the file keeps what reached the disk
        self._log = self._file = None


def jpeg_able(header: wire.Header) -> bool:
    """Whether JPEG can carry this frame and give back its dtype and shape: uint8 with 1 or
    3 channels. Others (BGRA, uint16 depth, float32) are recorded raw, losslessly: the
    player could not rebuild them from a JPEG (it crashed on such logs before)."""
    shape = header.shape or []
    return header.dtype == "uint8" and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))) \
        and all(d > 0 for d in shape)


def _as_jpeg(header: wire.Header, payload: Any, quality: int) -> bytes:
    """JPEG bytes of a frame; the tensor header is kept, so replay decodes back to a frame."""
    import cv2
    import numpy as np

    frame = np.frombuffer(payload, dtype=header.dtype or "uint8").reshape(header.shape or [])
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {header.shape} frame")
    return bytes(buf.tobytes())


class RecorderNode(Node):
    """Record every wired stream to MCAP (see the module docstring)."""

    inputs = {"*": InputSpec(kind="any", policy="drop_oldest", queue=256, doc="any stream to record")}
    outputs = {"status": OutputSpec(kind=wire.KIND_RECORD, doc="recorder_error / recorder_summary records")}

    #: How files are opened; tests substitute one that fails (disk full).
    opener: Opener = staticmethod(_open_file)

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        path: str = "recording.mcap"
        chunk_mb: PositiveFloat = 4.0
        flush_s: PositiveFloat = 0.5
        split_mb: PositiveFloat | None = None
        split_s: PositiveFloat | None = None
        cache_mb: PositiveFloat = 256.0
        #: streams of frames to store as JPEG (lossy; replay decodes them back to frames)
        jpeg: list[str] = []
        jpeg_quality: Annotated[int, msgspec.Meta(ge=0, le=100)] = 90
        #: seconds `stop()` waits for the writer to finalise the file
        close_timeout_s: PositiveFloat = 30.0

    def start(self) -> None:
        self.writer = _Writer(self.params, type(self).opener, self.params.jpeg_quality, self.ctx.run_dir)
        self._error_reported = False
        self._last_t_ns = 0
        self.writer.start()

    @property
    def stats(self) -> RecorderStats:
        return self.writer.stats

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        payload = getattr(msg.payload[0], "buffer", msg.payload[0]) if msg.payload else None
        if msg.shm is not None:
            # A view of the producer's shared-memory slot is valid while `step` runs; the
            # writer thread gets it later, so copy it out now (the one copy a frame costs).
            payload = payload.tobytes()
        self._last_t_ns = msg.header.t_ns
        reason = self.writer.offer(msg.header, payload)
        if reason is not None:
            self.ctx.reject(msg.header.stream, f"recorder_{reason}")  # visible in `sensorfuse status`
        return self._error_status()

    def finish(self) -> Iterable[Out]:
        self.writer.close(self.params.close_timeout_s, self.ctx.wait)
        outs = list(self._error_status())
        s = self.stats
        outs.append(Out.record("status", {
            "event": "recorder_summary", "files": s.files, "written": dict(s.written),
            "dropped": {f"{stream}:{reason}": n for (stream, reason), n in s.dropped.items()},
            "error": s.error,
        }, self._last_t_ns))
        return outs

    def stop(self) -> None:
        if self.writer.is_alive():
            self.writer.close(self.params.close_timeout_s)

    def _error_status(self) -> list[Out]:
        error = self.stats.error
        if error is None or self._error_reported:
            return []
        self._error_reported = True
        self.ctx.log.error("recording stopped: %s (the graph keeps running)", error)
        # The supervisor sees it in the metrics: the run exits 1, its summary names the file.
        self.ctx.write_failed(self.params.path, error)
        return [Out.record("status", {"event": "recorder_error", "error": error,
                                      "files": list(self.stats.files)}, self._last_t_ns)]
