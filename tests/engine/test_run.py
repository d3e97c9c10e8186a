"""`sensorfuse run` with real processes and sockets: delivery, restarts, hangs, back-off,
slow consumers, malformed input and shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq

from sensorfuse.engine import wire
from sensorfuse.nodes.synthetic import synthetic_payload
from sfhelpers import alive, read_jsonl, wait_for

FAULTS = str(Path(__file__).with_name("fault_nodes.py"))
FAST_SUPERVISION = {"heartbeat_interval_s": 0.1, "hang_timeout_s": 1.5, "backoff_initial_s": 0.1,
                    "backoff_max_s": 0.4, "max_restarts": 3, "restart_window_s": 30, "stop_deadline_s": 5}


def chain(count: int, *, rate: float = 30.0, shape: list[int] = (480, 640, 3), relay_kind: str = "relay",
          relay_params: dict[str, Any] | None = None, policy: str = "block", sink_params: dict[str, Any] | None = None,
          sink_policy: str = "block", queue: int = 4) -> dict[str, Any]:
    return {
        "name": "chain",
        "supervisor": FAST_SUPERVISION,
        "nodes": {
            "producer": {"kind": "synthetic", "params": {"rate_hz": rate, "count": count, "shape": list(shape)},
                         "outputs": {"out": "cam0/frame"}},
            "relay": {"kind": relay_kind, "params": relay_params or {},
                      "inputs": {"in": {"stream": "cam0/frame", "policy": policy, "queue": queue}},
                      "outputs": {"out": "relay/frame"}},
            "sink": {"kind": "jsonl", "params": {"path": "out.jsonl", **(sink_params or {})},
                     "inputs": {"in": {"stream": "relay/frame", "policy": sink_policy, "queue": queue}}},
        },
    }


def expected_sha(index: int, shape: tuple[int, ...]) -> str:
    import hashlib

    return hashlib.sha256(synthetic_payload(index, shape).tobytes()).hexdigest()


def test_three_node_graph_delivers_everything_in_order(graph_run, tmp_path: Path) -> None:
    run = graph_run(chain(120, rate=60))
    assert run.wait_exit(60) == 0, run.stderr()
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["seq"] for r in rows] == list(range(120))
    assert all(r["meta"]["index"] == r["seq"] for r in rows)
    for r in rows[::17]:
        assert r["sha256"] == expected_sha(r["seq"], (480, 640, 3)), "payload bytes changed in transit"
    st = run.status()
    assert st["state"] == "finished" and st["exit_code"] == 0  # the final state: every node ended by itself
    assert all(n["state"] == "done" for n in st["nodes"].values()), st
    assert st["nodes"]["sink"]["streams"]["relay/frame"]["lost"] == 0


def test_sigkilled_relay_is_restarted_and_the_sink_counts_the_gap(graph_run, tmp_path: Path) -> None:
    run = graph_run(chain(0, rate=50, shape=[64, 64, 3], policy="drop_oldest", sink_policy="drop_oldest", queue=8))
    run.wait_running()
    out = tmp_path / "out.jsonl"
    wait_for(lambda: len(read_jsonl(out)) > 20, 20, "frames at the sink")
    old_pid = run.node("relay")["pid"]
    os.kill(old_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    wait_for(lambda: run.node("relay")["pid"] != old_pid and run.node("relay")["state"] == "running", 10,
             "relay restarted")
    assert time.monotonic() - t_kill < 2.0 + 0.5, "restart took longer than 2 s (plus status-file latency)"
    n_before = len(read_jsonl(out))
    wait_for(lambda: len(read_jsonl(out)) > n_before + 20, 20, "frames after the restart")
    seqs = [r["seq"] for r in read_jsonl(out)]
    assert any(b - a > 1 for a, b in zip(seqs, seqs[1:])), "no gap in seq although the relay was down"
    wait_for(lambda: run.node("sink")["streams"]["relay/frame"]["lost"] > 0, 5, "the sink to count the loss")
    assert run.node("relay")["restarts"] == 1
    assert run.node("sink")["restarts"] == 0, "the sink must not crash"
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(10) == 1, "frames were lost while the relay was down: not a clean run"
    assert "node 'relay' was restarted once" in run.stderr()


def test_hung_node_is_killed_and_restarted(graph_run, tmp_path: Path) -> None:
    marker = tmp_path / "hung-once"
    run = graph_run(chain(0, rate=50, shape=[8, 8, 3], relay_kind=f"{FAULTS}:HangingRelay",
                          relay_params={"hang_after": 10, "marker": str(marker)}, policy="drop_oldest",
                          sink_policy="drop_oldest", queue=8))
    run.wait_running()
    wait_for(lambda: run.node("relay")["restarts"] >= 1, 15, "the hung relay to be restarted")
    assert "hung" in run.node("relay")["last_error"]
    out = tmp_path / "out.jsonl"
    n = len(read_jsonl(out))
    wait_for(lambda: len(read_jsonl(out)) > n + 10, 15, "data flowing again after the restart")
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(10) == 1, "the hung relay lost frames: not a clean run"
    assert "node 'relay' was restarted once" in run.stderr()


def test_crash_on_start_backs_off_then_fails_and_run_exits(graph_run) -> None:
    g = {"name": "crashy", "supervisor": FAST_SUPERVISION,
         "nodes": {"bad": {"kind": f"{FAULTS}:CrashOnStart", "outputs": {"out": "bad/frame"}},
                   "sink": {"kind": "jsonl", "params": {"path": "out.jsonl"}, "inputs": {"in": "bad/frame"}}}}
    t0 = time.monotonic()
    run = graph_run(g)
    code = run.wait_exit(60)
    elapsed = time.monotonic() - t0
    st = run.status()
    assert code == 1
    assert st["nodes"]["bad"]["state"] == "failed"
    assert st["nodes"]["bad"]["restarts"] == 3
    assert len(st["nodes"]["bad"]["exit_codes"]) == 4 and all(c == 1 for c in st["nodes"]["bad"]["exit_codes"])
    assert "simulated crash during start" in st["nodes"]["bad"]["last_error"]
    assert st["state"] == "failed" and st["exit_code"] == 1  # the final state (degraded while it ran)
    # Back-off 0.1 + 0.2 + 0.4 s between the 4 attempts: not a hot loop.
    assert elapsed > 0.7
    # It never became ready: the graph never started, the sink was stopped.
    assert "node 'bad' failed at start" in run.stderr() and "READY" not in run.stderr()
    assert st["nodes"]["sink"]["state"] in ("done", "stopped")
    assert not any(alive(p) for p in run.node_pids())


def _latencies_ms(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([(r["t_recv_ns"] - r["t_ns"]) / 1e6 for r in rows])


def _slow_consumer(graph_run, tmp_path: Path, policy: str, queue: int) -> tuple[np.ndarray, dict[str, Any], list[float]]:
    g = {"name": "slow", "supervisor": FAST_SUPERVISION,
         "nodes": {"producer": {"kind": "synthetic", "params": {"rate_hz": 30, "count": 150, "shape": [480, 640, 3]},
                                "outputs": {"out": "cam0/frame"}},
                   "sink": {"kind": "jsonl", "params": {"path": "out.jsonl", "simulate_work_ms": 50},
                            "inputs": {"in": {"stream": "cam0/frame", "policy": policy, "queue": queue}}}}}
    run = graph_run(g)
    run.wait_running()
    sink = psutil.Process(run.node("sink")["pid"])
    rss = []
    while run.proc.poll() is None:
        try:
            rss.append(sink.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        try:  # a memory sample every 0.25 s until the graph exits
            run.proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
    assert run.wait_exit(30) == 0, run.stderr()
    return _latencies_ms(read_jsonl(tmp_path / "out.jsonl")), run.status()["nodes"]["sink"]["streams"]["cam0/frame"], rss


def test_slow_consumer_latest_keeps_latency_bounded(graph_run, tmp_path: Path) -> None:
    lat, stats, rss = _slow_consumer(graph_run, tmp_path, "latest", 1)
    # Bound: one 50 ms step of work plus the frame that arrived during it (~33 ms) plus slack.
    assert np.percentile(lat[len(lat) // 3:], 99) < 200, lat
    dropped = stats["dropped"].get("overflow", 0) + stats["lost"]
    assert dropped > 30, stats
    assert stats["received"] + stats["lost"] == 150
    assert max(rss) - rss[len(rss) // 4] < 40, f"sink memory grew: {rss}"


def test_slow_consumer_drop_oldest_keeps_latency_bounded(graph_run, tmp_path: Path) -> None:
    lat, stats, rss = _slow_consumer(graph_run, tmp_path, "drop_oldest", 4)
    # Bound: the queue (4) plus the message in hand, 50 ms each, plus slack.
    assert np.percentile(lat[len(lat) // 3:], 99) < 5 * 50 + 100, lat
    assert stats["dropped"].get("overflow", 0) + stats["lost"] > 20, stats
    assert max(rss) - rss[len(rss) // 4] < 40, f"sink memory grew: {rss}"


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_malformed_messages_from_outside_are_counted_and_the_node_keeps_running(graph_run, tmp_path: Path) -> None:
    port = _free_tcp_port()
    ep = f"tcp://127.0.0.1:{port}"
    zctx = zmq.Context()
    pub = zctx.socket(zmq.XPUB)
    pub.linger = 0
    pub.bind(ep)
    g = {"name": "ingest", "supervisor": FAST_SUPERVISION, "external": {"inputs": {"robot/frame": ep}},
         "nodes": {"sink": {"kind": "jsonl", "params": {"path": "out.jsonl"},
                            "inputs": {"in": {"stream": "robot/frame", "policy": "drop_oldest", "queue": 512}}}}}
    run = graph_run(g)
    try:
        wait_for(lambda: pub.poll(50) and pub.recv(), 20, "the graph to subscribe")
        run.wait_running()
        rng = np.random.default_rng(7)
        good = lambda seq: wire.encode_message("robot/frame", "tensor", np.full((2, 2), seq, np.uint8), seq=seq, t_ns=seq)  # noqa: E731
        bad: list[list[bytes]] = [
            [b"robot/frame"],
            [b"robot/frame", b"\xc1garbage"],
            [b"robot/frame", *[bytes(f) for f in good(0)[1:]], b"extra"],
            [bytes(good(0)[0]), bytes(good(0)[1]), b"short"],
        ]
        for _ in range(60):
            n = int(rng.integers(1, 4))
            bad.append([b"robot/frame", *[rng.bytes(int(rng.integers(0, 40))) for _ in range(n)]])
        seq = 0
        for frames in bad:
            pub.send_multipart(good(seq))
            pub.send_multipart(frames)
            seq += 1
        pub.send_multipart(good(seq))
        seq += 1
        wait_for(lambda: len(read_jsonl(tmp_path / "out.jsonl")) >= seq, 20, "all good messages")
        assert [r["seq"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(seq))

        def malformed() -> int:
            s = run.node("sink").get("streams", {}).get("robot/frame", {})
            return sum(s.get("malformed", {}).values())

        # Random bytes can never form a valid header for this stream, so every bad one counts.
        wait_for(lambda: malformed() == len(bad), 10, f"{len(bad)} malformed messages counted")
        assert run.node("sink")["restarts"] == 0 and run.node("sink")["state"] == "running"
    finally:
        pub.close(0)
        zctx.term()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(10) == 0


def test_sigint_stops_every_node_within_five_seconds(graph_run) -> None:
    run = graph_run(chain(0, rate=30, shape=[480, 640, 3], policy="drop_oldest", sink_policy="drop_oldest"))
    run.wait_running()
    pids = run.node_pids()
    assert len(pids) == 3 and all(alive(p) for p in pids)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(10) == 0, run.stderr()
    assert time.monotonic() - t0 < 5.0
    assert not any(alive(p) for p in pids)
    st = run.status()
    assert {n: s["state"] for n, s in st["nodes"].items()} == {"producer": "done", "relay": "done", "sink": "done"}
    assert all(s["exit_codes"] == [0] for s in st["nodes"].values())


def test_lock_step_consumer_behind_at_the_end_still_gets_the_tail_and_eos(graph_run, tmp_path: Path) -> None:
    """A producer that finishes while its block consumer is still behind must not lose the
    stream's tail (or its eos) when it closes its sockets."""
    g = chain(300, rate=2000, shape=[32, 32, 3], policy="block", sink_policy="block", queue=4,
              sink_params={"simulate_work_ms": 2})
    run = graph_run(g)
    assert run.wait_exit(60) == 0, run.stderr()
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["seq"] for r in rows] == list(range(300))
    st = run.status()
    assert st["nodes"]["sink"]["streams"]["relay/frame"]["received"] == 300
    assert st["nodes"]["sink"]["streams"]["relay/frame"]["lost"] == 0
    assert all(n["state"] == "done" for n in st["nodes"].values())


