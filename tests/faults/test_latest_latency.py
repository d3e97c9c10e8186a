"""Fault: `latest` latency was about twice its documented bound (issue 16, item 11).

A consumer slower than its producer read a socket that held 2 messages: between two
steps more arrived, ZeroMQ pushed back, and frames waited oldest first in the
publisher's queue (the publisher then dropped the newest, counted as `lost`). With a
133 ms step at 30 Hz the step began on a frame 380 ms old (p50). The socket of a
`latest` input now takes what arrives during a step (`transport.LATEST_RCVHWM`), the
drain keeps the newest, and the rest is counted as `dropped.overflow`, not lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sfhelpers import read_jsonl

pytestmark = pytest.mark.timeout(60)

PROBE = f"{Path(__file__).parent / 'latency_probe.py'}:LatencyProbe"
RATE_HZ = 30
WORK_MS = 133  # four frame periods


def test_latest_stays_within_one_step_plus_one_period(graph_run, tmp_path: Path) -> None:
    out = tmp_path / "probe.jsonl"
    graph = {"name": "latest-latency", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": RATE_HZ, "count": 150, "shape": [480, 640, 3]},
                     "outputs": {"out": "cam0/frame"}},
        "probe": {"kind": PROBE, "params": {"path": str(out), "work_ms": WORK_MS},
                  "inputs": {"in": {"stream": "cam0/frame", "policy": "latest"}}}}}
    run = graph_run(graph)
    assert run.wait_exit(timeout=45) == 0, run.stderr()
    rows = read_jsonl(out)[5:]  # past the start
    done_ms = np.array([(r["done_ns"] - r["t_ns"]) / 1e6 for r in rows])
    period_ms = 1000 / RATE_HZ
    p50, p99 = np.percentile(done_ms, 50), np.percentile(done_ms, 99)
    # the bound of docs/engine.md: w + one period (p50 sits near w + half a period); the
    # p99 leaves room for a loaded 2-core machine
    assert p50 < WORK_MS + period_ms + 15, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    assert p99 < WORK_MS + 4 * period_ms, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"  # was 401-446 ms
    stats = run.node("probe")["streams"]["cam0/frame"]
    assert stats["lost"] == 0, stats  # what `latest` skips is its own drop, counted as such
    assert stats["received"] + stats["lost"] == 150
    assert stats["dropped"]["overflow"] == 150 - len(read_jsonl(out)), stats
