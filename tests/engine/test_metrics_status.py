"""Stream counters' latencies, the status table that shows them, and stale-run detection."""

from __future__ import annotations

import subprocess
import sys
import time

from sensorfuse.engine import rundir, status
from sensorfuse.engine.metrics import StreamCounters

MS = 1_000_000
NOW = 5_000_000 * MS  # a host that has been up ~83 minutes


def test_capture_latency_only_for_streams_on_this_hosts_clock() -> None:
    live, replay = StreamCounters(), StreamCounters()
    for seq in range(10):
        t_recv = NOW + seq * 33 * MS
        live.on_receive(seq, t_recv - 12 * MS, t_recv, t_pub_ns=t_recv - 1 * MS)
        # replay: capture times are the recording's time base (1 s + ...), published just now
        replay.on_receive(seq, 1_000 * MS + seq * 33 * MS, t_recv, t_pub_ns=t_recv - 2 * MS)
    live_snap, replay_snap = live.snapshot(1.0), replay.snapshot(1.0)
    assert live_snap["latency_p50_ms"] == 12.0 and live_snap["transit_p50_ms"] == 1.0
    assert "latency_p50_ms" not in replay_snap  # "now - t_ns" would be the host's uptime
    assert replay_snap["transit_p50_ms"] == 2.0 and replay_snap["received"] == 10


def test_status_table_marks_publish_to_receipt_latency() -> None:
    replay = StreamCounters()
    replay.on_receive(0, 1_000 * MS, NOW, t_pub_ns=NOW - 2 * MS)
    live = StreamCounters()
    live.on_receive(0, NOW - 12 * MS, NOW, t_pub_ns=NOW - 1 * MS)
    table = status.render({"graph": "g", "state": "running", "nodes": {
        "perceive": {"state": "running", "restarts": 0,
                     "streams": {"cam0/frame": replay.snapshot(1.0), "mic0/audio16k": live.snapshot(1.0)}}}})
    frame_row = next(line for line in table.splitlines() if "cam0/frame" in line)
    audio_row = next(line for line in table.splitlines() if "mic0/audio16k" in line)
    assert "2.00/2.00*" in frame_row and "12.0/12.0" in audio_row and "*" not in audio_row
    assert "publish → receipt" in table.splitlines()[-1]


def _status(nodes: dict, **extra) -> dict:
    return {"graph": "g", "state": "running", "session": "g-1", "nodes": nodes, **extra}


def _stream(p50: float, p99: float, **counts) -> dict:
    return {"rate_hz": 29.9, "received": 12345, "published": 0, "lost": 0, "dropped": {}, "malformed": {},
            "rejected": {}, "latency_p50_ms": p50, "latency_p99_ms": p99, **counts}


def test_default_table_fits_80_columns_and_keeps_p50_p99_apart() -> None:
    nodes = {"a_node_with_a_long_name": {"state": "finishing", "restarts": 12, "last_error": "x" * 200, "streams": {
        "perceive/detections": _stream(123.4, 4567.8, lost=3, dropped={"queue_full": 4}),
        "cam0/frame": _stream(1.234, 12.34)}}}
    table = status.render(_status(nodes, run_dir="/tmp/sf-1000/" + "r" * 60, fingerprint={"cpu": "c" * 100}))
    assert max(len(line) for line in table.splitlines()) <= 80
    rows = [line for line in table.splitlines() if "/detections" in line or "cam0/frame" in line]
    assert rows[0].split()[-1] == "123/4568" and rows[0].split()[-2] == "7"  # drops: lost + dropped
    assert rows[1].split()[-1] == "1.23/12.3"
    assert rows[0].startswith("a_node_w… finishing  12 perceive/detections")
    assert "last error: xxx" in table and "restarts" in table and "p99 ms" in table


def test_a_wider_terminal_shows_long_names_and_wide_shows_every_column() -> None:
    nodes = {"a_node_with_a_long_name": {"state": "running", "restarts": 0, "streams": {
        "some/very/long/stream/name": _stream(250.0, 1500.0, dropped={"queue_full": 4}, malformed={"header": 1})}}}
    table = status.render(_status(nodes), width=120)
    assert "a_node_with_a_long_name" in table and "some/very/long/stream/name" in table
    assert max(len(line) for line in table.splitlines()) <= 120
    wide = status.render(_status(nodes), wide=True)
    row = next(line for line in wide.splitlines() if line.startswith("a_node"))
    assert " 250 " in row and " 1500 " in row and "bad:header=1,drop:queue_full=4" in row
    assert "12345" in row  # received, its own column


def test_final_and_stale_states_read_as_such() -> None:
    node = {"n": {"state": "done", "restarts": 0}}
    done = status.render(_status(node, state="stopped", exit_code=0, ended_at=1.0e9))
    assert done.splitlines()[1].startswith("STOPPED (exit 0) at 2001-09-09 ")
    stale = status.render(_status(node, state="stale", reported_state="running", stale_since=1.0e9))
    assert "STALE (supervisor gone since 2001-09-09 " in stale and "ago, was RUNNING)" in stale
    assert "RUNNING ·" not in stale and max(len(line) for line in stale.splitlines()) <= 80
    assert [status.exit_code({"state": s}) for s in ("finished", "stopped", "failed", "stale")] == [0, 0, 1, 1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_status_without_a_live_supervisor_is_stale_unless_final() -> None:
    me = rundir.supervisor_identity()
    now = time.time()
    live = _status({}, supervisor=me)
    assert status.judge(live, now, now) is live
    for who in ({"pid": _dead_pid(), "started_at": me["started_at"]},  # gone
                {"pid": me["pid"], "started_at": me["started_at"] - 3600}):  # pid reused by a later process
        judged = status.judge(_status({}, supervisor=who), now - 5, now)
        assert judged["state"] == "stale" and judged["reported_state"] == "running"
        assert judged["stale_since"] == now - 5
        final = _status({}, supervisor=who, state="finished")
        assert status.judge(final, now, now) is final
    # a status.json that names no supervisor (older versions): stale once it stops changing
    assert status.judge(_status({}), now - 1, now)["state"] == "running"
    assert status.judge(_status({}), now - 60, now)["state"] == "stale"