def test_nodes_do_not_outlive_a_sigkilled_supervisor(graph_run) -> None:
    run = graph_run(chain(0, rate=30, shape=[8, 8, 3], policy="drop_oldest", sink_policy="drop_oldest"))
    run.wait_running()
    pids = run.node_pids()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait(10)
    wait_for(lambda: not any(alive(p) for p in pids), 15, "every node to exit after the supervisor died")


def test_shutdown_with_a_failed_producer_does_not_deadlock(graph_run) -> None:
    """The sink waits for an eos that a failed producer never sends, while the healthy
    producer waits for the sink to drain: SIGINT must still end everything in time.
    (The producer fails during the run: one that fails at start stops the whole graph.)"""
    g = {"name": "half", "supervisor": FAST_SUPERVISION, "nodes": {
        "good": {"kind": "synthetic", "params": {"rate_hz": 30, "count": 0, "shape": [8, 8, 3]},
                 "outputs": {"out": "good/frame"}},
        "bad": {"kind": f"{FAULTS}:CrashOnProduce", "outputs": {"out": "bad/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"},
                 "inputs": {"a": "good/frame", "b": "bad/frame"}}}}
    run = graph_run(g)
    run.wait_running()
    wait_for(lambda: run.node("bad")["state"] == "failed", 20, "the bad node to fail for good")
    wait_for(lambda: run.node("sink").get("streams", {}).get("good/frame", {}).get("received", 0) > 5, 20,
             "frames at the sink")
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(15) == 1  # degraded: one node failed
    assert time.monotonic() - t0 < 5.0
    states = {n: s["state"] for n, s in run.status()["nodes"].items()}
    assert states == {"good": "done", "bad": "failed", "sink": "done"}, states
