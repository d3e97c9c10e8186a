"""The Python client on the demo graph (issue 17, "Done when"): subscribed to the demo's
frames and events from outside the graph (exposed, lock-step), it receives exactly what the
graph's own sinks received, and the end of stream on both."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.client import Subscriber
from sensorfuse.replay import sample
from sfhelpers import GraphRun, free_port, read_jsonl
from tests.fusion.conftest import demo_graph

pytestmark = pytest.mark.timeout(180)


def test_the_python_client_receives_everything_from_the_demo_graph(model_cache: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.mcap"
    sample.generate(session, seed=0, duration_s=4.0)
    frames_ep, events_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    graph = demo_graph(session, tmp_path, model_cache)
    graph["nodes"]["player"]["expose"] = {"cam0/frame": {"endpoint": frames_ep, "lockstep": True}}
    graph["nodes"]["perceive"]["expose"] = {"perceive/events": {"endpoint": events_ep, "lockstep": True}}
    got: dict[str, list[Any]] = {}
    subs = {"cam0/frame": Subscriber("cam0/frame", endpoint=frames_ep, timeout=60),
            "perceive/events": Subscriber("perceive/events", endpoint=events_ep, timeout=60)}

    def read(stream: str) -> None:
        with subs[stream] as sub:
            got[stream] = list(sub)

    readers = [threading.Thread(target=read, args=(s,)) for s in subs]
    for t in readers:
        t.start()
    run = GraphRun(graph, tmp_path)
    try:
        assert run.wait_exit(150) == 0, run.stderr()
        for t in readers:
            t.join(30)
        frames, events = got["cam0/frame"], got["perceive/events"]
        assert frames[-1].end and events[-1].end, "no end of stream"
        sink_frames = read_jsonl(tmp_path / "frames.jsonl")
        assert [(m.seq, m.t_ns) for m in frames[:-1]] == [(r["seq"], r["t_ns"]) for r in sink_frames]
        assert [tuple(m.array.shape) for m in frames[:-1]] == [tuple(r["shape"]) for r in sink_frames]
        assert frames[0].array.ndim == 3 and frames[0].array.shape[2] == 3
        sink_events = [r["record"] for r in read_jsonl(tmp_path / "events.jsonl")]
        assert sink_events, "the session produced no events"
        assert [m.record for m in events[:-1] if not m.snapshot] == sink_events
        for sub in subs.values():
            assert sub.lost == 0 and not sub.malformed, (sub.stream, sub.lost, sub.malformed)
    finally:
        run.cleanup()
