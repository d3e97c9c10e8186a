"""`sensorfuse.run`: a graph started from Python, its streams read and fed in-process.

- the demo graph on the demo session yields, through `events()`, exactly the events its
  own JSONL sink (what `sensorfuse run` / `sensorfuse demo` write) records in the same run,
  bit for bit. Not against the golden events of another run: at rate max a text line can
  reach the aligner after the frame tick that should carry it (arrival order across
  sockets; seen as a missing query.match in 1 of 5 runs on a loaded machine), which
  tests/fusion/test_demo_graph.py's golden comparison is exposed to as well;
- leaving the `with` block by an exception, or by Ctrl-C in the caller, stops every node
  within a few seconds and leaves no process behind;
- a graph with `external.inputs` is fed end to end: headers, clocks, end of stream.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import sensorfuse
from sensorfuse.engine.errors import UsageError
from sensorfuse.nodes import demo
from sensorfuse.replay.compare import diff_events
from sfhelpers import alive, free_port, read_jsonl, wait_for

pytestmark = pytest.mark.timeout(180)


def endless(rate_hz: float = 100) -> dict[str, Any]:
    return {"name": "endless", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": rate_hz, "count": 0, "shape": [4, 4, 3]},
                     "outputs": {"out": "cam0/frame"}},
        "relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}},
                  "outputs": {"out": "relay/frame"}}}}


def node_pids() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def test_demo_events_are_the_sinks_and_the_references(demo_session: Path, model_cache: Path, tmp_path: Path) -> None:
    graph = demo.demo_graph(demo_session, tmp_path, rate="max", cache=model_cache, quiet=True)
    with sensorfuse.run(graph) as g:
        events = list(g.events())
        outcome = g.wait(timeout=150)
    assert outcome.exit_code == 0, outcome.problems
    assert outcome.status["state"] == "finished"
    assert list(g.events()) == [], "a stream read to its end stays ended"
    sink = [line["record"] for line in read_jsonl(tmp_path / "events.jsonl")]
    assert events, "no events"
    assert diff_events(events, sink, exact=True) == []
    assert {e["type"] for e in events} >= {"face.appeared", "speaker.active"}


def test_an_exception_in_the_with_block_stops_every_node(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="caller failed"):
        with sensorfuse.run(endless(), streams=["relay/frame"]) as g:
            for msg in g.stream("relay/frame"):
                if msg.seq == 10:
                    children = node_pids()
                    assert len(children) == 2
                    t0 = time.monotonic()
                    raise RuntimeError("caller failed")
    assert time.monotonic() - t0 < 5.0
    assert not any(alive(p.pid) for p in children)
    outcome = g.wait()
    assert outcome.exit_code == 0 and outcome.status["state"] == "stopped", outcome.problems


CTRL_C_CALLER = """
import sys, sensorfuse, json
graph = json.loads(sys.argv[1])
with sensorfuse.run(graph, streams=["relay/frame"]) as g:
    for msg in g.stream("relay/frame"):
        if msg.seq == 5:
            print("reading", flush=True)
"""


def test_ctrl_c_in_the_caller_stops_the_graph_in_order(tmp_path: Path) -> None:
    caller = subprocess.Popen([sys.executable, "-c", CTRL_C_CALLER, json.dumps(endless())], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert caller.stdout.readline() == "reading\n", caller.stderr.read()
        nodes = psutil.Process(caller.pid).children(recursive=True)
        assert len(nodes) == 2
        caller.send_signal(signal.SIGINT)
        _, err = caller.communicate(timeout=10)
        assert caller.returncode != 0 and "KeyboardInterrupt" in err
        assert not any(alive(p.pid) for p in nodes)
    finally:
        caller.kill()


def test_feeding_external_inputs_end_to_end(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    graph = {"name": "fed", "external": {"inputs": {"robot/frame": ep, "robot/text": f"tcp://127.0.0.1:{free_port()}"}},
             "nodes": {"relay": {"kind": "relay", "inputs": {"in": {"stream": "robot/frame", "policy": "block"}},
                                 "outputs": {"out": "relay/frame"}},
                       "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "text.jsonl")},
                                "inputs": {"in": {"stream": "robot/text", "policy": "block"}}}}}
    t_capture = [time.monotonic_ns() - 1_000_000 * (10 - i) for i in range(10)]
    with sensorfuse.run(graph, streams=["relay/frame"]) as g:
        frames, text = g.feed("robot/frame"), g.feed("robot/text")
        for i, t_ns in enumerate(t_capture):
            frames.frame(np.full((6, 8, 3), i, np.uint8), t_ns=t_ns)
        frames.end()
        text.text("where is the cup?")
        text.end()
        got = list(g.stream("relay/frame"))
        outcome = g.wait(timeout=30)
    assert outcome.exit_code == 0 and outcome.status["state"] == "finished", outcome.problems
    assert [m.seq for m in got] == list(range(10))
    assert [m.t_ns for m in got] == t_capture
    assert [int(m.array[0, 0, 0]) for m in got] == list(range(10))
    h = got[0].header
    assert (h.layout, h.shape, h.dtype) == ("HWC/bgr8", [6, 8, 3], "uint8")
    line = read_jsonl(tmp_path / "text.jsonl")[0]
    assert line["text"] == "where is the cup?" and line["src"] == "sensorfuse.run" and line["seq"] == 0
    assert line["session"] == g.session and line["t_ns"] <= line["t_pub_ns"]


def test_set_overrides_node_params_with_python_values() -> None:
    with sensorfuse.run(endless(), set={"producer.count": 7, "producer.shape": [2, 3, 3]},
                        streams=["relay/frame"]) as g:
        shapes = [m.array.shape for m in g.stream("relay/frame")]
        assert g.wait(timeout=20).exit_code == 0
    assert shapes == [(2, 3, 3)] * 7


def test_mistakes_are_usage_errors_before_anything_starts() -> None:
    before = node_pids()
    with pytest.raises(UsageError, match="NODE.PARAM"):
        sensorfuse.run(endless(), set={"producer": 1})
    with pytest.raises(UsageError, match="no node 'camera'"):
        sensorfuse.run(endless(), set={"camera.rate_hz": 1})
    with pytest.raises(UsageError, match="rate_hz"):
        sensorfuse.run(endless(), set={"producer.rate_hz": -1})
    with pytest.raises(UsageError, match="publishes stream 'nope/x'"):
        sensorfuse.run(endless(), streams=["nope/x"])
    assert node_pids() == before
    with sensorfuse.run(endless(), duration=0.5) as g:
        with pytest.raises(UsageError, match="not declared"):
            next(g.stream("relay/frame"))
        with pytest.raises(UsageError, match="external.inputs"):
            g.feed("cam0/frame")
        assert g.wait(timeout=20).exit_code == 0
    wait_for(lambda: not node_pids(), 5, "no child left")
