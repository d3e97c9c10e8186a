"""The supervisor's own work is paced by time, not by how many control messages nodes send."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine import control, supervisor
from sensorfuse.engine.graph import load_decl, plan
from sensorfuse.engine.rundir import new_run_dir
from sensorfuse.engine.supervisor import CHECK_INTERVAL_S, METRICS_INTERVAL_S, Supervisor


def test_checks_and_status_follow_the_clock_not_the_heartbeats(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the sink's relative path
    run_dir = new_run_dir(tempfile.mkdtemp(prefix="sf", dir="/tmp"))  # short: ipc:// path limits
    # Heartbeats every 2 ms from each node: far more control messages than check rounds.
    decl = load_decl({"name": "hb", "supervisor": {"heartbeat_interval_s": 0.002}, "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 100, "count": 0, "shape": [8, 8, 3]},
                     "outputs": {"out": "cam0/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"}, "inputs": {"in": "cam0/frame"}}}})
    sup = Supervisor(plan(decl, str(run_dir)), session="hb", quiet=True)
    heartbeats = 0
    check_rounds = 0
    decode, reap = control.decode, sup._reap

    def counting_decode(raw: bytes) -> dict[str, Any]:
        nonlocal heartbeats
        msg = decode(raw)
        heartbeats += msg["type"] == "heartbeat"
        return msg

    def counting_reap() -> None:
        nonlocal check_rounds
        check_rounds += 1
        reap()

    monkeypatch.setattr(supervisor.control, "decode", counting_decode)
    monkeypatch.setattr(sup, "_reap", counting_reap)
    t0 = time.monotonic()
    try:
        code = sup.run(duration_s=2.0)
    finally:
        sup.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    elapsed = time.monotonic() - t0

    assert code == 0, {n: (st.state, st.last_error) for n, st in sup.nodes.items()}
    # One round per tick, plus one per state change a node reports (ready, done; ≤ 4 each here).
    allowed_rounds = elapsed / CHECK_INTERVAL_S + 4 * len(sup.nodes) + 2
    assert heartbeats > allowed_rounds, "the nodes did not send enough heartbeats to tell the two apart"
    assert check_rounds <= allowed_rounds, f"{check_rounds} check rounds for {heartbeats} heartbeats in {elapsed:.1f} s"
    # status.json / metrics stream: one per interval, plus the first and the final one.
    assert sup.metrics_seq <= elapsed / METRICS_INTERVAL_S + 2
