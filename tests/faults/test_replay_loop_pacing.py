"""Fault: `replay --loop --rate 1` paced only its first pass (issue 16, item 4).

Before: later passes went out in ~0.03 s each (pacing used the unshifted log time, so
every message of pass 2 was already overdue) and a dropping consumer lost thousands of
frames. Now every pass is paced on the shifted time it is published with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorfuse.replay import sample
from sfhelpers import GraphRun, read_jsonl

pytestmark = pytest.mark.timeout(90)


def test_every_loop_pass_is_paced(tmp_path: Path) -> None:
    log = tmp_path / "s.mcap"
    sample.generate(log, seed=1_000_006, duration_s=1.0)
    graph = {"name": "loop", "nodes": {
        "player": {"kind": "player", "params": {"path": str(log), "rate": 1.0, "loop": True, "loop_gap_s": 0.2,
                                                "streams": ["cam0/frame"]},
                   "outputs": {"cam0/frame": "cam0/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "out.jsonl"), "digest": False},
                 "inputs": {"in": {"stream": "cam0/frame", "policy": "drop_oldest", "queue": 64}}}}}
    run = GraphRun(graph, tmp_path, ["--duration", "4"])
    try:
        run.wait_exit(timeout=60)
    finally:
        run.cleanup()
    frames = [f for f in read_jsonl(tmp_path / "out.jsonl") if f["kind"] == "tensor"]
    t0_pub, t0 = frames[0]["t_pub_ns"], frames[0]["t_ns"]
    later = [f for f in frames if f["t_ns"] - t0 > 1.1e9]  # passes after the first
    assert later, "no second pass within 4 s"
    lag_ms = [((f["t_pub_ns"] - t0_pub) - (f["t_ns"] - t0)) / 1e6 for f in later]
    # paced: each frame goes out when its (shifted) capture time comes, never early
    assert min(lag_ms) > -50, f"frames of later passes went out {-min(lag_ms):.0f} ms early"
    assert len(frames) < 4.5 * 15 + 5, f"{len(frames)} frames in 4 s of a 15 fps replay"
