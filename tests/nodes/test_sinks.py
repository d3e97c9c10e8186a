"""Console and JSONL sinks driven without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.sinks import ConsoleSink, JsonlSink


def test_console_prints_events_as_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    h = NodeHarness(ConsoleSink, streams={"in": "perceive/events"})
    ev = {"type": "speaker.active", "phase": "end", "event_id": "speaker.active:1", "key": "track:2", "score": 0.12,
          "modalities": ["vision", "audio"], "duration_ns": 1_500_000_000, "subject": {"track_id": 2}}
    h.send("in", Out.record("in", ev, t_ns=3_000_000_000))
    line = capsys.readouterr().out.strip()
    assert line.split() == ["3.000", "perceive/events", "speaker.active", "end", "track:2", "score", "0.12",
                            "[vision+audio]", "lasted", "1.50", "s"]


def test_console_every_n_thins_frames(capsys: pytest.CaptureFixture[str]) -> None:
    h = NodeHarness(ConsoleSink, {"every": 3}, streams={"in": "cam0/frame"})
    for i in range(7):
        h.send("in", Out.tensor("in", np.zeros((2, 2, 3), np.uint8), t_ns=i))
    assert len(capsys.readouterr().out.splitlines()) == 3  # seq 0, 3, 6


def test_jsonl_writes_header_fields_and_payload_digest(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    h = NodeHarness(JsonlSink, {"path": str(path)}, streams={"in": "cam0/frame"})
    h.send("in", Out.tensor("in", np.ones((2, 2, 3), np.uint8), t_ns=5, layout="HWC/bgr8"))
    h.send("in", Out.text("in", "héllo", t_ns=6))
    h.close()
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows[0]["seq"] == 0 and rows[0]["t_ns"] == 5 and rows[0]["nbytes"] == 12 and len(rows[0]["sha256"]) == 64
    assert rows[1]["text"] == "héllo"


def test_jsonl_without_digest_logs_size_and_timing_only(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    h = NodeHarness(JsonlSink, {"path": str(path), "digest": False}, streams={"in": "cam0/frame"})
    h.send("in", Out.tensor("in", np.ones((2, 2, 3), np.uint8), t_ns=5, layout="HWC/bgr8"))
    h.close()
    (row,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert row["nbytes"] == 12 and "sha256" not in row and row["t_ns"] == 5 and "t_pub_ns" in row
