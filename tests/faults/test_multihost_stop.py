"""Fault: Ctrl-C on one host of a multi-host graph (issue 16, item 9). Before: a node fed
only by producers on another host never got STOP (stop ordering looked at every producer,
local or not) and waited for an end of stream that host was not sending, until the
deadline killed it (exit 1). Now nodes without local producers start the drain too.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from sfhelpers import free_port, read_jsonl, wait_for

pytestmark = pytest.mark.timeout(90)


def test_ctrl_c_on_the_consuming_host_stops_it_cleanly(graph_run, tmp_path: Path) -> None:
    g = {"name": "split", "hosts": {"a": "127.0.0.1", "b": "127.0.0.1"}, "ports_base": free_port(),
         "supervisor": {"stop_deadline_s": 5},
         "nodes": {"camera": {"kind": "synthetic", "host": "a", "params": {"rate_hz": 50, "count": 0,
                                                                              "shape": [8, 8, 3]},
                              "outputs": {"out": "cam0/frame"}},
                   "sink": {"kind": "jsonl", "host": "b", "params": {"path": str(tmp_path / "b.jsonl")},
                            "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}}}}}
    run_a = graph_run(g, ["--host", "a"])
    run_b = graph_run(g, ["--host", "b"])
    wait_for(lambda: len(read_jsonl(tmp_path / "b.jsonl")) > 20, 30, "frames to cross to host b")
    t0 = time.monotonic()
    run_b.proc.send_signal(signal.SIGINT)
    assert run_b.wait_exit(20) == 0, run_b.stderr()
    assert time.monotonic() - t0 < 4.0, "host b waited for its stop deadline"
    status = json.loads((run_b.run_dir / "status.json").read_text())
    assert status["nodes"]["sink"]["state"] == "done", status["nodes"]["sink"]
    run_a.proc.send_signal(signal.SIGINT)
    assert run_a.wait_exit(20) == 0, run_a.stderr()
