"""Text source: lines from stdin, from a file, or pushed by other programs over ZeroMQ.

Ports
    text (out) bytes, UTF-8 (``encoding: utf-8``), one line / message each -> ``text/in``.
         ``t_ns`` is the arrival time on the session clock (stdin, zmq, untimestamped file
         lines) or the line's own timestamp (file lines written ``SECONDS<TAB>text``,
         seconds from the start of the file, placed on the time base by ``clock``; see
         `sensorfuse.nodes.media_clock`).

Sources (``source``)
    ``stdin``  one text per line; the stream ends at EOF.
    ``file``   ``path``; timestamped lines are paced by ``pace`` (native: at their time;
               max: at once); untimestamped lines go out as they are read.
    ``zmq``    a PULL socket bound at ``endpoint`` (default ``tcp://127.0.0.1:5599``);
               any program connects a PUSH socket and sends one single-frame UTF-8
               message per text (docs/text-ingest.md). Binding beyond loopback needs
               CurveZMQ keys (``keys``: a directory made by `sensorfuse keys generate DIR`).

Watermark
    While the stream is quiet its ``idle`` messages promise that no later text is stamped
    before: for ``zmq`` and ``stdin`` the time of the last look that found nothing waiting
    (texts are stamped when taken, so a later one is stamped later); for ``file`` just
    before the timestamped line waiting for its time. An aligner that requires the text
    stream then stops waiting for it (docs/time.md, "Watermarks").

Failure behaviour
    Invalid UTF-8, empty (or whitespace-only) texts and texts over ``max_bytes`` are
    refused and counted (reasons ``invalid_utf8``, ``empty``, ``too_long``; a file
    timestamp going backwards: ``bad_timestamp``); the node keeps running. An over-long
    line is skipped in chunks, never held in memory whole.

Config example::

    text:
      kind: text
      params: {source: zmq, endpoint: "tcp://127.0.0.1:5599", max_bytes: 4096}
      outputs: {text: text/in}
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any, Literal

import msgspec
import zmq

from sensorfuse.engine import security
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Node, Out, OutputSpec
from sensorfuse.engine.params import PositiveInt, param_error, require_file
from sensorfuse.nodes.media_clock import ClockMode, MediaClock, PaceMode

NS = 1_000_000_000
TIMESTAMPED = re.compile(rb"^(\d+(?:\.\d+)?)\t(.*)$", re.DOTALL)
CHUNK = 1 << 16


class TextTooLong(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"line of at least {size} bytes")
        self.size = size


def read_line(stream: IO[bytes], max_bytes: int) -> bytes | None:
    """The next line without its newline; None at EOF; `TextTooLong` (after skipping the
    rest of the line in chunks) when longer than `max_bytes`."""
    line = stream.readline(max_bytes + 2)  # room for "\r\n"
    if not line:
        return None
    if line.endswith(b"\n") or len(line) <= max_bytes:
        line = line.rstrip(b"\n").rstrip(b"\r")
        if len(line) > max_bytes:
            raise TextTooLong(len(line))
        return line
    size = len(line)
    while True:  # skip to the end of the over-long line
        chunk = stream.readline(CHUNK)
        size += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            raise TextTooLong(size)


class TextNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        source: Literal["stdin", "file", "zmq"] = "stdin"
        path: str | None = None
        endpoint: str = "tcp://127.0.0.1:5599"
        keys: str | None = None
        max_bytes: PositiveInt = 4096
        clock: ClockMode = "file"
        origin_ns: int = 0
        pace: PaceMode = "native"
        queue: PositiveInt = 256

        def __post_init__(self) -> None:
            if self.source == "file" and not self.path:
                raise param_error("path", "a file to read (source is file)", self.path)

    outputs = {"text": OutputSpec(kind="bytes", doc="UTF-8 text, t_ns = arrival or file timestamp")}

    @classmethod
    def check(cls, params: Params) -> None:
        if params.source == "file" and params.path is not None:
            require_file("path", params.path, "text file")
        if params.source == "zmq" and params.keys is not None:
            security.CurveKeys.load(params.keys)  # StartupError naming the directory

    def start(self) -> None:
        p = self.params
        self.sock: zmq.Socket | None = None
        self.zctx: zmq.Context | None = None
        self.file: IO[bytes] | None = None
        self.lines: queue.Queue[tuple[int, bytes | None, str | None]] = queue.Queue(p.queue)
        self.pending: tuple[int, str] | None = None  # file: a timestamped line waiting for its time
        self.last_media_ns = -1
        #: zmq/stdin: session time of the last look that found no text waiting
        self.quiet_ns: int | None = None
        #: held while the stdin reader stamps a line and queues it (see `_stdin_quiet_ns`)
        self.stamping = threading.Lock()
        self.ended = False
        self.next_due_ns = None
        if p.source == "file":
            if p.path is None or not os.path.exists(p.path):
                raise StartupError(f"text: source file needs an existing path (got {p.path!r})")
            try:
                self.media = MediaClock(p.clock, p.origin_ns, p.pace)  # type: ignore[arg-type]
            except ValueError as exc:
                raise StartupError(f"text: {exc}") from None
            self.file = open(p.path, "rb")
        elif p.source == "stdin":
            threading.Thread(target=self._read_stdin, name="text-stdin", daemon=True).start()
        elif p.source == "zmq":
            self._bind(p.endpoint)
        else:
            raise StartupError(f"text: source {p.source!r}: use stdin, file or zmq")

    def _bind(self, endpoint: str) -> None:
        keys = security.CurveKeys.load(self.params.keys) if self.params.keys else None
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.PULL)
        self.sock.linger = 0
        self.sock.rcvhwm = self.params.queue
        security.apply_server(self.sock, endpoint, keys)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise StartupError(f"text: cannot bind {endpoint}: {exc}") from None
        # With a wildcard port ("tcp://127.0.0.1:*") the real one is only known now.
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.ctx.log.info("text: accepting PUSH connections at %s", self.endpoint)

    def _read_stdin(self) -> None:
        # A blocking read has to live off the node's loop; lines cross over a bounded queue.
        while True:
            try:
                line = read_line(sys.stdin.buffer, self.params.max_bytes)
            except TextTooLong as exc:
                self.lines.put((self.ctx.clock.now_ns(), None, f"too_long:{exc.size}"))
                continue
            with self.stamping:  # stamp and queue as one step: see `_stdin_quiet_ns`
                self.lines.put((self.ctx.clock.now_ns(), line, None if line is not None else "eof"))
            if line is None:
                return

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self.zctx is not None:
            self.zctx.term()
            self.zctx = None
        if self.file is not None:
            self.file.close()
            self.file = None

    # -- watermark -------------------------------------------------------------------------
    def watermark_ns(self, port: str) -> int | None:
        if self.params.source == "file":
            return None if self.pending is None else self.media.stamp(self.pending[0]) - 1
        return self.quiet_ns

    def _stdin_quiet_ns(self) -> int | None:
        """Now, if no line is waiting: the reader stamps and queues a line under
        `stamping`, so one stamped before now is in the queue already."""
        if not self.stamping.acquire(blocking=False):
            return None  # a line is being queued (or the queue is full): no promise now
        try:
            now = self.ctx.clock.now_ns()
            return now if self.lines.empty() else None
        finally:
            self.stamping.release()

    # -- producing -------------------------------------------------------------------------
    def produce(self, now_ns: int) -> Iterable[Out] | None:
        if self.params.source == "file":
            return self._produce_file(now_ns)
        if self.params.source == "zmq":
            return self._produce_zmq(now_ns)
        return self._produce_stdin(now_ns)

    def _produce_zmq(self, now_ns: int) -> list[Out]:
        assert self.sock is not None
        outs: list[Out] = []
        for _ in range(64):
            looked_ns = self.ctx.clock.now_ns()  # a text taken after this is stamped after it
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.quiet_ns = looked_ns
                break
            arrived = self.ctx.clock.now_ns()
            if len(parts) != 1:
                self.ctx.reject("text", "bad_frames", f"{len(parts)} frames; send one frame per text")
                continue
            outs += self._accept(bytes(parts[0].buffer), arrived)
        self.next_due_ns = now_ns + 5_000_000  # poll every 5 ms
        return outs

    def _produce_stdin(self, now_ns: int) -> list[Out] | None:
        if self.ended:
            return None
        outs: list[Out] = []
        for _ in range(64):
            try:
                arrived, line, problem = self.lines.get_nowait()
            except queue.Empty:
                break
            if problem == "eof":
                self.ended = True
                return outs or None
            if problem is not None:
                self.ctx.reject("text", "too_long", problem.split(":")[1] + " bytes")
                continue
            assert line is not None
            outs += self._accept(line, arrived)
        looked_ns = self._stdin_quiet_ns()
        if looked_ns is not None:
            self.quiet_ns = looked_ns
        self.next_due_ns = now_ns + 5_000_000
        return outs

    def _produce_file(self, now_ns: int) -> list[Out] | None:
        assert self.file is not None
        self.media.begin(now_ns)
        self.next_due_ns = None
        if self.pending is None:
            line_outs = self._read_file_line(now_ns)
            if line_outs is None or line_outs or self.pending is None:
                return line_outs
        media_ns, text = self.pending
        due = self.media.due(media_ns)
        if due is not None and due > now_ns:
            self.next_due_ns = due
            return []
        self.pending = None
        return [Out.text("text", text, self.media.stamp(media_ns))]

    def _read_file_line(self, now_ns: int) -> list[Out] | None:
        """Read one line: untimestamped ones go out now, timestamped ones become `pending`."""
        assert self.file is not None
        try:
            line = read_line(self.file, self.params.max_bytes)
        except TextTooLong as exc:
            self.ctx.reject("text", "too_long", f"{exc.size} bytes > max_bytes {self.params.max_bytes}")
            return []
        if line is None:
            return None
        match = TIMESTAMPED.match(line)
        if match is None:
            return self._accept(line, self.media.stamp(now_ns - (self.media.started_ns or now_ns)))
        media_ns = round(float(match.group(1)) * NS)
        if media_ns < self.last_media_ns:
            self.ctx.reject("text", "bad_timestamp", f"{match.group(1)!r} goes back in time")
            return []
        text = self._validate(match.group(2))
        if text is not None:
            self.last_media_ns = media_ns
            self.pending = (media_ns, text)
        return []

    def _validate(self, raw: bytes) -> str | None:
        if len(raw) > self.params.max_bytes:
            self.ctx.reject("text", "too_long", f"{len(raw)} bytes > max_bytes {self.params.max_bytes}")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.ctx.reject("text", "invalid_utf8", str(exc))
            return None
        if not text.strip():
            self.ctx.reject("text", "empty")
            return None
        return text

    def _accept(self, raw: bytes, t_ns: int) -> list[Out]:
        text = self._validate(raw)
        return [] if text is None else [Out.text("text", text, t_ns)]


def push_text(endpoint: str, text: str | bytes, *, context: Any = None) -> None:
    """Send one text to a text node's PULL endpoint (the 5-line client, as a helper)."""
    ctx = context or zmq.Context.instance()
    with ctx.socket(zmq.PUSH) as sock:
        sock.linger = 2000
        sock.connect(endpoint)
        sock.send(text.encode("utf-8") if isinstance(text, str) else text)
