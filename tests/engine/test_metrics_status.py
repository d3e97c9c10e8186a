"""Stream counters' latencies and the status table that shows them (no processes)."""

from __future__ import annotations

from sensorfuse.engine import status
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
    assert "2.00*" in frame_row and "12.00" in audio_row and "*" not in audio_row
    assert "publish → receipt" in table.splitlines()[-1]
