"""Fault: a network partition between two hosts of a graph (issue 16, item 12).

Before: nothing showed it while it lasted (the publisher kept reporting its rate, the
consumer's status showed nothing wrong); losses appeared only after it healed. Now the
consuming input reports `silent_s` in status within LIVENESS_PERIODS idle periods
(`sensorfuse status` prints "nothing heard for N s (publisher gone or network cut)"),
the subscriber dials again once the link is back (ZMTP heartbeats), and what was lost in
between is counted as `lost`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from partition_proxy import PartitionProxy
from sensorfuse.engine import status as status_mod
from sfhelpers import free_port, read_jsonl, wait_for

pytestmark = pytest.mark.timeout(120)

IDLE_S = 0.5


def _graph(host_a: str, port: int, out: Path) -> dict:
    return {"name": "split", "hosts": {"a": host_a, "b": "127.0.0.1"}, "ports_base": port,
            "supervisor": {"idle_s": IDLE_S, "stop_deadline_s": 5},
            "nodes": {"camera": {"kind": "synthetic", "host": "a",
                                 "params": {"rate_hz": 30, "count": 0, "shape": [8, 8, 3]},
                                 "outputs": {"out": "cam0/frame"}},
                      "sink": {"kind": "jsonl", "host": "b", "params": {"path": str(out), "digest": False},
                               "inputs": {"in": "cam0/frame"}}}}


def test_a_partition_shows_as_a_silent_input_while_it_lasts(graph_run, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "b.jsonl"
    # stream index 0: host a binds 127.0.0.2:port, host b dials the proxy on 127.0.0.3:port
    proxy = PartitionProxy(("127.0.0.3", port), ("127.0.0.2", port))
    try:
        run_a = graph_run(_graph("127.0.0.2", port, out), ["--host", "a"])
        run_b = graph_run(_graph("127.0.0.3", port, out), ["--host", "b"])
        wait_for(lambda: len(read_jsonl(out)) > 20, 30, "frames to cross to host b")

        def sink_stream() -> dict:
            return run_b.node("sink")["streams"]["cam0/frame"]

        assert "silent_s" not in sink_stream()
        proxy.partition()
        t_cut = time.monotonic()
        silent = wait_for(lambda: sink_stream().get("silent_s"), 10, "the cut to show in status")
        seen_after = time.monotonic() - t_cut
        # 3 idle periods, then at most a heartbeat and a status write
        assert seen_after < 3 * IDLE_S + 1.5, seen_after
        text = status_mod.render(run_b.status())
        assert "cam0/frame: nothing heard for" in text and "network cut" in text, text
        assert silent >= 3 * IDLE_S
        frames_cut = len(read_jsonl(out))
        # keep the link cut for 2 s of silence, as the consuming host's status counts it
        wait_for(lambda: sink_stream().get("silent_s", 0) >= 2.0, 10, "two seconds of silence")
        proxy.heal()
        wait_for(lambda: len(read_jsonl(out)) > frames_cut + 20, 30, "frames to flow again after the heal")
        wait_for(lambda: "silent_s" not in sink_stream(), 10, "the silence to clear")
        lost = sink_stream()["lost"]
        print(f"cut seen after {seen_after:.2f} s; lost {lost} over {time.monotonic() - t_cut:.1f} s")
        assert lost > 0, "frames published during the cut must be counted as lost"
        assert run_b.proc.poll() is None and run_a.proc.poll() is None
    finally:
        proxy.close()
