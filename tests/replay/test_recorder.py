"""RecorderNode logic: exact round trip, splitting, bounded cache, disk-full."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine import wire
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.replay.mcap_io import LogReader
from sensorfuse.replay.recorder import RecorderNode
from sfhelpers import record_errors
from tests.replay.replay_helpers import FailingFile, GatedFile, make_session, payload_bytes, record

pytestmark = pytest.mark.timeout(60)


def _read_all(path: Path) -> list[tuple[wire.Header, bytes]]:
    with LogReader(path) as reader:
        out = []
        for m in reader.iter_messages():
            header, _, payload = m.decode()
            out.append((header, payload))
        assert reader.problems == []
        return out


def _key(h: wire.Header) -> tuple[str, int]:
    return h.stream, h.seq


def test_headers_and_payloads_survive_exactly(recorded: Path, session_msgs: list[wire.Message]) -> None:
    got = {_key(h): (h, p) for h, p in _read_all(recorded)}
    assert len(got) == len(session_msgs)
    for m in session_msgs:
        h, p = got[_key(m.header)]
        assert h == m.header
        assert p == payload_bytes(m)


def test_log_time_order_and_time_range_seek(recorded: Path) -> None:
    with LogReader(recorded) as reader:
        assert reader.finalised
        times = [m.log_time for m in reader.iter_messages()]
        assert times == sorted(times)
        lo, hi = times[len(times) // 3], times[2 * len(times) // 3]
        sub = [m.log_time for m in reader.iter_messages(start_ns=lo, end_ns=hi)]
        assert sub == [t for t in times if lo <= t < hi]


def test_split_by_size_and_duration_loses_nothing(tmp_path: Path) -> None:
    msgs = make_session(n_frames=30)
    for params in ({"split_mb": 0.05}, {"split_s": 0.25}):
        base = tmp_path / f"split{len(params)}{next(iter(params))}.mcap"
        node = record(msgs, base, chunk_mb=0.02, **params)
        files = node.stats.files
        assert len(files) >= 3, params
        seen: list[tuple[str, int]] = []
        for f in files:
            seen += [_key(h) for h, _ in _read_all(Path(f))]
        assert sorted(seen) == sorted(_key(m.header) for m in msgs), params
        assert len(set(seen)) == len(seen)


def test_jpeg_option_replays_frames_of_the_recorded_shape(tmp_path: Path) -> None:
    msgs = [m for m in make_session() if m.stream == "cam0/frame"]
    path = tmp_path / "j.mcap"
    record(msgs, path, jpeg=["cam0/frame"])
    got = _read_all(path)
    assert [h for h, _ in got] == [m.header for m in msgs]
    for (h, p), m in zip(got, msgs):
        assert np.frombuffer(p, np.uint8).reshape(h.shape).shape == m.array.shape


def test_slow_disk_drops_are_counted_per_stream_and_never_block(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    class SlowRecorder(RecorderNode):
        opener = staticmethod(lambda path: GatedFile(path, gate, entered))

    msgs = make_session(n_frames=40)
    h = NodeHarness(SlowRecorder, {"path": str(tmp_path / "slow.mcap"), "cache_mb": 0.1})
    h.send("in", msgs[0])
    assert entered.wait(10)  # the writer thread is stuck in a write
    for m in msgs[1:]:
        h.send("in", m)  # must return although the disk is stuck
    node = h.node
    assert isinstance(node, RecorderNode)
    dropped = dict(node.stats.dropped)
    assert dropped and all(reason == "cache_full" for _, reason in dropped)
    assert dropped.get(("cam0/frame", "cache_full"), 0) > 0
    gate.set()
    summary = h.finish()[-1].record
    h.close()
    written = sum(summary["written"].values())
    assert written + sum(dropped.values()) == len(msgs)
    assert len(_read_all(tmp_path / "slow.mcap")) == written


def test_disk_full_reports_error_keeps_running_and_file_keeps_prefix(tmp_path: Path) -> None:
    path = tmp_path / "full.mcap"

    class FullDiskRecorder(RecorderNode):
        opener = staticmethod(lambda p: FailingFile(p, capacity=60_000))

    msgs = make_session(n_frames=40)
    h = NodeHarness(FullDiskRecorder, {"path": str(path), "chunk_mb": 0.01})
    node = h.node
    assert isinstance(node, RecorderNode)
    statuses = []
    for i, m in enumerate(msgs):
        statuses += h.send("in", m)
        if i == len(msgs) // 2:
            assert node.writer.failed.wait(10)  # the writer hit the full disk; keep sending
    statuses += h.finish()
    h.close()
    records = [s.record for s in statuses]
    errors = [r for r in records if r["event"] == "recorder_error"]
    assert len(errors) == 1 and "No space left" in errors[0]["error"]
    summary = records[-1]
    assert summary["event"] == "recorder_summary" and summary["error"]
    assert any(k.endswith(":write_error") for k in summary["dropped"])
    assert [e for r in records for e in record_errors("recorder/status", r)] == []
    with LogReader(path) as reader:
        prefix = [m.decode()[0] for m in reader.iter_messages()]
        assert not reader.finalised and reader.problems
    originals = {_key(m.header): m.header for m in msgs}
    assert 0 < len(prefix) < len(msgs)
    assert all(originals[_key(h)] == h for h in prefix)
