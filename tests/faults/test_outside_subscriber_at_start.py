"""Fault: silent loss at start with an outside subscriber (issue 16, item 1).

Before: readiness counted every subscription on a publisher's XPUB socket, so a consumer
from outside the graph that connected first stood in for a graph consumer still
connecting; the graph started, and that consumer lost its first 5-7 frames (7 of 11 runs)
while `status` said lost=0. Now graph consumers also subscribe to a readiness token and
readiness counts tokens only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zmq

from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.transport import Publisher, Subscriber
from sfhelpers import GraphRun, free_port, read_jsonl, wait_for

pytestmark = pytest.mark.timeout(120)


def test_an_outside_subscriber_does_not_count_as_a_graph_consumer(tmp_path: Path) -> None:
    ctx = zmq.Context()
    ep = f"ipc://{tmp_path}/s"
    pub = Publisher(ctx, "cam0/frame", [ep])
    outside = ctx.socket(zmq.SUB)
    try:
        outside.connect(ep)
        outside.setsockopt(zmq.SUBSCRIBE, b"cam0/frame")
        wait_for(lambda: pub.poll_subscriptions() == 1, 5, "the outside subscription")
        assert pub.graph_consumers() == 0
        sub = Subscriber(ctx, "in", "cam0/frame", [ep], policy="block", queue=4, counters=Counters(),
                         consumer="sink/in")
        wait_for(lambda: pub.graph_consumers() == 1, 5, "the graph consumer's token")
        assert pub.subscriptions == 2  # data subscriptions: both
        sub.close()
        wait_for(lambda: pub.graph_consumers() == 0, 5, "the token to go")
        assert pub.unsubscriptions == 1
    finally:
        outside.close(linger=0)
        pub.close(linger_ms=0)
        ctx.term()


@pytest.mark.parametrize("attempt", range(5))
def test_a_graph_consumer_gets_every_frame_with_an_outside_subscriber(tmp_path: Path, attempt: int) -> None:
    """The scenario as seen: an outside SUB on the producer's exposed endpoint from the
    beginning; the graph's own sink must still get frame 0 onwards, every time."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    outside = ctx.socket(zmq.SUB)
    outside.connect(ep)  # before the graph exists: connects as soon as the producer binds
    outside.setsockopt(zmq.SUBSCRIBE, b"")
    graph = {"name": "early-outside", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 60, "count": 60, "shape": [8, 8, 3]},
                     "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": ep}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "out.jsonl"), "digest": False},
                 "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 8}}}}}
    run = GraphRun(graph, tmp_path)
    try:
        assert run.wait_exit(timeout=60) == 0, run.stderr()
        status = json.loads((run.run_dir / "status.json").read_text())
    finally:
        run.cleanup()
        outside.close(linger=0)
        ctx.term()
    seqs = [f["seq"] for f in read_jsonl(tmp_path / "out.jsonl") if f["kind"] == "tensor"]
    assert seqs == list(range(60)), f"sink got {len(seqs)} of 60, first {seqs[:3]}"
    assert status["nodes"]["sink"]["streams"]["cam0/frame"].get("lost", 0) == 0
