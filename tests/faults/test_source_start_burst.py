"""Fault: the synthetic source burst ~10 frames at start (issue 16, item 13).

Before: its schedule was anchored in `start`, before the READY/START handshake, so the
time spent waiting for the graph counted as being behind and up to 10 periods were caught
up at once. Now the schedule starts at the first `produce`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sfhelpers import read_jsonl

pytestmark = pytest.mark.timeout(60)


def test_the_first_frames_keep_the_rate(graph_run, tmp_path: Path) -> None:
    graph = {"name": "steady", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 50, "count": 20, "shape": [8, 8, 3]},
                     "outputs": {"out": "cam0/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "out.jsonl"), "digest": False},
                 "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 64}}}}}
    run = graph_run(graph)
    assert run.wait_exit(timeout=45) == 0, run.stderr()
    t = np.array([f["t_ns"] for f in read_jsonl(tmp_path / "out.jsonl") if f["kind"] == "tensor"])
    gaps_ms = np.diff(t[:11]) / 1e6
    assert len(t) == 20
    assert gaps_ms.min() > 10, f"burst at start: gaps {np.round(gaps_ms, 1).tolist()} ms at 50 Hz"
