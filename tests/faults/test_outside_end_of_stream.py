"""Outside subscribers at the end of a stream (issue 16, item 12) and under back-pressure
(issue 17, item 6).

Before: a subscriber outside the graph that read a 250 Hz exposed stream 25 messages a
second never saw the end of stream: the publisher closed its socket one second after
queueing the `eos`, which was still behind the subscriber's backlog in ZeroMQ's queue
and was dropped with it. Now a finished publisher keeps its sockets open until its
outside subscribers leave, at most `supervisor.eos_linger_s`, long enough for the `eos`
to reach the kernel's socket buffer, which delivers it after the process is gone. A
subscriber that leaves after the `eos` ends the wait at once. And an outside subscriber
that does not read at all no longer slows a graph whose own consumer is lock-step.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import pytest
import zmq

from sfhelpers import GraphRun, free_port, read_jsonl

pytestmark = pytest.mark.timeout(120)


def _graph(ep: str, out: Path, *, rate_hz: float, count: int, policy: str = "drop_oldest", queue: int = 4,
           shape: tuple[int, ...] = (8, 8, 3), eos_linger_s: float = 5.0) -> dict:
    return {"name": "outside", "supervisor": {"eos_linger_s": eos_linger_s}, "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": rate_hz, "count": count, "shape": list(shape)},
                     "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": ep}},
        "sink": {"kind": "jsonl", "params": {"path": str(out), "digest": False},
                 "inputs": {"in": {"stream": "cam0/frame", "policy": policy, "queue": queue}}}}}


def _read(sub: zmq.Socket, until: float, pause_s: float) -> tuple[list[int], dict | None]:
    """Read data seqs at most one message per `pause_s` until the eos or `until`."""
    seqs: list[int] = []
    while time.monotonic() < until:
        if not sub.poll(100):
            continue
        parts = sub.recv_multipart()
        h = msgpack.unpackb(parts[1])
        if h["kind"] == "eos":
            return seqs, h
        if h["kind"] != "idle":
            seqs.append(h["seq"])
        time.sleep(pause_s)
    return seqs, None


def test_a_slow_outside_subscriber_gets_the_end_of_stream(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.rcvhwm = 4
    sub.connect(ep)
    sub.setsockopt(zmq.SUBSCRIBE, b"cam0/frame")
    # the graph's own consumer keeps a deep queue: the publisher's queues are as deep
    # frames big enough that the kernel's socket buffers fill and ZeroMQ's queue holds the
    # rest; before, it read up to seq ~310 and then nothing, in every run
    run = GraphRun(_graph(ep, tmp_path / "o.jsonl", rate_hz=250, count=500, queue=100, shape=(64, 64, 3),
                          eos_linger_s=30), tmp_path)
    try:
        seqs, eos = _read(sub, time.monotonic() + 60, 1 / 25)  # as seen: 25 of 250 messages/s
        assert eos is not None, f"no end of stream after {len(seqs)} messages (last seq {max(seqs, default=None)})"
        # a subscriber that is behind loses frames (counted from the seq gaps), never the end
        assert eos["seq"] == 500 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        print(f"eos after {len(seqs)} of 500 frames")
        sub.close(linger=0)  # leaving ends the publisher's wait
        assert run.wait_exit(10) == 0, run.stderr()
    finally:
        sub.close(linger=0)
        ctx.term()
        run.cleanup()


def test_a_subscriber_that_leaves_after_the_end_ends_the_wait(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(ep)
    sub.setsockopt(zmq.SUBSCRIBE, b"cam0/frame")
    run = GraphRun(_graph(ep, tmp_path / "o.jsonl", rate_hz=50, count=25), tmp_path)
    try:
        seqs, eos = _read(sub, time.monotonic() + 60, 0)
        # an outside subscriber is not waited for at start (slow joiner): from its first on, all
        assert eos is not None and seqs and seqs == list(range(seqs[0], 25)), seqs
        sub.close(linger=0)  # what a client does after the eos (docs/protocol.md)
        t_left = time.monotonic()
        assert run.wait_exit(30) == 0, run.stderr()
        # eos_linger_s is 5 s: leaving must end the wait well before it
        assert time.monotonic() - t_left < 3.0
    finally:
        sub.close(linger=0)
        ctx.term()
        run.cleanup()


def test_an_outside_subscriber_does_not_slow_a_lockstep_graph(tmp_path: Path) -> None:
    """Issue 17, item 6: before, an outside subscriber with a small queue took part in the
    graph's `block` back-pressure (30 Hz data ran at a third of real time)."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.SUB)
    stalled.rcvhwm = 1
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.connect(ep)
    stalled.setsockopt(zmq.SUBSCRIBE, b"cam0/frame")  # and never reads
    out = tmp_path / "o.jsonl"
    count, rate = 90, 30.0
    run = GraphRun(_graph(ep, out, rate_hz=rate, count=count, policy="block", shape=(240, 320, 3)), tmp_path)
    try:
        assert run.wait_exit(60) == 0, run.stderr()
        rows = read_jsonl(out)
        assert [r["seq"] for r in rows] == list(range(count))
        span_s = (rows[-1]["t_recv_ns"] - rows[0]["t_recv_ns"]) / 1e9
        assert span_s < (count - 1) / rate * 1.25, f"{count} frames at {rate} Hz took {span_s:.2f} s"
        # what the stalled subscriber missed shows as seq gaps (its client counts them `lost`)
        seqs, eos = _read(stalled, time.monotonic() + 10, 0)
        assert seqs and len(seqs) < count and seqs == sorted(seqs), seqs
    finally:
        stalled.close(linger=0)
        ctx.term()
        run.cleanup()
