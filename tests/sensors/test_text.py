"""Text node: file (timestamped and not), stdin and ZMQ PUSH ingest; invalid UTF-8,
empty and over-long texts (10 MB) are refused with counted reasons, the node goes on."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
import zmq

from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.text import TextNode, push_text

pytestmark = pytest.mark.timeout(60)
STREAMS = {"text": "text/in"}
TEN_MB = 10 * 1024 * 1024


def test_file_lines_with_and_without_timestamps_and_every_reject(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes(
        b"0.5\thello there\n"
        b"\xff\xfe not utf-8\n"
        b"\n"
        b"   \n"
        + b"x" * TEN_MB + b"\n"
        b"1.25\twhere is the cup?\n"
        b"1.0\tbackwards in time\n"
        b"no timestamp here\r\n"
        b"2.0\tlast one"
    )
    h = NodeHarness(TextNode, {"source": "file", "path": str(path), "pace": "max", "max_bytes": 1024},
                    streams=STREAMS)
    msgs = h.produce_all()
    texts = [(m.text, m.t_ns) for m in msgs]
    assert texts[:2] == [("hello there", 500_000_000), ("where is the cup?", 1_250_000_000)]
    assert texts[2][0] == "no timestamp here" and 0 <= texts[2][1] < 5_000_000_000  # stamped on arrival
    assert texts[3] == ("last one", 2_000_000_000)
    assert all(m.header.encoding == "utf-8" and m.header.kind == "bytes" for m in msgs)
    assert h.ctx.rejected == {
        ("text", "invalid_utf8"): 1, ("text", "empty"): 2, ("text", "too_long"): 1, ("text", "bad_timestamp"): 1,
    }


def test_native_pace_waits_for_each_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("0.0\tnow\n0.3\tlater\n")
    h = NodeHarness(TextNode, {"source": "file", "path": str(path), "clock": "live"}, streams=STREAMS)
    t0 = 10**12
    assert [m.t_ns for m in h.produce(now_ns=t0) or []] == [t0]
    assert h.produce(now_ns=t0) == [] and h.node.next_due_ns == t0 + 300_000_000
    assert [m.text for m in h.produce(now_ns=t0 + 300_000_000) or []] == ["later"]


def test_stdin_lines_until_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"first\n\xc3\x28\n" + b"y" * TEN_MB + b"\nsecond\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    h = NodeHarness(TextNode, {"source": "stdin"}, streams=STREAMS)
    deadline = time.monotonic() + 20
    got: list[str] = []
    while time.monotonic() < deadline:
        out = h.produce(now_ns=h.ctx.clock.now_ns())
        if out is None:
            break
        got += [m.text for m in out]
        lines = h.node.lines
        with lines.not_empty:  # wait for the reader thread instead of spinning
            lines.not_empty.wait_for(lambda: len(lines.queue) > 0, timeout=1.0)
    else:
        pytest.fail("stdin never reached EOF")
    assert got == ["first", "second"]
    assert h.ctx.rejected == {("text", "invalid_utf8"): 1, ("text", "too_long"): 1}


def test_zmq_push_ingest_refuses_bad_texts_and_keeps_running() -> None:
    h = NodeHarness(TextNode, {"source": "zmq", "endpoint": "tcp://127.0.0.1:*", "max_bytes": 4096},
                    streams=STREAMS)
    endpoint = h.node.endpoint
    ctx = zmq.Context()
    try:
        sent = ["hello", b"\xff\xfe", b"", "z" * TEN_MB, "still here", "grüße 👋"]
        for text in sent:
            push_text(endpoint, text, context=ctx)
        with ctx.socket(zmq.PUSH) as sock:
            sock.linger = 2000
            sock.connect(endpoint)
            sock.send_multipart([b"two", b"frames"])
        got: list[str] = []
        deadline = time.monotonic() + 20
        while sum(h.ctx.rejected.values()) + len(got) < len(sent) + 1:
            assert time.monotonic() < deadline, f"ingest stalled: {got} {h.ctx.rejected}"
            h.node.sock.poll(200)  # wait for input instead of sleeping
            got += [m.text for m in h.produce(now_ns=h.ctx.clock.now_ns()) or []]
        # push_text opens a connection per call; ZeroMQ fair-queues between connections, so
        # texts from separate calls may arrive in either order (seen: a fresh-clone run).
        assert sorted(got) == sorted(["hello", "still here", "grüße 👋"])
        assert h.ctx.rejected == {
            ("text", "invalid_utf8"): 1, ("text", "empty"): 1, ("text", "too_long"): 1, ("text", "bad_frames"): 1,
        }
    finally:
        h.close()
        ctx.term()


def test_refuses_a_bind_beyond_loopback_without_keys_and_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="CurveZMQ"):
        NodeHarness(TextNode, {"source": "zmq", "endpoint": "tcp://0.0.0.0:*"}, streams=STREAMS)
    with pytest.raises(StartupError, match="existing path"):
        NodeHarness(TextNode, {"source": "file", "path": str(tmp_path / "nope")}, streams=STREAMS)
    with pytest.raises(StartupError, match="source: expected one of 'file', 'stdin', 'zmq', got 'carrier-pigeon'"):
        NodeHarness(TextNode, {"source": "carrier-pigeon"}, streams=STREAMS)

def test_watermark_promises_only_what_holds_in_each_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # file: just before the timestamped line that waits for its time; nothing once it is out
    path = tmp_path / "t.txt"
    path.write_text("0.0\tnow\n0.3\tlater\n")
    h = NodeHarness(TextNode, {"source": "file", "path": str(path), "clock": "live"}, streams=STREAMS)
    t0 = 10**12
    h.produce(now_ns=t0)
    assert h.node.watermark_ns("text") is None
    assert h.produce(now_ns=t0) == [] and h.node.watermark_ns("text") == t0 + 300_000_000 - 1
    # zmq: the last look that found nothing; a text pushed later is stamped after it
    z = NodeHarness(TextNode, {"source": "zmq", "endpoint": "tcp://127.0.0.1:*"}, streams=STREAMS)
    try:
        assert z.node.watermark_ns("text") is None  # not looked yet: no promise
        assert z.produce(now_ns=z.ctx.clock.now_ns()) == []
        quiet = z.node.watermark_ns("text")
        assert quiet is not None and quiet <= z.ctx.clock.now_ns()
        push_text(z.node.endpoint, "hello")
        z.node.sock.poll(5000)
        (msg,) = z.produce(now_ns=z.ctx.clock.now_ns()) or []
        assert msg.t_ns > quiet and z.node.watermark_ns("text") > msg.t_ns
    finally:
        z.close()
    # stdin: no promise while a line is being stamped and queued
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    s = NodeHarness(TextNode, {"source": "stdin"}, streams=STREAMS, start=False)
    s.node.start()
    with s.node.stamping:
        assert s.node._stdin_quiet_ns() is None
    lines = s.node.lines
    with lines.not_empty:  # the reader thread queues eof: something is waiting
        assert lines.not_empty.wait_for(lambda: len(lines.queue) > 0, timeout=5.0)
    assert s.node._stdin_quiet_ns() is None
    s.node.lines.get_nowait()
    assert s.node._stdin_quiet_ns() is not None
