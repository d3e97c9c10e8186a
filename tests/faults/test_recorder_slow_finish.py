"""Fault: the recorder on a slow disk was SIGKILLed at the stop deadline (issue 16, item 8,
the finish half). `finish()` waited up to 30 s for the file to be finalised without a
heartbeat, the supervisor killed it at 5 s and the MCAP was left unfinalised (418 of 810
accepted frames readable). Now the wait heartbeats through `NodeContext.wait`, saying
what it waits for and for how long, and the supervisor gives it that time past the
deadline: the file is finalised and every accepted frame is in it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sensorfuse.replay.mcap_io import LogReader

pytestmark = pytest.mark.timeout(90)

SLOW_RECORDER = f"{Path(__file__).parent / 'slow_disk.py'}:SlowDiskRecorder"


def test_a_slow_finish_past_the_stop_deadline_is_finalised(graph_run, tmp_path: Path) -> None:
    out = tmp_path / "slow.mcap"
    graph = {"name": "slow-disk", "supervisor": {"stop_deadline_s": 1.0},
             "nodes": {
                 "producer": {"kind": "synthetic", "params": {"rate_hz": 30, "shape": [100, 100, 3]},
                              "outputs": {"out": "cam0/frame"}},
                 "recorder": {"kind": SLOW_RECORDER, "params": {"path": str(out)},
                              "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 512}},
                              "outputs": {"status": "recorder/status"}}}}
    run = graph_run(graph, extra_args=["--duration", "2"])
    t0 = time.monotonic()
    code = run.wait_exit(timeout=70)
    took = time.monotonic() - t0
    err = run.stderr()
    assert code == 0, err
    assert "killing recorder" not in err, err
    assert "finalising the recording" in err  # the supervisor said why it waited past the deadline
    assert took > 2 + 1.0, f"finished in {took:.1f} s: the disk was not slow enough to test anything"
    received = run.node("recorder")["streams"]["cam0/frame"]["received"]
    with LogReader(str(out)) as reader:
        assert reader.summary is not None, "the MCAP was not finalised"
        frames = sum(1 for m in reader.iter_messages() if m.topic == "cam0/frame")
    assert frames == received > 40
