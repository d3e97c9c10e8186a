"""sensorfuse.client against real processes: a graph subscribed by stream name and by
endpoint, a Publisher feeding a graph's external inputs, liveness, malformed input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import zmq

from sensorfuse.client import Publisher, PublisherLost, Subscriber
from sensorfuse.engine import wire
from sfhelpers import free_port, read_jsonl, wait_for

FAST = {"heartbeat_interval_s": 0.1, "backoff_initial_s": 0.1, "stop_deadline_s": 5}
HEAVY = ("yaml", "onnxruntime", "scipy", "psutil", "torch", "cv2", "sklearn", "soundfile", "mcap")


def test_import_needs_only_zmq_msgspec_numpy() -> None:
    code = ("import json, sys, sensorfuse.client\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert {"zmq", "msgspec", "numpy"} <= loaded
    assert sorted(loaded & set(HEAVY)) == []


def frame(i: int) -> np.ndarray:
    arr = np.full((6, 8, 3), i % 251, np.uint8)
    arr[0, 0, 0] = i
    return arr


def test_subscribers_by_name_and_by_endpoint_get_every_message_and_the_end(graph_run, tmp_path: Path) -> None:
    ep_in, ep_out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    graph = {"name": "clientsub", "supervisor": FAST, "external": {"inputs": {"robot/frame": ep_in}},
             "nodes": {"relay": {"kind": "relay", "inputs": {"in": {"stream": "robot/frame", "policy": "block"}},
                                 "outputs": {"out": "relay/frame"},
                                 # lock-step: this subscriber must get every message
                                 "expose": {"relay/frame": {"endpoint": ep_out, "lockstep": True}}},
                       "sink": {"kind": "jsonl", "params": {"path": "out.jsonl"},
                                "inputs": {"in": {"stream": "relay/frame", "policy": "block"}}}}}
    with Publisher("robot/frame", ep_in, src="test") as pub:
        run = graph_run(graph)
        run.wait_running()
        by_name = Subscriber("relay/frame", run_dir=run.run_dir)
        by_endpoint = Subscriber("relay/frame", endpoint=ep_out)
        assert by_name.endpoint == f"ipc://{run.run_dir}/s/relay.frame"
        assert by_name.wait_connected(10) and by_endpoint.wait_connected(10)
        assert pub.wait_for_consumers(1, timeout=20) == 1
        t_sent = [pub.send_frame(frame(i), t_ns=1_000_000 * (i + 1)) for i in range(40)]
    assert t_sent == list(range(40))
    for sub in (by_name, by_endpoint):
        with sub:
            msgs = list(sub)
        assert [m.seq for m in msgs] == list(range(41)), sub.endpoint
        assert [m.end for m in msgs] == [False] * 40 + [True]
        for i, m in enumerate(msgs[:-1]):
            assert m.kind == "tensor" and m.t_ns == 1_000_000 * (i + 1) and m.src == "test"
            assert np.array_equal(m.array, frame(i)) and m.header.layout == "HWC/bgr8"
            assert not m.array.flags.owndata, "a view over the received frame, not a copy"
        assert (sub.received, sub.lost, sub.seq_resets, sub.malformed) == (40, 0, 0, {})
        assert sub.sock is None, "closed after the end of stream"
    assert run.wait_exit(30) == 0, run.stderr()
    assert [r["seq"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(40))


def test_publisher_feeds_external_inputs_and_the_sink_gets_exactly_what_was_sent(graph_run, tmp_path: Path) -> None:
    streams = ("robot/frame", "robot/audio", "robot/text", "robot/info")
    eps = {s: f"tcp://127.0.0.1:{free_port()}" for s in streams}
    graph = {"name": "clientpub", "supervisor": FAST, "external": {"inputs": eps},
             "nodes": {"sink": {"kind": "jsonl", "params": {"path": "out.jsonl"},
                                "inputs": {s.split("/")[1]: {"stream": s, "policy": "block", "queue": 64}
                                           for s in streams}}}}
    pubs = {s: Publisher(s, ep, src="robot", session="s1") for s, ep in eps.items()}
    run = graph_run(graph)
    for pub in pubs.values():
        pub.wait_for_consumers(1, timeout=30)
    frames = [frame(i) for i in range(3)]
    blocks = [np.linspace(-1, 1, 160 * 2, dtype=np.float32).reshape(160, 2) * k for k in (0.1, 0.2, 0.3)]
    t0 = time.monotonic_ns()
    for f in frames:
        pubs["robot/frame"].send_frame(f)
    pubs["robot/audio"].send_audio(blocks[0], 16000, t_ns=123_000_000)
    for b in blocks[1:]:
        pubs["robot/audio"].send_audio(b, 16000)
    for line in ("hello", "wo\u0308rld"):
        pubs["robot/text"].send_text(line)
    records = [{"event": "dock", "n": 1}, {"event": "undock", "pose": [1.5, -2.0]}]
    for rec in records:
        pubs["robot/info"].send_record(rec)
    t1 = time.monotonic_ns()
    for pub in pubs.values():
        pub.close()
    assert run.wait_exit(30) == 0, run.stderr()
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in streams}
    for row in read_jsonl(tmp_path / "out.jsonl"):
        rows[row["stream"]].append(row)
    assert all(r["src"] == "robot" and r["session"] == "s1" and r["proto"] == 1 for rs in rows.values() for r in rs)
    assert [(r["seq"], r["kind"], r["sha256"], r["shape"], r["layout"]) for r in rows["robot/frame"]] == [
        (i, "tensor", hashlib.sha256(f.tobytes()).hexdigest(), [6, 8, 3], "HWC/bgr8") for i, f in enumerate(frames)]
    assert all(t0 <= r["t_ns"] <= r["t_pub_ns"] <= t1 for r in rows["robot/frame"]), "capture time: CLOCK_MONOTONIC"
    audio = rows["robot/audio"]
    assert [(r["seq"], r["kind"], r["rate"], r["sample0"], r["shape"], r["dtype"], r["sha256"]) for r in audio] == [
        (i, "audio", 16000, 160 * i, [160, 2], "float32", hashlib.sha256(b.tobytes()).hexdigest())
        for i, b in enumerate(blocks)]
    assert audio[0]["t_ns"] == 123_000_000
    assert all(t0 - 10_000_000 <= r["t_ns"] <= t1 for r in audio[1:]), "a block ends when it is sent (10 ms long)"
    assert [(r["seq"], r["kind"], r["encoding"], r["text"]) for r in rows["robot/text"]] == [
        (0, "bytes", "utf-8", "hello"), (1, "bytes", "utf-8", "wo\u0308rld")]
    assert [(r["seq"], r["kind"], r["record"]) for r in rows["robot/info"]] == [
        (i, "record", rec) for i, rec in enumerate(records)]
    for s in streams:
        assert run.node("sink")["streams"][s]["lost"] == 0


def _xpub(ep: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 0
    pub.bind(ep)
    return ctx, pub


def _header(**fields: Any) -> bytes:
    return msgspec.msgpack.encode({"proto": 1, "stream": "x/frame", "t_ns": 0, **fields})


def idle(seq: int, idle_ms: int, stream: str = "x/frame") -> list[bytes]:
    """An idle message as docs/protocol.md specifies it (written here, not by the client)."""
    return [stream.encode(), _header(stream=stream, kind="idle", seq=seq, meta={"idle_ms": idle_ms})]


def test_a_publisher_silent_for_three_idle_periods_is_lost(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx, pub = _xpub(ep)
    try:
        sub = Subscriber("x/frame", endpoint=ep)
        assert sub.silence_limit_s == 3.0, "3 x the default 1 s idle period until the stream says otherwise"
        assert sub.wait_connected(10)
        wait_for(lambda: pub.poll(50) and pub.recv(), 10, "the subscription")
        pub.send_multipart(wire.encode_message("x/frame", "tensor", np.zeros(4, np.uint8), seq=0, t_ns=5))
        assert sub.recv(timeout=10).seq == 0
        pub.send_multipart(idle(4, 100))  # the next data message is 4: 1, 2, 3 were lost
        for _ in range(8):  # 0.8 s of idles every 100 ms: quiet, not dead
            assert sub.recv(timeout=0.1) is None
            pub.send_multipart(idle(4, 100))
        assert sub.silence_limit_s == pytest.approx(0.3)
        t_stop = time.monotonic()
        with pytest.raises(PublisherLost) as lost:
            sub.recv()
        elapsed = time.monotonic() - t_stop
        assert 0.25 <= elapsed <= 1.0, f"raised {elapsed:.2f} s after the last idle, the limit is 0.3 s"
        assert "x/frame" in str(lost.value) and "gone" in str(lost.value)
        assert (sub.received, sub.lost, sub.seq_resets) == (1, 3, 0), "idles are not data; their seq shows the gap"
        sub.close()
    finally:
        pub.close(0)
        ctx.term()


def test_a_killed_graph_is_detected_within_the_timeout(graph_run) -> None:
    graph = {"name": "victim", "supervisor": FAST,
             "nodes": {"camera": {"kind": "synthetic", "params": {"rate_hz": 50, "count": 0, "shape": [4, 4, 3]},
                                  "outputs": {"out": "cam0/frame"}}}}
    run = graph_run(graph)
    run.wait_running()
    with Subscriber("cam0/frame", run_dir=run.run_dir, timeout=0.6) as sub:
        first = [sub.recv(timeout=10) for _ in range(5)]
        assert all(m is not None and m.kind == "tensor" for m in first)
        pids = run.node_pids()
        os.killpg(run.proc.pid, signal.SIGKILL)  # the supervisor: nothing restarts the node
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        with pytest.raises(PublisherLost, match="cam0/frame"):
            for _ in sub:
                pass
        assert time.monotonic() - t_kill <= 0.6 + 1.0
        assert sub.lost == 0


def test_malformed_messages_are_counted_and_unknown_ones_ignored() -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx, pub = _xpub(ep)
    good = lambda seq, **kw: wire.encode_message("x/frame", "record", {"n": seq}, seq=seq, t_ns=seq, **kw)  # noqa: E731
    sent = [
        good(0),
        [b"x/frame"],  # missing_frames
        [b"x/frame", b"\xc1not msgpack"],  # bad_header
        [b"x/frame", _header(proto=2, kind="record", seq=1), b"\x80"],  # bad_version
        [b"x/frame", _header(stream="x/other", kind="record", seq=1), b"\x80"],  # topic_mismatch
        [b"x/frame", _header(kind="tensor", seq=1, dtype="uint8", shape=[4]), b"abc"],  # payload_size
        [b"x/frame", _header(kind="record", seq=1), b"\xc1"],  # bad_record
        [b"x/frame", _header(kind="hologram", seq=1)],  # a kind from the future: ignored
        idle(1, 1000, "x/frame2"),  # another stream sharing the prefix: not ours
        good(1),
        good(2, meta={"snapshot": True}),
        good(0),  # the producer restarted
        good(1),
        wire.encode_message("x/frame", "eos", None, seq=2, t_ns=1),
    ]
    try:
        with Subscriber("x/frame", endpoint=ep, timeout=10) as sub:
            assert sub.wait_connected(10)
            wait_for(lambda: pub.poll(50) and pub.recv(), 10, "the subscription")
            for frames in sent:
                pub.send_multipart(frames)
            msgs = list(sub)
            assert [(m.seq, m.kind, m.snapshot) for m in msgs] == [
                (0, "record", False), (1, "record", False), (2, "record", True), (0, "record", False),
                (1, "record", False), (2, "eos", False)]
            assert [m.record for m in msgs[:-1]] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 0}, {"n": 1}]
            assert sub.malformed == {"missing_frames": 1, "bad_header": 1, "bad_version": 1, "topic_mismatch": 1,
                                     "payload_size": 1, "bad_record": 1}
            assert (sub.received, sub.lost, sub.seq_resets) == (5, 0, 1)
            assert sub.recv(timeout=0) is None, "nothing after the end of stream"
    finally:
        pub.close(0)
        ctx.term()
